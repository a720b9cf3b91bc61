"""Fuzzing what a user can type: flag names and values (hypothesis), and the arrays --x and --y
name. The CLI's promise (minilean/cli.py): a bad flag is one line naming it and exit code 2, a
failure while working one line and exit code 1; never a traceback, and never a run that
starts with a value its flag does not allow."""
import io
import os
import pickle

import numpy
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

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


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """Each command's run replaced by one that records its config, in a folder of its own (a
    path flag's checks look at the disk). Shared by a hypothesis test's examples: they write
    nothing there."""
    configs = []
    monkeypatch.setattr(cli.Command, "run", lambda command, config: configs.append(config))
    monkeypatch.chdir(tmp_path)
    return configs


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
    check_runs_allowed_or_refuses_in_one_line(*line, recorded, capsys)


# One flag of each kind (int, float, bool, a choice, a path read, a path written), each NASTY
# value typed to it both ways: the drawn lines above reach a NASTY value only by chance, and
# the CI profile's fixed draws could miss one for good (a path holding a null byte did).
@pytest.mark.parametrize("typed", ["steps", "lr", "progress", "arch", "x", "out"])
@pytest.mark.parametrize("value", NASTY, ids=[ascii(value)[:24] for value in NASTY])
def test_every_nasty_value_to_a_flag_of_each_kind_runs_allowed_or_is_refused(
        typed, value, recorded, capsys):
    words, command = ("vae",), COMMANDS[("vae",)]
    for flag in ([f"--{typed}={value}"], [f"--{typed}", value]):
        if flag[-1].startswith("-") and len(flag) == 2:  # fire would read it as a flag
            continue
        check_runs_allowed_or_refuses_in_one_line(words, command, typed, [*words, *flag],
                                                  recorded, capsys)


def check_runs_allowed_or_refuses_in_one_line(words, command, typed, argv, recorded, capsys):
    """``argv`` either runs ``command`` with a config of allowed values or is refused in one
    line that names the flag ``typed``, with exit code 2 (1 for a path)."""
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


# Whitespace around a number is taken, as Python's int() and float() take it: fire hands "5 "
# over as 5 and " 5" as the text " 5", which the float flags read as 5.0 too.
@pytest.mark.parametrize("value, expected", [
    ("2.0", 2), ("1e3", 1000), ("1_000", 1000), ("0x10", 16), ("5 ", 5), ('"7"', 7),
    ("\u0663", 3), ("\uff15", 5), (" 5", 5), ("\t5", 5), (" 1e3", 1000), ('"1e3"', 1000),
    ("9007199254740993.0", 9007199254740993)])  # the text's integer, not fire's rounded float
@pytest.mark.parametrize("form", ["joined", "apart"])
def test_an_integer_flag_takes_a_whole_number_as_that_integer(value, expected, form, recorded,
                                                              capsys):
    recorded.clear()
    flag = {"joined": [f"--steps={value}"], "apart": ["--steps", value]}[form]
    assert outcome(["vae", *flag], capsys) == (0, "")
    steps = recorded[0].steps
    assert type(steps) is int and steps == expected


@pytest.mark.parametrize("value", [" 5", "5 ", "\t5", " 1e-3"])
def test_a_float_flag_takes_whitespace_around_a_number_as_an_integer_flag_does(value, recorded,
                                                                              capsys):
    recorded.clear()
    assert outcome(["vae", f"--lr={value}"], capsys) == (0, "")
    assert recorded[0].lr == float(value)


@pytest.mark.parametrize("value", ["2.5", "1e309", "nan", "inf", "True", "[1,2]", "9" * 400,
                                   "1e300", "-0x10", "\u00b2", "", "5.000001", "1__000",
                                   " 1e999999999"])  # refused without building 10**999999999
def test_an_integer_flag_refuses_what_is_no_integer_it_holds(value, recorded, capsys):
    recorded.clear()
    code, err = outcome(["vae", f"--steps={value}"], capsys)
    assert code == 2 and err.startswith("minilean vae: error: --steps: got ")
    assert err.endswith("expected an integer >= 1\n") or "of at most 64 bits" in err
    assert not recorded


@pytest.mark.parametrize("value", ["1e-400", "-1e-400", "1.0000000000000001", "2e-1000"])
@pytest.mark.parametrize("form", ["joined", "apart"])
def test_an_integer_flag_refuses_a_fraction_that_fire_rounds_to_a_whole_float(
        value, form, recorded, capsys):
    """fire reads 1e-400 as 0.0 and 1.0000000000000001 as 1.0, whole floats: the error names
    the text as typed, and the run does not start with 0 or 1."""
    recorded.clear()
    flag = {"joined": [f"--steps={value}"], "apart": ["--steps", value]}[form]
    assert outcome(["vae", *flag], capsys) == (
        2, f"minilean vae: error: --steps: got {value!r}; expected an integer >= 1\n")
    assert not recorded


