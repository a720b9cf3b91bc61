"""The README's counts and flag lists stay true to the code: the engine's lines, the statements
and mutants of proofs/, the flags every model command shares and those of the data commands.
Each was right when written and drifted as the code grew."""
import re
from pathlib import Path

from proofs.framework import select
from proofs.mutation import MUTANTS, load_all

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROOFS_README = (ROOT / "proofs" / "README.md").read_text(encoding="utf-8")


def _number(pattern, text):
    return int(re.search(pattern, text).group(1).replace(",", ""))


def test_the_engine_is_about_as_many_lines_as_the_readme_says():
    """`wc -l minilean/backend.py minilean/autograd/*.py`, within a hundred lines ("about")."""
    files = [ROOT / "minilean" / "backend.py", *(ROOT / "minilean" / "autograd").glob("*.py")]
    lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in files)
    said = _number(r"`minilean/autograd/`\) is about ([\d,]+) lines of Python", README)
    assert abs(said - lines) <= 100, f"README says about {said} lines; there are {lines}"


def test_the_statement_and_mutant_counts_are_the_registrys():
    load_all()
    assert _number(r"(\d+) statements: TorchLean's", README) == len(select())
    assert _number(r"mutation suite of (\d+) broken implementations", README) == len(MUTANTS)
    assert _number(r"(\d+) mutants, each a slip", PROOFS_README) == len(MUTANTS)


def _options(text):
    return re.findall(r"(?<!diffusion )(--[a-z0-9-]+)", text)


def test_the_data_commands_synopses_list_every_flag():
    from minilean.data.commands import ConvertCommands, DataCommands
    block = README.replace("\\\n", " ")
    for command, function in (("data download", DataCommands.download),
                              ("data convert image-folder", ConvertCommands.image_folder)):
        synopsis = re.search(rf"python -m minilean {command} (.*)", block).group(1)
        assert sorted(_options(synopsis)) == sorted(flag.option for flag in function.flags)


def test_the_shared_flags_are_those_every_model_command_has():
    """"Flags every model command shares: ..." (diffusion's own --cuda-graph named as such), of
    which `evaluate` takes those up to --seed."""
    from minilean.cli import COMMANDS, EVALUATE
    listed = _options(re.search(r"Flags every model command shares:(.*?)\(`evaluate` takes",
                                README, re.S).group(1))
    models = [command for command in COMMANDS if command.name not in ("evaluate", "proofs")]
    shared = set.intersection(*({flag.option for flag in command.flags.values()}
                                for command in models))
    assert sorted(listed) == sorted(shared)
    evaluate = {flag.option for flag in EVALUATE.flags.values()}
    assert set(listed[:listed.index("--seed") + 1]) <= evaluate
