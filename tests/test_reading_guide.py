"""docs/reading-guide.md stays true to the code: every file and name on its route exists, and
the slips it asks a reader to make are mutants that the statements it names catch."""
import ast
import re
from pathlib import Path

import pytest

from proofs.framework import select
from proofs.mutation import MUTANTS, load_all

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "reading-guide.md").read_text(encoding="utf-8")


def _route():
    """(stop, [files], [names]) for each row of the route table."""
    rows = []
    for line in GUIDE.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.match(r"\d+\. ", cells[0]):
            rows.append((cells[0], re.findall(r"`([^`]+)`", cells[1]),
                         re.findall(r"`([^`]+)`", cells[2])))
    return rows


def _defined_names(path):
    """Top-level functions and classes of a Python file, and Class.method for their methods."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef))
    return names


def test_the_route_has_its_stops_in_order():
    assert [int(stop.split(".")[0]) for stop, _, _ in _route()] == list(range(1, 22))


@pytest.mark.parametrize("stop, files, names", _route(), ids=lambda value: str(value)[:20])
def test_every_file_and_name_on_the_route_exists(stop, files, names):
    assert files and names
    defined = set()
    for file in files:
        assert (ROOT / file).is_file(), f"{stop}: no file {file}"
        defined |= _defined_names(ROOT / file)
    missing = [name for name in names if name not in defined]
    assert not missing, f"{stop}: {missing} defined in none of {files}"


def test_every_file_the_guide_names_is_in_the_repository():
    """A path with a folder in it, relative to the root or (../...) to docs/: a reader of the
    repository must be able to open it."""
    paths = set(re.findall(r"`([\w./-]+/[\w.-]+\.(?:py|md|cu))`", GUIDE))
    missing = sorted(path for path in paths if not (
        (ROOT / "docs" / path) if path.startswith("../") else (ROOT / path)).is_file())
    assert paths and not missing


@pytest.mark.parametrize("mutant, statements", [
    ("mul backward own factor", ["autograd_backward_eq_mpmath_derivative[mul]"]),
    ("q_sample's noise scaled by the variance",
     ["forwardGaussian_isGaussian", "forward_multistep_law"])])
def test_the_slips_to_make_on_purpose_are_mutants_caught_by_the_statements_named(
        mutant, statements):
    """proofs/test_mutations.py runs each mutant against its statements: this ties the guide's
    words to that check."""
    load_all()
    assert sorted(MUTANTS[mutant].caught_by) == sorted(statements)
    named = set(re.findall(r"`(\w+)`", GUIDE)) | {statement.name for statement in
                                                   select(_name_filter())}
    assert set(statements) <= named


def _name_filter():
    return re.search(r'python -m minilean proofs --name "([^"]+)"', GUIDE).group(1)


def test_the_guides_name_filter_selects_the_statement_it_means():
    assert [statement.name for statement in select(_name_filter())] == [
        "autograd_backward_eq_mpmath_derivative[mul]"]
