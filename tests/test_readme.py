"""The README's counts, flag lists and defaults stay true to the code: the engine's lines, the
statements and mutants of proofs/, the flags every model command shares and those of the data
commands, the defaults it names in prose.
Each was right when written and drifted as the code grew."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import mpmath
import pytest

from proofs.framework import select
from proofs.mutation import MUTANTS, load_all

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROOFS_README = (ROOT / "proofs" / "README.md").read_text(encoding="utf-8")
BENCHMARKS_README = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")


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


def test_the_statistical_budget_and_sample_size_are_those_statistics_derives():
    """proofs/README.md's false-alarm budget (up to N statistical tests a run, each at 1e-6 / N),
    the miss rate per law statement, the draws per Gaussian sample set, the slips they are
    derived from and the CLT tests' wider z are the ones proofs/statistics.py derives from
    its rates: a changed rate or budget changes them."""
    from proofs import statistics
    budget = re.search(r"1e-6: up to (\d+) statistical tests a run, each at 1e-6 / (\d+) = "
                       r"([\d.]+e-\d+),", PROOFS_README)
    assert int(budget.group(1)) == int(budget.group(2)) == statistics.TESTS_PER_RUN
    assert statistics.FALSE_ALARM == pytest.approx(float(budget.group(3)), rel=0.01)
    assert statistics.MISS == pytest.approx(
        float(re.search(r"with probability at most\s+([\d.]+e-\d+) \(exact", PROOFS_README)
              .group(1)))
    assert _number(r"\((\d+) draws of its own normal", PROOFS_README) == statistics.LAW_SAMPLES
    slips = re.search(r"normals (\d+)% too wide or off by ([\d.]+) sigma", PROOFS_README)
    assert statistics.DETECTED_SCALE == pytest.approx(1 + int(slips.group(1)) / 100)
    assert statistics.DETECTED_SHIFT == pytest.approx(float(slips.group(2)))
    clt = re.search(r"take a wider z \(([\d.]+), at a hundredth of the per-test rate\)",
                    PROOFS_README)
    assert statistics.Z_CLT == pytest.approx(float(clt.group(1)), abs=0.005)
    rate = mpmath.erfc(statistics.Z_CLT / mpmath.sqrt(2))  # P(|N(0, 1)| > Z_CLT)
    assert float(rate) == pytest.approx(statistics.FALSE_ALARM / 100, rel=1e-9, abs=0)


def test_the_gpu_sessions_time_limits_are_the_scripts():
    """benchmarks/README.md's limit of each part of gpu_session.sh is the script's default
    (`${NAME_TIMEOUT:-SECONDS}`), every limit the script has is stated, and the total is their
    sum. It said 150 and 330 s for the first two after the script had cut them to 120 and 150
    (so that all six fit in the 600 s a lent machine gives a command)."""
    script = (ROOT / "benchmarks" / "gpu_session.sh").read_text(encoding="utf-8")
    defaults = {name: int(seconds)
                for name, seconds in re.findall(r"\$\{(\w+_TIMEOUT):-(\d+)\}", script)}
    text = " ".join(BENCHMARKS_README.split())
    # "`PARITY_TIMEOUT`, default 120 s", "`BENCH_TIMEOUT` (default 150 s)", "`HOST_TIMEOUT` (40 s)"
    stated = {name: int(seconds) for name, seconds in re.findall(
        r"`(\w+_TIMEOUT)`(?:, default | \((?:default )?)(\d+) s", text)}
    assert len(defaults) == 6 and stated == defaults
    assert _number(r"\(\d+ s\): (\d+) s in all", text) == sum(defaults.values())


BENCHMARK_SCRIPTS = sorted(path.name for path in (ROOT / "benchmarks").glob("*.py")
                           if "ArgumentParser(" in path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("script", BENCHMARK_SCRIPTS)
def test_each_benchmarks_help_says_the_first_paragraph_of_its_docstring_whole(script):
    """`python benchmarks/SCRIPT --help` describes the script with the docstring's whole first
    paragraph: it showed the first line alone, which cut five of them off mid-sentence
    ("What --threads does to a CPU training step, on an idle")."""
    path = ROOT / "benchmarks" / script
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
    result = subprocess.run([sys.executable, str(path), "--help"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert " ".join(doc.split("\n\n")[0].split()) in " ".join(result.stdout.split())


def _options(text):
    return re.findall(r"(?<!diffusion )(--[a-z0-9-]+)", text)


def test_the_data_commands_synopses_list_every_flag():
    from minilean.data.commands import ConvertCommands, DataCommands
    block = README.replace("\\\n", " ")
    for command, function in (("data download", DataCommands.download),
                              ("data convert image-folder", ConvertCommands.image_folder)):
        synopsis = re.search(rf"python -m minilean {command} (.*)", block).group(1)
        assert sorted(_options(synopsis)) == sorted(flag.option for flag in function.flags)


def test_the_data_commands_defaults_said_beside_torchleans_are_theirs():
    """Where the README contrasts the data commands with TorchLean's scripts (which keep 200
    training images and stretch to 32x32), minilean's side is the code's defaults."""
    from minilean.data.commands import ConvertCommands, DataCommands
    text = " ".join(README.split())
    found = re.search(r"keeps the first 200 training and 100 test images \(here (\w+) of them, "
                      r"unless `--limit-train`/`--limit-test`.*?here `--crop (\w+)` keeps the "
                      r"aspect ratio and cuts the centre, at (\d+)x(\d+);", text)
    download = {flag.name: flag.default for flag in DataCommands.download.flags}
    convert = {flag.name: flag.default for flag in ConvertCommands.image_folder.flags}
    assert found.group(1) == "all" and download["limit_train"] is download["limit_test"] is None
    assert found.group(2) == convert["crop"]
    assert (int(found.group(3)), int(found.group(4))) == (convert["width"], convert["height"])


def test_the_shared_flags_are_those_every_model_command_has():
    """"Flags every model command shares: ..." (diffusion's own --cuda-graph named as such), of
    which `evaluate` takes those up to --seed."""
    from minilean.cli import COMMANDS, EVALUATE
    listed = _options(re.search(r"Flags every model command shares:(.*?)\(`evaluate` takes",
                                " ".join(README.split())).group(1))
    models = [command for command in COMMANDS if command.name not in ("evaluate", "proofs")]
    shared = set.intersection(*({flag.option for flag in command.flags.values()}
                                for command in models))
    assert sorted(listed) == sorted(shared)
    evaluate = {flag.option for flag in EVALUATE.flags.values()}
    assert set(listed[:listed.index("--seed") + 1]) <= evaluate


def test_a_reduction_over_no_dim_does_what_the_readme_says():
    """The departure the README states for dim=(): it said "reduces no axis" (NumPy's reading)
    after the reductions came to refuse it, as PyTorch reduces every axis there."""
    import minilean as ml
    assert "a reduction over `dim=()` is refused" in " ".join(README.split())
    x = ml.ones(2, 3)
    for reduce in (x.sum, x.mean, x.var, x.std, x.amax, x.logsumexp):
        with pytest.raises(ValueError, match=r"dim \(\) names no axis"):
            reduce(dim=())
    assert x.sum(dim=None).shape == ()


# (command, flag, the README's words around that flag's default, which the group captures)
STATED_DEFAULTS = [
    ("diffusion", "hidden_c", r"\(U-Net hc=(\d+), 330k parameters"),
    ("diffusion", "steps", r"parameters; (\d+) steps of batch"),
    ("diffusion", "batch_size", r"steps of batch (\d+) on the 16x16"),
    ("diffusion", "image_size", r"batch 32 on the (\d+)x\d+ built-in shapes"),
    ("diffusion", "lr", r"shapes; Adam ([\d.e-]+), 100 warm-up"),
    ("diffusion", "warmup_steps", r"Adam 3e-3, (\d+) warm-up steps"),
    ("diffusion", "ema", r"cosine decay to 0; EMA ([\d.]+);"),
    ("diffusion", "T", r"cosine schedule T=(\d+); v-prediction"),
    ("diffusion", "prediction", r"\(`--prediction (\w+)`, the default"),
    ("diffusion", "n_samples", r"from the EMA weights; (\d+) samples\)"),
    ("diffusion", "sample_batch", r"`--sample-batch` at a time, (\d+) by default"),
    ("diffusion", "beta_end", r"minilean's `--beta-end` default is ([\d.]+)"),
    ("diffusion", "arch", r"`--arch (\w+)` \(default;"),
    ("diffusion", "dataset", r"`--dataset (\w+)` \(the default\)"),
    ("diffusion", "out", r"Each run writes into `--out` \(default `([\w/]+)`\)"),
    ("evaluate", "classifier_steps", r"classifier.py`\) trains for (\d+) steps of batch 64"),
    ("evaluate", "cache", r"\(once; cached under `([\w/]+)/`\)"),
    *[(name, "n_eval", r"`--n-eval` of them \(default (\d+)\)")
      for name in ("vae", "vqvae", "autoencoder", "mae")],
    ("vae", "iw_samples", r"IW-(\d+) bound"),
    ("vqvae", "codes", r"reconstruction MSE \*\*[\d.]+\*\*; \d+/(\d+) codes used"),
    ("vae", "arch", r"VAE `--arch (\w+) --hidden"),
    ("vae", "hidden", r"VAE `--arch conv --hidden (\d+)"),
    ("vae", "latent", r"VAE `--arch conv --hidden 32 --latent (\d+)"),
    ("vae", "lr", r"VAE `--arch conv --hidden 32 --latent 8 --lr ([\d.e-]+)"),
    ("vae", "steps", r"VAE `--arch conv --hidden 32 --latent 8 --lr 2e-3 --steps (\d+)`"),
    ("vqvae", "steps", r"VQ-VAE (\d+) steps; GAN"),
    ("gan", "lr", r"GAN `--lr ([\d.e-]+) --steps"),
    ("gan", "steps", r"GAN `--lr 5e-4 --steps (\d+)"),
    ("gan", "n_samples", r"GAN `--lr 5e-4 --steps 1000 --n-samples (\d+)`"),
    ("autoencoder", "lr", r"autoencoder `--lr ([\d.e-]+) --steps"),
    ("autoencoder", "steps", r"autoencoder `--lr 2e-3 --steps (\d+)`"),
    ("mae", "lr", r"MAE `--lr ([\d.e-]+) --steps"),
    ("mae", "steps", r"MAE `--lr 2e-3 --steps (\d+)`"),
    ("mae", "mask_ratio", r"`--mask-ratio`, default ([\d.]+)"),
    ("diffusion", "schedule", r"; (\w+) schedule T=\d+; v-prediction"),
    ("diffusion", "lr_schedule", r"warm-up steps, (\w+) decay to 0; EMA"),
    ("diffusion", "sampler", r"v-prediction; (\w+) ancestral sampling over all"),
    *[(name, "image_size", r"Images are (\d+)x\d+ built-in shapes by default")
      for name in ("vae", "vqvae", "gan", "autoencoder", "mae")],
]


@pytest.mark.parametrize("command, flag, words", STATED_DEFAULTS,
                         ids=[f"{command}-{flag}" for command, flag, _ in STATED_DEFAULTS])
def test_the_defaults_the_readme_states_are_the_commands(command, flag, words):
    from minilean.cli import COMMANDS
    stated = re.search(words, " ".join(README.split())).group(1)
    default = {c.name: c for c in COMMANDS}[command].flags[flag].default
    # a sampler is named in capitals in prose (DDPM), in lower case as a flag's value
    assert stated.lower() == default if isinstance(default, str) else float(stated) == default


def test_each_zoo_commands_run_directory_is_the_one_the_readme_states():
    """"--out runs/<name>" for vae, vqvae, gan, autoencoder and mae."""
    from minilean.cli import COMMANDS
    assert "`--out runs/<name>`" in README
    for command in COMMANDS:
        if command.name in ("vae", "vqvae", "gan", "autoencoder", "mae"):
            assert command.flags["out"].default == f"runs/{command.name}"


def test_the_ring8_defaults_the_readme_states_are_the_gans():
    from minilean.cli import RING8_GAN_DEFAULTS
    stated = re.search(r"gan --dataset ring8` \(its own defaults: `([^`]*)`\)", README).group(1)
    words = stated.split()
    assert dict(zip((word[2:] for word in words[::2]), map(int, words[1::2]))) == \
        RING8_GAN_DEFAULTS


