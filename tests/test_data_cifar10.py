"""CIFAR-10 download, verification, safe extraction and restricted unpickling, all offline:
the tests build tiny archives in the real layout and serve them through file:// URLs."""
import errno
import gzip
import hashlib
import io
import os
import pickle
import re
import tarfile

import numpy
import pytest

from minilean.data import cifar10
from minilean.data.commands import DataCommands

ROWS = 4  # images per fake batch
# The real files are Python-2 pickles whose byte strings load as bytes with encoding="bytes".
# Python 3's protocol 2 would wrap bytes in a _codecs.encode call (which the restricted
# unpickler rightly refuses); protocol 4 stores them as plain bytes, like the real files read.
PROTOCOL = 4


def fake_batch(seed):
    rng = numpy.random.default_rng(seed)
    return {b"batch_label": b"fake batch", b"labels": rng.integers(0, 10, ROWS).tolist(),
            b"data": rng.integers(0, 256, (ROWS, 3072), dtype=numpy.uint8),
            b"filenames": [b"img%d.png" % index for index in range(ROWS)]}


def add_member(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def make_archive(path, batches=None, extra=()):
    """A .tar.gz in CIFAR's layout; ``batches`` maps file name -> pickled bytes."""
    names = cifar10.TRAIN_BATCHES + cifar10.TEST_BATCHES
    if batches is None:
        batches = {name: pickle.dumps(fake_batch(seed), protocol=PROTOCOL)
                   for seed, name in enumerate(names)}
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in batches.items():
            add_member(tar, f"{cifar10.BATCH_DIR}/{name}", payload)
        for name, payload in extra:
            add_member(tar, name, payload)
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_good_archive_round_trips_to_nchw_arrays(tmp_path):
    archive = tmp_path / "served.tar.gz"
    md5 = make_archive(archive)
    root = tmp_path / "real"
    paths = cifar10.prepare(str(root), url=archive.as_uri(), expected_md5=md5, progress=False,
                            log=lambda message: None)
    train_x, train_y = numpy.load(paths["train_X"]), numpy.load(paths["train_y"])
    expected = [fake_batch(seed) for seed in range(5)]
    assert train_x.shape == (5 * ROWS, 3, 32, 32) and train_x.dtype == numpy.uint8
    assert train_y.dtype == numpy.int64
    assert train_y.tolist() == sum((batch[b"labels"] for batch in expected), [])
    # Row layout: the first 1024 bytes are the red plane, row-major.
    first = expected[0][b"data"][1]
    numpy.testing.assert_array_equal(train_x[1, 0], first[:1024].reshape(32, 32))
    numpy.testing.assert_array_equal(train_x[1, 2, 5], first[2048 + 5 * 32:2048 + 6 * 32])
    test_x = numpy.load(paths["test_X"])
    numpy.testing.assert_array_equal(test_x.reshape(ROWS, -1), fake_batch(5)[b"data"])
    assert not (root / "cifar10" / ".extract").exists()


def test_limits_and_cached_archive_reuse(tmp_path):
    archive = tmp_path / "served.tar.gz"
    md5 = make_archive(archive)
    messages = []
    kwargs = dict(url=archive.as_uri(), expected_md5=md5, progress=False, log=messages.append)
    cifar10.prepare(str(tmp_path / "real"), limit_train=6, limit_test=3, **kwargs)
    archive.unlink()  # a second run must not need the "network" at all
    paths = cifar10.prepare(str(tmp_path / "real"), limit_train=6, limit_test=3, **kwargs)
    assert numpy.load(paths["train_X"]).shape[0] == 6 and numpy.load(paths["test_y"]).shape == (3,)
    # the first rows, across the batches' boundary (4 a batch), their labels with them
    first, second = fake_batch(0), fake_batch(1)
    numpy.testing.assert_array_equal(
        numpy.load(paths["train_X"]).reshape(6, -1),
        numpy.concatenate([first[b"data"], second[b"data"][:2]]))
    assert numpy.load(paths["train_y"]).tolist() == first[b"labels"] + second[b"labels"][:2]
    assert numpy.load(paths["test_y"]).tolist() == fake_batch(5)[b"labels"][:3]
    assert any(message.startswith("reusing verified") for message in messages)


def test_bad_md5_is_removed_and_reported(tmp_path):
    archive = tmp_path / "served.tar.gz"
    make_archive(archive)
    root = tmp_path / "real"
    with pytest.raises(ValueError, match=f"expected {cifar10.ARCHIVE_MD5}; the corrupt file was"):
        cifar10.prepare(str(root), url=archive.as_uri(), progress=False, log=lambda m: None)
    assert os.listdir(root) == []


class BrokenResponse(io.BytesIO):
    """A response that promises more bytes than it delivers, then fails."""
    headers = {"Content-Length": "1000"}

    def read(self, size=-1):
        if self.tell() >= 10:
            raise ConnectionResetError("connection reset by peer")
        return super().read(10)


def test_interrupted_download_leaves_no_partial_file(tmp_path):
    destination = tmp_path / "archive.tar.gz"
    with pytest.raises(OSError, match="failed after 10 bytes .*partial file was removed"):
        cifar10.download("https://example.invalid/x", str(destination), "0" * 32,
                         opener=lambda url: BrokenResponse(b"x" * 100), progress=False)
    assert os.listdir(tmp_path) == []


def test_a_write_the_system_refuses_is_the_files_error_not_the_downloads(tmp_path):
    """Under a file size limit (a write refused as on a full disk) the message names the
    archive it could not write, not a download that "failed after 0 bytes"."""
    import resource
    import subprocess
    import sys

    archive, root = tmp_path / "served.tar.gz", tmp_path / "real"
    script = (f"from minilean.cli import main\nfrom minilean.data import cifar10\n"
              f"cifar10.URL, cifar10.ARCHIVE_MD5 = {archive.as_uri()!r}, "
              f"{make_archive(archive)!r}\n"
              f"main(['data', 'download', '--cifar10', '--root={root}'])\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                                  (10000, 10000)))
    assert (result.returncode, result.stderr) == (
        1, f"minilean data download: error: cannot write {root / cifar10.ARCHIVE_NAME}: "
           f"File too large\n")
    assert os.listdir(root) == []


class Response(io.BytesIO):
    """A response that delivers its bytes cleanly, with a Content-Length header."""

    def __init__(self, payload, length=None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload) if length is None else length)}


