"""minilean/flags.py: one Flag reads fire's text and a Python caller's value by the same rules,
and the data commands and ``load_dataset`` check their flags with the very Flags the CLI uses."""
import os
from pathlib import Path

import numpy
import pytest

from minilean import cli
from minilean.data.arrays import DATA_FLAGS, load_dataset
from minilean.data.commands import ConvertCommands, DataCommands
from minilean.errors import FlagError
from minilean.flags import Flag, flag_checked


REFUSED = object()


@pytest.mark.parametrize("flag, value, loose, typed", [
    (Flag("n", 1, "n"), "007", 7, REFUSED),  # fire keeps '007' a text; Python code meant a text
    (Flag("n", 1, "n"), 1e3, 1000, REFUSED),
    (Flag("n", 1, "n"), True, REFUSED, REFUSED),  # bool is an int in Python, never a count
    (Flag("n", 1, "n"), 3, 3, 3),
    (Flag("r", 1.0, "r"), 2, 2.0, 2.0),
    (Flag("r", 1.0, "r"), "inf", REFUSED, REFUSED),
    pytest.param(Flag("r", 1.0, "r"), 10**400, REFUSED, REFUSED,  # past float's range
                 id="float-1e400-as-int"),
    pytest.param(Flag("n", 1, "n"), "1" + "0" * 5000, REFUSED, REFUSED,  # more than int() reads
                 id="int-of-5001-digits"),
    pytest.param(Flag("n", 1, "n"), 2**63, REFUSED, REFUSED, id="int-past-64-bits"),
    pytest.param(Flag("n", 1, "n"), str(2**63 - 1), 2**63 - 1, REFUSED, id="int-of-64-bits"),
    pytest.param(Flag("n", 1, "n"), -2**64, REFUSED, REFUSED, id="int-below-64-bits"),
    pytest.param(Flag("n", 1, "n"), -(2**63 - 1), -(2**63 - 1), -(2**63 - 1),
                 id="negative-int-of-64-bits"),
    (Flag("on", False, "o"), "false", False, REFUSED),
    (Flag("on", False, "o"), "Yes", True, REFUSED),  # the words in any case: --progress=Yes
    (Flag("on", True, "o"), "OFF", False, REFUSED),
    (Flag("on", False, "o"), True, True, True),
    (Flag("on", False, "o"), 1, True, REFUSED),  # fire reads --on=1 as the number 1
    (Flag("on", False, "o"), 0, False, REFUSED),
    (Flag("on", False, "o"), 2, REFUSED, REFUSED),
    (Flag("p", "a", "p", kind=Path), 2024, "2024", REFUSED),
    (Flag("p", "a", "p", kind=Path), "", REFUSED, REFUSED),
    (Flag("p", "a", "p", kind=Path), " ", REFUSED, REFUSED),  # a folder named by a space
    (Flag("p", None, "p", kind=Path), "off", None, "off"),  # a none-word is a path from Python
    (Flag("p", "a", "p", kind=Path), "none", REFUSED, "none"),  # a path that cannot be none
    (Flag("p", None, "p", kind=Path), Path("d/x.npy"), "d/x.npy", "d/x.npy"),  # as its text
    (Flag("p", None, "p", kind=Path), Path("none"), "none", "none"),  # a path, not a none-word
    # --out=~/runs: no shell expands a ~ after "="; Python code's ~ is a name, as open() reads it
    (Flag("p", "a", "p", kind=Path), "~/runs/x", str(Path.home() / "runs/x"), "~/runs/x"),
    (Flag("t", "a", "t", kind=str), "~/x", "~/x", "~/x"),  # a text is no path: its ~ stays
    # the home of a user of this machine (root's, which every Unix has) ...
    (Flag("p", "a", "p", kind=Path), "~root/x", os.path.expanduser("~root") + "/x", "~root/x"),
])
def test_fire_text_is_read_as_the_kind_and_a_python_value_must_be_of_it(flag, value, loose,
                                                                        typed):
    for expected, is_typed in ((loose, False), (typed, True)):
        if expected is REFUSED:
            with pytest.raises(FlagError, match=f"^--{flag.name}: got {value!r}; expected "):
                flag.parse(value, typed=is_typed)
        else:
            assert flag.parse(value, typed=is_typed) == expected