@pytest.mark.parametrize("value, expected", [
    ("1e309", "an integer >= 1 of at most 64 bits (|value| <= 2**63 - 1)"),
    ("-1e309", "an integer >= 1")])
def test_an_integer_flag_names_a_number_fire_read_as_infinite_as_typed(value, expected, recorded,
                                                                      capsys):
    """fire reads 1e309 as inf: the error said 'got inf; expected an integer', where 1e300, an
    integer as much as 1e309 is, is named as typed and refused as more than 64 bits."""
    recorded.clear()
    assert outcome(["vae", "--steps", value], capsys) == (
        2, f"minilean vae: error: --steps: got {value!r}; expected {expected}\n")
    assert not recorded


def test_a_guarded_commands_integer_flag_reads_its_text_too(recorded, capsys):
    recorded.clear()
    assert outcome(["data", "convert", "image-folder", "--input=.", "--x-output=x.npy",
                    "--height", "1.0000000000000001"], capsys) == (
        2, "minilean data convert image-folder: error: --height: got '1.0000000000000001'; "
           "expected an integer >= 1 and <= 4096\n")
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
    with pytest.raises(FlagError, match=rf"^--out: got .*; expected names of at most {limit} "
                                        r"bytes \(the file system's limit\)$"):
        cli.DIFFUSION.flags["out"].parse(str(tmp_path / ("n" * (limit + 1))))
    # below a folder still to be made, the room is needed by the file's own name, not the folder's
    with pytest.raises(FlagError, match=rf"^--log: got .*; expected names of at most {limit} "):
        cli.DIFFUSION.flags["log"].parse(str(tmp_path / "new" / output_name("log", limit - 13)))



def test_a_file_system_that_gives_no_name_limit_is_taken_as_255_bytes(tmp_path, monkeypatch):
    """pathconf raises OSError where the file system does not answer it (and Windows has
    none): the flag check must not fail with that error."""
    def unanswered(path, name):
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(os, "pathconf", unanswered)
    fits = str(tmp_path / output_name("log", 255 - 14))
    assert cli.DIFFUSION.flags["log"].parse(fits) == fits
    with pytest.raises(FlagError, match=r"^--log: got .*; expected names of at most 255 "):
        cli.DIFFUSION.flags["log"].parse(str(tmp_path / output_name("log", 255 - 13)))

# --- the arrays --x and --y name ----------------------------------------------------------

IMAGES = numpy.random.default_rng(0).integers(0, 256, (12, 3, 8, 8)).astype(numpy.uint8)
FLOATS = IMAGES / 255.0
TINY_RUNS = {  # one step of a small model; every run of them takes well under a second
    "autoencoder": ["--arch=mlp", "--hidden=4", "--latent=2", "--n-eval=1"],
    "diffusion": ["--arch=residual", "--hidden-c=2", "--T=2", "--sampler=ddim",
                  "--sample-steps=1", "--n-samples=1", "--evaluate=false"]}


def npy_bytes(array, **save):
    """The bytes numpy.save writes for ``array``."""
    buffer = io.BytesIO()
    numpy.save(buffer, array, **save)
    return buffer.getvalue()


def npz_bytes(array):
    buffer = io.BytesIO()
    numpy.savez(buffer, x=array)
    return buffer.getvalue()


def pipe(path):
    os.mkfifo(path)  # what --x <(command) names: reading it would wait for a writer forever


