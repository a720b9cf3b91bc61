"""Data in and out: the built-in datasets, CIFAR-10 and image folders, the Loader, image files
and grids, run-directory logs and the progress display (see each module's docstring)."""
from minilean.data.arrays import DATASETS, Dataset, load_dataset
from minilean.data.builtin import (RING8_MODES, RING8_STD, SHAPE_CLASSES, make_ring8,
                                   make_shapes, nearest_ring8_mode)
from minilean.data.images import make_grid, read_pnm, save_grid, save_image, to_uint8, write_pnm
from minilean.data.loader import Batch, Loader
from minilean.data.progress import Progress
from minilean.data.runlog import RunDirectory, read_metrics