def test_a_download_shorter_than_its_content_length_is_refused(tmp_path):
    destination = tmp_path / "archive.tar.gz"
    payload = b"x" * 100
    # the 100 bytes even match the MD5 asked for: only the length says the file is cut short
    with pytest.raises(OSError, match="stopped after 100 of 1000 bytes; the partial file was "
                                      "removed"):
        cifar10.download("https://example.invalid/x", str(destination),
                         hashlib.md5(payload).hexdigest(), progress=False,
                         opener=lambda url: Response(payload, length=1000))
    assert os.listdir(tmp_path) == []


def test_a_download_without_a_content_length_is_checked_by_its_md5_alone(tmp_path, capsys):
    """A server may send no Content-Length: the size is then unknown (the progress line shows
    the bytes alone, as it does unless asked not to) and the MD5 is the whole check."""
    payload, destination = b"x" * 100, str(tmp_path / "archive.tar.gz")
    response = Response(payload)
    response.headers = {}
    assert cifar10.download("https://example.invalid/x", destination,
                            hashlib.md5(payload).hexdigest(),
                            opener=lambda url: response) == destination
    assert open(destination, "rb").read() == payload
    assert re.fullmatch(r"download 0\.0MiB \S+ MiB/s\n", capsys.readouterr().err)


def test_a_corrupt_cached_archive_is_replaced_by_a_fresh_download(tmp_path):
    archive = tmp_path / "served.tar.gz"
    md5 = make_archive(archive)
    root = tmp_path / "real"
    root.mkdir()
    (root / cifar10.ARCHIVE_NAME).write_bytes(archive.read_bytes()[:200])  # a torn cache
    fetched, messages = [], []

    def opener(url):
        fetched.append(url)
        return Response(archive.read_bytes())

    paths = cifar10.prepare(str(root), url="https://example.invalid/cifar.tar.gz",
                            expected_md5=md5, opener=opener, progress=False, log=messages.append)
    assert fetched == ["https://example.invalid/cifar.tar.gz"]
    assert messages[:2] == [
        f"replacing {root / cifar10.ARCHIVE_NAME}: its MD5 does not match {md5}",
        f"downloading https://example.invalid/cifar.tar.gz -> {root / cifar10.ARCHIVE_NAME}"]
    assert (root / cifar10.ARCHIVE_NAME).read_bytes() == archive.read_bytes()
    numpy.testing.assert_array_equal(numpy.load(paths["test_X"]).reshape(ROWS, -1),
                                     fake_batch(5)[b"data"])


