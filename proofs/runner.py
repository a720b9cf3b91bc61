"""Print every checked statement as a table; ``main`` is ``python -m minilean proofs``.

Columns: theorem (TorchLean's name, or a descriptive one for statements beyond TorchLean),
statement (one line of math), examples tried (hypothesis examples run, less those the body
discards with ``assume``: its hypothesis fails there), worst error vs bound
(over every comparison of every example, the one closest to its bound; on a FAIL, the
comparison that failed, on the example the message names; "-" where none failed: a condition
that did not hold, or a crash), result. With
``mutants=True`` it also runs the mutation suite and prints which broken implementation was
caught by which statement.
"""
import argparse
import sys

from minilean.interrupts import raise_lost_interrupt
from proofs.framework import select
from proofs.mutation import MUTANTS, run_mutant, verdict

STATEMENT_WIDTH = 72


class NoStatement(ValueError):
    """No statement's name contains the text asked for."""


def _shorten(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def _row(cells, widths):
    return " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip()


def _print_table(header, rows, out):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    print(_row(header, widths), file=out)
    print("-+-".join("-" * width for width in widths), file=out)
    for row in rows:
        print(_row(row, widths), file=out)


def _error_column(outcome):
    if outcome.status == "missing" or outcome.examples == 0 or outcome.worst_error is None:
        return "-"
    return f"{outcome.worst_error:.2g} / {outcome.worst_bound:.2g}"


def _result_column(outcome):
    return outcome.status if not outcome.message else f"{outcome.status}: {outcome.message}"


def main(name=None, mutants=False, out=None):
    """Run the statements whose name contains ``name`` (all when None) and print the table to
    ``out`` (None: print's own default, sys.stdout). Returns 0 when none fails (missing
    functions are listed but are not failures), else 1; a ``name`` that no statement contains
    is a ``NoStatement`` error."""
    statements = select(name)
    if not statements:
        raise NoStatement(f"no statement name contains {name!r}")
    outcomes = []
    for statement in statements:
        outcomes.append(statement.run())
        raise_lost_interrupt()  # a Ctrl-C in hypothesis's garbage collector callback
    rows = [(o.name, _shorten(o.summary, STATEMENT_WIDTH), o.examples, _error_column(o),
             _result_column(o)) for o in outcomes]
    _print_table(("theorem", "statement", "examples tried", "worst error / bound", "result"),
                 rows, out)
    failed = sum(o.status == "FAIL" for o in outcomes)
    missing = sum(o.status == "missing" for o in outcomes)
    print(f"\n{len(outcomes)} statements: {len(outcomes) - failed - missing} pass, "
          f"{failed} fail, {missing} missing (function not implemented yet)", file=out)
    if mutants:
        failed += _print_mutants(name, out)
    return 1 if failed else 0


def _print_mutants(name, out):
    """Run the mutants whose catching statements match ``name``; return how many were missed."""
    chosen = {s.name for s in select(name)}
    rows, missed = [], 0
    for mutant_ in MUTANTS.values():
        if not chosen.intersection(mutant_.caught_by):
            continue
        outcomes = run_mutant(mutant_)
        result = verdict(outcomes)
        missed += result == "MISSED"
        catchers = ", ".join(n for n, o in outcomes.items() if o.status == "FAIL") or "-"
        rows.append((mutant_.name, _shorten(mutant_.description, STATEMENT_WIDTH), result,
                     catchers))
    print(file=out)
    _print_table(("mutant", "broken implementation", "result", "caught by"), rows, out)
    return missed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m proofs.runner",
                                     description="The statements' table, then the mutation "
                                                 "suite's (python -m minilean proofs: the "
                                                 "statements alone).")
    parser.add_argument("name", nargs="?", help="only the statements whose name contains this "
                                                "text, ignoring case, and their mutants")
    try:
        sys.exit(main(parser.parse_args().name, mutants=True))
    except NoStatement as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
