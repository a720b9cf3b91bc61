"""Image-folder conversion with Pillow: sorted order, centre crop, labels, corrupt files."""
import errno
import inspect
import io
import json
import logging
import os
import re
import subprocess
import sys
import unicodedata
import warnings

import numpy
import pytest

from minilean.cli import main
from minilean.data import image_folder
from minilean.data.arrays import MANIFEST_KEYS, load_dataset
from minilean.data.commands import ConvertCommands, DataCommands
from minilean.errors import FlagError

Image = pytest.importorskip("PIL.Image")


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def halves(height, width, horizontal):
    """RGB image: red first half, blue second half, split across the longer side."""
    image = numpy.zeros((height, width, 3), numpy.uint8)
    if horizontal:
        image[:, : width // 2, 0], image[:, width // 2:, 2] = 255, 255
    else:
        image[: height // 2, :, 0], image[height // 2:, :, 2] = 255, 255
    return image


def test_centre_crop_keeps_the_middle_of_landscape_and_portrait(tmp_path):
    # Landscape 40x120: green columns 30..89, red outside. The centre 40x40 square (columns
    # 40..79) is green with a margin for the resampling filter, so a centre crop is all green
    # (the red sides are cut off, not squeezed in as a stretch would).
    landscape = numpy.zeros((40, 120, 3), numpy.uint8)
    landscape[:, :, 0] = 255
    landscape[:, 30:90] = (0, 255, 0)
    save(tmp_path / "in" / "a_landscape.png", landscape)
    save(tmp_path / "in" / "b_portrait.png", landscape.transpose(1, 0, 2).copy())
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=16, width=16)
    x = numpy.load(tmp_path / "x.npy")
    assert x.shape == (2, 3, 16, 16) and x.dtype == numpy.uint8
    for image in x:
        assert image[1].min() >= 250 and image[0].max() <= 5  # green only


def test_stretch_squeezes_the_whole_image_in(tmp_path):
    save(tmp_path / "in" / "wide.png", halves(20, 80, horizontal=True))
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=8, width=8, crop="stretch")
    x = numpy.load(tmp_path / "x.npy")[0]
    assert x[0, :, 0].min() > 200 and x[2, :, -1].min() > 200  # red left, blue right


def test_centre_crop_to_a_wide_shape_keeps_height_and_width_apart(tmp_path):
    # 20 high x 40 wide, red left half and blue right half: already 1:2, so the crop to 8 high
    # x 16 wide keeps all of it, red in columns 0..7 and blue in 8..15
    save(tmp_path / "in" / "wide.png", halves(20, 40, horizontal=True))
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=8, width=16)
    x = numpy.load(tmp_path / "x.npy")
    assert x.shape == (1, 3, 8, 16)
    red, blue = x[0, 0].astype(int), x[0, 2].astype(int)
    assert red[:, :6].min() > 240 and blue[:, :6].max() < 15
    assert blue[:, 10:].min() > 240 and red[:, 10:].max() < 15


def test_the_folder_and_outputs_may_be_pathlib_paths(tmp_path):
    save(tmp_path / "in" / "cat" / "1.png", halves(4, 4, True))
    DataCommands().convert.image_folder(tmp_path / "in", tmp_path / "x.npy",
                                        y_output=tmp_path / "y.npy", height=4, width=4,
                                        labels_from_dirs=True)
    assert numpy.load(tmp_path / "x.npy").shape == (1, 3, 4, 4)
    manifest = json.loads((tmp_path / "x.json").read_text())
    assert manifest["source"] == str(tmp_path / "in")
    assert manifest["labels"] == str(tmp_path / "y.npy")


def test_16_bit_grey_images_are_rescaled_and_a_bad_pgm_is_skipped_by_name(tmp_path, capsys):
    """Pillow opens a 16-bit PGM or PNG as mode I or I;16 and would clip each value above
    255 when converting it to RGB; the converter rescales it as read_pnm does."""
    samples = numpy.array([[0, 1000], [30000, 65535]], numpy.uint16)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.pgm").write_bytes(b"P5 2 2 65535\n" + samples.astype(">u2").tobytes())
    save(tmp_path / "in" / "b.png", samples)
    (tmp_path / "in" / "c.pgm").write_bytes(b"P2 2 2 15\n0 15 15 0\n")
    (tmp_path / "in" / "d.pgm").write_bytes(b"P2 2 2 255\n0 300 1 1\n")
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=2, width=2, crop="stretch", ext=".pgm,.png")
    x = numpy.load(tmp_path / "x.npy")
    assert (x == x[:, :1]).all()  # grey: the three channels alike
    assert x[:, 0].tolist() == [[[0, 4], [117, 255]]] * 2 + [[[0, 255], [255, 0]]]
    err = capsys.readouterr().err  # one line naming the file, then Pillow's words
    assert err.startswith(f"warning: skipping unreadable image {tmp_path / 'in' / 'd.pgm'}: ")
    assert err.count("\n") == 1 and "300" in err


def test_every_16_bit_value_is_rescaled_to_the_nearest_8_bit_one(tmp_path):
    """value * 255 / 65535 rounded half up: 65535 is 255, and 257 * k + 129 (k + 0.502)
    rounds up where a scale by 65536 would round down."""
    ramp = numpy.arange(2**16, dtype=numpy.uint16).reshape(256, 256)
    save(tmp_path / "in" / "ramp.png", ramp)
    x = image_folder.load_image(str(tmp_path / "in" / "ramp.png"), 256, 256, crop="stretch")
    expected = numpy.floor(ramp / 65535 * 255 + 0.5)
    assert (x == expected).all()  # each channel alike


