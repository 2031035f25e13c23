"""Secrets never reach the store: one redaction for every stored text (the command line, the job
name taken from it, an error summary), the same for argv words and for shell scripts inside them.

A command line is read as words, and a script (``sh -c '...'``, or any word with spaces in it) is
cut into words the way a shell would, so the same rules apply at every depth:

- ``--password=S``, ``--password S``, ``--api-key S``: the value of an option whose name speaks of a
  secret (``--no-password`` is a flag; a value that looks like another option is not a value);
- ``DB_PASSWORD=S``: the value of an assignment whose name speaks of a secret;
- the password options of the clients cron jobs run most (``mysql -pS``, ``redis-cli -a S``,
  ``sshpass -p S``, ``curl -u user:S``, ``ldapsearch -w S``, the table ``PROGRAM_OPTIONS``);

and within any text: passwords in URLs (``postgresql://u:S@h``, ``https://TOKEN@github.com``), URL
query parameters (``?access_token=S``), header values (``Authorization:``, ``Cookie:``,
``X-Api-Key:``...), ``Bearer S``, and JSON or code (``{"password": "S"}``, ``token = 'S'``).
Only the secret goes: the rest of a script stays readable.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Sequence

MASK = "***"

# Names (of options, variables, JSON keys, query parameters) that speak of a secret: one of these
# as a part of the name (``--ssh-key``, ``DB_PASSWORD``), or these within it (``dbpassword``).
_SECRET_PARTS = frozenset(
    "pass password passwd passphrase pw pwd secret secrets token tokens key apikey auth authtoken "
    "credential credentials bearer cookie session sessionid sid signature sig otp pin".split()
)
_SECRET_WITHIN = ("password", "passwd", "passphrase", "secret", "token", "apikey", "credential")

_SHELLS = frozenset("sh bash dash zsh ksh ash mksh busybox".split())
_MYSQL = (
    "mysql mysqldump mysqladmin mysqlimport mysqlcheck mysqlshow mysqlpump mysqlbinlog mariadb "
    "mariadb-dump mariadb-admin mariadb-import mariadb-check mariadb-show mariadb-backup "
    "mariabackup xtrabackup"
).split()
_LOGIN = "docker podman nerdctl buildah skopeo helm oras".split()
_MONGO = "mongo mongosh mongodump mongorestore mongoexport mongoimport mongostat mongotop".split()
_LDAP = "ldapsearch ldapmodify ldapadd ldapdelete ldapwhoami ldappasswd ldapcompare".split()
_SNMP = "snmpwalk snmpget snmpbulkwalk snmpset snmptrap snmptable".split()

# Short options whose value is a secret, by program: "next" (the next word), "attached"
# (``-pSECRET``; alone, the option only asks for the password), or "both".
PROGRAM_OPTIONS: dict[str, dict[str, str]] = {
    **{name: {"-p": "attached"} for name in _MYSQL},
    **{name: {"-a": "both"} for name in ("redis-cli", "keydb-cli", "valkey-cli")},
    "sshpass": {"-p": "both"},
    **{name: {"-w": "both"} for name in _LDAP},
    **{name: {"-p": "next"} for name in (*_LOGIN, *_MONGO)},
    "zip": {"-P": "next"},
    "unzip": {"-P": "next"},
    "7z": {"-p": "attached"},
    "7za": {"-p": "attached"},
    "sqlcmd": {"-P": "both"},
    "bcp": {"-P": "both"},
    "ipmitool": {"-P": "next"},
    **{name: {"-A": "next", "-X": "next", "-c": "next"} for name in _SNMP},
    "openssl": {"-k": "next", "-pass": "next", "-passin": "next", "-passout": "next"},
}
# Options whose value is a user and a password: what follows the first separator is the secret.
USER_PASSWORD_OPTIONS: dict[str, dict[str, str]] = {
    "curl": {"-u": ":", "--user": ":", "-U": ":", "--proxy-user": ":"},
    "smbclient": {"-U": "%", "--user": "%"},
    "lftp": {"-u": ","},
}

# -- patterns within any text ---------------------------------------------------------------------

# The password may hold '/' and '@'; an '@' belongs to it only when another '@' follows before
# the host ends (so ``u:p@host/path?mail=a@b`` keeps its host and path).
_URL_USERINFO = re.compile(
    r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s:@'\"]*)"
    r"(:(?:[^\s'\"@?#]|@(?=[^\s'\"/?#]*@))*)?@"
)
_HEADER = re.compile(
    r"((?<![\w-])(?:proxy-authorization|authorization|cookie|set-cookie|[\w-]*api[-_]?key"
    r"|x-[\w-]*(?:token|key|auth|secret|session|signature)[\w-]*)\s*:\s*"
    r"(?:(?:bearer|basic|token|digest|negotiate)\s+)?)([^'\"\n]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(\b(?:bearer|basic|token)\s+)([A-Za-z0-9._~+/=-]{6,})", re.IGNORECASE)
_QUERY = re.compile(r"([?&;]([\w.-]+)=)([^&#\s'\"]+)")
_QUOTED_VALUE = re.compile(r"""(["']?([\w.-]+)["']?\s*[:=]\s*)(["'])((?:\\.|(?!\3)[^\\\n])*)(\3)""")
_NAME_WORD = re.compile(r"[A-Za-z_][\w.-]*")
_OPERATORS = frozenset(";|&()\n")


def secret_name(name: str) -> bool:
    """Does an option, variable or key called ``name`` hold a secret?"""
    lowered = name.lower().lstrip("-")
    if lowered.startswith("no-"):
        return False
    parts = re.split(r"[-_.]", lowered)
    return any(part in _SECRET_PARTS for part in parts) or any(
        word in lowered for word in _SECRET_WITHIN
    )


def redact_text(text: str) -> str:
    """``text`` with every secret shape inside it masked (for error messages and any other free
    text; a command line goes through ``redact_argv``)."""
    if any(c.isspace() for c in text):
        return _redact_script(text)
    return _redact_patterns(text)


def _redact_patterns(text: str) -> str:
    text = _URL_USERINFO.sub(_url_userinfo, text)
    text = _HEADER.sub(rf"\g<1>{MASK}", text)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    text = _QUERY.sub(lambda m: m[1] + MASK if secret_name(m[2]) else m[0], text)
    return _QUOTED_VALUE.sub(
        lambda m: f"{m[1]}{m[3]}{MASK}{m[5]}" if secret_name(m[2]) else m[0], text
    )


def _url_userinfo(m: re.Match[str]) -> str:
    scheme, user, password = m[1], m[2], m[3]
    if password is not None:
        if re.fullmatch(r":\d+(?:/.*)?", password):
            return m[0]  # host:port/path@...: not a password
        return f"{scheme}{user}:{MASK}@"
    if user and scheme.lower().rstrip(":/") in ("http", "https", "ftp", "ftps", "git+https"):
        return f"{scheme}{MASK}@"  # https://TOKEN@github.com: a token as the user name
    return m[0]


# -- words -----------------------------------------------------------------------------------------


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A copy of ``argv`` with every secret masked."""
    return _redact_words(list(argv))


