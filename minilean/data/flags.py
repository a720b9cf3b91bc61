"""Checks for command-line flag values that raise ``FlagError`` with a one-line message.

python-fire hands over whatever the user typed, parsed loosely (``--x=false`` is the string
'false', ``--n 007`` a string), so every data command and ``load_dataset`` checks its flags here
before doing any work.
"""
from minilean.errors import flag_error


def check_bool(flag, value):
    if not isinstance(value, bool):
        raise flag_error(flag, value, "a boolean (--flag or --noflag)")
    return value


def check_int(flag, value, minimum=None, maximum=None, optional=False):
    """An int in [minimum, maximum] (None passes when ``optional``)."""
    if value is None and optional:
        return None
    low = "-inf" if minimum is None else minimum
    high = "inf" if maximum is None else maximum
    allowed = f"an integer in [{low}, {high}]" + (" or None" if optional else "")
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
        raise flag_error(flag, value, "a file or directory path" + (" or None" if optional else ""))
    return value
