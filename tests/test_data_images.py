"""PPM/PGM/PNG writers and reader, grids, and atomic writes that survive a failure mid-write."""
import os
import re
import stat
import subprocess
import sys

import numpy
import pytest

from minilean import atomic
from minilean.data import images


def random_image(shape, seed=0):
    return numpy.random.default_rng(seed).integers(0, 256, shape, dtype=numpy.uint8)


@pytest.mark.parametrize("shape", [(5, 7, 3), (5, 7)])
@pytest.mark.parametrize("ascii", [False, True])
def test_pnm_round_trip_is_exact_and_the_header_is_standard(tmp_path, shape, ascii):
    image = random_image(shape)
    path = tmp_path / "image.pnm"
    images.write_pnm(path, image, ascii=ascii)
    data = path.read_bytes()
    magic = {(3, False): b"P6", (2, False): b"P5", (3, True): b"P3", (2, True): b"P2"}[
        (len(shape), ascii)]
    assert data.startswith(magic + b"\n7 5\n255\n")
    if not ascii:
        assert data[len(magic) + 9:] == image.tobytes()
    numpy.testing.assert_array_equal(images.read_pnm(path), image)
    # Reading and writing again reproduces the file byte for byte.
    images.write_pnm(tmp_path / "again.pnm", images.read_pnm(path), ascii=ascii)
    assert (tmp_path / "again.pnm").read_bytes() == data


def test_reader_handles_comments_and_pillow_agrees(tmp_path):
    image = random_image((3, 4, 3), seed=1)
    data = b"P6\n# made by hand\n4 3\n# another comment\n255\n" + image.tobytes()
    numpy.testing.assert_array_equal(images.decode_pnm(data), image)
    # A comment may follow the magic number at once, and end in a carriage return (netpbm)
    data = b"P6# made on a Mac\r4 3 # size\r255\n" + image.tobytes()
    numpy.testing.assert_array_equal(images.decode_pnm(data), image)
    Image = pytest.importorskip("PIL.Image")
    images.write_pnm(tmp_path / "x.ppm", image)
    with Image.open(tmp_path / "x.ppm") as opened:
        numpy.testing.assert_array_equal(numpy.asarray(opened), image)


@pytest.mark.parametrize("data, message", [
    (b"P7\n1 1\n255\n\0", "not a PPM/PGM file"),
    (b"P5\n2 2\n255\n\0\0", "netpbm file holds fewer than the 4 values"),
    (b"P5\n2 1\n65535\n\0\0\0", "netpbm file holds fewer than the 2 values"),  # 2 bytes a sample
    (b"P5\n1 1\n65536\n\0\0", "netpbm maxval must be in 1..65535, found 65536"),
    (b"P5\n1 1\n0\n\0", "netpbm maxval must be in 1..65535, found 0"),
    (b"P5\n1", "truncated netpbm header: the file ends after 1 of its 3 fields; expected "
                "width, height and maxval after the magic number"),
    (b"P6", "truncated netpbm header: the file ends after 0 of its 3 fields"),
    (b"P5\n0 99999999\n255\n", "netpbm image of 0x99999999 pixels; expected at least 1x1"),
    (b"P2 3 0 255\n", "netpbm image of 3x0 pixels; expected at least 1x1"),
    (b"P2 x 1 255\n0\n", "netpbm width 'x' is not a whole number >= 0"),
    (b"P2 2 1 255\n0 -1\n", "netpbm value '-1' is not a whole number >= 0"),
    (b"P2 2 1 255\n0 300\n", "netpbm value 300 is above the maxval 255 its header gives"),
    (b"P3 1 1 255\n0 0 1" + b"0" * 30 + b"\n", f"netpbm value {10**30} is above the maxval"),
    (b"P5 2 1 15\n\0\x10", "netpbm value 16 is above the maxval 15 its header gives"),
    (b"P6 1 1 1000\n\x03\xe9\0\0\0\0", "netpbm value 1001 is above the maxval 1000"),
])
def test_reader_rejects_bad_files(data, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        images.decode_pnm(data)


@pytest.mark.parametrize("data, expected", [
    (b"P2 4 1 15\n0 15 7 8\n", [[0, 255, 119, 136]]),  # 7 * 17, 8 * 17
    (b"P5 3 1 100\n\x1e\x46\x01", [[77, 179, 3]]),  # 76.5 and 178.5 round up, 2.55 to 3
    (b"P5 3 1 65535\n\0\0\x03\x03\xff\xff", [[0, 3, 255]]),  # 16-bit, most significant first
    (b"P6 1 1 1000\n\x03\xe8\0\0\x01\xf4", [[[255, 0, 128]]]),
    (b"P3 1 1 4095\n4095 0 2048\n", [[[255, 0, 128]]]),  # 127.53 -> 128
])
def test_reader_rescales_other_maxvals_to_0_255(data, expected):
    assert images.decode_pnm(data).tolist() == expected


def test_a_file_the_reader_refuses_is_named(tmp_path):
    (tmp_path / "bad.pgm").write_bytes(b"P2 2 1 255\n0 300\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / 'bad.pgm'))}: netpbm "
                                         f"value 300 is above the maxval 255 its header gives$"):
        images.read_pnm(tmp_path / "bad.pgm")


def test_grid_tiles_with_padding():
    tiles = numpy.stack([numpy.full((3, 2, 2), value, numpy.uint8) for value in (10, 20, 30)])
    grid = images.make_grid(tiles, nrow=2, padding=1, pad_value=255)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3)
    assert (grid[1:3, 1:3] == 10).all() and (grid[1:3, 4:6] == 20).all()
    assert (grid[4:6, 1:3] == 30).all() and (grid[4:6, 4:6] == 255).all()  # empty slot
    assert (grid[0] == 255).all() and (grid[:, 3] == 255).all()


