"""Checkpoints: model/optimizer/EMA state round-trips through .npz, written atomically,
loaded without pickle, with errors that name the key (and both shapes)."""
import json
import os
import pickle
import zipfile

import numpy
import pytest

import minilean as ml
from minilean import backend, nn, optim
from minilean.nn import functional as F


def _trained():
    ml.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    ema = optim.EMA(model, decay=0.9)
    x, y = ml.randn(8, 3), ml.tensor(numpy.arange(8) % 2)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        ema.update(model)
    return model, optimizer, ema


def test_model_optimizer_ema_and_metadata_round_trip(tmp_path):
    model, optimizer, ema = _trained()
    path = str(tmp_path / "ckpt.npz")
    rng_state = backend.get_rng_state()
    optim.save_checkpoint(path, model=model.state_dict(), optimizer=optimizer.state_dict(),
                          ema=ema.state_dict(), step=3, config={"lr": 0.01, "name": "mlp"},
                          rng=rng_state, noise=numpy.arange(4.0))
    state = optim.load_checkpoint(path)
    assert state["step"] == 3 and state["config"] == {"lr": 0.01, "name": "mlp"}
    assert state["rng"] == rng_state  # 128-bit generator state survives JSON
    numpy.testing.assert_array_equal(state["noise"], numpy.arange(4.0))
    assert state["optimizer"]["hyperparameters"]["betas"] == [0.9, 0.999]

    fresh_model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    fresh_optimizer = optim.Adam(fresh_model.parameters(), lr=0.5)
    fresh_ema = optim.EMA(fresh_model)
    fresh_model.load_state_dict(state["model"])
    fresh_optimizer.load_state_dict(state["optimizer"])
    fresh_ema.load_state_dict(state["ema"])
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        numpy.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert fresh_optimizer.lr == 0.01 and fresh_optimizer.betas == (0.9, 0.999)
    assert fresh_optimizer.step_count == 3 and fresh_ema.num_updates == 3
    for name in ema.shadow:
        numpy.testing.assert_array_equal(ema.shadow[name], fresh_ema.shadow[name])
    for a, b in zip(optimizer.state["exp_avg_sq"], fresh_optimizer.state["exp_avg_sq"]):
        numpy.testing.assert_array_equal(a, b)


def test_arrays_come_back_in_their_own_dtype_with_every_digit(tmp_path):
    """Each array is stored as it is: float64 moments and weights of a float64 model keep the
    digits float32 would drop, and integer and boolean arrays keep their kind."""
    path = str(tmp_path / "dtypes.npz")
    saved = {"f16": numpy.array([0.1], numpy.float16), "f32": numpy.array([0.1], numpy.float32),
             "f64": numpy.array([0.1, 1 + 2.0 ** -40]), "i64": numpy.array([2 ** 40]),
             "flags": numpy.array([True, False])}
    optim.save_checkpoint(path, **saved)
    state = optim.load_checkpoint(path)
    for name, array in saved.items():
        assert state[name].dtype == array.dtype, name
        numpy.testing.assert_array_equal(state[name], array, err_msg=name)


def test_numpy_scalars_come_back_as_python_numbers_of_their_kind(tmp_path):
    path = str(tmp_path / "scalars.npz")
    optim.save_checkpoint(path, step=numpy.int64(1200), loss=numpy.float32(0.5),
                          done=numpy.bool_(True), sizes=[numpy.int32(3), numpy.uint8(4)])
    state = optim.load_checkpoint(path)
    assert state == {"step": 1200, "loss": 0.5, "done": True, "sizes": [3, 4]}
    assert type(state["step"]) is int and type(state["done"]) is bool
    assert [type(size) for size in state["sizes"]] == [int, int]
    assert type(state["loss"]) is float


