"""Checks for command-line flag values that raise ``FlagError`` with a one-line message.

python-fire hands over whatever the user typed, parsed loosely (``--x=false`` is the string
'false', ``--n 007`` a string), so every data command and ``load_dataset`` checks its flags here
before doing any work. The words of what is expected are those of ``cli.Flag.allowed``, so a
flag reads the same whichever check refuses it.
"""
from minilean.errors import flag_error


def check_bool(flag, value):
    if not isinstance(value, bool):
        option = flag.replace("_", "-")
        raise flag_error(flag, value, f"a boolean (--{option}, --no{option} or --{option}=false)")
    return value


def check_int(flag, value, minimum=None, maximum=None, optional=False):
    """An int in [minimum, maximum] (None passes when ``optional``)."""
    if value is None and optional:
        return None
    bounds = ([f">= {minimum}"] if minimum is not None else []) + (
        [f"<= {maximum}"] if maximum is not None else [])
    allowed = " ".join(["an integer"] + [" and ".join(bounds)] * bool(bounds)) + (
        " or none" if optional else "")
    if not isinstance(value, int) or isinstance(value, bool):
        raise flag_error(flag, value, allowed)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise flag_error(flag, value, allowed)
    return value


def check_choice(flag, value, choices):
    if value not in choices:
        raise flag_error(flag, value, "one of " + ", ".join(map(str, choices)))
    return value


def check_path(flag, value, optional=False):
    """A non-empty path string (None passes when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise flag_error(flag, value, "a file or directory path" + (" or none" if optional else ""))
    return value