def test_grid_places_each_tile_upright_and_in_reading_order():
    # tile[n, c, y, x] = 100 n + 10 c + 3 y + x: no two pixels alike, not symmetric in y and x
    n, c, y, x = numpy.meshgrid(range(5), range(3), range(3), range(3), indexing="ij")
    tiles = ((100 * n + 10 * c + 3 * y + x) % 251).astype(numpy.uint8)
    grid = images.make_grid(tiles, padding=1, pad_value=255)
    assert grid.shape == (2 * 4 + 1, 3 * 4 + 1, 3)  # ceil(sqrt(5)) = 3 per row, 2 rows
    for index in range(5):
        top, left = 1 + 4 * (index // 3), 1 + 4 * (index % 3)
        for row in range(3):
            for column in range(3):
                for channel in range(3):
                    assert grid[top + row, left + column, channel] == (
                        100 * index + 10 * channel + 3 * row + column) % 251
    assert (grid[5:8, 9:12] == 255).all()  # the sixth slot is empty


def test_a_grid_takes_a_list_of_images_as_their_stack():
    """As torchvision's make_grid takes a list of tensors: a list of (C, H, W) images."""
    tiles = [numpy.full((1, 2, 2), value, numpy.uint8) for value in (10, 20, 30)]
    numpy.testing.assert_array_equal(images.make_grid(tiles, padding=1),
                                     images.make_grid(numpy.stack(tiles), padding=1))


def test_a_grid_of_fewer_images_than_nrow_is_as_wide_as_its_images():
    """As torchvision's make_grid: no empty columns to the right of the last image."""
    tiles = numpy.full((3, 1, 2, 2), 7, numpy.uint8)
    grid = images.make_grid(tiles, nrow=8, padding=1)
    assert grid.shape == (1 * 3 + 1, 3 * 3 + 1, 1)
    assert images.make_grid(tiles[:1], nrow=8, padding=1).shape == (4, 4, 1)


@pytest.mark.parametrize("count, nrow, message", [
    (0, None, r"make_grid expects at least one image, found 0"),
    (3, -1, r"make_grid expects nrow None or an integer >= 1, found -1"),
    (3, 2.5, r"make_grid expects nrow None or an integer >= 1, found 2.5"),
])
def test_a_grid_of_nothing_or_a_bad_nrow_is_refused(count, nrow, message):
    with pytest.raises(ValueError, match=message):
        images.make_grid(numpy.zeros((count, 3, 2, 2), numpy.uint8), nrow=nrow)


@pytest.mark.parametrize("tiles", [
    numpy.zeros((2, 3, 4, 4), numpy.float32),  # floats: to_uint8 makes them pixels
    numpy.zeros((2, 2, 4, 4), numpy.uint8),  # two channels
    numpy.zeros((3, 4, 4), numpy.uint8),  # one image, not a stack of them
    numpy.zeros((2, 4, 4, 3), numpy.uint8),  # NHWC
])
def test_a_grid_of_floats_or_of_images_not_nchw_with_1_or_3_channels_is_refused(tiles):
    """The message names the dtype and shape found."""
    message = (f"make_grid expects uint8 images (N, C, H, W) with C in 1 or 3, found "
               f"{tiles.dtype} {tiles.shape}")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        images.make_grid(tiles)


def test_to_uint8_maps_the_value_range_and_clips():
    floats = numpy.array([-1.5, -1.0, 0.0, 1.0, 2.0], numpy.float32)
    assert images.to_uint8(floats, (-1, 1)).tolist() == [0, 0, 128, 255, 255]


@pytest.mark.parametrize("pixels, value_range, error, message", [
    # an int64 255 was read as a float in [0, 1]: white, whatever the value
    (numpy.array([0, 128, 255]), (0.0, 1.0), TypeError,
     "expected float images (in (0.0, 1.0)) or uint8 ones, found int64"),
    (numpy.array([0.0, 0.5]), (0, 0), ValueError,
     "value_range must be (low, high) with low < high, got (0, 0)"),
    (numpy.array([0.0, 0.5]), (1, 0), ValueError,  # inverted the image
     "value_range must be (low, high) with low < high, got (1, 0)"),
])
def test_to_uint8_refuses_what_it_would_scale_wrongly(pixels, value_range, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        images.to_uint8(pixels, value_range)


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
def test_to_uint8_refuses_values_no_pixel_stands_for(bad):
    floats = numpy.array([0.0, bad, 1.0, 0.5], numpy.float32)
    with pytest.raises(ValueError, match=r"^images hold 1 nan or infinite values of 4; "
                                         r"expected finite values"):
        images.to_uint8(floats)


def test_save_grid_by_extension(tmp_path):
    batch = numpy.random.default_rng(0).random((4, 1, 3, 3), dtype=numpy.float32)
    images.save_grid(tmp_path / "g.pgm", batch, padding=0)
    numpy.testing.assert_array_equal(images.read_pnm(tmp_path / "g.pgm"),
                                     images.make_grid(images.to_uint8(batch), padding=0)[:, :, 0])
    images.save_grid(tmp_path / "g.ppm", batch)
    assert images.read_pnm(tmp_path / "g.ppm").shape == (2 * (3 + 2) + 2,) * 2 + (3,)
    with pytest.raises(ValueError, match=r"expected extension \.png, \.ppm, \.pgm"):
        images.save_grid(tmp_path / "g.gif", batch)
    Image = pytest.importorskip("PIL.Image")
    images.save_grid(tmp_path / "g.png", batch, padding=0)
    with Image.open(tmp_path / "g.png") as opened:
        numpy.testing.assert_array_equal(numpy.asarray(opened), images.read_pnm(tmp_path / "g.pgm"))


def test_pgm_of_a_colour_image_is_the_rounded_channel_mean_and_extensions_ignore_case(tmp_path):
    image = numpy.array([[[10, 20, 60], [255, 0, 0], [0, 1, 1]]], numpy.uint8)  # (1, 3, 3)
    images.save_image(tmp_path / "grey.PGM", image)
    assert images.read_pnm(tmp_path / "grey.PGM").tolist() == [[30, 85, 1]]  # 2/3 -> 1
    images.save_image(tmp_path / "colour.Ppm", image)
    numpy.testing.assert_array_equal(images.read_pnm(tmp_path / "colour.Ppm"), image)


def test_png_keeps_the_channel_order(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    red = numpy.zeros((2, 3, 3), numpy.uint8)
    red[:, :, 0] = 255
    red[0, 0] = (1, 2, 3)
    images.save_image(tmp_path / "red.PNG", red)
    with Image.open(tmp_path / "red.PNG") as opened:
        assert opened.mode == "RGB"
        pixels = numpy.asarray(opened)
    assert tuple(pixels[0, 0]) == (1, 2, 3) and tuple(pixels[1, 2]) == (255, 0, 0)
    numpy.testing.assert_array_equal(pixels, red)


@pytest.mark.parametrize("extension", [".ppm", ".pgm", ".png"])
def test_saving_an_image_that_is_not_uint8_asks_for_to_uint8_and_writes_nothing(tmp_path,
                                                                               extension):
    """A float image is not cast (0.5 would become 0): the caller is told to map it first."""
    path = tmp_path / f"image{extension}"
    for dtype in (numpy.float32, numpy.int64):
        message = (f"expected a uint8 image, found {numpy.dtype(dtype)} "
                   f"(use to_uint8 first)")
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            images.save_image(path, numpy.full((2, 3, 3), 0.5, dtype))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(4,), (2, 3, 2), (2, 3, 4), (1, 2, 3, 3)])
@pytest.mark.parametrize("extension", [".ppm", ".pgm", ".png"])
def test_saving_an_array_not_laid_out_as_an_image_is_refused(tmp_path, shape, extension):
    """Only (H, W), (H, W, 1) and (H, W, 3) are images; the message gives the shape found."""
    path = tmp_path / f"image{extension}"
    message = f"expected an image (H, W), (H, W, 1) or (H, W, 3), found shape {shape}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        images.save_image(path, random_image(shape))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "grid.ppm"
    images.write_pnm(path, random_image((4, 4, 3)))
    good = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic.atomic_open(path) as file:
            file.write(b"P6\n4 4\n255\n" + b"\0" * 10)
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["grid.ppm"]


def test_killed_writer_never_replaces_a_good_file(tmp_path):
    """A process killed half-way through writing leaves the previous file intact."""
    path = tmp_path / "x.npy"
    atomic.save_npy(path, numpy.arange(5))
    script = (f"import os, signal\nfrom minilean import atomic\n"
              f"with atomic.atomic_open({str(path)!r}) as file:\n"
              f"    file.write(b'half of a file')\n    file.flush()\n"
              f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd())
    assert result.returncode == -9
    numpy.testing.assert_array_equal(numpy.load(path), numpy.arange(5))


def test_every_file_is_on_disk_whole_before_a_rename_puts_one_in_place(tmp_path, monkeypatch):
    """The rename is atomic, but a power cut after it would leave the new name on whatever of
    the file had reached the disk: each file is flushed and synced whole first, and a set
    written together has all its files synced before the first rename."""
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (
        events.append(("synced", os.fstat(fd).st_size)), fsync(fd))[-1])
    monkeypatch.setattr(atomic.os, "replace", lambda source, destination: (
        events.append(("renamed", os.path.basename(destination))),
        replace(source, destination))[-1])
    atomic.write_bytes(tmp_path / "a.bin", b"a" * 100)
    assert events == [("synced", 100), ("renamed", "a.bin")]
    events.clear()
    atomic.write_together({str(tmp_path / "b.bin"): b"b" * 200,
                           str(tmp_path / "c.bin"): b"c" * 300})
    first_rename = events.index(("renamed", "b.bin"))
    assert {size for _, size in events[:first_rename]} == {200, 300}
    assert events[-1] == ("renamed", "c.bin")
    assert (tmp_path / "c.bin").read_bytes() == b"c" * 300