def test_a_corrupt_cached_archive_stays_when_the_download_fails(tmp_path):
    root = tmp_path / "real"
    root.mkdir()
    cached = root / cifar10.ARCHIVE_NAME
    cached.write_bytes(b"a torn cache")
    with pytest.raises(OSError, match="could not download file:"):
        cifar10.prepare(str(root), url=(tmp_path / "missing.tar.gz").as_uri(),
                        expected_md5="0" * 32, progress=False, log=lambda message: None)
    assert cached.read_bytes() == b"a torn cache"
    assert os.listdir(root) == [cifar10.ARCHIVE_NAME]


def test_a_folder_where_the_archive_belongs_is_named_and_left_alone(tmp_path):
    """md5_of opened the folder: "[Errno 21] Is a directory", with no word of what belongs
    there."""
    root = tmp_path / "real"
    (root / cifar10.ARCHIVE_NAME).mkdir(parents=True)
    (root / cifar10.ARCHIVE_NAME / "kept").write_bytes(b"x")
    archive = root / cifar10.ARCHIVE_NAME
    with pytest.raises(IsADirectoryError, match=rf"^{re.escape(str(archive))} is a directory; "
                                                r"expected the CIFAR-10 archive there \(a file\), "
                                                r"or nothing there to download it to$"):
        cifar10.prepare(str(root), url="file:///never/read", progress=False,
                        log=lambda message: None)
    assert sorted(os.listdir(root)) == [cifar10.ARCHIVE_NAME]
    assert (archive / "kept").read_bytes() == b"x"


def test_unreachable_url_is_one_line_oserror(tmp_path):
    with pytest.raises(OSError, match="could not download file:"):
        cifar10.download((tmp_path / "missing.tar.gz").as_uri(), str(tmp_path / "out"), "0" * 32,
                         progress=False)


