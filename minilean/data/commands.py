"""The ``data`` command group (``python -m minilean data ...``), for minilean/cli.py to mount.

python-fire turns ``DataCommands`` into subcommands: ``download`` and ``convert image-folder``.
Every flag is checked before any work starts (fire passes ``--x=false`` as a string and runs a
typo'd command with defaults); bad flags raise ``FlagError``, other failures ``ValueError``,
``FileNotFoundError`` or ``OSError`` with one-line messages for the CLI to print.
"""
from minilean.data import cifar10 as cifar10_module
from minilean.data import flags, image_folder


def _extensions(ext):
    """``--ext`` as a tuple of lower-case extensions: ".png", ".png,.jpg" or a list of them."""
    values = ext.split(",") if isinstance(ext, str) else ext
    if not isinstance(values, (list, tuple)) or not values or not all(
            isinstance(value, str) and value.startswith(".") and len(value) > 1
            for value in values):
        raise flags.flag_error("ext", ext, 'file extensions starting with ".", e.g. .png,.jpg')
    return tuple(value.lower() for value in values)


class ConvertCommands:
    """Convert external data into the arrays minilean reads."""

    def image_folder(self, input: str, x_output: str, y_output: str = None,
                     height=64, width=64, labels_from_dirs=False, limit: int = None,
                     ext=",".join(image_folder.DEFAULT_EXTENSIONS), crop="center"):
        """Convert a folder of images into a uint8 NCHW .npy array (and labels, manifest).

        Args:
            input: folder to read (searched recursively, sorted order)
            x_output: where to write the images, uint8 (N, 3, height, width)
            y_output: where to write int64 labels (needs --labels-from-dirs)
            height: output height in pixels, 1 to 4096
            width: output width in pixels, 1 to 4096
            labels_from_dirs: label each image by its top-level sub-directory (sorted names)
            limit: keep at most this many images (at least 1)
            ext: extensions to read, comma-separated, e.g. .png,.jpg
            crop: "center" (keep the aspect ratio, cut the centre) or "stretch"
        """
        flags.check_path("input", input)
        flags.check_path("x_output", x_output)
        flags.check_path("y_output", y_output, optional=True)
        flags.check_int("height", height, minimum=1, maximum=4096)
        flags.check_int("width", width, minimum=1, maximum=4096)
        flags.check_bool("labels_from_dirs", labels_from_dirs)
        flags.check_int("limit", limit, minimum=1, optional=True)
        extensions = _extensions(ext)
        flags.check_choice("crop", crop, image_folder.CROPS)
        if y_output is not None and not labels_from_dirs:
            raise flags.flag_error("y_output", y_output, "to come with --labels-from-dirs")
        manifest = image_folder.convert_image_folder(
            input, x_output, y_output, height, width, labels_from_dirs, limit, extensions, crop)
        print(f"wrote {x_output}: {manifest['count']} images {tuple(manifest['shape'])} uint8"
              + (f", labels {y_output}" if y_output else "")
              + (f"; skipped {len(manifest['skipped'])} unreadable" if manifest["skipped"] else ""))


class DataCommands:
    """Download and convert datasets."""

    def __init__(self):
        self.convert = ConvertCommands()

    def download(self, cifar10=False, root="data/real", limit_train: int = None,
                 limit_test: int = None):
        """Download CIFAR-10, verify its MD5, and write uint8 NCHW arrays under ROOT/cifar10/.

        Args:
            cifar10: download CIFAR-10 (the only dataset this command fetches)
            root: folder for the archive and the arrays
            limit_train: keep the first N training images (N at least 1)
            limit_test: keep the first N test images (N at least 1)
        """
        flags.check_bool("cifar10", cifar10)
        flags.check_path("root", root)
        flags.check_int("limit_train", limit_train, minimum=1, optional=True)
        flags.check_int("limit_test", limit_test, minimum=1, optional=True)
        if not cifar10:
            raise flags.flag_error("cifar10", cifar10, "--cifar10 (the dataset to download)")
        cifar10_module.prepare(root, limit_train, limit_test)