@pytest.mark.parametrize("typed, words", [
    ("~nosuchuser/runs", "~nosuchuser names no home folder here; write ./~nosuchuser/runs"),
    ("~nosuchuser", "~nosuchuser names no home folder here; write ./~nosuchuser"),
])
def test_a_tilde_of_no_user_is_refused_not_made_a_folder_of_that_name(typed, words):
    """... of no user: left as typed, it would make a folder named ~nosuchuser here."""
    with pytest.raises(FlagError) as error:
        Flag("out", "a", "o", kind=Path).parse(typed)
    assert str(error.value) == (f"--out: got {typed!r}; expected a file or directory path "
                                f"({words} for a path of that name)")


@pytest.mark.parametrize("typed", ["\x00", "runs/a\x00b"])
def test_a_path_with_a_null_byte_is_refused_as_the_flags_value(typed):
    """The OS refuses such a path at its first use: --out or --log holding one stopped the
    command with "error: embedded null byte" (exit 1), naming no flag."""
    with pytest.raises(FlagError) as error:
        Flag("out", "a", "o", kind=Path).parse(typed)
    assert str(error.value) == (f"--out: got {typed!r}; expected a file or directory path "
                                f"(a path cannot hold a null byte)")


@pytest.mark.parametrize("flag, typed, words", [
    (Flag("n", 1, "n"), False, "an integer"),  # fire reads --n=None as None: no path to hint
    (Flag("p", "a", "p", kind=Path), True, "a file or directory path"),  # Python's None too
    (Flag("p", "a", "p", kind=Path), False,
     "a file or directory path (--p cannot be none; write ./None for a path of that name)"),
])
def test_none_for_a_flag_that_cannot_be_none_hints_at_a_path_only_on_the_command_line(
        flag, typed, words):
    with pytest.raises(FlagError) as error:
        flag.parse(None, typed=typed)
    assert str(error.value) == f"--{flag.name}: got None; expected {words}"


def test_an_integer_text_of_more_digits_than_int_reads_is_no_integer():
    """int() reads at most 4300 digits from a text, and so does an integer flag (built as an
    int, 1e999999999 would take minutes); 4300 digits are an integer, too large for 64 bits."""
    flag = Flag("n", 1, "n")
    with pytest.raises(FlagError, match=r"^--n: got '1e4299'; expected an integer of at most "
                                        r"64 bits \(\|value\| <= 2\*\*63 - 1\)$"):
        flag.parse("1e4299")
    with pytest.raises(FlagError, match=r"^--n: got '1e4300'; expected an integer$"):
        flag.parse("1e4300")


def test_flag_checked_parses_before_the_body_and_hands_its_flags_on():
    seen = []
    dataset = Flag("dataset", "builtin", "d", choices=("builtin", "cifar10"),
                   aliases={"shapes": "builtin"})

    @flag_checked(dataset, Flag("count", 2, "c", low=1))
    def use(dataset="builtin", count=2):
        seen.append((dataset, count))

    use("shapes", count=3)
    assert seen == [("builtin", 3)] and use.flags == (dataset, use.flags[1])
    with pytest.raises(FlagError, match=r"^--count: got 0; expected an integer >= 1$"):
        use(count=0)
    assert len(seen) == 1
    with pytest.raises(TypeError, match="count=5 but its flag's default is 2"):
        flag_checked(Flag("count", 2, "c"))(lambda count=5: None)


# Every data command flag, a bad value given alike from Python and on the command line, and
# the words both paths answer with: one Flag (or one check) says them.
PATH = "a file or directory path"
BAD_DATA_FLAGS = [
    ("image-folder", "input", [1], PATH),
    ("image-folder", "x_output", [1], PATH),
    ("image-folder", "x_output", "o.txt", "a path ending in .npy"),  # it would hold .npy bytes
    ("image-folder", "y_output", [1], PATH + " or none"),
    ("image-folder", "y_output", "labels", "a path ending in .npy"),
    ("image-folder", "height", 0, "an integer >= 1 and <= 4096"),
    ("image-folder", "height", "tall", "an integer >= 1 and <= 4096"),
    ("image-folder", "width", 4097, "an integer >= 1 and <= 4096"),
    ("image-folder", "width", 2.5, "an integer >= 1 and <= 4096"),
    ("image-folder", "labels_from_dirs", "maybe",
     "a boolean (--labels-from-dirs, --nolabels-from-dirs or --labels-from-dirs=false)"),
    ("image-folder", "limit", 0, "an integer >= 1 or none"),
    ("image-folder", "ext", "png", 'file extensions starting with ".", e.g. .png,.jpg'),
    ("image-folder", "ext", "", 'file extensions starting with ".", e.g. .png,.jpg'),
    ("image-folder", "ext", ".png,.", 'file extensions starting with ".", e.g. .png,.jpg'),
    ("image-folder", "crop", "edge", "one of center, stretch"),
    ("image-folder", "y_output", "y.npy", "to come with --labels-from-dirs"),
    ("download", "cifar10", "maybe", "a boolean (--cifar10, --nocifar10 or --cifar10=false)"),
    ("download", "cifar10", False, "--cifar10 (the dataset to download)"),
    ("download", "root", [1], PATH),
    ("download", "limit_train", 0, "an integer >= 1 or none"),
    ("download", "limit_test", "many", "an integer >= 1 or none"),
]


