"""Flag types shared by the benchmark scripts: a bad value stops argparse with its one-line
error (``script.py: error: argument --repeats: ...``) before anything is built or timed.
Imports nothing heavy: ``bench_models.py`` uses it before NumPy is imported."""
import argparse


def at_least(low):
    """An argparse ``type``: an integer >= ``low``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def image_side(text):
    """An argparse ``type``: an image side the U-Net takes (a positive multiple of 4)."""
    value = at_least(4)(text)
    if value % 4:
        raise argparse.ArgumentTypeError(f"the U-Net needs a multiple of 4, got {value}")
    return value


def counts(low):
    """An argparse ``type``: comma-separated integers, each >= ``low``."""
    def parse(text):
        return [at_least(low)(part) for part in text.split(",")]
    parse.__name__ = f"comma-separated integers >= {low}"
    return parse


def description(doc):
    """A script's ``--help`` text: the first paragraph of its docstring, whole, on one line.
    Its first line alone cut most of them off mid-sentence ("... a CPU training step, on an
    idle")."""
    return " ".join(doc.split("\n\n")[0].split())
