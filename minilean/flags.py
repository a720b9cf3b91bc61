"""The one flag type: ``Flag`` converts, bounds and describes a ``--name=value`` flag.

minilean/cli.py declares every command's flags with it, and the functions of lower layers that
take flag values (the data commands, ``load_dataset``) check theirs with it too
(``flag_checked``), so a flag reads the same whichever path refuses it: the same code says it.

Two sources of values, one set of rules. python-fire hands over what the user typed, parsed
loosely (``--cpu=false`` is the text 'false', ``--seed 007`` a text, ``--steps 1e3`` a float),
and ``parse`` reads those as the kind; an integer flag whose word fire read as a float reads
the word itself (fire reads ``1e-400`` as 0.0, a whole float, and ``1e309`` as inf). A Python
caller's value is ``typed``: it must already be of the kind, because an API that turned
``x='off'`` into "no file" or ``'32'`` into 32 would hide the caller's bug instead of naming
it. A path may be a ``pathlib.Path`` (any ``os.PathLike`` of text): it is checked, and handed
on, as its text.
"""
import ast
import decimal
import functools
import inspect
import math
import os
from pathlib import Path

from minilean.errors import flag_error

_TRUE_WORDS, _FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NONE_WORDS = ("none", "null", "false", "off")  # --log=off: TorchLean's way to say "no file"


class Flag:
    """One ``--name=value`` flag: its kind, default, meaning and allowed values."""

    def __init__(self, name, default, help, kind=None, choices=None, aliases=None, low=None,
                 high=None, low_open=False, high_open=False, optional=None, check=None,
                 required=False):
        self.name, self.default, self.help = name, default, help
        self.kind = kind or (str if default is None else type(default))
        if self.kind not in KINDS:
            raise TypeError(f"flag {name}: kind must be one of {KINDS}, got {self.kind}")
        self.choices, self.aliases = choices, dict(aliases or {})
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.optional = (default is None and not required) if optional is None else optional
        self.check, self.required = check, required

    @property
    def option(self):
        return "--" + self.name.replace("_", "-")

    @property
    def negation(self):
        """How a boolean is turned off without a value: fire's --noNAME (not --no-NAME)."""
        return "--no" + self.option[2:]

    def with_default(self, default):
        copy = Flag.__new__(Flag)
        copy.__dict__.update(self.__dict__, default=default)
        return copy

    def allowed(self):
        """What this flag accepts, in words (used by errors and by --help)."""
        if self.choices:
            text = "one of " + ", ".join(map(str, self.choices))
            if self.aliases:  # accepted spellings (TorchLean's --dataset cifar ...) said too
                text += " (or " + ", ".join(f"{alias} for {choice}" for alias, choice
                                            in self.aliases.items()) + ")"
        elif self.kind is bool:
            text = f"a boolean ({self.option}, {self.negation} or {self.option}=false)"
        else:
            text = {int: "an integer", float: "a finite number", str: "a text",
                    Path: "a file or directory path"}[self.kind]
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {self.low}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {self.high}")
            if bounds:
                text += " " + " and ".join(bounds)
        return text + (" or none" if self.optional else "")

    def parse(self, value, typed=False, text=None):
        """The checked value of this flag, or a ``FlagError`` naming it.

        ``value`` is what fire made of the user's text, ``text`` that text where it is known
        (the command line's word); ``typed``: a Python caller's value, which must already be
        of the kind (see the module docstring)."""
        if self.kind is int and isinstance(value, float) and text is not None \
                and (value.is_integer() or math.isinf(value)):
            # fire rounds what it reads as a float (1e-400 to 0.0, 1.0000000000000001 to 1.0,
            # 1e309 to inf): whether an integer was typed, and which, only the text says
            value = text
        if self.kind in (str, Path) and not self.choices and text is not None \
                and isinstance(value, (str, int)) and not isinstance(value, bool):
            # fire reads the word as Python, and for a text or an integer that loses what was
            # typed: 2024_05_01 becomes 20240501, 0x10 16, 'run #2' 'run' (the rest a
            # comment), '(a)' 'a'. The word is the text, or, quoted, what the quotes hold
            value = _typed_text(text)
        none_word = not typed and isinstance(value, str) and value.lower() in _NONE_WORDS
        # A path flag that cannot be none refuses the none-words too: taken as a name, they
        # would make a file or folder called 'none' where the user asked for none.
        if value is None or (none_word and (self.optional or self.kind is Path)):
            if self.optional:
                return None
            hint = f" ({self.option} cannot be none; write ./{value} for a path of that name)" \
                if self.kind is Path and not typed else ""
            raise flag_error(self.name, value, self.allowed() + hint)
        if not typed and self.kind in (str, Path) and not self.choices \
                and isinstance(value, _FIRE_LITERALS):
            # fire hands over a text that reads as a Python literal as that value (1e3 as
            # 1000.0, [mul] as ['mul']): what was typed is lost, so ask for it quoted
            raise flag_error(self.name, value, f"{self.allowed()} (fire read the text as a "
                                               f"{type(value).__name__}: quote it, as "
                                               f"{self.option}='\"TEXT\"')")
        converted = _convert(self.kind, value, typed)
        if converted is _INVALID:
            # a blank text gets its check's words where there is one (--ext '': which
            # extensions), more than "a text"
            blank = self.kind is str and isinstance(value, str) and self.check
            raise flag_error(self.name, value, blank and self.check(value) or self.allowed())
        if self.kind is Path and "\0" in converted:
            # the OS refuses it at the first use of the path, in words that name no flag
            # ("embedded null byte", exit 1), after the flags were taken
            raise flag_error(self.name, value, f"{self.allowed()} (a path cannot hold a null "
                                               f"byte)")
        if self.kind is Path and not typed and converted.startswith("~"):
            # _convert expanded what it could: a ~name of no user here is left as typed
            user = converted.split("/")[0]
            raise flag_error(self.name, value, f"{self.allowed()} ({user} names no home "
                                               f"folder here; write ./{converted} for a path "
                                               f"of that name)")
        if self.choices:
            converted = self.aliases.get(converted, converted)
            if converted not in self.choices:
                raise flag_error(self.name, value, self.allowed())
        if self.kind in (int, float) and not _within(converted, self):
            raise flag_error(self.name, value, self.allowed())
        if self.kind is int and abs(converted) > INT64_MAX:  # NumPy would overflow on it
            raise flag_error(self.name, value, f"{self.allowed()} of at most 64 bits "
                             f"(|value| <= 2**63 - 1)")
        problem = self.check(converted) if self.check else None
        if problem:
            raise flag_error(self.name, value, problem)
        return converted