def test_float_and_wide_integer_images_are_skipped_by_name(tmp_path, capsys):
    """Pillow converted a float TIFF in 0..1 (mode F) to RGB by clipping to 0..255, so it came
    out black, and a 32-bit integer one was clipped to 0..65535: neither has a range the
    converter can know, so each is skipped with a warning naming it; a 32-bit integer image
    within 0..65535 is rescaled as 16-bit samples are."""
    ramp = numpy.array([[0, 1000], [30000, 65535]])
    save(tmp_path / "in" / "a_float.tif", (ramp / 65535).astype(numpy.float32))
    save(tmp_path / "in" / "b_wide.tif", (ramp + 1).astype(numpy.int32))
    save(tmp_path / "in" / "c_negative.tif", (ramp - 1).astype(numpy.int32))
    save(tmp_path / "in" / "d_int.tif", ramp.astype(numpy.int32))
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=2, width=2, crop="stretch", ext=".tif")
    x = numpy.load(tmp_path / "x.npy")
    assert x.shape == (1, 3, 2, 2) and x[0, 0].tolist() == [[0, 4], [117, 255]]
    skipped = [str(tmp_path / "in" / name) for name in ("a_float.tif", "b_wide.tif",
                                                        "c_negative.tif")]
    assert json.loads((tmp_path / "x.json").read_text())["skipped"] == skipped
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"warning: skipping unreadable image {skipped[0]}: 32-bit float pixels (Pillow's mode "
        f"F) have no known range to scale to 0..255; expected 8- or 16-bit samples",
        f"warning: skipping unreadable image {skipped[1]}: integer pixels from 1 to 65536 are "
        f"outside 0..65535; expected 8- or 16-bit samples",
        f"warning: skipping unreadable image {skipped[2]}: integer pixels from -1 to 65534 are "
        f"outside 0..65535; expected 8- or 16-bit samples"]


def test_extensions_match_whatever_their_case(tmp_path):
    for name in ("a.PNG", "b.Jpg", "c.png", "d.txt", "e.PnG.txt"):
        (tmp_path / name).write_bytes(b"")
    assert image_folder.list_images(str(tmp_path)) == ["a.PNG", "b.Jpg", "c.png"]
    assert image_folder.list_images(str(tmp_path), (".PNG",)) == ["a.PNG", "c.png"]


@pytest.mark.parametrize("extensions", [".png", ".PNG,.bmp", [".png"]])
def test_extensions_given_as_text_from_python_are_read_as_the_ext_flag_reads_them(
        tmp_path, extensions):
    """A bare ".png" was taken as its characters: every name ending in ".", "p", "n" or "g"
    matched, so .jpg photos were read among the .png ones and .svg files were warned of."""
    for name, value in (("a.png", 40), ("b.jpg", 80), ("c.bmp", 120)):
        save(tmp_path / "in" / name, numpy.full((4, 4, 3), value, numpy.uint8))
    (tmp_path / "in" / "d.svg").write_text("<svg/>")
    warnings_seen = []
    manifest = image_folder.convert_image_folder(
        str(tmp_path / "in"), str(tmp_path / "x.npy"), height=4, width=4,
        extensions=extensions, warn=warnings_seen.append)
    expected = [40, 120] if "bmp" in extensions else [40]
    assert manifest["count"] == len(expected) and warnings_seen == []
    assert numpy.load(tmp_path / "x.npy")[:, 0, 0, 0].tolist() == expected
    assert image_folder.list_images(str(tmp_path / "in"), extensions) == [
        "a.png", "c.bmp"][:len(expected)]


def test_extensions_given_as_a_generator_are_read_once(tmp_path):
    """Checked, then used: a generator of names was used up by the check, and no file
    matched the nothing left of it."""
    for name, value in (("a.png", 40), ("b.jpg", 80)):
        save(tmp_path / "in" / name, numpy.full((4, 4, 3), value, numpy.uint8))
    manifest = image_folder.convert_image_folder(
        str(tmp_path / "in"), str(tmp_path / "x.npy"), height=4, width=4,
        extensions=(name for name in [".png"]))
    assert manifest["count"] == 1 and numpy.load(tmp_path / "x.npy")[0, 0, 0, 0] == 40


@pytest.mark.parametrize("extensions", ["png", (".png", "jpg"), (), None, 5])
def test_extensions_without_their_dot_are_refused_from_python_before_any_work(tmp_path,
                                                                                extensions):
    save(tmp_path / "in" / "1.png", halves(4, 4, True))
    with pytest.raises(FlagError, match=r"^--ext: got .*; expected file extensions starting "
                                        r'with "\.", e\.g\. \.png,\.jpg$'):
        image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                          height=4, width=4, extensions=extensions)
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_bmp_and_webp_files_are_read_by_default_as_torchleans_converter_reads_them(tmp_path):
    for name, value in (("a.bmp", 40), ("b.webp", 80), ("c.png", 120)):
        save(tmp_path / "in" / name, numpy.full((4, 4, 3), value, numpy.uint8))
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=4, width=4)
    # webp is lossy: a flat colour comes back within a step or two
    assert numpy.abs(numpy.load(tmp_path / "x.npy")[:, 0, 0, 0].astype(int)
                     - [40, 80, 120]).max() <= 2


def test_labels_without_label_folders_are_refused_by_the_converter_itself(tmp_path, capsys):
    """One check, in the function the command line and Python callers both reach, says it."""
    save(tmp_path / "in" / "cat" / "1.png", halves(4, 4, True))
    y_output = str(tmp_path / "y.npy")
    words = f"--y-output: got {y_output!r}; expected to come with --labels-from-dirs"
    with pytest.raises(FlagError) as error:
        image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                          y_output=y_output, height=4, width=4)
    assert str(error.value) == words
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "convert", "image-folder", f"--input={tmp_path / 'in'}",
              f"--x-output={tmp_path / 'x.npy'}", f"--y-output={y_output}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"minilean data convert image-folder: error: {words}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in"]