def _redact_words(words: list[str]) -> list[str]:
    out = list(words)
    program = ""
    hide_next: str | None = None  # how the next word hides: "all" or a user:password separator
    shell_script_next = False
    for i, word in enumerate(words):
        if hide_next is not None and not (word.startswith("-") and len(word) > 1):
            out[i] = _hide(word, hide_next)
            hide_next = None
            continue
        hide_next = None
        if shell_script_next:
            out[i] = _redact_script(word)
            shell_script_next = False
            continue
        base = os.path.basename(word)
        if base in PROGRAM_OPTIONS or base in USER_PASSWORD_OPTIONS or base in _SHELLS:
            program = base
        if word.startswith("-") and len(word) > 1:
            out[i], hide_next = _option(word, program)
            shell_script_next = program in _SHELLS and word == "-c"
            continue
        name, eq, value = word.partition("=")
        if eq and _NAME_WORD.fullmatch(name) and secret_name(name):
            out[i] = f"{name}={MASK}" if value else word
            continue
        out[i] = _redact_script(word) if any(c.isspace() for c in word) else _redact_patterns(word)
    return out


def _option(word: str, program: str) -> tuple[str, str | None]:
    """An option word, redacted; and how to hide the next word (None: it is not a value)."""
    specific = PROGRAM_OPTIONS.get(program, {})
    pairs = USER_PASSWORD_OPTIONS.get(program, {})
    name, eq, value = word.partition("=")
    if eq and (secret_name(name) or name in specific):
        return f"{name}={MASK}", None
    if eq and name in pairs:
        return f"{name}={_hide(value, pairs[name])}", None
    if word in pairs:
        return word, pairs[word]
    if word in specific:
        return word, None if specific[word] == "attached" else "all"
    for option, style in specific.items():
        if style != "next" and len(option) == 2 and word.startswith(option) and len(word) > 2:
            return option + MASK, None  # -pSECRET
    if not eq and word.startswith("--") and secret_name(word):
        return word, "all"
    return _redact_patterns(word), None


def _hide(value: str, how: str) -> str:
    if how == "all":
        return MASK
    user, sep, secret = value.partition(how)
    return f"{user}{sep}{MASK}" if sep and secret else value


# -- scripts ---------------------------------------------------------------------------------------


def _redact_script(script: str) -> str:
    """A shell script (or any text with spaces) with each command's words redacted in place,
    the rest left as it was written."""
    pieces: list[str] = []
    done = 0
    for command in _commands(script):
        words = [text for _, _, text in command]
        for (start, end, text), new in zip(command, _redact_words(words)):
            if new != text:
                pieces.append(script[done:start])
                pieces.append(new if _plain(new, script[start:end]) else shlex.quote(new))
                done = end
    pieces.append(script[done:])
    return _redact_patterns("".join(pieces))


def _plain(new: str, original: str) -> bool:
    return original[:1] not in ("'", '"') and not any(c.isspace() or c in "'\"" for c in new)


def _commands(script: str) -> Iterator[list[tuple[int, int, str]]]:
    """The simple commands of ``script``, each a list of its words as (start, end, text): cut
    as a shell would (quotes, backslashes, ``;``, ``|``, ``&&``, newlines), never failing."""
    words: list[tuple[int, int, str]] = []
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in _OPERATORS:
            if words:
                yield words
                words = []
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        start, text = i, []
        while i < n and not script[i].isspace() and script[i] not in _OPERATORS:
            c = script[i]
            if c in ("'", '"'):
                close = script.find(c, i + 1)
                close = n if close < 0 else close
                text.append(script[i + 1 : close])
                i = close + 1
            elif c == "\\" and i + 1 < n:
                text.append(script[i + 1])
                i += 2
            else:
                text.append(c)
                i += 1
        words.append((start, min(i, n), "".join(text)))
    if words:
        yield words


def command_line(argv: Sequence[str]) -> str:
    """argv as one shell-quoted string, secrets redacted: what the store keeps."""
    return shlex.join(redact_argv(argv))