def test_atomic_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        atomic.write_json(tmp_path / "x.json", {"loss": float("nan")})
    assert os.listdir(tmp_path) == []


def test_atomic_json_is_indented_with_its_keys_sorted(tmp_path):
    """config.json and summary.json read the same, and diff line by line, whatever order the
    code built them in."""
    atomic.write_json(tmp_path / "x.json", {"steps": 3, "lr": 0.5, "batch": {"b": 1, "a": 2}})
    assert (tmp_path / "x.json").read_text() == (
        '{\n  "batch": {\n    "a": 2,\n    "b": 1\n  },\n  "lr": 0.5,\n  "steps": 3\n}\n')


def test_an_interrupt_inside_the_block_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.bin"
    atomic.write_bytes(path, b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_open(path) as file:
            file.write(b"new, half")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]


def test_an_interrupt_as_the_temporary_file_is_made_leaves_no_temporary(tmp_path, monkeypatch):
    """Ctrl-C lands as os.open returns (Python checks for signals after each call): the file
    is made, its handle not yet kept. The temporary stayed (``.x.bin.XXXXXXXX.tmp``, beside a
    --log or sample file nothing removes later): a loop of writes interrupted by SIGINT at
    random left one in 61 of 1500."""
    path = tmp_path / "x.bin"
    atomic.write_bytes(path, b"old")
    real_open = os.open

    def interrupted_as_it_returns(name, flags, mode=0o777):
        os.close(real_open(name, flags, mode))
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic.os, "open", interrupted_as_it_returns)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]