def test_with_labels_from_dirs_a_file_outside_the_class_folders_is_skipped_by_name(tmp_path):
    save(tmp_path / "in" / "cat" / "1.png", halves(4, 4, True))
    save(tmp_path / "in" / "loose.png", halves(4, 4, False))
    lines = []
    manifest = image_folder.convert_image_folder(
        str(tmp_path / "in"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), height=4,
        width=4, labels_from_dirs=True, warn=lines.append)
    assert lines == [f"warning: skipping {tmp_path / 'in' / 'loose.png'}: not inside a class "
                     f"sub-directory (--labels-from-dirs)"]
    assert manifest["count"] == 1 and manifest["class_names"] == ["cat"]
    assert numpy.load(tmp_path / "y.npy").tolist() == [0]


def test_with_labels_from_dirs_a_folder_of_loose_images_only_is_refused_as_having_no_classes(
        tmp_path, capsys):
    """Image files directly in --input and none in a sub-folder: the error says the classes'
    sub-folders are missing (it said "no files ending in ... under DIR", which holds some), in
    one line, without a warning for each file skipped first, and nothing is written."""
    for name in ("1.png", "2.png"):
        save(tmp_path / "in" / name, halves(4, 4, True))
    (tmp_path / "in" / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "convert", "image-folder", f"--input={tmp_path / 'in'}",
              f"--x-output={tmp_path / 'x.npy'}", f"--y-output={tmp_path / 'y.npy'}",
              "--labels-from-dirs"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        f"minilean data convert image-folder: error: --labels-from-dirs needs one sub-folder "
        f"per class under {tmp_path / 'in'}; found 2 image files directly in it and none in a "
        "sub-folder\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("height, width", [(8, 3), (3, 3), (1, 1)])
def test_images_3_or_1_pixels_wide_load_by_the_layout_their_manifest_states(tmp_path, height,
                                                                            width):
    """(N, 3, 8, 3) could be NCHW or NHWC: the converter's manifest says NCHW, so its own output
    loads; the same array without the manifest is refused as ambiguous."""
    save(tmp_path / "in" / "1.png", halves(16, 16, True))
    image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                      height=height, width=width, crop="stretch")
    written = numpy.load(tmp_path / "x.npy")
    dataset = load_dataset(x=str(tmp_path / "x.npy"))
    assert dataset.image_shape == (3, height, width)
    numpy.testing.assert_array_equal(dataset.x, written)
    (tmp_path / "x.json").unlink()
    with pytest.raises(ValueError, match="is ambiguous"):
        load_dataset(x=str(tmp_path / "x.npy"))


def test_a_class_folder_without_images_and_a_limit_that_keeps_some_classes_are_warned_of(
        tmp_path):
    """Either leaves the label numbers or the classes other than a full conversion's would."""
    save(tmp_path / "in" / "a" / "1.png", halves(4, 4, True))
    save(tmp_path / "in" / "a" / "2.png", halves(4, 4, True))
    (tmp_path / "in" / "b").mkdir()
    (tmp_path / "in" / "b" / "notes.txt").write_text("no image")
    save(tmp_path / "in" / "c" / "3.png", halves(4, 4, False))
    lines = []
    convert = lambda limit: image_folder.convert_image_folder(  # noqa: E731
        str(tmp_path / "in"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), height=4,
        width=4, labels_from_dirs=True, limit=limit, warn=lines.append,
        extensions=(".png",))
    assert convert(None)["class_names"] == ["a", "c"]
    assert lines == [f"warning: {tmp_path / 'in' / 'b'} holds no .png files: it is no class, "
                     f"and the classes after it are numbered one lower than where it has "
                     f"images"]
    lines.clear()
    (tmp_path / "in" / "d").mkdir()  # last: no class after it is renumbered
    assert convert(None)["class_names"] == ["a", "c"]
    assert lines[-1] == f"warning: {tmp_path / 'in' / 'd'} holds no .png files: it is no class"
    lines.clear()
    assert convert(2)["count"] == 2 and numpy.load(tmp_path / "y.npy").tolist() == [0, 0]
    assert lines[-1] == ("warning: the 2 images kept are of 1 of the 2 classes (--limit 2 "
                         "keeps the first files in sorted order)")
    lines.clear()
    (tmp_path / "in" / "c" / "3.png").write_bytes(b"not a png")
    convert(None)
    assert lines[-1] == ("warning: the 2 images kept are of 1 of the 2 classes (no image of "
                         "the others could be read)")


def test_a_class_folder_that_is_a_link_is_read_and_a_link_up_the_tree_ends_the_walk(tmp_path):
    """A walk that left links to folders out dropped a class kept elsewhere, without a word;
    one that follows them must not loop on a link back up the tree."""
    save(tmp_path / "in" / "cat" / "1.png", halves(4, 4, True))
    save(tmp_path / "elsewhere" / "2.png", halves(4, 4, False))
    (tmp_path / "in" / "dog").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "in" / "cat" / "up").symlink_to(tmp_path / "in", target_is_directory=True)
    manifest = image_folder.convert_image_folder(
        str(tmp_path / "in"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), height=4,
        width=4, labels_from_dirs=True)
    assert manifest["class_names"] == ["cat", "dog"] and manifest["count"] == 2
    assert numpy.load(tmp_path / "y.npy").tolist() == [0, 1]
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "x.npy")[1].transpose(1, 2, 0),
                                     halves(4, 4, False))  # CHW -> HWC


@pytest.mark.parametrize("sizes, message", [
    ({"height": 0}, "--height: got 0; expected an integer >= 1"),
    ({"width": 2.5}, "--width: got 2.5; expected an integer >= 1"),
    ({"limit": 0}, "--limit: got 0; expected an integer >= 1")])