_INVALID = object()
# what fire makes of a text that reads as a float or a container; an int keeps its digits
_FIRE_LITERALS = (float, list, tuple, dict, set)
INT64_MAX = 2**63 - 1
# Path: a text naming a file or folder (the value is a str; an os.PathLike becomes one)
KINDS = (bool, int, float, str, Path)
# What a typed (Python) value of each kind may be; bool, an int in Python, is refused below
_PYTHON_TYPES = {bool: bool, int: int, float: (int, float), str: str, Path: (str, os.PathLike)}


def _convert(kind, value, typed):
    """``value`` as ``kind``, accepting what fire hands over for it (only the kind's own Python
    types when ``typed``); ``_INVALID`` otherwise."""
    if typed and not isinstance(value, _PYTHON_TYPES[kind]):
        return _INVALID
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.lower() in _TRUE_WORDS  # fire passes --cpu=false as the text 'false'
        if isinstance(value, int) and value in (0, 1):  # and --cpu=1 as the number 1
            return value == 1
        return _INVALID
    if isinstance(value, bool):  # bool is an int in Python; --steps with no value gives True
        return _INVALID
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():  # --steps 1e3, its text unknown
            return int(value)
        if isinstance(value, str):  # fire keeps '007' and ' 5' texts
            return _whole_number(value)
        return _INVALID
    if kind is float:
        try:
            value = float(value) if isinstance(value, (str, int)) else value
        except (ValueError, OverflowError):  # not a number; an int past float's range, 10**400
            return _INVALID
        if isinstance(value, float) and math.isfinite(value):
            return value
        return _INVALID
    if isinstance(value, (int, float)):  # a path like 2024 arrives as a number
        return str(value)
    if isinstance(value, os.PathLike):  # pathlib.Path from Python code (bytes ones are refused)
        value = os.fspath(value)
    if kind is Path and not typed and isinstance(value, str) and value.startswith("~"):
        # the shell expands ~ at a word's start only, so --out=~/runs (the form the help
        # shows) would arrive as is and make a folder named ~ in the working directory
        value = os.path.expanduser(value)
    return value if isinstance(value, str) and value.strip() else _INVALID  # not blank


def _whole_number(text):
    """The integer ``text`` writes exactly, read as Python's ``int`` and ``float`` read numbers
    (whitespace around it, ``_`` between digits: ' 5', '007', '1_000'), with a point or an
    exponent too ('2.0', '1e3'); ``_INVALID`` for any other text ('2.5', '1e-400')."""
    try:
        float(text)  # a number's syntax (Decimal alone would take '1__0')
        number = decimal.Decimal(text)
    except (ValueError, decimal.InvalidOperation):
        return _INVALID
    if not number.is_finite() or number != number.to_integral_value():
        return _INVALID
    # more digits than Python's int() reads from a text (4300) are refused as int() refuses
    # them; built as an int, 1e999999999 would take minutes
    return int(number) if number.adjusted() < 4300 else _INVALID


def _typed_text(word):
    """The text a command-line ``word`` gives a text flag: what its quotes hold when the whole
    word is a quoted Python string ('"1e3"', the quoting fire needs), else the word itself."""
    try:
        quoted = ast.literal_eval(word)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return word
    return quoted if isinstance(quoted, str) else word


def _within(value, flag):
    if flag.low is not None and (value <= flag.low if flag.low_open else value < flag.low):
        return False
    return flag.high is None or (value < flag.high if flag.high_open else value <= flag.high)


def flag_checked(*declared):
    """Decorate a function whose keyword arguments are the ``declared`` flags (same names, same
    defaults): each is parsed as ``typed`` before the body runs, and ``function.flags`` hands
    the same Flags to the CLI's guard (``cli.command_from_function``), which parses the user's
    text with them first. The bodies then see checked values, whichever path called them."""
    def decorate(function):
        signature = inspect.signature(function)
        for flag in declared:
            default = signature.parameters[flag.name].default
            if default is not signature.empty and default != flag.default:
                raise TypeError(f"{function.__qualname__}: {flag.name}={default!r} but its "
                                f"flag's default is {flag.default!r}")

        @functools.wraps(function)
        def checked(*args, **kwargs):
            call = signature.bind(*args, **kwargs)
            call.apply_defaults()
            for flag in declared:
                call.arguments[flag.name] = flag.parse(call.arguments[flag.name], typed=True)
            return function(*call.args, **call.kwargs)

        checked.flags = declared
        return checked
    return decorate