@pytest.mark.parametrize("mode", [0o600, 0o755, 0o640])
def test_a_file_written_over_keeps_its_mode(tmp_path, mode):
    """The new file took 0666 & ~umask whatever the old one's: a private (0600) file came back
    readable by all, and a script lost its execute bit."""
    path = tmp_path / "notes.txt"
    path.write_text("old")
    path.chmod(mode)
    atomic.write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == mode


def test_a_file_its_user_cannot_write_is_refused_as_open_refuses_it(tmp_path, monkeypatch):
    """A read-only file was replaced all the same (the rename needs only the folder's write
    permission). os.access stands in for a user without root's override."""
    path = tmp_path / "kept.txt"
    path.write_text("old")
    monkeypatch.setattr(atomic.os, "access", lambda name, mode: False)
    with pytest.raises(OSError, match=f"^cannot write {re.escape(str(path))}: Permission "
                                      f"denied$"):
        atomic.write_text(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["kept.txt"]


def test_an_array_cut_short_by_a_size_limit_names_the_file(tmp_path):
    """NumPy's short-write error has no errno ("N requested and M written"): it reached the
    user as it was, naming neither the file nor the cause. Here a file size limit of 50 KiB
    (as a full disk would) stops a 240 KiB array; the old file stays."""
    path = tmp_path / "x.npy"
    numpy.save(path, numpy.arange(3))
    script = ("import resource, sys, numpy; from minilean import atomic; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (50 * 1024, resource.RLIM_INFINITY)); "
              "atomic.save_npy(sys.argv[1], numpy.zeros(30720))")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and re.fullmatch(
        f"OSError: cannot write {re.escape(str(path))}: the array was cut short \\(\\d+ "
        f"requested and \\d+ written\\): the disk is full, or the file is past a size limit",
        last), last
    numpy.testing.assert_array_equal(numpy.load(path), [0, 1, 2])
    assert os.listdir(tmp_path) == ["x.npy"]


def test_save_npy_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError, match="allow_pickle"):
        atomic.save_npy(tmp_path / "x.npy", numpy.array([{"a": 1}, None], dtype=object))
    assert os.listdir(tmp_path) == []