def test_sizes_given_from_python_are_checked_before_any_work(tmp_path, sizes, message):
    """The command line checks its flags; from Python, a height of 0 read every image and
    ended in "none of the N image files could be read"."""
    save(tmp_path / "in" / "1.png", halves(4, 4, True))
    with pytest.raises(FlagError, match=rf"^{re.escape(message)}$"):
        image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                          **{"height": 4, "width": 4, **sizes})
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_two_class_folders_linking_to_one_folder_both_keep_its_images(tmp_path):
    """Each real folder was walked once, so of two links to one folder the one the file
    system listed first kept the images and the other was warned of as holding none: the
    classes hung on the directory's listing order, not its sorted names."""
    save(tmp_path / "in" / "cats" / "1.png", halves(4, 4, True))
    (tmp_path / "in" / "dd").symlink_to(tmp_path / "in" / "cats", target_is_directory=True)
    save(tmp_path / "in" / "fish" / "2.png", halves(4, 4, False))
    (tmp_path / "in" / "fish" / "a").symlink_to(tmp_path / "in" / "b", target_is_directory=True)
    (tmp_path / "in" / "b").symlink_to(tmp_path / "in" / "fish", target_is_directory=True)
    warnings_given = []
    manifest = image_folder.convert_image_folder(
        str(tmp_path / "in"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), height=4,
        width=4, labels_from_dirs=True, warn=warnings_given.append)
    # a link loop (fish/a -> b -> fish) ends the walk
    assert manifest["class_names"] == ["b", "cats", "dd", "fish"] and manifest["count"] == 4
    assert numpy.load(tmp_path / "y.npy").tolist() == [0, 1, 2, 3] and warnings_given == []
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "x.npy")[2].transpose(1, 2, 0),
                                     halves(4, 4, True))  # CHW -> HWC


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX's")
def test_a_named_pipe_among_the_images_is_skipped_by_name_not_read(tmp_path):
    """Opening a pipe blocks until a writer comes: the conversion hung forever."""
    import signal
    save(tmp_path / "in" / "1.png", halves(4, 4, True))
    pipe = tmp_path / "in" / "2.png"
    os.mkfifo(pipe)
    lines = []
    before = signal.signal(signal.SIGALRM,
                           lambda *_: pytest.fail("the conversion read the pipe"))
    signal.alarm(20)
    try:
        manifest = image_folder.convert_image_folder(
            str(tmp_path / "in"), str(tmp_path / "x.npy"), height=4, width=4,
            warn=lines.append)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert lines == [f"warning: skipping {pipe}: not a regular file"]
    assert manifest["count"] == 1 and manifest["skipped"] == [str(pipe)]


def test_a_file_of_another_kind_where_the_manifest_goes_is_refused_and_kept(tmp_path):
    """The manifest is written beside the images (x.npy -> x.json): a JSON file of the
    user's there was replaced without a word. An earlier conversion's manifest is replaced."""
    save(tmp_path / "in" / "1.png", halves(4, 4, True))
    notes = tmp_path / "x.json"
    notes.write_text('{"my": "notes"}')
    convert = lambda: image_folder.convert_image_folder(  # noqa: E731
        str(tmp_path / "in"), str(tmp_path / "x.npy"), height=4, width=4)
    with pytest.raises(FlagError, match=f"^--x-output: got '{re.escape(str(tmp_path))}/x.npy'; "
                                        f"expected a path whose {re.escape(str(notes))} beside "
                                        f"it is a manifest or free: "):
        convert()
    assert notes.read_text() == '{"my": "notes"}' and not (tmp_path / "x.npy").exists()
    notes.unlink()
    convert()
    assert convert()["count"] == 1  # over its own manifest


def test_nested_class_folders_labels_manifest_and_corrupt_file(tmp_path, capsys):
    root = tmp_path / "in"
    save(root / "dog" / "1.png", halves(10, 10, True))
    save(root / "dog" / "puppies" / "2.jpg", halves(12, 10, False))
    save(root / "cat" / "3.png", halves(10, 14, True))
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "cat" / "notes.txt").write_text("ignored: not an image extension")
    DataCommands().convert.image_folder(str(root), str(tmp_path / "X.npy"),
                                        y_output=str(tmp_path / "y.npy"), height=8, width=8,
                                        labels_from_dirs=True)
    out, err = capsys.readouterr()
    assert "skipping unreadable image" in err and "broken.png" in err
    assert out == (f"wrote {tmp_path / 'X.npy'}: 3 images (3, 3, 8, 8) uint8, labels "
                   f"{tmp_path / 'y.npy'}; skipped 1 unreadable\n")
    x, y = numpy.load(tmp_path / "X.npy"), numpy.load(tmp_path / "y.npy")
    assert x.shape == (3, 3, 8, 8) and y.tolist() == [0, 1, 1] and y.dtype == numpy.int64
    manifest = json.loads((tmp_path / "X.json").read_text())
    assert manifest["class_names"] == ["cat", "dog"] and manifest["count"] == 3
    assert manifest["shape"] == [3, 3, 8, 8] and manifest["dtype"] == "uint8"
    assert manifest["skipped"] == [str(root / "cat" / "broken.png")]
    assert sorted(manifest) == sorted(MANIFEST_KEYS)  # what load_arrays accepts as ours
    dataset = load_dataset(x=str(tmp_path / "X.npy"), y=str(tmp_path / "y.npy"))
    assert dataset.class_names == ("cat", "dog") and len(dataset) == 3