def data_command(name, tmp_path):
    """The command's function, its command-line path and the valid flags the cases vary."""
    if name == "download":
        return (DataCommands().download, ["data", "download"],
                {"cifar10": True, "root": str(tmp_path / "real")})
    return (ConvertCommands().image_folder, ["data", "convert", "image-folder"],
            {"input": str(tmp_path / "missing"), "x_output": str(tmp_path / "x.npy")})


def expected_line(flag, value, words):
    return f"--{flag.replace('_', '-')}: got {value!r}; expected {words}"


@pytest.mark.parametrize("command, flag, value, words", BAD_DATA_FLAGS)
def test_a_bad_data_flag_from_python_is_a_flag_error_naming_it(command, flag, value, words,
                                                               tmp_path):
    function, _, valid = data_command(command, tmp_path)
    with pytest.raises(FlagError) as error:
        function(**{**valid, flag: value})
    assert str(error.value) == expected_line(flag, value, words)
    assert not any(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("command, flag, value, words", BAD_DATA_FLAGS)
def test_a_bad_data_flag_on_the_command_line_says_the_same_in_one_line(command, flag, value,
                                                                       words, tmp_path,
                                                                       capsys):
    _, path, valid = data_command(command, tmp_path)
    argv = [f"--{name.replace('_', '-')}={given}"
            for name, given in {**valid, flag: value}.items()]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(path + argv)
    assert exit_info.value.code == 2
    # a list reached the flag from fire's reading of the typed text: the line says how to quote
    option = f"--{flag.replace('_', '-')}"
    hint = (f" (fire read the text as a list: quote it, as {option}='\"TEXT\"')"
            if isinstance(value, list) else "")
    assert capsys.readouterr().err == (f"minilean {' '.join(path)}: error: "
                                       f"{expected_line(flag, value, words)}{hint}\n")


@pytest.mark.parametrize("function, flag, value, words", [
    (ConvertCommands().image_folder, "height", "64", "an integer >= 1 and <= 4096"),
    (ConvertCommands().image_folder, "input", "", PATH),
    (ConvertCommands().image_folder, "limit", 2.0, "an integer >= 1 or none"),
    (ConvertCommands().image_folder, "labels_from_dirs", "false",
     "a boolean (--labels-from-dirs, --nolabels-from-dirs or --labels-from-dirs=false)"),
    (DataCommands().download, "cifar10", "true",
     "a boolean (--cifar10, --nocifar10 or --cifar10=false)"),
    (DataCommands().download, "root", 2024, PATH),
    (DataCommands().download, "limit_test", True, "an integer >= 1 or none"),
])
def test_python_callers_must_pass_the_kind_itself(function, flag, value, words, tmp_path):
    """What fire would read as the kind (texts, whole floats, numbers as paths) is a bug in
    Python code: it is refused, with the words the command line uses."""
    valid = {"input": "in", "x_output": "x.npy"} if function.__name__ == "image_folder" else {
        "cifar10": True, "root": str(tmp_path)}
    with pytest.raises(FlagError) as error:
        function(**{**valid, flag: value})
    assert str(error.value) == expected_line(flag, value, words)


@pytest.mark.parametrize("function", [DataCommands.download, ConvertCommands.image_folder])
def test_the_cli_guards_a_data_command_with_its_own_flags(function):
    command = cli.command_from_function(function)
    assert list(command.flags.values()) == list(function.flags)
    assert all(mine is its for mine, its in zip(command.flags.values(), function.flags))


def test_load_dataset_takes_the_data_flags_of_the_model_commands():
    assert [id(flag) for flag in cli.data_flags().flags] == [id(flag) for flag in DATA_FLAGS]
    assert load_dataset.flags[:len(DATA_FLAGS)] == DATA_FLAGS
    assert load_dataset("shapes", n_total=4, image_size=16).name == "builtin"  # an alias, too


def test_a_flag_of_a_kind_no_rule_reads_is_refused_where_it_is_declared():
    """A list default (or kind) has no rule to read fire's text by: said at the declaration,
    not as a KeyError when a user first gets the flag wrong."""
    with pytest.raises(TypeError, match=r"^flag sizes: kind must be one of .*, got <class "
                                        r"'list'>$"):
        Flag("sizes", [16, 32], "image sizes")


def test_a_python_callers_bad_flag_is_a_value_error_as_any_bad_argument_is():
    """A script that guards load_dataset with ``except ValueError`` (the error of a bad
    argument value, as NumPy and the standard library raise it) catches a refused flag too."""
    try:
        load_dataset(n_total=0)
    except ValueError as error:
        assert str(error) == "--n-total: got 0; expected an integer >= 1 or none"
    else:
        pytest.fail("n_total=0 was taken")


def test_path_flags_take_a_pathlib_path_from_python(tmp_path, monkeypatch):
    numpy.save(tmp_path / "x.npy", numpy.zeros((2, 3, 16, 16), numpy.uint8))
    numpy.save(tmp_path / "y.npy", numpy.array([0, 1]))
    data = load_dataset(x=tmp_path / "x.npy", y=tmp_path / "y.npy")
    assert data.x.shape == (2, 3, 16, 16) and data.y.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path}/real/cifar10/cifar10_train_X.npy "
                                                f"not found; make it with: .* --root "
                                                f"{tmp_path}/real$"):
        load_dataset("cifar10", data_root=tmp_path / "real")
    prepared = []
    monkeypatch.setattr("minilean.data.cifar10.prepare", lambda *args: prepared.append(args))
    DataCommands().download(cifar10=True, root=tmp_path / "real")
    assert prepared == [(str(tmp_path / "real"), None, None)]  # handed on as its text


