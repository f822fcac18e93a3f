"""MNIST from the user's own files; nothing is downloaded.

Two layouts are read, both with the standard split (60 000 train / 10 000 test):

- the four idx files of the original distribution, each optionally gzipped, in one
  directory: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (``.gz``);
- Keras' ``mnist.npz`` (arrays ``x_train, y_train, x_test, y_test``), either in that
  directory or given directly as the path.

An idx file is a big-endian header followed by the raw values::

    magic   = 0x00 0x00 <type code> <ndim>     # 0x08 = unsigned byte
    dims    = ndim x uint32                     # images: count, rows, cols; labels: count
    values  = prod(dims) bytes, row-major

Parsing is vectorised (one ``numpy.frombuffer`` per file), so the full 60 000 training
images load in well under a second plus the ``int64`` conversion.
"""
from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..checks import input_file
from ..errors import DatasetError
from . import ImageDataset, register_dataset

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "IDX_FILES", "NPZ_NAME", "load_mnist",
           "read_idx"]

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
IMAGE_SIZE = 28  # pixels per side
LEVELS = 255  # largest intensity
NUM_CLASSES = 10
NPZ_NAME = "mnist.npz"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: (images, labels) file names per split, without the optional ``.gz``.
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
                   0x0D: "float32", 0x0E: "float64"}
_WHAT_TO_POINT_AT = ("a directory with the four MNIST idx files (train-images-idx3-ubyte, ..., "
                     "each optionally .gz) or Keras' mnist.npz")


@register_dataset("mnist")
def load_mnist(path: Path | None = None) -> ImageDataset:
    """Load MNIST from the idx files or ``mnist.npz`` found at ``path``.

    Parameters
    ----------
    path : Path or None
        A directory holding the four idx files (each plain or ``.gz``; a plain file wins
        over its ``.gz``) or ``mnist.npz``, or the ``.npz`` file itself. When a directory
        holds both complete idx files and ``mnist.npz``, the idx files are read.

    Returns
    -------
    ImageDataset
        ``x`` of shape ``(n, 1, 28, 28)``, ``int64`` in ``0..255``; ``levels=255``,
        ``num_classes=10``; the standard train / t10k split in file order.

    Raises
    ------
    DatasetError
        If ``path`` is None or missing, or a file is absent, truncated or not in the
        expected format (magic number, dimensions, dtype, image/label counts, label range).
    """
    if path is None:
        raise DatasetError(
            f"dataset 'mnist': needs --data-path pointing to {_WHAT_TO_POINT_AT}; "
            "nothing is downloaded"
        )
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: does not exist; "
                           f"pass --data-path pointing to {_WHAT_TO_POINT_AT}")
    if path.is_file():
        if path.suffix != ".npz":
            raise DatasetError(
                f"{path}: is neither a directory nor an .npz file; "
                f"pass --data-path pointing to {_WHAT_TO_POINT_AT}"
            )
        return _load_npz(path)

    found = {name: _find_idx(path, name) for pair in IDX_FILES.values() for name in pair}
    missing = [name for name, file in found.items() if file is None]
    if not missing:
        splits = [array for images, labels in IDX_FILES.values()
                  for array in _read_idx_split(found[images], found[labels])]
        return ImageDataset("mnist", *splits, levels=LEVELS, num_classes=NUM_CLASSES)
    if (path / NPZ_NAME).is_file():
        return _load_npz(path / NPZ_NAME)
    if len(missing) < len(found):
        raise DatasetError(
            f"{path / missing[0]}: missing (also as .gz); MNIST needs all four idx files "
            f"({', '.join(found)}) in one directory"
        )
    raise DatasetError(
        f"{path}: no MNIST files here; pass --data-path pointing to {_WHAT_TO_POINT_AT}"
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an idx file of unsigned bytes (plain, or gzipped when named ``*.gz``).

    Parameters
    ----------
    path : Path
        The idx file.
    magic : int
        The magic number the file must carry, e.g. ``IDX_IMAGES_MAGIC``; it fixes the
        value type (unsigned byte) and the number of dimensions.

    Returns
    -------
    numpy.ndarray
        A read-only ``uint8`` view of the file's values with the header's dimensions.

    Raises
    ------
    DatasetError
        If the file cannot be read or decompressed, carries another magic number, or holds
        fewer or more bytes than its header promises.
    """
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated ({len(raw)} bytes, no idx header); "
                           "re-extract or replace the file")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DatasetError(
            f"{path}: magic number 0x{got:08X} ({_describe_magic(got)}), expected 0x{magic:08X} "
            f"({_describe_magic(magic)}); check that this is the right MNIST file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated ({len(raw)} bytes, header needs {header}); "
                           "re-extract or replace the file")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims, dtype=np.int64))
    body = len(raw) - header
    if body != size:
        problem = "truncated" if body < size else "has trailing bytes"
        raise DatasetError(
            f"{path}: {problem} (dimensions {dims} need {size} bytes of data, file has {body}); "
            "re-extract or replace the file"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(dims)


def _find_idx(directory: Path, name: str) -> Path | None:
    """``directory/name``, else ``directory/name.gz``, else None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    input_file(path, "re-extract or replace the file", error=DatasetError, what="data file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read ({_one_line(e)}); "
                           "re-extract or replace the file") from e


def _describe_magic(magic: int) -> str:
    if magic >> 16 != 0:
        return "not an idx file"
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    type_name = _IDX_TYPE_NAMES.get(type_code, f"unknown type 0x{type_code:02X}")
    return f"{type_name}, {ndim} dimension{'s' if ndim != 1 else ''}"


def _read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 1, 28, 28)`` and labels ``(n,)``, both int64, of one split."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    _check_images(images_path, images, "images")
    _check_labels(labels_path, labels, len(images), images_path.name)
    return _to_dataset_arrays(images, labels)


