"""User-facing error kinds that the command line maps to exit codes."""


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