class WritesAFile:
    """Unpickling this calls open(path, "w"): running it would create the file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_that_runs_code_is_refused_without_running(tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(WritesAFile(str(control)), protocol=PROTOCOL)).close()
    assert control.exists()  # the payload is live: a plain unpickler runs it
    victim = tmp_path / "pwned"
    payload = pickle.dumps({b"data": WritesAFile(str(victim)), b"labels": []}, protocol=PROTOCOL)
    names = cifar10.TRAIN_BATCHES + cifar10.TEST_BATCHES
    archive = tmp_path / "served.tar.gz"
    md5 = make_archive(archive, {name: payload for name in names})
    # the payload's global is io.open, pickled as _io.open from Python 3.12 on
    served = tmp_path / "real" / cifar10.ARCHIVE_NAME  # named as a member of the archive
    with pytest.raises(ValueError, match=f"^refusing to read cifar-10-batches-py/data_batch_1 "
                                         f"in {re.escape(str(served))}: refusing to load "
                                         f"global _?io\\.open$"):
        cifar10.prepare(str(tmp_path / "real"), url=archive.as_uri(), expected_md5=md5,
                        progress=False, log=lambda m: None)
    assert not victim.exists()
    assert not (tmp_path / "real" / "cifar10" / "cifar10_train_X.npy").exists()


class EvaluatesText:
    """Unpickling this calls builtins.eval on ``source``."""

    def __init__(self, source):
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))


def test_only_the_array_globals_are_admitted_not_any_of_builtins_or_numpy(tmp_path):
    victim = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": EvaluatesText(f"open({str(victim)!r}, 'w')"),
                                   b"labels": []}, protocol=PROTOCOL))
    with pytest.raises(ValueError, match=r"refusing to read .*data_batch_1: refusing to load "
                                         r"global builtins\.eval$"):
        cifar10.load_pickle(str(path))
    assert not victim.exists()
    unpickler = cifar10.RestrictedUnpickler(io.BytesIO())
    for module, name in (("numpy", "load"), ("numpy", "fromfile"), ("builtins", "getattr")):
        with pytest.raises(pickle.UnpicklingError, match=f"global {module}\\.{name}$"):
            unpickler.find_class(module, name)


def test_unpickler_admits_the_legacy_numpy_name_real_cifar_files_use():
    reconstruct = cifar10.RestrictedUnpickler(io.BytesIO()).find_class(
        "numpy.core.multiarray", "_reconstruct")
    assert callable(reconstruct)


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/absolute-escape.txt",
                                  f"{cifar10.BATCH_DIR}/../../escaped.txt",
                                  "../target-sibling/escaped.txt"])  # shares the name's start
def test_member_escaping_the_directory_is_refused(tmp_path, name):
    archive = tmp_path / "served.tar.gz"
    make_archive(archive, extra=[(name, b"gotcha")])
    target = tmp_path / "target"
    with pytest.raises(ValueError, match="would be written outside the target directory"):
        cifar10.safe_extract(str(archive), str(target))
    assert not (tmp_path / "escaped.txt").exists() and not target.exists()
    assert not (tmp_path / "target-sibling").exists()

def test_a_member_refused_by_prepare_is_its_error_and_nothing_is_left(tmp_path):
    archive = tmp_path / "served.tar.gz"
    md5 = make_archive(archive, extra=[("../escaped.txt", b"gotcha")])
    with pytest.raises(ValueError, match=r"^refusing archive member '\.\./escaped\.txt' of .*: it "
                                         r"would be written outside the target directory$"):
        cifar10.prepare(str(tmp_path / "real"), url=archive.as_uri(), expected_md5=md5,
                        progress=False, log=lambda message: None)
    assert os.listdir(tmp_path / "real") == [cifar10.ARCHIVE_NAME]


def test_a_relative_root_is_extracted_inside_it(tmp_path, monkeypatch):
    """The command line's default root is relative (data/real): the checks compare resolved
    paths, the target's too, or every member would seem to land outside it."""
    archive = tmp_path / "served.tar.gz"
    md5 = make_archive(archive)
    monkeypatch.chdir(tmp_path)
    paths = cifar10.prepare("data/real", url=archive.as_uri(), expected_md5=md5, progress=False,
                            log=lambda message: None)
    assert paths["test_X"] == os.path.join("data/real", "cifar10", "cifar10_test_X.npy")
    numpy.testing.assert_array_equal(numpy.load(paths["test_X"]).reshape(ROWS, -1),
                                     fake_batch(5)[b"data"])


def test_safe_extract_writes_into_an_existing_folder_and_keeps_its_files(tmp_path):
    archive, target = tmp_path / "served.tar.gz", tmp_path / "target"
    make_archive(archive)
    target.mkdir()
    (target / "kept.txt").write_text("mine")
    cifar10.safe_extract(str(archive), str(target))
    assert sorted(os.listdir(target / cifar10.BATCH_DIR)) == sorted(
        cifar10.TRAIN_BATCHES + cifar10.TEST_BATCHES)
    assert (target / "kept.txt").read_text() == "mine"


def test_a_scratch_folder_left_by_a_killed_run_is_cleared_first(tmp_path):
    """A run killed while extracting leaves ROOT/cifar10/.extract behind; the next starts it
    afresh (extracting over it, a folder left where a batch file goes would stop it)."""
    archive, root = tmp_path / "served.tar.gz", tmp_path / "real"
    stale = root / "cifar10" / ".extract" / cifar10.BATCH_DIR / "test_batch"
    stale.mkdir(parents=True)
    paths = cifar10.prepare(str(root), url=archive.as_uri(), expected_md5=make_archive(archive),
                            progress=False, log=lambda message: None)
    numpy.testing.assert_array_equal(numpy.load(paths["test_X"]).reshape(ROWS, -1),
                                     fake_batch(5)[b"data"])
    assert not (root / "cifar10" / ".extract").exists()


