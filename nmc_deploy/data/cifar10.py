"""CIFAR-10 from the user's own copy of the python batches; nothing is downloaded.

``cifar-10-python.tar.gz`` extracts to ``cifar-10-batches-py/`` holding ``data_batch_1`` ..
``data_batch_5`` (training, 10 000 images each) and ``test_batch``. Each batch is a Python 2
``cPickle`` (protocol 2) of a dict with ``b'data'``, a ``(10000, 3072)`` uint8 array whose rows
are an image's red, green and blue 32x32 planes in turn (channel-major, row-major), and
``b'labels'``, a list of ints ``0..9``.

Security: a pickle can call any importable function while it loads, so the batches are read
by :class:`BatchUnpickler`, which resolves only the three numpy globals a pickled ndarray
refers to and refuses every other global before anything is called.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.core.multiarray import _reconstruct  # what pickled ndarrays call (numpy < 2)

from ..errors import DatasetError
from . import ImageDataset, register_dataset

__all__ = ["BATCHES_DIR", "TRAIN_BATCHES", "TEST_BATCH", "ALLOWED_GLOBALS", "BatchUnpickler",
           "load_cifar10", "read_batch"]

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)  # channels (R, G, B), height, width
PIXELS = int(np.prod(IMAGE_SHAPE))  # 3072 values per row of b'data'
LEVELS = 255  # largest intensity
NUM_CLASSES = 10
#: The only globals a batch may name: (module, name) -> object. A pickled ndarray needs
#: exactly these; anything else (os.system, builtins.eval, other numpy functions) is refused.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_WHAT_TO_POINT_AT = (f"the extracted {BATCHES_DIR} directory (from cifar-10-python.tar.gz) "
                     "or its parent")


class BatchUnpickler(pickle.Unpickler):
    """Unpickle a CIFAR-10 batch, resolving only :data:`ALLOWED_GLOBALS`.

    Strings pickled by Python 2 are returned as ``bytes`` (``encoding="bytes"``), as the
    CIFAR-10 page prescribes, so the dict keys are ``b'data'`` and ``b'labels'``.
    """

    def __init__(self, file: BinaryIO, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path  # named in the error message

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            pass
        where = f"{module}.{name}"
        if len(where) > 80:
            where = where[:77] + "..."
        raise DatasetError(
            f"{self._path}: refusing to unpickle global {where!r} (a CIFAR-10 batch needs only "
            "numpy.ndarray, numpy.dtype and numpy.core.multiarray._reconstruct); "
            "use the files from cifar-10-python.tar.gz"
        )


@register_dataset("cifar10")
def load_cifar10(path: Path | None = None) -> ImageDataset:
    """Load CIFAR-10 from the python batches at ``path``.

    Parameters
    ----------
    path : Path or None
        The ``cifar-10-batches-py`` directory, or a directory containing it.

    Returns
    -------
    ImageDataset
        ``x`` of shape ``(n, 3, 32, 32)`` (RGB), ``int64`` in ``0..255``; ``levels=255``,
        ``num_classes=10``; train = ``data_batch_1..5`` in order, test = ``test_batch``.

    Raises
    ------
    DatasetError
        If ``path`` is None or missing, a batch file is absent or malformed, or a batch
        names any global outside :data:`ALLOWED_GLOBALS`.
    """
    if path is None:
        raise DatasetError(f"dataset 'cifar10': needs --data-path pointing to {_WHAT_TO_POINT_AT}; "
                           "nothing is downloaded")
    directory = _find_batches_dir(Path(path))
    train = [read_batch(directory / name) for name in TRAIN_BATCHES]
    x_test, y_test = read_batch(directory / TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train], dtype=np.int64)
    y_train = np.concatenate([y for _, y in train])
    return ImageDataset("cifar10", x_train.reshape(-1, *IMAGE_SHAPE), y_train,
                        x_test.astype(np.int64).reshape(-1, *IMAGE_SHAPE), y_test,
                        levels=LEVELS, num_classes=NUM_CLASSES)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file with :class:`BatchUnpickler` and check its contents.

    Returns
    -------
    data : numpy.ndarray
        ``(n, 3072)`` uint8, as stored.
    labels : numpy.ndarray
        ``(n,)`` int64 in ``0..9``.

    Raises
    ------
    DatasetError
        If the file is missing, unreadable, names a refused global, or does not hold a
        dict with a ``(n, 3072)`` uint8 ``b'data'`` and ``n`` integer ``b'labels'`` in 0..9.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: missing; CIFAR-10 needs {', '.join(TRAIN_BATCHES)} and "
                           f"{TEST_BATCH} from cifar-10-python.tar.gz in one directory")
    try:
        with path.open("rb") as f:
            batch = BatchUnpickler(f, path).load()
    except DatasetError:
        raise
    except Exception as e:  # a damaged pickle can fail with almost any exception type
        raise DatasetError(f"{path}: not a readable CIFAR-10 batch ({_one_line(e)}); "
                           "re-extract cifar-10-python.tar.gz") from e
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: holds a {type(batch).__name__}, expected a dict with "
                           "b'data' and b'labels'; check that this is a CIFAR-10 python batch")
    data, labels = _entry(path, batch, "data"), _entry(path, batch, "labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == PIXELS):
        got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DatasetError(f"{path}: b'data' is a {got}, expected a uint8 array of shape "
                           f"(n, {PIXELS}); check that this is a CIFAR-10 python batch")
    try:
        labels = np.asarray(labels)
    except Exception as e:  # ragged or exotic content
        raise DatasetError(f"{path}: b'labels' is not a list of ints ({_one_line(e)}); "
                           "check that this is a CIFAR-10 python batch") from e
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise DatasetError(f"{path}: b'labels' has shape {labels.shape} and dtype {labels.dtype}, "
                           "expected a list of ints; check that this is a CIFAR-10 python batch")
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(labels)} labels for {len(data)} images; "
                           "re-extract cifar-10-python.tar.gz")
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        raise DatasetError(f"{path}: b'labels' hold {labels[bad][0]} (first of {int(bad.sum())} "
                           f"outside 0..{NUM_CLASSES - 1}); check that this is CIFAR-10, "
                           "not CIFAR-100")
    return data, labels.astype(np.int64)


def _find_batches_dir(path: Path) -> Path:
    """``path`` if it holds any batch file, else ``path/cifar-10-batches-py``."""
    if not path.exists():
        raise DatasetError(f"{path}: does not exist; "
                           f"pass --data-path pointing to {_WHAT_TO_POINT_AT}")
    if path.is_file():
        raise DatasetError(f"{path}: is a file, expected a directory; extract "
                           f"cifar-10-python.tar.gz and pass {_WHAT_TO_POINT_AT}")
    if any((path / name).exists() for name in (*TRAIN_BATCHES, TEST_BATCH)):
        return path
    if (path / BATCHES_DIR).is_dir():
        return path / BATCHES_DIR
    raise DatasetError(f"{path}: no CIFAR-10 batches ({TRAIN_BATCHES[0]}..5, {TEST_BATCH}) here "
                       f"or in {BATCHES_DIR}/; pass --data-path pointing to {_WHAT_TO_POINT_AT}")


def _entry(path: Path, batch: dict, key: str):
    """``batch[b'key']`` (Python 2 pickles), or ``batch['key']`` (Python 3 pickles)."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DatasetError(f"{path}: no b'{key}' entry (keys: {_keys(batch)}); "
                       "check that this is a CIFAR-10 python batch")


def _keys(batch: dict) -> str:
    keys = ", ".join(repr(k) for k in list(batch)[:6])
    return " ".join(keys.split())[:120]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
