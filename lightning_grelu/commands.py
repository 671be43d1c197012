"""Command lines the suite prints (resume lines, hints): each one runs when pasted into bash.

Two layers of quoting: Hydra's (a value holding ``=``, ``,``, spaces or brackets, such as a run directory
named by its overrides, ``..._s0_model.lr=3e-5,model.width=200``, is quoted for Hydra's override parser)
and the shell's (an argument holding characters bash treats specially is quoted for bash).
"""

from __future__ import annotations

import re
import shlex

_HYDRA_PLAIN = re.compile(r"[A-Za-z0-9_./:@-]+")  # a value Hydra's parser reads as one plain string
_SHELL_PLAIN = re.compile(r"[A-Za-z0-9_./:+@%=,-]+")  # an argument bash passes on as it is


def hydra_value(value: str) -> str:
    """``value`` as Hydra's override parser reads it back: as is when plain, else single-quoted."""
    value = str(value)
    if _HYDRA_PLAIN.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def override(key: str, value) -> str:
    return f"{key}={hydra_value(value)}"


def shell_arg(arg: str) -> str:
    """One argument for bash: as is when plain, in double quotes when that is safe (readable, and Hydra's
    single quotes inside survive), else in single quotes."""
    if _SHELL_PLAIN.fullmatch(arg):
        return arg
    if not re.search(r'["$`\\!]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def shell_line(argv: list[str]) -> str:
    return " ".join(shell_arg(a) for a in argv)


def override_value(arg: str) -> str:
    """The value of a ``key=value`` override as Hydra reads it (quotes removed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        value = OverridesParser.create().parse_override(arg).value()
    except Exception:  # Hydra reports a malformed override itself
        return arg.split("=", 1)[1]
    return str(value)
