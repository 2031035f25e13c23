"""``runstore ui``: the history as pages. ``app`` builds the Starlette application (routes, errors,
authentication), ``pages`` and ``api`` answer the requests, ``data`` assembles what they show
from the library (``history.browse``, ``health``), ``charts`` draws SVG, ``auth`` checks users.
Imported only by ``runstore ui`` (and the tests): no other command loads Starlette."""
