"""MNIST and CIFAR-10 loaders: tiny files in the real formats, exact round trips, and a
one-line DatasetError for every way a user's files can be wrong (including hostile pickles)."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from nmc_deploy.data import dataset_names, load_dataset
from nmc_deploy.data.cifar10 import BatchUnpickler, read_batch
from nmc_deploy.data.mnist import IDX_FILES, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from nmc_deploy.errors import DatasetError

N_TRAIN, N_TEST = 20, 10


def assert_one_line_error(excinfo, path_or_name):
    """The message is one line, ``<where>: <problem>; <what to do>``."""
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path_or_name}: "), msg
    assert "; " in msg, msg


# --- MNIST ---------------------------------------------------------------------------------

def write_idx(path, arr, magic=None):
    """Write ``arr`` (uint8) as an idx file: big-endian magic, dims, then the raw bytes."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    magic = (0x0800 | arr.ndim) if magic is None else magic
    blob = struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.tobytes()
    if path.suffix == ".gz":
        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return path


@pytest.fixture
def mnist_arrays(rng):
    x_train = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    x_train[0, 0, 0], x_train[0, 0, 1] = 0, 255  # both ends of the range
    x_test = rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8)
    y_train = np.arange(N_TRAIN, dtype=np.uint8) % 10
    y_test = rng.permutation(N_TEST).astype(np.uint8)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_mnist_idx(directory, arrays, gz=(False, False, False, False)):
    """The four standard idx files; ``gz[i]`` compresses file i (train images, labels, test ...)."""
    names = [*IDX_FILES["train"], *IDX_FILES["test"]]
    keys = ["x_train", "y_train", "x_test", "y_test"]
    paths = {}
    for name, key, zipped in zip(names, keys, gz):
        paths[key] = write_idx(directory / (name + ".gz" * zipped), arrays[key])
    return paths


def assert_mnist_matches(ds, arrays):
    assert ds.name == "mnist"
    assert ds.levels == 255 and ds.num_classes == 10
    assert ds.x_train.shape == (N_TRAIN, 1, 28, 28) and ds.x_test.shape == (N_TEST, 1, 28, 28)
    assert ds.image_shape == (1, 28, 28)
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert arr.dtype == np.int64
        assert not arr.flags.writeable
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["x_train"])
    np.testing.assert_array_equal(ds.x_test[:, 0], arrays["x_test"])
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.x_train.min() == 0 and ds.x_train.max() == 255


def test_loaders_are_registered():
    assert {"digits", "mnist", "cifar10"} <= set(dataset_names())


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4, (True, False, False, True)],
                         ids=["plain", "gzip", "mixed"])
def test_mnist_idx_round_trip(tmp_path, mnist_arrays, gz):
    write_mnist_idx(tmp_path, mnist_arrays, gz)
    assert_mnist_matches(load_dataset("mnist", tmp_path), mnist_arrays)


def test_mnist_idx_header_is_standard(tmp_path, mnist_arrays):
    # Pin the writer against the published header: 0x00000803, then n, 28, 28 big-endian.
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    head = paths["x_train"].read_bytes()[:16]
    n = N_TRAIN.to_bytes(4, "big")
    assert head == bytes.fromhex("00000803") + n + bytes.fromhex("0000001c0000001c")
    assert paths["y_train"].read_bytes()[:8] == bytes.fromhex("00000801") + n
    assert read_idx(paths["x_train"], IDX_IMAGES_MAGIC).shape == (N_TRAIN, 28, 28)
    assert read_idx(paths["y_train"], IDX_LABELS_MAGIC).shape == (N_TRAIN,)


@pytest.mark.parametrize("direct", [False, True], ids=["directory", "npz-file"])
def test_mnist_npz_round_trip(tmp_path, mnist_arrays, direct):
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)  # Keras layout: x (n, 28, 28) uint8
    ds = load_dataset("mnist", tmp_path / "mnist.npz" if direct else tmp_path)
    assert_mnist_matches(ds, mnist_arrays)


def test_mnist_idx_files_win_over_npz(tmp_path, mnist_arrays):
    write_mnist_idx(tmp_path, mnist_arrays)
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros(1))  # would fail if it were read
    assert_mnist_matches(load_dataset("mnist", tmp_path), mnist_arrays)


def test_mnist_without_path_says_what_to_pass():
    with pytest.raises(DatasetError, match="needs --data-path") as excinfo:
        load_dataset("mnist")
    assert_one_line_error(excinfo, "dataset 'mnist'")


def test_mnist_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="does not exist") as excinfo:
        load_dataset("mnist", missing)
    assert_one_line_error(excinfo, missing)


def test_mnist_empty_directory(tmp_path):
    with pytest.raises(DatasetError, match="no MNIST files") as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(excinfo, tmp_path)