def test_file_is_plain_npz_without_pickle(tmp_path):
    model, _, _ = _trained()
    path = str(tmp_path / "model.npz")
    optim.save_checkpoint(path, model=model.state_dict())
    with numpy.load(path, allow_pickle=False) as file:
        assert sorted(file.files) == ["__tree__", "model/0.bias", "model/0.weight",
                                      "model/2.bias", "model/2.weight"]
        tree = json.loads(str(file["__tree__"]))
    assert tree["model"]["0.weight"] == {"__array__": "model/0.weight"}


def test_a_failing_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.npz")
    optim.save_checkpoint(path, weights=numpy.ones(3), step=1)

    def crash(file, **arrays):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(numpy, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        optim.save_checkpoint(path, weights=numpy.zeros(3), step=2)
    monkeypatch.undo()
    state = optim.load_checkpoint(path)
    assert state["step"] == 1 and (state["weights"] == 1).all()
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the temporary file was removed


def test_a_path_that_cannot_be_written_is_named_not_its_temporary(tmp_path):
    from minilean import atomic
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("")
    for path in (tmp_path / "a_folder", tmp_path / "a_file" / "below.json"):
        with pytest.raises(OSError, match=f"^cannot write {path}: "):
            atomic.write_text(path, "{}")
    assert sorted(os.listdir(tmp_path)) == ["a_file", "a_folder"]  # no temporary left
    with pytest.raises(OSError, match=f"^cannot write {tmp_path / 'a_folder'}: Is a "
                                      f"directory$"):  # a folder: no device, pipe or socket
        atomic.write_text(tmp_path / "a_folder", "{}")
    assert os.listdir(tmp_path / "a_folder") == []
    # a file where a folder of the path should be: makedirs says only "File exists"
    below = tmp_path / "a_file" / "deeper" / "below.json"
    with pytest.raises(OSError, match=f"^cannot write {below}: {tmp_path / 'a_file'} is a "
                                      f"file, not a folder$"):
        atomic.write_text(below, "{}")
    # a folder the system refuses to make, with nothing in the way: the system's reason
    too_long = tmp_path / ("d" * 300) / "below.json"
    with pytest.raises(OSError, match=f"^cannot write {too_long}: File name too long$"):
        atomic.write_text(too_long, "{}")


def test_a_temporary_name_in_use_is_passed_over_for_another(tmp_path, monkeypatch):
    """Two writes of one file at once may draw the same random name: the second takes another
    and leaves the first's temporary alone."""
    from minilean import atomic
    drawn = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(atomic._NAMES, "choices", lambda population, k: list(next(drawn)))
    taken = tmp_path / ".ckpt.npz.aaaaaaaa.tmp"
    taken.write_bytes(b"another write's")
    atomic.write_bytes(tmp_path / "ckpt.npz", b"new")
    assert (tmp_path / "ckpt.npz").read_bytes() == b"new"
    assert taken.read_bytes() == b"another write's"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, monkeypatch):
    """As open() would make them (0644 under the usual umask), not mkstemp's private 0600; and
    without reading the umask, which means setting it: a thread making a file in between got
    it with no umask (0666, writable by all)."""
    from minilean import atomic
    old = os.umask(umask)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(os, "umask", lambda mask: pytest.fail(f"umask set to {mask:o}"))
            atomic.write_text(tmp_path / "run.json", "{}")
            optim.save_checkpoint(str(tmp_path / "last.npz"), step=1)
    finally:
        os.umask(old)
    for name in ("run.json", "last.npz"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


def test_wrong_shape_in_a_checkpoint_names_the_key_and_both_shapes(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    optim.save_checkpoint(path, model=nn.Linear(3, 4).state_dict())
    state = optim.load_checkpoint(path)
    with pytest.raises(ValueError, match=r"'weight': shape \(4, 3\) in the loaded state but "
                                         r"\(4, 2\) here"):
        nn.Linear(2, 4).load_state_dict(state["model"])
    with pytest.raises(ValueError, match=r"missing key\(s\) \['bias'\]"):
        nn.Linear(3, 4).load_state_dict({"weight": state["model"]["weight"]})
    with pytest.raises(TypeError, match=r"^'bias': a list in the loaded state; expected a "
                                        r"Tensor or an array of shape \(4,\)$"):
        nn.Linear(3, 4).load_state_dict({**state["model"], "bias": [0.0] * 4})


def test_save_and_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint '.*missing.npz' does not exist"):
        optim.load_checkpoint(str(tmp_path / "missing.npz"))
    with pytest.raises(TypeError, match="checkpoint entry 'config/callback' is a builtin_function_or_method"):
        optim.save_checkpoint(str(tmp_path / "bad.npz"), config={"callback": print})
    numpy.savez(str(tmp_path / "plain.npz"), x=numpy.ones(2))
    with pytest.raises(ValueError, match="is not a readable minilean checkpoint"):
        optim.load_checkpoint(str(tmp_path / "plain.npz"))
    assert not os.path.exists(tmp_path / "bad.npz")


def test_a_folder_given_as_the_checkpoint_is_named_a_folder_not_missing(tmp_path):
    """A run's directory given in the place of its checkpoint file was "does not exist",
    though it does: the error says what it is, and where a run keeps its checkpoint."""
    with pytest.raises(IsADirectoryError, match=f"^checkpoint '{tmp_path}' is a folder, not a "
                                                f"checkpoint file \\(a run keeps its "
                                                f"checkpoint in checkpoints/last.npz\\)$"):
        optim.load_checkpoint(str(tmp_path))


def test_unreadable_files_are_one_line_value_errors_naming_the_file(tmp_path):
    """Torn, empty, an array, a pickle: each a ValueError (one line from the CLI), never
    numpy's or zipfile's own exception types."""
    optim.save_checkpoint(str(tmp_path / "good.npz"), step=3)
    whole = (tmp_path / "good.npz").read_bytes()
    numpy.save(tmp_path / "array.npy", numpy.zeros(3))
    files = {"torn.npz": whole[:len(whole) // 2], "empty.npz": b"",
             "array.npz": (tmp_path / "array.npy").read_bytes(),
             "pickle.npz": pickle.dumps({"step": 3})}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"'{tmp_path / name}' is not a readable minilean "
                                             f"checkpoint"):
            optim.load_checkpoint(str(tmp_path / name))


def test_a_file_that_is_no_archive_is_refused_without_advice_to_unpickle_it(tmp_path):
    """numpy.load reads a non-zip file as a pickle, refuses it and suggests allow_pickle=True:
    for a file that may come from anywhere, advice the message must not pass on."""
    for name, content in {"pickle.npz": pickle.dumps({"step": 3}), "noise.npz": b"\x80junk",
                          "empty.npz": b""}.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError) as error:
            optim.load_checkpoint(str(tmp_path / name))
        assert str(error.value) == (f"'{tmp_path / name}' is not a readable minilean "
                                    f"checkpoint (not an .npz archive: it does not begin with "
                                    f"the zip magic bytes)")


def test_an_archive_with_an_object_member_is_refused_not_unpickled(tmp_path):
    """A hand-made .npz whose tree points at a pickled object array: loading must not unpickle
    it (pickle can run code), whatever the tree says."""
    path = tmp_path / "evil.npz"
    numpy.savez(path, __tree__=numpy.array(json.dumps({"x": {"__array__": "x"}})),
                x=numpy.array([{"run": "code"}], dtype=object))
    with pytest.raises(ValueError, match=f"'{path}' is not a readable minilean checkpoint "
                                         r"\(.*allow_pickle"):
        optim.load_checkpoint(str(path))


def test_names_that_clash_are_refused(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    # "a/b" at the top and "b" inside "a" would both be the member "model/a/b"
    with pytest.raises(ValueError, match="checkpoint entry 'model/a/b' is named twice"):
        optim.save_checkpoint(path, model={"a/b": numpy.zeros(2), "a": {"b": numpy.ones(2)}})
    # a non-string key would come back as a string: {1: ...} would load as {"1": ...}
    with pytest.raises(TypeError, match="checkpoint entry 'config' has a non-string key 1"):
        optim.save_checkpoint(path, config={1: "one"})
    # the tree's own member name cannot also hold an array
    with pytest.raises(ValueError, match="'__tree__' is reserved in checkpoints"):
        optim.save_checkpoint(path, **{"__tree__": numpy.zeros(2)})
    # a dict like the tree's stand-in for an array would load as a (missing) array
    with pytest.raises(ValueError, match="checkpoint entry 'config/meta' is a dict whose only "
                                         "key is '__array__', which checkpoints reserve"):
        optim.save_checkpoint(path, config={"meta": {"__array__": "note"}})
    assert os.listdir(tmp_path) == []


def test_a_tree_naming_an_array_the_file_lacks_is_a_one_line_error(tmp_path):
    path = tmp_path / "edited.npz"
    numpy.savez(path, __tree__=numpy.array(json.dumps({"model": {"__array__": "model/w"}})))
    with pytest.raises(ValueError) as error:
        optim.load_checkpoint(str(path))
    assert str(error.value) == (f"'{path}' is not a readable minilean checkpoint (its "
                                f"'__tree__' names an array 'model/w' that the file does not "
                                f"hold)")


def test_tuples_and_non_finite_metadata_round_trip(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    optim.save_checkpoint(path, pair=(numpy.arange(3.0), {"w": numpy.ones((2, 2))}, 7),
                          metrics={"loss": float("nan"), "best": float("inf"),
                                   "worst": float("-inf")})
    state = optim.load_checkpoint(path)
    first, second, third = state["pair"]  # a tuple comes back as a list, its arrays as arrays
    assert isinstance(state["pair"], list) and third == 7
    numpy.testing.assert_array_equal(first, [0.0, 1.0, 2.0])
    numpy.testing.assert_array_equal(second["w"], [[1.0, 1.0], [1.0, 1.0]])
    metrics = state["metrics"]
    assert numpy.isnan(metrics["loss"]) and metrics["best"] == float("inf")
    assert metrics["worst"] == float("-inf")


def test_a_name_ending_in_npy_loads_its_own_array(tmp_path):
    """numpy.savez stores "w" as the member "w.npy" and "w.npy" as "w.npy.npy"; numpy.load's
    file["w.npy"] answers with the member "w.npy", so "w.npy" loaded as the array "w"."""
    path = str(tmp_path / "ckpt.npz")
    optim.save_checkpoint(path, model={"w.npy": numpy.ones(2), "w": numpy.zeros(3)},
                          **{"__tree__.npy": numpy.full(1, 7.0)})
    state = optim.load_checkpoint(path)
    numpy.testing.assert_array_equal(state["model"]["w.npy"], numpy.ones(2))
    numpy.testing.assert_array_equal(state["model"]["w"], numpy.zeros(3))
    numpy.testing.assert_array_equal(state["__tree__.npy"], [7.0])


def test_an_array_of_objects_is_refused_when_saving_not_pickled(tmp_path):
    """numpy.savez pickles an object array: the file held a pickle that no load would read."""
    path = str(tmp_path / "ckpt.npz")
    with pytest.raises(TypeError, match="^checkpoint entry 'config/names' is an array of Python "
                                        "objects, which only pickle could store$"):
        optim.save_checkpoint(path, config={"names": numpy.array(["a", None], dtype=object)})
    assert os.listdir(tmp_path) == []


def test_an_archive_member_not_named_as_savez_names_them_is_a_one_line_error(tmp_path):
    path = tmp_path / "foreign.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__tree__", "{}")
    with pytest.raises(ValueError, match=f"^'{path}' is not a readable minilean checkpoint "
                                         r"\('__tree__.npy is not a file in the archive'\)$"):
        optim.load_checkpoint(str(path))
