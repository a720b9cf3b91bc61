"""Fuzzing what a user can type: flag names and values (hypothesis), and the arrays --x and --y
name. The CLI's promise (minilean/cli.py): a bad flag is one line naming it and exit code 2, a
failure while working one line and exit code 1; never a traceback, and never a run that
starts with a value its flag does not allow."""
import os
import pickle
import types

import numpy
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minilean import atomic, cli
from minilean.data.commands import DataCommands
from minilean.errors import FlagError

# Values that fire reads loosely (as Python literals, or not at all), or that sit at the edge
# of a flag's kind: blanks, other bases, overflow and underflow, the none and boolean words,
# containers, quotes, digits of other scripts, control characters, names past any limit.
NASTY = ["", " ", "5 ", " 5", "\t5", "5\n", "0x10", "0o17", "1_000", "1e309", "-1e309", "-0",
         "-0.0", "nan", "NaN", "inf", "-inf", "Infinity", "1e-400", "9" * 400, "9" * 5000,
         "True", "False", "true", "false", "None", "none", "null", "off", "[1,2]", "{}", "(1,)",
         "1j", 'b"x"', "...", '"quoted"', "'q'", '"none"', '"1e3"', '"', "'", "\u0663", "\uff15",
         "\u0663\u0663", "\u00b2", "\u00bd", "\x00", "a\x00b", "x" * 300, "y" * 5000, "-1",
         "-5", "0", "1", "2", "2.0", "2.5", "1.", ".5", "1e3", "1e-5", "3=4", "~nouser/x", "/",
         ".", "..", "-", "--"]

# Every command that reads flags through cli.Command: the model commands, evaluate, proofs
# and the guarded data commands; with the flags each needs to get as far as checking others.
_DATA = DataCommands()
COMMANDS = {(command.name,): command for command in cli.COMMANDS}
COMMANDS[("data", "download")] = cli.command_from_function(_DATA.download, "data download")
COMMANDS[("data", "convert", "image-folder")] = cli.command_from_function(
    _DATA.convert.image_folder, "data convert image-folder")
REQUIRED = {"samples": "--samples=s.npy", "input": "--input=.", "x_output": "--x-output=x.npy"}
KIND_TYPES = {bool: bool, int: int, float: float, str: str, cli.Path: str}


def allowed(flag, value):
    """Whether ``value`` is one the flag allows (of its kind, in its range and choices)."""
    if value is None:
        return flag.optional
    if type(value) is not KIND_TYPES[flag.kind]:  # a float never reaches an int flag's code
        return False
    if flag.kind is cli.Path and flag.check:  # a path to write: its names fit the file system
        longest = max(len(os.fsencode(name)) for name in value.split(os.sep))
        if longest > os.pathconf(".", "PC_NAME_MAX"):
            return False
    return flag.parse(value, typed=True) == value


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Each command's run replaced by one that records its config, in a folder of its own (a
    path flag's checks look at the disk)."""
    saved_run, saved_folder = cli.Command.run, os.getcwd()
    configs = []
    cli.Command.run = lambda command, config: configs.append(config)
    os.chdir(tmp_path_factory.mktemp("work"))
    yield configs
    cli.Command.run = saved_run
    os.chdir(saved_folder)


def outcome(argv, capsys):
    """(exit code, stderr) of ``main(argv)``: 0 when it returned."""
    capsys.readouterr()
    try:
        cli.main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def typed_names(draw, command):
    """A flag name as a user might type it: the real one (dashed or with underscores), a near
    one, a no-prefixed one, another command's."""
    name = draw(st.sampled_from(sorted(command.flags)))
    others = sorted({other for each in COMMANDS.values() for other in each.flags})
    variants = [name, name.replace("_", "-"), name.upper(), name[:-1], name + "s",
                "no" + name, "no-" + name, "no_" + name, "_" + name, draw(st.sampled_from(others))]
    return draw(st.sampled_from(variants))


@st.composite
def command_lines(draw):
    words = draw(st.sampled_from(sorted(COMMANDS)))
    command = COMMANDS[words]
    typed = typed_names(draw, command)
    value = draw(st.sampled_from(NASTY) | st.text(max_size=8) | st.integers().map(str)
                 | st.floats().map(repr))
    form = draw(st.sampled_from(["joined", "apart", "alone"]))
    if form == "apart" and value.startswith("-"):  # fire would read it as a flag of its own
        form = "joined"
    flag = {"joined": [f"--{typed}={value}"], "apart": [f"--{typed}", value],
            "alone": [f"--{typed}"]}[form]
    needed = [text for name, text in REQUIRED.items()
              if name in command.flags and not typed.replace("-", "_").endswith(name)]
    return words, command, typed, [*words, *needed, *flag]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=command_lines())
