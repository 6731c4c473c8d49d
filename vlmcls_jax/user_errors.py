"""What counts as the user's error (a bad config, dataset, checkpoint, path or mesh, explained by our own code)
and how it ends a command: one line on stderr, exit status 2.  Internal errors keep their traceback (and
Python's exit status, 1).  Shared by `vlmcls_jax.main` and `vlmcls_jax.plan` (which define their own flags, so
neither can import the other)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys

USER_ERROR_EXIT = 2
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def config_folder() -> str:
    """The shipped configs' folder: the `configs` package wherever it is importable, else the repository's."""
    spec = importlib.util.find_spec("configs")
    return os.path.dirname(spec.origin) if spec and spec.origin else os.path.join(os.path.dirname(_PACKAGE),
                                                                                  "configs")


def one_line(error: BaseException) -> str:
    text = str(error) if not isinstance(error, KeyError) else str(error.args[0] if error.args else error)
    text = re.sub(r":\s*\n\s*", ": ", text.strip())
    return re.sub(r"\s*\n\s*", "; ", text)


def is_user_error(error: BaseException, config_file: str | None = None) -> bool:
    """An error about the user's input, not a bug: a missing or unreadable path, or a ValueError that our
    own code raised to explain a bad config, dataset, checkpoint or mesh: raised in the package, in a shipped
    config or in CONFIG_FILE (the user's own config).  A ValueError from any other code (a library, even one
    with a `configs` folder) is a bug and keeps its traceback."""
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                          FileExistsError)):
        return True
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    raised_in = os.path.abspath(tb.tb_frame.f_code.co_filename)
    ours = (_PACKAGE + os.sep, os.path.abspath(config_folder()) + os.sep)
    return raised_in.startswith(ours) or (config_file is not None and raised_in == os.path.abspath(config_file))


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT)