def test_link_member_is_refused(tmp_path):
    archive = tmp_path / "links.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo(f"{cifar10.BATCH_DIR}/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ValueError, match="only regular files and directories are allowed"):
        cifar10.safe_extract(str(archive), str(tmp_path / "target"))


def damaged_archive(path, kind):
    """A CIFAR archive gone bad, written to ``path``; return its MD5 (prepare takes it then)."""
    make_archive(path)
    payload = path.read_bytes()
    tar = gzip.decompress(payload)
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        fourth = archive.getmembers()[3]  # data_batch_4: its data, padded to 512-byte blocks
        end_of_fourth = fourth.offset_data + -(-fourth.size // 512) * 512
    damaged = {"cut in the middle": payload[:len(payload) // 2],
               "empty": b"",
               "a tar not gzipped": tar,
               "cut after a member": gzip.compress(tar[:end_of_fourth]),
               "bytes after the gzip stream": gzip.compress(tar[:end_of_fourth]) + b"garbage"}
    path.write_bytes(damaged[kind])
    return hashlib.md5(damaged[kind]).hexdigest()


@pytest.mark.parametrize("kind, reason", [
    ("cut in the middle", "Compressed file ended before the end-of-stream marker was reached"),
    ("empty", "empty file"),
    ("a tar not gzipped", "not a gzip file"),
    # a tar cut where a member ends reads as a whole tar of fewer members
    ("cut after a member", "it holds no cifar-10-batches-py/data_batch_5, "
                           "cifar-10-batches-py/test_batch"),
    ("bytes after the gzip stream", "Not a gzipped file (b'ga')"),
])
def test_an_archive_that_cannot_be_read_is_one_value_error_and_nothing_is_left(tmp_path, kind,
                                                                               reason):
    """prepare called from Python with the MD5 of a damaged archive (the command's fixed MD5
    refuses it before): tarfile's, gzip's and the missing file's own errors were raised raw,
    and an empty ROOT/cifar10 stayed behind."""
    archive, root = tmp_path / "served.tar.gz", tmp_path / "real"
    md5 = damaged_archive(archive, kind)
    with pytest.raises(ValueError) as raised:
        cifar10.prepare(str(root), url=archive.as_uri(), expected_md5=md5, progress=False,
                        log=lambda message: None)
    assert (type(raised.value), str(raised.value)) == (
        ValueError, f"{root / cifar10.ARCHIVE_NAME} is not a readable CIFAR-10 archive: {reason}")
    assert os.listdir(root) == [cifar10.ARCHIVE_NAME]


def test_a_batch_cut_short_in_an_archive_is_its_error_and_nothing_is_left(tmp_path):
    archive, root = tmp_path / "served.tar.gz", tmp_path / "real"
    batches = {name: pickle.dumps(fake_batch(seed), protocol=PROTOCOL)
               for seed, name in enumerate(cifar10.TRAIN_BATCHES + cifar10.TEST_BATCHES)}
    batches["data_batch_1"] = broken_batch("cut in the middle")
    with pytest.raises(ValueError) as raised:
        cifar10.prepare(str(root), url=archive.as_uri(), progress=False, log=lambda m: None,
                        expected_md5=make_archive(archive, batches))
    # named as the archive's member: the folder it was extracted to is removed by now
    assert (type(raised.value), str(raised.value)) == (
        ValueError, f"cifar-10-batches-py/data_batch_1 in {root / cifar10.ARCHIVE_NAME} is not "
                    f"a valid CIFAR pickle: pickle data was truncated")
    assert os.listdir(root) == [cifar10.ARCHIVE_NAME]


def test_a_bad_test_batch_leaves_the_arrays_written_before_as_they_were(tmp_path):
    """Both splits are read before any array is written: no train arrays of one archive (and
    limit) beside test arrays of another."""
    kwargs = dict(progress=False, log=lambda message: None)
    good, bad = tmp_path / "good.tar.gz", tmp_path / "bad.tar.gz"
    paths = cifar10.prepare(str(tmp_path / "real"), limit_train=6, url=good.as_uri(),
                            expected_md5=make_archive(good), **kwargs)
    before = {name: open(path, "rb").read() for name, path in paths.items()}
    batches = {name: pickle.dumps(fake_batch(seed + 10), protocol=PROTOCOL)
               for seed, name in enumerate(cifar10.TRAIN_BATCHES)}
    batches["test_batch"] = b"not a pickle"
    (tmp_path / "real" / cifar10.ARCHIVE_NAME).unlink()
    with pytest.raises(ValueError,
                       match="^cifar-10-batches-py/test_batch in .*/real/cifar-10-python.tar.gz is "
                             "not a valid CIFAR pickle: invalid load key"):
        cifar10.prepare(str(tmp_path / "real"), url=bad.as_uri(),
                        expected_md5=make_archive(bad, batches), **kwargs)
    assert {name: open(path, "rb").read() for name, path in paths.items()} == before


def test_a_full_disk_at_the_labels_leaves_the_arrays_written_before_as_they_were(tmp_path,
                                                                                  monkeypatch):
    """The four arrays are on disk before the first replaces its old file: new images of 8
    rows never stand beside the old 6 labels (a set that no longer loads)."""
    archive = tmp_path / "served.tar.gz"
    kwargs = dict(url=archive.as_uri(), expected_md5=make_archive(archive), progress=False,
                  log=lambda message: None)
    paths = cifar10.prepare(str(tmp_path / "real"), limit_train=6, **kwargs)
    before = {name: open(path, "rb").read() for name, path in paths.items()}

    def sync(descriptor):  # the labels' temporary file: .cifar10_train_y.npy.XXXXXXXX.tmp
        if ".cifar10_train_y.npy." in os.readlink(f"/proc/self/fd/{descriptor}"):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", sync)
    with pytest.raises(OSError, match=f"^cannot write {paths['train_y']}: No space left"):
        cifar10.prepare(str(tmp_path / "real"), limit_train=8, **kwargs)
    monkeypatch.undo()
    assert {name: open(path, "rb").read() for name, path in paths.items()} == before
    assert sorted(os.listdir(tmp_path / "real" / "cifar10")) == sorted(
        os.path.basename(path) for path in paths.values())  # no temporary left


def test_the_temporary_files_of_a_killed_download_go_at_the_next_and_nothing_else(tmp_path):
    """A download killed (a closed terminal, SIGKILL) leaves its partial archive in a hidden
    temporary file, which atomic_open cannot remove: the next download does, and so for the
    arrays; another file's temporary stays (--root may be a folder others write into)."""
    archive, root = tmp_path / "served.tar.gz", tmp_path / "real"
    (root / "cifar10").mkdir(parents=True)
    leftovers = [root / f".{cifar10.ARCHIVE_NAME}.k2j4_9zz.tmp",
                 root / "cifar10" / ".cifar10_train_X.npy.abcdefgh.tmp"]
    others = [root / ".notes.txt.abcdefgh.tmp", root / "cifar10" / ".x.npy.abcdefgh.tmp"]
    for path in leftovers + others:
        path.write_bytes(b"partial")
    cifar10.prepare(str(root), url=archive.as_uri(), expected_md5=make_archive(archive),
                    progress=False, log=lambda message: None)
    assert [path.exists() for path in leftovers + others] == [False, False, True, True]


@pytest.mark.parametrize("data, labels, message", [
    (numpy.zeros((2, 100), numpy.uint8), [0, 1],
     r"expected data uint8 \(N, 3072\), found uint8 \(2, 100\)"),
    (numpy.zeros((2, 3072), numpy.uint8), [0.0, 1.0],
     r"expected 2 integer labels, found float64 \(2,\)"),
])
def test_batch_with_wrong_layout_names_what_was_found(tmp_path, data, labels, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=PROTOCOL))
    with pytest.raises(ValueError, match=message):
        cifar10.read_batch(str(path))


@pytest.mark.parametrize("labels, found", [([-1, 3], "-1 to 3"), ([0, 10], "0 to 10")])
def test_a_batch_with_labels_outside_the_ten_classes_is_refused_when_read(tmp_path, labels,
                                                                           found):
    """Not written into cifar10_*_y.npy, to fail only when a run loads it."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": numpy.zeros((2, 3072), numpy.uint8),
                                   b"labels": labels}, protocol=PROTOCOL))
    with pytest.raises(ValueError, match=f"data_batch_1: expected labels 0 to 9 \\(CIFAR-10's "
                                         f"classes\\), found {found}$"):
        cifar10.read_batch(str(path))


@pytest.mark.parametrize("batch, found", [({b"labels": [0]}, "dict"),
                                          ([b"data", b"labels"], "list")])
def test_a_pickle_that_is_not_a_batch_dict_is_refused_by_name(tmp_path, batch, found):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=PROTOCOL))
    with pytest.raises(ValueError, match=f"data_batch_1 is not a CIFAR batch: expected a dict "
                                         f"with b'data' and b'labels', found {found}$"):
        cifar10.read_batch(str(path))


def broken_batch(kind):
    """The bytes of a batch file gone bad: empty, cut after its protocol header or in the
    middle of its images, or with the dtype of its image array (u1, NumPy's uint8) changed to
    one NumPy does not know."""
    payload = pickle.dumps(fake_batch(0), protocol=PROTOCOL)
    if kind == "empty":
        return b""
    if kind == "cut after the header":
        return payload[:2]
    if kind == "cut in the middle":
        return payload[:len(payload) // 2]
    assert payload.count(b"\x8c\x02u1") == 1  # SHORT_BINUNICODE of 2 characters: 'u1'
    return payload.replace(b"\x8c\x02u1", b"\x8c\x02u3")


@pytest.mark.parametrize("kind, words", [
    ("empty", "Ran out of input"),
    ("cut after the header", "Ran out of input"),
    # pickle's UnpicklingError, which the forbidden globals raise too: "refusing" was wrong
    ("cut in the middle", "pickle data was truncated"),
    ("unknown dtype", "data type 'u3' not understood"),
])
def test_a_batch_file_that_is_no_valid_pickle_is_refused_by_name(tmp_path, kind, words):
    """Pickle's own error (EOFError, TypeError, ...) comes back as one ValueError that names
    the file, not refused as unsafe: nothing in it asked for a forbidden global."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(broken_batch(kind))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))} is not a valid CIFAR "
                                         f"pickle: {re.escape(words)}$"):
        cifar10.read_batch(str(path))


def test_download_command_through_a_file_url(tmp_path, monkeypatch, capsys):
    archive = tmp_path / "served.tar.gz"
    monkeypatch.setattr(cifar10, "URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", make_archive(archive))
    DataCommands().download(cifar10=True, root=str(tmp_path / "real"), limit_train=5)
    x = numpy.load(tmp_path / "real" / "cifar10" / "cifar10_train_X.npy")
    assert x.shape == (5, 3, 32, 32)
    out, err = capsys.readouterr()
    assert "wrote" in out
    size = f"{archive.stat().st_size / 2**20:.1f}MiB"  # the download's progress, to the end
    assert re.fullmatch(rf"download \[#{{24}}\] {size}/{size} 100% [^\n]*\n", err)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "--cifar10: got False; expected --cifar10"),
    ({"cifar10": "false"}, "--cifar10: got 'false'; expected a boolean"),
    ({"cifar10": True, "limit_train": 0}, r"--limit-train: got 0; expected an integer >= 1 or none$"),
    ({"cifar10": True, "root": ""}, "--root: got ''; expected a file or directory path"),
])
def test_download_flags_are_checked_before_any_work(kwargs, message):
    from minilean.errors import FlagError
    with pytest.raises(FlagError, match=message):
        DataCommands().download(**kwargs)