def test_mnist_one_idx_file_missing(tmp_path, mnist_arrays):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    paths["y_test"].unlink()
    with pytest.raises(DatasetError, match="missing") as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(excinfo, paths["y_test"])


def test_mnist_path_is_another_file(tmp_path):
    other = tmp_path / "mnist.tar"
    other.write_bytes(b"x")
    with pytest.raises(DatasetError, match="neither a directory nor an .npz") as excinfo:
        load_dataset("mnist", other)
    assert_one_line_error(excinfo, other)


@pytest.mark.parametrize("magic, described", [
    (IDX_LABELS_MAGIC, r"0x00000801 \(unsigned byte, 1 dimension\)"),  # a labels file
    (0x00000D03, r"0x00000D03 \(float32, 3 dimensions\)"),  # wrong value type
    (0x1F8B0800, r"0x1F8B0800 \(not an idx file\)"),  # e.g. gzip data without .gz suffix
])
def test_mnist_wrong_magic_number(tmp_path, mnist_arrays, magic, described):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    write_idx(paths["x_train"], mnist_arrays["x_train"], magic=magic)
    with pytest.raises(DatasetError, match=described + r", expected 0x00000803") as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(excinfo, paths["x_train"])


def test_mnist_gzip_without_gz_suffix_is_reported_as_not_idx(tmp_path, mnist_arrays):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    paths["x_test"].write_bytes(gzip.compress(paths["x_test"].read_bytes()))
    with pytest.raises(DatasetError, match="not an idx file"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("keep_bytes, match", [
    (-1, r"truncated \(dimensions \(20, 28, 28\) need 15680 bytes of data, file has 15679\)"),
    (10, r"truncated \(10 bytes, header needs 16\)"),
    (2, r"truncated \(2 bytes, no idx header\)"),
])
def test_mnist_truncated_idx(tmp_path, mnist_arrays, keep_bytes, match):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    blob = paths["x_train"].read_bytes()
    paths["x_train"].write_bytes(blob[:keep_bytes])
    with pytest.raises(DatasetError, match=match) as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(excinfo, paths["x_train"])


def test_mnist_trailing_bytes(tmp_path, mnist_arrays):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    paths["y_test"].write_bytes(paths["y_test"].read_bytes() + b"\0")
    with pytest.raises(DatasetError, match="has trailing bytes"):
        load_dataset("mnist", tmp_path)


def test_mnist_truncated_gzip(tmp_path, mnist_arrays):
    paths = write_mnist_idx(tmp_path, mnist_arrays, gz=(True,) * 4)
    blob = paths["x_train"].read_bytes()
    paths["x_train"].write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="cannot read") as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(excinfo, paths["x_train"])


def test_mnist_label_count_differs_from_image_count(tmp_path, mnist_arrays):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    write_idx(paths["y_train"], mnist_arrays["y_train"][:-1])
    match = "19 labels for 20 images in train-images-idx3-ubyte"
    with pytest.raises(DatasetError, match=match) as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(excinfo, paths["y_train"])


def test_mnist_wrong_image_size(tmp_path, mnist_arrays):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    write_idx(paths["x_test"], mnist_arrays["x_test"][:, :27, :27])
    with pytest.raises(DatasetError, match=r"shape \(10, 27, 27\), expected \(n, 28, 28\)"):
        load_dataset("mnist", tmp_path)


def test_mnist_label_out_of_range(tmp_path, mnist_arrays):
    paths = write_mnist_idx(tmp_path, mnist_arrays)
    y = mnist_arrays["y_test"].copy()
    y[3] = 10
    write_idx(paths["y_test"], y)
    with pytest.raises(DatasetError, match=r"hold 10 \(first of 1 outside 0..9\)"):
        load_dataset("mnist", tmp_path)


def test_mnist_npz_missing_array(tmp_path, mnist_arrays):
    del mnist_arrays["y_test"]
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)
    with pytest.raises(DatasetError, match="missing array.s. y_test") as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(excinfo, tmp_path / "mnist.npz")


def test_mnist_npz_float_images_are_refused(tmp_path, mnist_arrays):
    mnist_arrays["x_train"] = mnist_arrays["x_train"] / 255.0
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)
    with pytest.raises(DatasetError, match="x_train have dtype float64, expected integers"):
        load_dataset("mnist", tmp_path)


def test_mnist_npz_wider_integers_are_range_checked(tmp_path, mnist_arrays):
    mnist_arrays["x_test"] = mnist_arrays["x_test"].astype(np.int64)
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)
    ds = load_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(ds.x_test[:, 0], mnist_arrays["x_test"])
    mnist_arrays["x_test"][0, 0, 0] = 256
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)
    with pytest.raises(DatasetError, match=r"x_test hold values 0..256, expected 0..255"):
        load_dataset("mnist", tmp_path)


