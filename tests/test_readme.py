"""The README's counts stay true to the code: the engine's lines, the statements and mutants of
proofs/. Each was right when written and drifted as the code grew."""
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
