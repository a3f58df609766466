"""The agent's shared secret: one token-file format, read the same way by the agent and the farm.

One line, surrounding whitespace stripped, at least 16 visible ASCII characters; anything else
is refused in one line that names the file and never shows its content (a second line, e.g. a
comment, used to go into the client's Authorization header and crash it with the secret in the
traceback, while the agent started and answered 401 to everyone). A file that group or others
can read is accepted with one warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from adacomp.errors import AdacompError

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
MAX_TOKEN_FILE_BYTES = 4096  # a token file is one short line; anything bigger is something else


_warned_readable: set[Path] = set()


def check_token(token: str, source: str = "the token", *, min_chars: int = MIN_TOKEN_CHARS) -> str:
    """`token` if it can go into an Authorization header as is, else a one-line AdacompError.

    Only the shape is described, never the content: the message ends up in logs and terminals.
    """
    if not token:
        raise AdacompError(f"{source} is empty")
    if "\n" in token:
        raise AdacompError(
            f"{source} has {token.count(chr(10)) + 1} lines; it must hold only the token, on one line"
        )
    if any(not 0x21 <= ord(char) <= 0x7E for char in token):
        raise AdacompError(
            f"{source}: the token contains a space, a control or a non-ASCII character; "
            "it must be one word of visible ASCII characters"
        )
    if len(token) < min_chars:
        raise AdacompError(f"{source}: the token must be at least {min_chars} characters")
    return token


def read_token(path: str | Path) -> str:
    """The shared secret in `path`: one line, surrounding whitespace stripped, at least 16
    visible ASCII characters. Both sides read it with this function, so a file the agent
    accepts is one the farm can send (a second line, e.g. a comment, used to go into the
    client's Authorization header and crash it with the secret in the traceback)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_TOKEN_FILE_BYTES + 1)
            mode = os.fstat(file.fileno()).st_mode
    except OSError as exc:
        raise AdacompError(f"token file {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise AdacompError(
            f"token file {str(path)!r} is over {MAX_TOKEN_FILE_BYTES} bytes; it must hold only the token"
        )
    token = check_token(data.decode("latin-1").strip(), f"token file {str(path)!r}")
    _warn_if_readable(path, mode)
    return token


def _warn_if_readable(path: Path, mode: int) -> None:
    """One warning per file and process when group or others may read the secret (POSIX)."""
    if os.name != "posix" or not stat.S_ISREG(mode) or not mode & 0o044:
        return
    resolved = path.resolve()
    if resolved in _warned_readable:
        return
    _warned_readable.add(resolved)
    log.warning(
        "warning: token file %r can be read by group or others (mode %s); chmod 600 it",
        str(path),
        oct(stat.S_IMODE(mode)),
    )