def _load_npz(path: Path) -> ImageDataset:
    """Keras' ``mnist.npz``: ``x_*`` of shape ``(n, 28, 28)`` uint8, ``y_*`` of shape ``(n,)``."""
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            absent = [key for key in NPZ_KEYS if key not in npz.files]
            if absent:
                raise DatasetError(
                    f"{path}: missing array(s) {', '.join(absent)}; expected Keras' mnist.npz "
                    f"with {', '.join(NPZ_KEYS)}"
                )
            for key in NPZ_KEYS:
                arrays[key] = npz[key]
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # ValueError also covers object arrays, which allow_pickle=False refuses.
        raise DatasetError(f"{path}: not a readable .npz file ({_one_line(e)}); "
                           "replace it with Keras' mnist.npz") from e
    splits = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        _check_images(path, x, f"x_{split}")
        _check_labels(path, y, len(x), f"x_{split}", what=f"y_{split}")
        splits.extend(_to_dataset_arrays(x, y))
    return ImageDataset("mnist", *splits, levels=LEVELS, num_classes=NUM_CLASSES)


def _check_images(path: Path, x: np.ndarray, what: str) -> None:
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(f"{path}: {what} have shape {x.shape}, expected (n, 28, 28); "
                           "check that this is MNIST")
    if len(x) == 0:
        raise DatasetError(f"{path}: {what} hold no images; replace the file")
    if x.dtype.kind not in "ui":
        raise DatasetError(f"{path}: {what} have dtype {x.dtype}, expected integers 0..255 "
                           "(uint8); check that this is MNIST")
    if x.dtype != np.uint8 and (x.min() < 0 or x.max() > LEVELS):
        raise DatasetError(f"{path}: {what} hold values {x.min()}..{x.max()}, expected 0..255; "
                           "check that this is MNIST")


def _check_labels(path: Path, y: np.ndarray, n_images: int, images_name: str,
                  what: str = "labels") -> None:
    if y.ndim != 1 or y.dtype.kind not in "ui":
        raise DatasetError(f"{path}: {what} have shape {y.shape} and dtype {y.dtype}, expected a "
                           "1-d integer array; check that this is MNIST")
    if len(y) != n_images:
        raise DatasetError(f"{path}: {len(y)} {what} for {n_images} images in {images_name}; "
                           "images and labels must come from the same split")
    bad = (y < 0) | (y >= NUM_CLASSES)
    if bad.any():
        raise DatasetError(f"{path}: {what} hold {y[bad][0]} (first of {int(bad.sum())} outside "
                           f"0..{NUM_CLASSES - 1}); check that this is MNIST")


def _to_dataset_arrays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.reshape(len(x), 1, IMAGE_SIZE, IMAGE_SIZE).astype(np.int64), y.astype(np.int64)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