@pytest.mark.parametrize("kwargs, error, message", [
    ({"x": "none"}, FileNotFoundError, "^--x none not found"),  # a path, not "no --x"
    ({"n_total": "5"}, FlagError, r"^--n-total: got '5'; expected an integer >= 1 or none$"),
    ({"seed": -1}, FlagError, r"^--seed: got -1; expected an integer >= 0 and <= 4294967295$"),
    ({"seed": 1.0}, FlagError, r"^--seed: got 1.0; expected an integer >= 0 and <= 4294967295$"),
    ({"data_root": ["data"]}, FlagError, r"^--data-root: got \['data'\]; expected a file or "
                                         r"directory path$"),
    ({"x": b"x.npy"}, FlagError, r"^--x: got b'x.npy'; expected a file or directory path or "
                                 r"none$"),
])
def test_load_dataset_refuses_values_of_the_wrong_kind(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_dataset(**kwargs)


def test_a_choice_flags_aliases_are_named_in_its_help_and_errors():
    # TorchLean's spellings (--dataset cifar, imagenet, imagenette64) are accepted; --help
    # and the error for a bad value must say so, or nobody can know they exist
    from minilean.data.arrays import DATA_FLAGS
    dataset = next(flag for flag in DATA_FLAGS if flag.name == "dataset")
    words = dataset.allowed()
    for alias, choice in (("cifar", "cifar10"), ("imagenet", "imagenet64"),
                          ("imagenette64", "imagenet64"), ("shapes", "builtin")):
        assert f"{alias} for {choice}" in words
        assert dataset.parse(alias) == choice
    with pytest.raises(FlagError, match="imagenette64 for imagenet64"):
        dataset.parse("mnist")
    assert "(or" not in Flag("arch", "mlp", "a", choices=("mlp", "conv")).allowed()


def test_ext_takes_extensions_of_one_letter_and_several():
    ext = {flag.name: flag for flag in ConvertCommands.image_folder.flags}["ext"]
    assert ext.parse(".z") == ".z" and ext.parse(".png,.j2k") == ".png,.j2k"