# name -> (the file's bytes, or a function that makes it at a path; what the one line says,
# None for a clean run)
X_CASES = {
    "float16": (npy_bytes(FLOATS.astype(numpy.float16)), None),
    "float64": (npy_bytes(FLOATS), None),
    "big-endian float32": (npy_bytes(FLOATS.astype(">f4")), None),
    "Fortran order": (npy_bytes(numpy.asfortranarray(FLOATS)), None),
    "NHWC": (npy_bytes(IMAGES.transpose(0, 2, 3, 1)), None),
    "grey (N, H, W)": (npy_bytes(IMAGES[:, 0]), None),
    "5x7 pixels": (npy_bytes(IMAGES[:, :, :5, :7]), None),
    "trailing bytes": (npy_bytes(IMAGES) + b"junk", None),
    "int8": (npy_bytes(IMAGES.astype(numpy.int8)), "expected dtype uint8 in [0, 255] or float "
                                                   "in [0, 1], found int8"),
    "int64": (npy_bytes(IMAGES.astype(numpy.int64)), "found int64"),
    "uint16": (npy_bytes(IMAGES.astype(numpy.uint16)), "found uint16"),
    "big-endian uint16": (npy_bytes(IMAGES.astype(">u2")), "found >u2"),
    "bool": (npy_bytes(IMAGES > 128), "found bool"),
    "complex": (npy_bytes(FLOATS.astype(numpy.complex64)), "found complex64"),
    "structured": (npy_bytes(numpy.zeros((12, 3, 8, 8), [("a", "f4")])),
                   "found [('a', '<f4')]"),
    "object": (npy_bytes(numpy.array([None] * 12), allow_pickle=True),
               "it holds Python objects (object), which are never unpickled; expected a "
               "numeric array"),
    "1-D": (npy_bytes(FLOATS.ravel()), "expected images of rank 4 (N, C, H, W) or (N, H, W, C), "
                                       "found rank 1"),
    "2-D": (npy_bytes(FLOATS.reshape(12, -1)), "found rank 2"),
    "5-D": (npy_bytes(FLOATS[:, None]), "found rank 5"),
    "0-d": (npy_bytes(numpy.float32(0.5)), "found rank 0"),
    "4 channels": (npy_bytes(FLOATS[:, [0, 1, 2, 0]]), "expected 1 or 3 channels"),
    "no width": (npy_bytes(FLOATS[..., :0]), "expected images of at least 1x1 pixels"),
    # an empty array: not "--batch-size 1 is larger than the 0 rows" (diffusion)
    "no rows": (npy_bytes(FLOATS[:0]), "expected at least one image, found shape (0, 3, 8, 8)"),
    "one row": (npy_bytes(IMAGES[:1]), {"autoencoder": ": 1 row(s); a run needs at least 2 "
                                                       "(training and held-out)",
                                        "diffusion": None}),
    "two rows": (npy_bytes(IMAGES[:2]), None),  # the zoo's least: one trains, one is held out
    "NaN": (npy_bytes(numpy.where(FLOATS > 0.5, numpy.nan, FLOATS)),
            "expected float images in [0, 1], found nan at row 0"),
    "infinity": (npy_bytes(numpy.where(FLOATS > 0.5, numpy.inf, FLOATS)),
                 "expected float images in [0, 1], found inf at row 0"),
    "0..255 as floats": (npy_bytes(IMAGES.astype(numpy.float32)),
                         "expected float images in [0, 1], found values in [0.0, 255.0]"),
    "negative": (npy_bytes(FLOATS - 0.5), "expected float images in [0, 1], found values in "
                                          "[-0.5"),
    "a pickle": (pickle.dumps(IMAGES), "the file is not in the .npy format"),
    "truncated data": (npy_bytes(IMAGES)[:1000], "the file is cut short: it holds 1000 bytes, "
                                                 "and its header promises 2432 (shape "
                                                 "(12, 3, 8, 8), uint8); copy or save it again"),
    "truncated header": (npy_bytes(IMAGES)[:20], "cannot read it as a .npy array file: EOF"),
    "an .npz": (npz_bytes(IMAGES), "the file is an .npz archive; expected a .npy array file"),
    "empty": (b"", "the file is empty; expected a .npy array file"),
    "a folder": (os.mkdir, "is a directory; expected a .npy array file"),
    "a pipe": (pipe, "is a device, pipe or socket, not a regular file; expected a .npy array "
                     "file"),
}

LABELS = numpy.arange(12) % 3
Y_CASES = {
    "int64": (npy_bytes(LABELS), None),
    "uint8": (npy_bytes(LABELS.astype(numpy.uint8)), None),
    "big-endian int32": (npy_bytes(LABELS.astype(">i4")), None),
    "whole float32": (npy_bytes(LABELS.astype(numpy.float32)), None),
    "one short": (npy_bytes(LABELS[:11]), "expected 12 labels (one per image), found 11"),
    "one long": (npy_bytes(numpy.arange(13) % 3), "expected 12 labels (one per image), found 13"),
    "fractions": (npy_bytes(LABELS / 2), "expected integer labels (whole numbers), found 0.5 "
                                         "at row 1"),
    "NaN": (npy_bytes(numpy.full(12, numpy.nan)), "expected integer labels (whole numbers), "
                                                  "found nan at row 0"),
    "bool": (npy_bytes(LABELS > 0), "found bool with shape (12,)"),
    "2-D": (npy_bytes(LABELS[:, None]), "found int64 with shape (12, 1)"),
    "negative": (npy_bytes(LABELS - 1), "expected labels that are class indices in [0, 65535], "
                                        "found -1 at row 0"),
    "beyond the classes": (npy_bytes(LABELS + 70_000), "found 70000 at row 0"),
    "uint64 past int64": (npy_bytes(numpy.full(12, 2**63 + 5, numpy.uint64)),
                          f"found {2**63 + 5} at row 0"),
    "infinity": (npy_bytes(numpy.full(12, numpy.inf)), "found inf at row 0"),
    "images": (npy_bytes(IMAGES), "found uint8 with shape (12, 3, 8, 8)"),
    "a pickle": (pickle.dumps(LABELS), "the file is not in the .npy format"),
    "an .npz": (npz_bytes(LABELS), "the file is an .npz archive"),
    "a pipe": (pipe, "is a device, pipe or socket, not a regular file"),
}