def damaged(kind):
    """The bytes of an image Pillow opens and then fails on with an error other than OSError
    and ValueError: a TIFF whose strip offsets are stored as floats (TypeError), a DDS whose
    pixel format flags name no format (NotImplementedError)."""
    buffer = io.BytesIO()
    Image.fromarray(halves(4, 4, True)).save(buffer, format=kind)
    data = bytearray(buffer.getvalue())
    if kind == "TIFF":  # the StripOffsets tag (0x0111) from type LONG (4) to FLOAT (11)
        entry = data.index(b"\x11\x01\x04\x00")
        data[entry + 2] = 11
    else:  # DDS: 4 bytes of magic, then the pixel format's flags at 80, from RGB to 1
        data[80:84] = (1).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("kind, extension", [("TIFF", ".tif"), ("DDS", ".dds")])
def test_an_image_pillow_fails_on_with_a_type_error_or_the_like_is_skipped(tmp_path, capsys,
                                                                          kind, extension):
    root = tmp_path / "in"
    save(root / "a.png", halves(4, 4, True))
    (root / f"b{extension}").write_bytes(damaged(kind))
    manifest = image_folder.convert_image_folder(str(root), str(tmp_path / "x.npy"), height=4,
                                                 width=4, extensions=(".png", extension))
    assert manifest["count"] == 1 and manifest["skipped"] == [str(root / f"b{extension}")]
    assert capsys.readouterr().err.startswith(
        f"warning: skipping unreadable image {root / f'b{extension}'}: ")


def test_exif_orientation_is_applied(tmp_path):
    # Stored 20 wide x 10 high, EXIF orientation 6 (rotate 90 degrees clockwise to display):
    # upright it is 10 wide x 20 high, red on top.
    stored = halves(10, 20, horizontal=True)  # red on the left, blue on the right
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    (tmp_path / "in").mkdir()
    image.save(tmp_path / "in" / "photo.jpg", exif=exif, quality=95)
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=20, width=10, crop="stretch")
    x = numpy.load(tmp_path / "x.npy")[0].astype(int)
    assert x[0, :5].mean() > 200 and x[2, -5:].mean() > 200  # red top rows, blue bottom rows


def test_limit_and_sorted_order(tmp_path):
    for index, value in enumerate([30, 10, 20]):
        save(tmp_path / "in" / f"img{index}.png", numpy.full((4, 4, 3), value, numpy.uint8))
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=4, width=4, limit=2, ext=".png")
    assert numpy.load(tmp_path / "x.npy")[:, 0, 0, 0].tolist() == [30, 10]


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_accented_names_sort_alike_whether_stored_composed_or_decomposed(tmp_path, form):
    """macOS's HFS+ keeps "caf\u00e9" decomposed ("cafe" and a combining accent), which sorted
    before "cafz", where Linux's composed name sorts after it: a copied folder gave its
    classes other labels, its images another order and --limit other images."""
    for value, name in ((0, "caf\u00e9"), (80, "cafe"), (160, "cafz")):
        save(tmp_path / "in" / unicodedata.normalize(form, name) / "1.png",
             numpy.full((4, 4, 3), value, numpy.uint8))
    manifest = image_folder.convert_image_folder(
        str(tmp_path / "in"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), height=4,
        width=4, labels_from_dirs=True, limit=2)
    assert [unicodedata.normalize("NFC", name) for name in manifest["class_names"]] == [
        "cafe", "cafz", "caf\u00e9"]
    assert numpy.load(tmp_path / "x.npy")[:, 0, 0, 0].tolist() == [80, 160]
    assert numpy.load(tmp_path / "y.npy").tolist() == [0, 1]


def test_a_limit_above_the_file_count_takes_every_file_and_sizes_nothing_by_it(tmp_path):
    for index, value in enumerate([30, 10]):
        save(tmp_path / "in" / f"img{index}.png", numpy.full((4, 4, 3), value, numpy.uint8))
    # an array of 10**15 images would be past any address space: only the 2 files are held
    manifest = image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                                 height=4, width=4, limit=10**15)
    assert manifest["count"] == 2 and manifest["shape"] == [2, 3, 4, 4]
    assert numpy.load(tmp_path / "x.npy")[:, 0, 0, 0].tolist() == [30, 10]


def test_no_readable_image_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the 1 image files under .* could be read"):
        DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"))
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("extensions", [image_folder.DEFAULT_EXTENSIONS, (".png", ".jpg")])
def test_a_folder_without_image_files_is_an_error_naming_the_extensions(tmp_path, extensions):
    """Files of other extensions are not images: a folder holding only those is refused, with
    the extensions looked for, and nothing is written."""
    (tmp_path / "in" / "cat").mkdir(parents=True)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "cat" / "scan.tiff").write_bytes(b"")
    message = f"no files ending in {', '.join(extensions)} under {tmp_path / 'in'}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                          extensions=extensions)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in"]


def test_a_palette_image_with_transparency_keeps_its_colours_without_a_warning(tmp_path):
    """A palette PNG with per-entry alpha goes through RGBA (Pillow warns when converting it
    straight to RGB): each pixel is its palette colour, a fully transparent entry's too."""
    colours = numpy.array([[200, 30, 40], [10, 220, 90], [60, 70, 250], [255, 255, 0]],
                          numpy.uint8)
    indices = numpy.array([[0, 1, 2, 3], [3, 2, 1, 0]], numpy.uint8)
    palette = Image.frombytes("P", (4, 2), indices.tobytes())
    palette.putpalette(colours.tobytes())
    palette.info["transparency"] = bytes([0, 128, 255, 255])  # entry 0 fully transparent
    (tmp_path / "in").mkdir()
    palette.save(tmp_path / "in" / "palette.png")
    with Image.open(tmp_path / "in" / "palette.png") as opened:
        assert opened.mode == "P" and isinstance(opened.info["transparency"], bytes)
    lines = []
    manifest = image_folder.convert_image_folder(
        str(tmp_path / "in"), str(tmp_path / "x.npy"), height=2, width=4, crop="stretch",
        warn=lines.append)
    assert lines == [] and manifest["skipped"] == []
    x = numpy.load(tmp_path / "x.npy")
    numpy.testing.assert_array_equal(x[0].transpose(1, 2, 0), colours[indices])  # CHW -> HWC