def test_mnist_npz_object_arrays_are_not_unpickled(tmp_path, mnist_arrays):
    mnist_arrays["y_train"] = np.array(list(mnist_arrays["y_train"]), dtype=object)
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)
    with pytest.raises(DatasetError, match="not a readable .npz file"):
        load_dataset("mnist", tmp_path)


def test_mnist_corrupt_npz(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="not a readable .npz file") as excinfo:
        load_dataset("mnist", tmp_path / "mnist.npz")
    assert_one_line_error(excinfo, tmp_path / "mnist.npz")


def test_mnist_npz_count_mismatch(tmp_path, mnist_arrays):
    mnist_arrays["y_test"] = mnist_arrays["y_test"][:7]
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)
    with pytest.raises(DatasetError, match="7 y_test for 10 images in x_test"):
        load_dataset("mnist", tmp_path)


# --- CIFAR-10 ------------------------------------------------------------------------------

class Py2Pickler(pickle._Pickler):  # the pure-Python pickler, so that one opcode can be swapped
    """Pickle ``bytes`` and ``str`` as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING).

    The CIFAR-10 batches were written by Python 2's cPickle at protocol 2, where keys and the
    ndarray's raw data are ``str``. Python 3 at protocol 2 would instead wrap every bytes object
    in a call to the global ``_codecs.encode``, which the loader (rightly) refuses.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def dump_py2(obj, path):
    with path.open("wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)
    return path


def make_batch(rng, n, name):
    return {
        b"batch_label": f"{name} of 6".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


@pytest.fixture
def cifar_batches(rng):
    """Five training batches of 4 images and a test batch of 10 (real files: 10 000 each)."""
    batches = {f"data_batch_{i}": make_batch(rng, N_TRAIN // 5, f"training batch {i}")
               for i in range(1, 6)}
    batches["test_batch"] = make_batch(rng, N_TEST, "testing batch 1")
    batches["data_batch_1"][b"data"][0, :2] = (0, 255)
    return batches


@pytest.fixture
def cifar_dir(tmp_path, cifar_batches):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    for name, batch in cifar_batches.items():
        dump_py2(batch, directory / name)
    return directory


def test_py2_style_batch_resembles_the_original(cifar_dir):
    blob = (cifar_dir / "data_batch_1").read_bytes()
    assert blob.startswith(b"\x80\x02}")  # protocol 2, a dict
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in blob and b"_codecs" not in blob
    assert b"U\x04data" in blob  # key as a Python 2 SHORT_BINSTRING


@pytest.mark.parametrize("parent", [False, True], ids=["batches-dir", "parent-dir"])
def test_cifar10_round_trip(cifar_dir, cifar_batches, parent):
    ds = load_dataset("cifar10", cifar_dir.parent if parent else cifar_dir)
    assert ds.name == "cifar10"
    assert ds.levels == 255 and ds.num_classes == 10
    assert ds.x_train.shape == (N_TRAIN, 3, 32, 32) and ds.x_test.shape == (N_TEST, 3, 32, 32)
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert arr.dtype == np.int64
        assert not arr.flags.writeable
    train = [cifar_batches[f"data_batch_{i}"] for i in range(1, 6)]
    data = np.concatenate([b[b"data"] for b in train])
    np.testing.assert_array_equal(ds.x_train.reshape(N_TRAIN, 3072), data)
    np.testing.assert_array_equal(ds.y_train, sum((b[b"labels"] for b in train), []))
    test = cifar_batches["test_batch"]
    np.testing.assert_array_equal(ds.x_test.reshape(N_TEST, 3072), test[b"data"])
    np.testing.assert_array_equal(ds.y_test, test[b"labels"])
    # Channel-major rows: values 0..1023 are red, 1024..2047 green, 2048..3071 blue, each row-major.
    assert ds.x_test[2, 1, 0, 5] == test[b"data"][2, 1024 + 5]
    assert ds.x_test[2, 2, 3, 0] == test[b"data"][2, 2048 + 3 * 32]
    assert ds.x_train[0, 0, 0, 0] == 0 and ds.x_train[0, 0, 0, 1] == 255


@pytest.mark.parametrize("protocol", [3, 4])
def test_cifar10_python3_pickles_without_extra_globals_load(tmp_path, rng, protocol):
    batch = make_batch(rng, 3, "py3")
    with (tmp_path / "b").open("wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    data, labels = read_batch(tmp_path / "b")
    np.testing.assert_array_equal(data, batch[b"data"])
    np.testing.assert_array_equal(labels, batch[b"labels"])


def test_cifar10_without_path_says_what_to_pass():
    with pytest.raises(DatasetError, match="needs --data-path") as excinfo:
        load_dataset("cifar10", None)
    assert_one_line_error(excinfo, "dataset 'cifar10'")


def test_cifar10_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as excinfo:
        load_dataset("cifar10", tmp_path / "nowhere")
    assert_one_line_error(excinfo, tmp_path / "nowhere")


def test_cifar10_path_is_the_archive(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(DatasetError, match="is a file, expected a directory; extract") as excinfo:
        load_dataset("cifar10", archive)
    assert_one_line_error(excinfo, archive)


def test_cifar10_directory_without_batches(tmp_path):
    with pytest.raises(DatasetError, match="no CIFAR-10 batches") as excinfo:
        load_dataset("cifar10", tmp_path)
    assert_one_line_error(excinfo, tmp_path)


@pytest.mark.parametrize("name", ["data_batch_3", "test_batch", "data_batch_1"])
def test_cifar10_missing_batch_file(cifar_dir, name):
    (cifar_dir / name).unlink()
    with pytest.raises(DatasetError, match="missing; CIFAR-10 needs data_batch_1") as excinfo:
        load_dataset("cifar10", cifar_dir.parent)
    assert_one_line_error(excinfo, cifar_dir / name)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", ["py2", 0, 2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_malicious_pickle_is_refused_before_running(cifar_dir, tmp_path, protocol):
    marker = tmp_path / "pwned"
    if protocol == "py2":  # a doctored original batch
        dump_py2({b"data": _RunsShell(marker), b"labels": [0]}, cifar_dir / "data_batch_2")
    else:  # str keys: Python 3 would pickle bytes keys through _codecs.encode (refused too)
        payload = {"data": _RunsShell(marker), "labels": [0]}
        (cifar_dir / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=protocol))
    match = r"refusing to unpickle global '(posix|os|nt)\.system'"
    with pytest.raises(DatasetError, match=match) as excinfo:
        load_dataset("cifar10", cifar_dir)
    assert_one_line_error(excinfo, cifar_dir / "data_batch_2")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"),
    ("_codecs", "encode"),  # what Python 3 protocol-2 pickles of bytes call
    ("numpy", "load"),  # a numpy global, but not one an ndarray needs
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray.__reduce__"),  # dotted names are not walked
    ("numpy.core.multiarray", "_reconstruct\nx"),
])
def test_cifar10_only_the_three_numpy_globals_resolve(tmp_path, module, name):
    path = tmp_path / "forged"
    # PROTO 4, SHORT_BINUNICODE module, SHORT_BINUNICODE name, STACK_GLOBAL, STOP
    m, n = module.encode(), name.encode()
    path.write_bytes(b"\x80\x04" + b"\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n
                     + b"\x93.")
    with pytest.raises(DatasetError, match="refusing to unpickle global") as excinfo:
        read_batch(path)
    assert_one_line_error(excinfo, path)


def test_batch_unpickler_resolves_the_ndarray_globals(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    with dump_py2(arr, tmp_path / "a").open("rb") as f:
        loaded = BatchUnpickler(f, tmp_path / "a").load()
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, arr)


def test_cifar10_truncated_batch(cifar_dir):
    path = cifar_dir / "test_batch"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="not a readable CIFAR-10 batch") as excinfo:
        load_dataset("cifar10", cifar_dir)
    assert_one_line_error(excinfo, path)


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b.update({b"labels": b[b"labels"][:-1]}), "3 labels for 4 images"),
    (lambda b: b.update({b"labels": [*b[b"labels"][:-1], 10]}),
     r"hold 10 \(first of 1 outside 0..9\)"),
    (lambda b: b.update({b"labels": [b"x"] * 4}), "b'labels' has shape .4,. and dtype .S1"),
    (lambda b: b.update({b"data": b[b"data"].astype(np.float32)}), "b'data' is a float32 array"),
    (lambda b: b.update({b"data": b[b"data"][:, :3000]}),
     r"shape \(4, 3000\), expected a uint8 array of shape \(n, 3072\)"),
    (lambda b: b.pop(b"data"), "no b'data' entry"),
])
def test_cifar10_malformed_batch(cifar_dir, cifar_batches, mutate, match):
    batch = cifar_batches["data_batch_4"]
    mutate(batch)
    dump_py2(batch, cifar_dir / "data_batch_4")
    with pytest.raises(DatasetError, match=match) as excinfo:
        load_dataset("cifar10", cifar_dir)
    assert_one_line_error(excinfo, cifar_dir / "data_batch_4")


def test_cifar10_batch_that_is_not_a_dict(cifar_dir):
    dump_py2([1, 2, 3], cifar_dir / "data_batch_5")
    with pytest.raises(DatasetError, match="holds a list, expected a dict"):
        load_dataset("cifar10", cifar_dir)