def test_a_flag_runs_with_an_allowed_value_or_is_refused_in_one_line(line, recorded, capsys):
    words, command, typed, argv = line
    recorded.clear()
    code, err = outcome(argv, capsys)
    if code == 0:
        config, = recorded
        assert all(allowed(flag, getattr(config, name)) for name, flag in command.flags.items())
        return
    assert not recorded, "the command ran, then exited"
    assert code in (1, 2), err
    assert err.count("\n") == 1 and err.startswith(f"minilean {' '.join(words)}: error: ")
    # fire hands --NAME=False over as a valueless --noNAME does (NAME=False); an unknown NAME
    # is then named --noNAME, as documented in cli._unknown_flag
    spellings = [typed, "no" + typed] if argv[-1] in ("False", f"--{typed}=False") else [typed]
    assert any(f"--{spelling.replace('_', '-')}" in err.replace("_", "-")
               for spelling in spellings)
    # 1 only for a path whose file is not what the flag needs (--resume=. holds no run)
    assert code == 2 or command.flags[typed.replace("-", "_")].kind is cli.Path


@pytest.mark.parametrize("value, expected", [
    ("2.0", 2), ("1e3", 1000), ("1_000", 1000), ("0x10", 16), ("5 ", 5), ('"7"', 7),
    ("\u0663", 3), ("\uff15", 5)])
def test_an_integer_flag_takes_a_whole_number_as_that_integer(value, expected, recorded,
                                                              capsys):
    recorded.clear()
    assert outcome(["vae", f"--steps={value}"], capsys) == (0, "")
    steps = recorded[0].steps
    assert type(steps) is int and steps == expected


@pytest.mark.parametrize("value", ["2.5", "1e309", "nan", "inf", "True", "[1,2]", "9" * 400,
                                   "1e300", "-0x10", "\u00b2", " 5", "", "5.000001"])
def test_an_integer_flag_refuses_what_is_no_integer_it_holds(value, recorded, capsys):
    recorded.clear()
    code, err = outcome(["vae", f"--steps={value}"], capsys)
    assert code == 2 and err.startswith("minilean vae: error: --steps: got ")
    assert err.endswith("expected an integer >= 1\n") or "of at most 64 bits" in err
    assert not recorded


@pytest.mark.parametrize("repeated, name", [
    (["-steps=3", "--steps=4"], "--steps"), (["---steps=3", "--steps=4"], "--steps"),
    (["--steps=4", "-steps", "3"], "--steps"), (["-nocpu", "--cpu"], "--cpu")])
def test_a_flag_given_twice_with_other_dashes_is_refused(repeated, name, recorded, capsys):
    """fire takes -steps and ---steps for --steps (it strips the dashes) and keeps the last
    value, unsaid: the check of flags given twice must read them as fire does."""
    recorded.clear()
    code, err = outcome(["vae", *repeated], capsys)
    assert (code, err) == (2, f"minilean vae: error: {name} is given more than once; expected "
                              f"each flag once\n")
    assert not recorded


OUTPUT_FLAGS = [(words, name) for words, command in COMMANDS.items()
                for name, flag in command.flags.items() if flag.kind is cli.Path and flag.check]


def output_name(name, length):
    """A name of ``length`` bytes with the ending the flag ``name`` asks for."""
    ending = ".png" if name.endswith("ppm") else ".npy" if name.endswith("output") else ".json"
    return "n" * (length - len(ending)) + ending


@pytest.mark.parametrize("words, name", OUTPUT_FLAGS,
                         ids=[f"{' '.join(words)} {COMMANDS[words].flags[name].option}"
                              for words, name in OUTPUT_FLAGS])
def test_a_path_to_write_with_a_name_too_long_is_refused_before_the_run(words, name, tmp_path,
                                                                        recorded, capsys):
    """A name the file system cannot hold passes every other check: found only when the file
    is written, it cost the whole run (--log, --sample-ppm) or conversion (--x-output)."""
    recorded.clear()
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    value = str(tmp_path / ("n" * (limit + 1)) / output_name(name, 10))
    flag = COMMANDS[words].flags[name]
    needed = [text for required, text in REQUIRED.items()
              if required in COMMANDS[words].flags and required != name]
    code, err = outcome([*words, *needed, f"{flag.option}={value}"], capsys)
    assert (code, err) == (2, f"minilean {' '.join(words)}: error: {flag.option}: got "
                              f"'{value}'; expected names of at most {limit} bytes (the file "
                              f"system's limit" + (f", {limit - 14} for the file's own" if
                                                   name not in ("out", "cache", "root") else "")
                           + ")\n")
    assert not recorded


def test_a_file_name_is_refused_exactly_where_its_write_would_fail(tmp_path):
    """The file is written under a temporary name 14 bytes longer (atomic_open): the longest
    name that --log accepts is the longest that can be written, and a run directory may take
    the file system's whole limit."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest, too_long = (str(tmp_path / output_name("log", limit - extra)) for extra in (14, 13))
    assert cli.DIFFUSION.flags["log"].parse(longest) == longest
    atomic.write_text(longest, "{}")
    with pytest.raises(FlagError, match=rf"^--log: got .*; expected names of at most {limit} "):
        cli.DIFFUSION.flags["log"].parse(too_long)
    with pytest.raises(OSError, match="File name too long"):
        atomic.write_text(too_long, "{}")
    folder = str(tmp_path / ("n" * limit))
    assert cli.DIFFUSION.flags["out"].parse(folder) == folder
    os.mkdir(folder)
