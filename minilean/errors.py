"""User-facing error kinds that the command line maps to exit codes."""
import sys


class FlagError(ValueError):
    """A command-line flag has a bad name, type or value (exit code 2).

    The message is one line naming the flag, the value given and what is allowed.
    """


def flag_error(name, value, allowed):
    """The one-line error for ``--name`` given ``value`` when ``allowed`` says what is valid."""
    return FlagError(f"--{name.replace('_', '-')}: got {value!r}; expected {allowed}")


class StateDictError(ValueError, RuntimeError):
    """A state dict does not fit what it is loaded into: a missing or unexpected key, or a
    value of another shape (exit code 1, as any ValueError).

    Both a ValueError, minilean's kind for a bad value (callers that catch it keep working),
    and a RuntimeError, PyTorch's for the same failures, so that ported code's ``except
    RuntimeError:`` catches it too.
    """


def exit_interrupted(who):
    """End the process as a Ctrl-C ends a command: one line, ``WHO: interrupted``, on stderr
    and exit code 130.

    A Ctrl-C that lands in code run from a string by ``exec`` or ``eval`` (each dataclass and
    namedtuple made while a module is imported: SciPy's, at gelu's first use) marks the
    interrupt "unhandled" in CPython, caught or not, and under ``python -m`` the interpreter
    then ends the process by SIGINT (exit -2) instead of with the code asked for. Every string
    ``exec`` clears that mark as it starts: an empty one here clears it."""
    exec("pass", {})
    print(f"{who}: interrupted", file=sys.stderr)
    raise SystemExit(130)
