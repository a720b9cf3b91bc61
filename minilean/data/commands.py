"""The ``data`` command group (``python -m minilean data ...``), for minilean/cli.py to mount.

python-fire turns ``DataCommands`` into subcommands: ``download`` and ``convert image-folder``
(fire's help lists it by the method's name, ``image_folder``, and takes both spellings).
Each declares its flags (``flag_checked``), so the CLI's guard reads the user's text with the
same ``Flag``s that check a Python caller's values, and every flag is checked before any work
starts; bad flags raise ``FlagError``, other failures ``ValueError``, ``FileNotFoundError`` or
``OSError`` with one-line messages for the CLI to print.
"""
from pathlib import Path

from minilean.data import cifar10 as cifar10_module
from minilean.data import image_folder
from minilean.data.paths import output_file, output_folder
from minilean.errors import flag_error
from minilean.flags import Flag, flag_checked


def _optional_count(name, what, default_note="all"):
    return Flag(name, None, f"keep at most this many {what} (at least 1; default: "
                f"{default_note})", kind=int, low=1)


class ConvertCommands:
    """Convert external data into the arrays minilean reads."""

    @flag_checked(
        Flag("input", None, "folder to read (searched recursively, sorted order)", kind=Path,
             required=True),
        Flag("x_output", None, "where to write the images, uint8 (N, 3, height, width), as "
             ".npy", kind=Path, required=True, check=output_file(".npy")),
        Flag("y_output", None, "where to write int64 labels, as .npy (needs "
             "--labels-from-dirs)", kind=Path, check=output_file(".npy")),
        Flag("height", 64, "output height in pixels (TorchLean's converter: 32)", low=1,
             high=4096),
        Flag("width", 64, "output width in pixels (TorchLean's converter: 32)", low=1,
             high=4096),
        Flag("labels_from_dirs", False, "label each image by its top-level sub-directory "
             "(sorted names; needs --y-output)"),
        _optional_count("limit", "images"),
        Flag("ext", ",".join(image_folder.DEFAULT_EXTENSIONS), "extensions to read, "
             "comma-separated, e.g. .png,.jpg", check=image_folder.extensions_problem),
        Flag("crop", "center", '"center" (keep the aspect ratio, cut the centre) or "stretch" '
             "(ignore it, as TorchLean's converter does)",
             choices=image_folder.CROPS))
    def image_folder(self, input, x_output, y_output=None, height=64, width=64,
                     labels_from_dirs=False, limit=None,
                     ext=",".join(image_folder.DEFAULT_EXTENSIONS), crop="center"):
        """Convert a folder of images into a uint8 NCHW .npy array (and labels, manifest)."""
        manifest = image_folder.convert_image_folder(
            input, x_output, y_output, height, width, labels_from_dirs, limit, ext, crop)
        print(f"wrote {x_output}: {manifest['count']} images {tuple(manifest['shape'])} uint8"
              + (f", labels {y_output}" if y_output else "")
              + (f"; skipped {len(manifest['skipped'])} unreadable" if manifest["skipped"] else ""))


class DataCommands:
    """Download and convert datasets."""

    def __init__(self):
        self.convert = ConvertCommands()

    @flag_checked(
        Flag("cifar10", False, "download CIFAR-10 (the only dataset this command fetches)"),
        Flag("root", "data/real", "folder for the archive and the arrays", kind=Path,
             check=output_folder("the archive and the arrays")),
        _optional_count("limit_train", "training images", "all; TorchLean's download keeps 200"),
        _optional_count("limit_test", "test images", "all; TorchLean's download keeps 100"))
    def download(self, cifar10=False, root="data/real", limit_train=None, limit_test=None):
        """Download CIFAR-10, verify its MD5, and write uint8 NCHW arrays under ROOT/cifar10/."""
        if not cifar10:
            raise flag_error("cifar10", cifar10, "--cifar10 (the dataset to download)")
        cifar10_module.prepare(root, limit_train, limit_test)
