"""HTTP basic authentication for ``runstore ui`` on an address other people can reach: an auth
file of ``user:pbkdf2_sha256$ITERATIONS$SALT$HASH`` lines (passwords hashed, never stored),
readable by its owner only. ``runstore ui --add-user NAME --auth-file FILE`` writes one."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from runstore.errors import UsageError
from runstore.files import is_regular_file, open_output

ITERATIONS = 300_000
SCHEME = "pbkdf2_sha256"


def hash_password(password: str, *, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    encode = base64.b64encode
    return f"{SCHEME}${iterations}${encode(salt).decode()}${encode(digest).decode()}"


def verify(password: str, hashed: str) -> bool:
    try:
        scheme, iterations, salt, digest = hashed.split("$")
        if scheme != SCHEME:
            return False
        want = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                  int(iterations))  # fmt: skip
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(want, got)


def read_users(path: str | os.PathLike[str]) -> dict[str, str]:
    """The users of an auth file, by name; a file that is missing or malformed is a UsageError."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--auth-file: cannot read {os.fspath(path)}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--auth-file: {os.fspath(path)} is not text") from None
    users = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, hashed = line.strip().partition(":")
        if not sep or not name or not hashed.startswith(SCHEME + "$"):
            raise UsageError(
                f"--auth-file: line {number} of {os.fspath(path)} is not user:{SCHEME}$...; "
                "make it with runstore ui --add-user NAME --auth-file FILE"
            )
        users[name] = hashed
    if not users:
        raise UsageError(f"--auth-file: {os.fspath(path)} names no user")
    return users


def add_user(path: str | os.PathLike[str], name: str, password: str) -> None:
    """Add (or replace) ``name`` in an auth file, created readable by its owner only."""
    if not name or ":" in name or any(c.isspace() for c in name):
        raise UsageError("--add-user: a user name has no colon and no spaces")
    if len(password) < 8:
        raise UsageError("the password must be at least 8 characters")
    target = Path(path)
    # Only an auth file is rewritten: any other file (the store, a typo) is refused untouched.
    exists = target.exists() and (not is_regular_file(target) or target.stat().st_size > 0)
    if exists:
        read_users(target)
    lines = target.read_text(encoding="utf-8").splitlines() if exists else []
    kept = [line for line in lines if line.partition(":")[0] != name]
    kept.append(f"{name}:{hash_password(password)}")
    with open_output(target, private=True) as out:
        out.write("\n".join(kept) + "\n")


class BasicAuth:
    """ASGI middleware: every request needs a user and password of the auth file. A password
    checked once is remembered (by its hash with a key of this process), so pages and their
    assets do not each pay for the slow hash."""

    def __init__(self, app: ASGIApp, users: dict[str, str]) -> None:
        self.app = app
        self.users = users
        self._key = secrets.token_bytes(32)
        self._known: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(dict(scope["headers"]).get(b"authorization")):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"www-authenticate", b'Basic realm="runstore", charset="UTF-8"'),
            (b"content-type", b"text/plain; charset=utf-8"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"runstore: sign in to see the runs\n"})

    def _allowed(self, header: bytes | None) -> bool:
        if not header or not header.lower().startswith(b"basic "):
            return False
        remembered = hmac.new(self._key, header, "sha256").digest()
        if remembered in self._known:
            return True
        try:
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, binascii.Error):
            return False
        hashed = self.users.get(name)
        if hashed is None or not verify(password, hashed):
            return False
        self._known.add(remembered)
        return True