def make(path, content):
    if callable(content):
        content(path)
    else:
        path.write_bytes(content)
    return str(path)


def train_once(command, flags, tmp_path, capsys):
    """(exit code, stderr) of one step of ``command`` on the data ``flags`` name."""
    return outcome([command, *TINY_RUNS[command], *flags, "--cpu", "--steps=1",
                    "--batch-size=1", "--progress=false", f"--out={tmp_path / 'run'}"], capsys)


def check(code, err, command, where, expected, tmp_path):
    """A clean run (``expected`` None) or one line and exit 1 that names the file ``where``
    and says ``expected``; never a traceback, never a run directory for refused data."""
    if isinstance(expected, dict):
        expected = expected[command]
    if expected is None:
        assert (code, err) == (0, "") and (tmp_path / "run" / "summary.json").is_file()
        return
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"minilean {command}: error: ") and expected in err and where in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", sorted(TINY_RUNS))
@pytest.mark.parametrize("case", X_CASES)
def test_an_images_file_trains_or_is_refused_in_one_line(case, command, tmp_path, capsys):
    content, expected = X_CASES[case]
    x = make(tmp_path / "x.npy", content)
    code, err = train_once(command, [f"--x={x}"], tmp_path, capsys)
    check(code, err, command, f"--x {x}", expected, tmp_path)


@pytest.mark.parametrize("case", Y_CASES)
def test_a_labels_file_trains_or_is_refused_in_one_line(case, tmp_path, capsys):
    content, expected = Y_CASES[case]
    x = make(tmp_path / "x.npy", npy_bytes(IMAGES))
    y = make(tmp_path / "y.npy", content)
    code, err = train_once("autoencoder", [f"--x={x}", f"--y={y}"], tmp_path, capsys)
    check(code, err, "autoencoder", f"--y {y}", expected, tmp_path)


def test_samples_to_evaluate_that_are_a_pipe_are_named_so(tmp_path, capsys):
    """Not "not found": the pipe is there, and is refused for what it is."""
    samples = make(tmp_path / "samples.npy", pipe)
    code, err = outcome(["evaluate", "--cpu", f"--samples={samples}"], capsys)
    assert (code, err) == (1, f"minilean evaluate: error: --samples {samples} is a device, pipe "
                              f"or socket, not a regular file; expected a .npy array file\n")


@st.composite
def image_arrays(draw):
    """Arrays of any of the kinds a user might save: images and not, in range and not."""
    dtype = draw(st.sampled_from(["uint8", "float16", "float32", ">f8", "int16", "bool",
                                  "complex64"]))
    shape = draw(st.sampled_from([(3, 3, 4, 4), (3, 4, 4, 3), (3, 1, 4, 4), (3, 4, 4),
                                  (2, 3, 1, 5), (3, 1, 1), (0, 3, 4, 4), (12,), (3, 3, 4, 4, 1),
                                  (3, 2, 4, 4), (3, 3, 3, 3)]))
    elements = st.floats(-2, 2, width=16) | st.sampled_from([0.0, 1.0, numpy.nan, numpy.inf])
    array = draw(arrays(dtype, shape, elements=elements if dtype[-1] in "0123456789" and
                        "f" in dtype else None))
    return draw(st.sampled_from([array, numpy.asfortranarray(array)]))


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=image_arrays())
def test_any_array_trains_or_is_refused_in_one_line(array, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("array")
    x = make(folder / "x.npy", npy_bytes(array))
    code, err = train_once("diffusion", [f"--x={x}"], folder, capsys)
    assert code in (0, 1), err
    if code == 0:
        assert err == "" and (folder / "run" / "summary.json").is_file()
    else:
        assert err.count("\n") == 1 and err.startswith(f"minilean diffusion: error: --x {x}")
        assert not (folder / "run").exists()