def test_label_folders_without_a_labels_file_are_refused_by_the_converter_itself(tmp_path,
                                                                               capsys):
    """--labels-from-dirs alone labelled every image and wrote the labels nowhere (exit 0, an
    x.npy without them, the files outside a class folder dropped); TorchLean's converter says
    "--y-output is required with --labels-from-dirs". Refused before any work, from Python and
    from the command line alike."""
    save(tmp_path / "in" / "cat" / "1.png", halves(4, 4, True))
    words = ("--labels-from-dirs: got True; expected to come with --y-output (the file the "
             "labels are written to)")
    with pytest.raises(FlagError) as error:
        image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                          height=4, width=4, labels_from_dirs=True)
    assert str(error.value) == words
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "convert", "image-folder", f"--input={tmp_path / 'in'}",
              f"--x-output={tmp_path / 'x.npy'}", "--labels-from-dirs"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"minilean data convert image-folder: error: {words}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("flag, value, message", [
    ("height", 0, r"--height: got 0; expected an integer >= 1 and <= 4096$"),
    ("crop", "edge", "--crop: got 'edge'; expected one of center, stretch"),
    ("labels_from_dirs", "false", "--labels-from-dirs: got 'false'; expected a boolean"),
    ("ext", "png", "--ext: got 'png'; expected file extensions starting with"),
    ("y_output", "y.npy", "--y-output: got 'y.npy'; expected to come with --labels-from-dirs"),
])
def test_bad_flags_are_flag_errors_before_any_work(tmp_path, flag, value, message):
    with pytest.raises(FlagError, match=message):
        DataCommands().convert.image_folder(str(tmp_path / "missing"), "x.npy", **{flag: value})


def test_missing_input_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="^--input .*missing not found; expected a folder "
                                                "of images$"):
        DataCommands().convert.image_folder(str(tmp_path / "missing"), str(tmp_path / "x.npy"))


@pytest.mark.parametrize("name, message", [
    ("afile", r"^--input .*afile is not a directory; expected a folder of images$"),
    ("afile/in", r"^--input .*afile/in cannot exist \(.*afile is a file, not a directory\); "
                 r"expected a folder of images$")])
def test_an_input_that_is_not_a_folder_says_so(tmp_path, name, message):
    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError, match=message):
        DataCommands().convert.image_folder(str(tmp_path / name), str(tmp_path / "x.npy"))


