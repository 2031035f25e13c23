"""``runstore run``: the built-in line-processing job (``pipeline``) and its robust reading of
real-world text (``textinput``)."""

# The job `runstore run` files its runs under.
DEFAULT_JOB = "process-lines"