def test_a_bare_file_name_is_written_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic.write_text("notes.txt", "hello")
    atomic.save_npy("x.npy", numpy.arange(3))
    assert (tmp_path / "notes.txt").read_text() == "hello"
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "x.npy"), [0, 1, 2])
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "x.npy"]


@pytest.mark.parametrize("mode", ["a", "ab", "r", "w+"])
def test_atomic_open_refuses_modes_other_than_writing(tmp_path, mode):
    (tmp_path / "x.txt").write_text("old")
    with pytest.raises(ValueError, match=re.escape(f"mode must be 'wb' or 'w', got '{mode}'")):
        with atomic.atomic_open(tmp_path / "x.txt", mode):
            pass
    assert (tmp_path / "x.txt").read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_a_write_through_a_symbolic_link_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "kept").mkdir()
    target, link = tmp_path / "kept" / "log.txt", tmp_path / "log.txt"
    target.write_text("old")
    link.symlink_to(target)
    atomic.write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert os.listdir(tmp_path / "kept") == ["log.txt"]


def test_a_pipe_or_a_link_to_one_is_never_replaced_by_a_file(tmp_path):
    pipe, link = tmp_path / "pipe", tmp_path / "link.txt"
    os.mkfifo(pipe)
    link.symlink_to(pipe)
    for path in (pipe, link):
        with pytest.raises(OSError, match=f"cannot write {re.escape(str(path))}: .* is a "
                                          "device, pipe or socket, not a regular file"):
            atomic.write_text(path, "new")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and sorted(os.listdir(tmp_path)) == [
        "link.txt", "pipe"]