def test_commands_mount_in_the_cli_and_run_end_to_end(tmp_path):
    """The CLI's guard() accepts the data commands (with the flags they declare)."""
    save(tmp_path / "in" / "a" / "1.png", halves(6, 9, True))
    command = [sys.executable, "-m", "minilean", "data", "convert", "image-folder",
               f"--input={tmp_path / 'in'}", f"--x-output={tmp_path / 'x.npy'}", "--height=4",
               "--width=4", "--ext=.png,.jpg", "--limit=1"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert numpy.load(tmp_path / "x.npy").shape == (1, 3, 4, 4)
    bad = subprocess.run(command + ["--crop=edge"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--crop: got 'edge'" in bad.stderr


def convert(tmp_path, x_output, y_output=None, size=8, write=None):
    """Two classes of one image each, converted to ``x_output`` (and labels ``y_output``) by
    ``write``: the command (default) or ``image_folder.convert_image_folder``, whose own
    ``check_outputs`` is all that guards a Python caller's paths (the command's flags refuse
    most of these first: a name not ending in .npy, a directory)."""
    root = tmp_path / "in"
    if not root.exists():
        save(root / "a" / "1.png", halves(6, 6, True))
        save(root / "b" / "2.png", halves(6, 6, False))
    write = write or DataCommands().convert.image_folder
    write(str(root), str(x_output), None if y_output is None else str(y_output), height=size,
          width=size, labels_from_dirs=y_output is not None)


def snapshot(folder):
    """Every file under ``folder`` (hidden temporaries included) with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("x_name, y_name, message", [
    ("same.npy", "same.npy", r"--y-output: got '.*same.npy'; expected a path other than "
                             r"--x-output .*same.npy$"),
    ("imgs.json", None, r"--x-output: got '.*imgs.json'; expected a path other than .*imgs.json, "
                        r"where the manifest is written"),
    ("k.npy", "k.json", r"--y-output: got '.*k.json'; expected a path other than .*k.json, the "
                        r"manifest written beside --x-output .*k.npy$"),
])
def test_outputs_on_one_path_are_refused_before_anything_is_written(tmp_path, x_name, y_name,
                                                                    message):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FlagError, match=message):
        convert(tmp_path, out / x_name, None if y_name is None else out / y_name,
                write=image_folder.convert_image_folder)
    assert snapshot(out) == {}


def test_outputs_that_are_one_file_by_a_hard_link_are_refused(tmp_path):
    out = tmp_path / "out"
    convert(tmp_path, out / "set.npy", out / "set_y.npy")
    os.link(out / "set.npy", out / "linked.npy")
    before = snapshot(out)
    with pytest.raises(FlagError, match=r"^--y-output: got '.*linked.npy'; expected a path "
                                        r"other than --x-output .*set.npy$"):
        convert(tmp_path, out / "set.npy", out / "linked.npy",
                write=image_folder.convert_image_folder)
    assert snapshot(out) == before


def test_an_x_output_that_is_a_directory_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "x.npy").mkdir()
    with pytest.raises(FlagError, match=r"^--x-output: got '.*x.npy'; expected a file for the "
                                        r"images, not a directory$"):
        convert(tmp_path, tmp_path / "x.npy", write=image_folder.convert_image_folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", "x.npy"]


def test_an_output_name_with_no_room_for_its_temporary_is_refused_first(tmp_path):
    """Each output is first written under a name 14 bytes longer (atomic_open): a name that
    fits the file system but leaves no room for that would fail only at the end."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    y_output = tmp_path / ("y" * (limit - 13 - len(".npy")) + ".npy")
    with pytest.raises(FlagError, match=rf"^--y-output: got .*; expected names of at most "
                                        rf"{limit} bytes \(the file system's limit, "
                                        rf"{limit - 14} for the file's own\)$"):
        convert(tmp_path, tmp_path / "x.npy", y_output, write=image_folder.convert_image_folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("y_name, obstacle, message", [
    ("labels_dir", "labels_dir/", r"--y-output: got '.*labels_dir'; expected a file for the "
                                  r"labels, not a directory"),
    ("a_file/y.npy", "a_file", r"--y-output: got '.*y.npy'; expected a path inside a folder; "
                               r".*a_file is a file"),
    ("y.npy", "set.json/", r"--x-output: got '.*set.npy'; expected a path whose manifest "
                           r".*set.json is not a directory"),
])
def test_an_output_that_cannot_be_written_leaves_the_old_dataset_whole(tmp_path, y_name,
                                                                       obstacle, message):
    out = tmp_path / "out"
    if obstacle != "set.json/":
        convert(tmp_path, out / "set.npy", out / "set_y.npy", size=8)
    (out / obstacle.rstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    if obstacle.endswith("/"):
        (out / obstacle).mkdir()
    else:
        (out / obstacle).write_text("in the way")
    before = snapshot(out)
    with pytest.raises(FlagError, match=message):
        convert(tmp_path, out / "set.npy", out / y_name, size=16,
                write=image_folder.convert_image_folder)
    assert snapshot(out) == before


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt()], ids=["full-disk", "ctrl-c"])
@pytest.mark.parametrize("failing", ["set.npy", "set_y.npy", "set.json"])
def test_a_conversion_stopped_while_writing_leaves_the_old_dataset_whole(tmp_path, monkeypatch,
                                                                         capsys, failing,
                                                                         failure):
    """A full disk or Ctrl-C at any of the three files (each synced to disk in turn) leaves
    every old file as it was: never new images beside the old labels and manifest."""
    out = tmp_path / "out"
    convert(tmp_path, out / "set.npy", out / "set_y.npy", size=8)
    before, synced = snapshot(out), []

    def sync(descriptor):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
        if synced[-1].startswith(f".{failing}."):  # its temporary file
            raise failure

    monkeypatch.setattr(os, "fsync", sync)
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "convert", "image-folder", f"--input={tmp_path / 'in'}",
              f"--x-output={out / 'set.npy'}", f"--y-output={out / 'set_y.npy'}",
              "--labels-from-dirs", "--height=16", "--width=16"])
    monkeypatch.undo()
    expected = (130, "interrupted") if isinstance(failure, KeyboardInterrupt) else \
        (1, f"error: cannot write {out / failing}: No space left on device")
    assert (exit_info.value.code, capsys.readouterr().err) == (
        expected[0], f"minilean data convert image-folder: {expected[1]}\n")
    assert snapshot(out) == before


def test_ctrl_c_while_an_image_is_read_prints_one_line(tmp_path, monkeypatch, capsys):
    """Ctrl-C inside Pillow's Image.open drops the file it opened unclosed: Python's
    ResourceWarning of it (hidden by default) was passed on as Pillow's word about the image,
    "warning: IMAGE: unclosed file <_io.BufferedReader name=...>" (or naming a .pyc file of a
    module Pillow was importing), a line before "interrupted"."""
    out = tmp_path / "out"
    convert(tmp_path, out / "set.npy")
    before = snapshot(out)

    def interrupted_read(path, height, width, crop):
        open(path, "rb")  # noqa: SIM115  opened, then dropped by the interrupt unclosed
        raise KeyboardInterrupt
    monkeypatch.setattr(image_folder, "load_image", interrupted_read)
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "convert", "image-folder", f"--input={tmp_path / 'in'}",
              f"--x-output={out / 'set.npy'}"])
    assert (exit_info.value.code, capsys.readouterr().err) == (
        130, "minilean data convert image-folder: interrupted\n")
    assert snapshot(out) == before


def test_the_temporary_files_of_a_killed_conversion_go_at_the_next_and_nothing_else(tmp_path):
    """Killed while writing (SIGKILL), a conversion leaves its temporary files, which it
    cannot remove itself: the next conversion to the same files removes them, and only them."""
    out = tmp_path / "out"
    out.mkdir()
    leftovers = [out / f".{name}.abcdefgh.tmp" for name in ("set.npy", "set_y.npy", "set.json")]
    other = out / ".other.npy.abcdefgh.tmp"
    for path in leftovers + [other]:
        path.write_bytes(b"partial")
    convert(tmp_path, out / "set.npy", out / "set_y.npy")
    assert sorted(snapshot(out)) == [".other.npy.abcdefgh.tmp", "set.json", "set.npy",
                                     "set_y.npy"]


def test_the_temporary_file_of_a_killed_write_through_a_link_goes_where_it_was_made(tmp_path):
    """Through a symbolic link atomic_open writes beside the file the link points to, so a
    killed write leaves its temporary file there: that is where the next conversion looks."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "data.npy").write_bytes(b"old")
    (out / "set.npy").symlink_to(elsewhere / "data.npy")
    leftover = elsewhere / ".data.npy.abcdefgh.tmp"
    leftover.write_bytes(b"partial")
    convert(tmp_path, out / "set.npy")
    assert sorted(snapshot(elsewhere)) == ["data.npy"] and (out / "set.npy").is_symlink()


def test_missing_output_folders_are_created(tmp_path):
    convert(tmp_path, tmp_path / "new" / "deeper" / "x.npy", tmp_path / "other" / "y.npy")
    assert numpy.load(tmp_path / "new" / "deeper" / "x.npy").shape == (2, 3, 8, 8)
    assert numpy.load(tmp_path / "other" / "y.npy").tolist() == [0, 1]
    assert json.loads((tmp_path / "new" / "deeper" / "x.json").read_text())["count"] == 2


def write_png_header(path, width, height):
    """A valid PNG header claiming width x height RGB pixels, with next to no pixel data."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# 900 M pixels is over twice Pillow's limit (89478485), where Pillow refuses; 100 M is over the
# limit but under twice it, where Pillow only warns (twice, on stderr) and would decode it.
@pytest.mark.parametrize("side", [30000, 10000])
def test_a_decompression_bomb_is_skipped_with_a_warning(tmp_path, capsys, side):
    write_png_header(tmp_path / "in" / "bomb.png", side, side)
    save(tmp_path / "in" / "fine.png", halves(6, 6, True))
    DataCommands().convert.image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                        height=4, width=4)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: skipping unreadable image {tmp_path / 'in' / 'bomb.png'}: ")
    assert f"{side * side} pixels" in err and err.count("\n") == 1
    assert numpy.load(tmp_path / "x.npy").shape == (1, 3, 4, 4)
    assert json.loads((tmp_path / "x.json").read_text())["skipped"] == [
        str(tmp_path / "in" / "bomb.png")]


def write_corrupt_exif_jpeg(path):
    """A JPEG whose EXIF block claims 5 entries and holds 1: Pillow warns "Corrupt EXIF data"."""
    import struct
    save(path, halves(4, 4, True))
    jpeg = path.read_bytes()
    exif = (b"Exif\0\0II*\0" + struct.pack("<IH", 8, 5)
            + struct.pack("<HHII", 0x0112, 3, 1, 6)[:10])
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:])


@pytest.mark.parametrize("action", ["ignore", "error"])
def test_pillows_warnings_are_passed_on_whatever_the_callers_warning_filters(tmp_path, action):
    """A Python caller may ignore warnings or make them errors: Pillow's are still passed on,
    one line each, and the handler that collects Pillow's log goes when the call ends."""
    photo = tmp_path / "in" / "photo.jpg"
    write_corrupt_exif_jpeg(photo)
    handlers, lines = list(logging.getLogger("PIL").handlers), []
    with warnings.catch_warnings():
        warnings.simplefilter(action)
        image_folder.convert_image_folder(str(tmp_path / "in"), str(tmp_path / "x.npy"),
                                          height=4, width=4, warn=lines.append)
    assert lines == [f"warning: {photo}: Corrupt EXIF data. Expecting to read 12 bytes but "
                     f"only got 10."]
    assert logging.getLogger("PIL").handlers == handlers


def test_the_converters_defaults_are_the_commands():
    """A Python caller of convert_image_folder gets what `data convert image-folder` does."""
    defaults = {name: parameter.default for name, parameter
                in inspect.signature(image_folder.convert_image_folder).parameters.items()}
    flags = {flag.name: flag.default for flag in ConvertCommands.image_folder.flags}
    for name in ("y_output", "height", "width", "labels_from_dirs", "limit", "crop"):
        assert defaults[name] == flags[name], name
    assert ",".join(defaults["extensions"]) == flags["ext"]


def test_what_pillow_says_reaches_stderr_as_one_line_naming_the_file(tmp_path):
    """Python would print each of Pillow's warnings as two lines (the second a line of Pillow's
    source), and its log messages, all without the file's name."""
    import struct
    (tmp_path / "in").mkdir()
    # A palette PNG with per-entry alpha (a tRNS of bytes): Pillow warns when such an image is
    # converted straight to RGB; going through RGBA gives the same colours without a warning.
    grey = numpy.arange(16, dtype=numpy.uint8).reshape(4, 4) * 16
    palette = Image.fromarray(grey).convert("P")
    palette.info["transparency"] = bytes(range(256))
    palette.save(tmp_path / "in" / "a_palette.png")
    write_corrupt_exif_jpeg(tmp_path / "in" / "b_photo.jpg")
    # A TIFF claiming 5000 samples per pixel: Pillow logs an error (Python prints it unnamed,
    # as no logging is set up) and then fails to identify the file.
    Image.new("RGB", (4, 4)).save(tmp_path / "in" / "c_scan.tiff")
    tiff = bytearray((tmp_path / "in" / "c_scan.tiff").read_bytes())
    ifd = struct.unpack("<I", tiff[4:8])[0]
    entries = [ifd + 2 + 12 * index for index in range(struct.unpack("<H", tiff[ifd:ifd + 2])[0])]
    samples = next(entry for entry in entries if tiff[entry:entry + 2] == struct.pack("<H", 277))
    tiff[samples + 8:samples + 10] = struct.pack("<H", 5000)
    (tmp_path / "in" / "c_scan.tiff").write_bytes(tiff)
    result = subprocess.run(
        [sys.executable, "-m", "minilean", "data", "convert", "image-folder",
         f"--input={tmp_path / 'in'}", f"--x-output={tmp_path / 'x.npy'}", "--height=4",
         "--width=4", "--ext=.png,.jpg,.tiff"], capture_output=True, text=True)
    assert result.returncode == 0
    photo, scan = tmp_path / "in" / "b_photo.jpg", tmp_path / "in" / "c_scan.tiff"
    assert result.stderr.splitlines() == [
        f"warning: {photo}: Corrupt EXIF data. Expecting to read 12 bytes but only got 10.",
        f"warning: skipping unreadable image {scan}: cannot identify image file '{scan}'",
        f"warning: {scan}: More samples per pixel than can be decoded: 5000"]
    assert numpy.load(tmp_path / "x.npy")[0, :, 0].tolist() == [grey[0].tolist()] * 3
