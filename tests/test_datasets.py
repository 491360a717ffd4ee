"""Tests for npvae.datasets: packaged digits, IDX parsing, verified downloads, the cache.

No test touches the network: downloads go to file:// URLs in tmp_path, or to 127.0.0.1:9,
which refuses connections at once. The real-MNIST test runs only when the environment
variable NPVAE_MNIST_DIR names a directory holding the four MNIST IDX files.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from npvae import datasets

IMAGES_FILE = "train-images-idx3-ubyte"
LABELS_FILE = "train-labels-idx1-ubyte"
N_SMALL = 5

REAL_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
PACKAGED_DIGITS_MD5 = "9b335364a7bfd63947c7480a5bd51f2d"  # sklearn's digits.csv.gz, 57,523 bytes


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0803 (3-D) or 0x0801 (1-D), dims, data."""
    magic = {1: 0x00000801, 3: 0x00000803}[array.ndim]
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def small_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N_SMALL random 28x28 uint8 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(N_SMALL, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=N_SMALL, dtype=np.uint8)
    return images, labels


def write_file(path: Path, content: bytes, compress: bool) -> Path:
    """Write ``content`` to ``path`` (+ ".gz", gzip-compressed, if ``compress``)."""
    if compress:
        path = path.with_name(path.name + ".gz")
        content = gzip.compress(content, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def write_train_split(
    directory: Path, images: np.ndarray, labels: np.ndarray, compress: bool = True
) -> None:
    write_file(directory / IMAGES_FILE, idx_bytes(images), compress)
    write_file(directory / LABELS_FILE, idx_bytes(labels), compress)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of gzipped train files whose MD5s are installed as the expected ones."""
    directory = tmp_path / "mirror"
    write_train_split(directory, *small_split())
    expected = {
        path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in directory.iterdir()
    }
    monkeypatch.setitem(datasets.MD5_SUMS, "mnist", expected)
    return directory


def as_base_url(directory: Path) -> str:
    return directory.as_uri() + "/"


# ----------------------------------------------------------------------------- digits


def test_digits_all_has_1797_images_of_8x8() -> None:
    digits = datasets.load("digits", "all")
    assert digits.x.shape == (1797, 64)
    assert digits.labels.shape == (1797,)
    assert digits.image_shape == (8, 8)
    assert digits.name == "digits"


def test_digits_train_and_test_splits_have_1500_and_297_rows() -> None:
    assert datasets.load("digits", "train").x.shape == (1500, 64)
    assert datasets.load("digits", "test").x.shape == (297, 64)


def test_digits_default_split_is_train() -> None:
    np.testing.assert_array_equal(datasets.load("digits").x, datasets.load("digits", "train").x)


def test_digits_splits_follow_documented_permutation() -> None:
    whole = datasets.load("digits", "all")
    permutation = np.random.default_rng(0).permutation(1797)
    for split, rows in (("train", permutation[:1500]), ("test", permutation[1500:])):
        part = datasets.load("digits", split)
        np.testing.assert_array_equal(part.x, whole.x[np.sort(rows)])
        np.testing.assert_array_equal(part.labels, whole.labels[np.sort(rows)])


def test_digits_train_and_test_partition_all_without_overlap() -> None:
    def sorted_rows(dataset: datasets.Dataset) -> np.ndarray:
        rows = np.column_stack([dataset.x, dataset.labels])
        return rows[np.lexsort(rows.T[::-1])]

    train = datasets.load("digits", "train", dtype="uint8")
    test = datasets.load("digits", "test", dtype="uint8")
    whole = datasets.load("digits", "all", dtype="uint8")
    union = datasets.Dataset(
        np.concatenate([train.x, test.x]), np.concatenate([train.labels, test.labels]), (8, 8), ""
    )
    np.testing.assert_array_equal(sorted_rows(union), sorted_rows(whole))


def test_digits_split_is_the_same_on_every_call() -> None:
    first = datasets.load("digits", "test")
    second = datasets.load("digits", "test")
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_digits_default_dtype_is_float32_in_unit_interval() -> None:
    digits = datasets.load("digits", "all")
    assert digits.x.dtype == np.float32
    assert digits.x.min() == 0.0
    assert digits.x.max() == 1.0


def test_digits_float64_equals_raw_pixels_over_16() -> None:
    raw = datasets.load("digits", "all", dtype="uint8")
    scaled = datasets.load("digits", "all", dtype=np.float64)
    assert raw.x.dtype == np.uint8
    assert raw.x.max() == 16
    assert scaled.x.dtype == np.float64
    np.testing.assert_array_equal(scaled.x, raw.x / 16.0)


def test_digits_labels_are_int64_covering_0_to_9() -> None:
    labels = datasets.load("digits", "all").labels
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(np.unique(labels), np.arange(10))


def test_load_leaves_global_numpy_random_state_unchanged() -> None:
    state_before = np.random.get_state()[1].copy()
    datasets.load("digits", "train")
    np.testing.assert_array_equal(np.random.get_state()[1], state_before)


def test_packaged_digits_file_is_the_scikit_learn_copy_with_its_licence() -> None:
    data = importlib.resources.files("npvae") / "data"
    content = (data / "optdigits-test.csv.gz").read_bytes()
    assert len(content) == 57523
    assert hashlib.md5(content).hexdigest() == PACKAGED_DIGITS_MD5
    assert "CC BY 4.0" in (data / "DIGITS_LICENSE.txt").read_text(encoding="utf-8")


# ------------------------------------------------------------------------- validation


def test_load_rejects_unknown_name_listing_valid_choices() -> None:
    with pytest.raises(ValueError, match="name") as error:
        datasets.load("cifar10")
    for valid_name in datasets.DATASETS:
        assert valid_name in str(error.value)


@pytest.mark.parametrize(("name", "split"), [("digits", "validation"), ("mnist", "all")])
def test_load_rejects_unknown_split(name: str, split: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"split.*{split}"):
        datasets.load(name, split, data_dir=tmp_path, download=False)


@pytest.mark.parametrize("dtype", [np.int64, "float16", None, "pixels"])
def test_load_rejects_unsupported_dtype(dtype: object) -> None:
    with pytest.raises(TypeError, match="dtype"):
        datasets.load("digits", dtype=dtype)


# ------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_parses_images_and_labels(compress: bool, tmp_path: Path) -> None:
    images, labels = small_split()
    images_path = write_file(tmp_path / IMAGES_FILE, idx_bytes(images), compress)
    labels_path = write_file(tmp_path / LABELS_FILE, idx_bytes(labels), compress)
    parsed_images = datasets.read_idx(images_path)
    np.testing.assert_array_equal(parsed_images, images)
    assert parsed_images.dtype == np.uint8
    np.testing.assert_array_equal(datasets.read_idx(labels_path), labels)


def test_read_idx_rejects_wrong_magic_number(tmp_path: Path) -> None:
    images, _ = small_split()
    content = bytearray(idx_bytes(images))
    content[2] = 0x0D  # element type float32 instead of unsigned byte
    path = write_file(tmp_path / IMAGES_FILE, bytes(content), compress=False)
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.*magic"):
        datasets.read_idx(path)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_rejects_truncated_data(compress: bool, tmp_path: Path) -> None:
    images, _ = small_split()
    path = write_file(tmp_path / IMAGES_FILE, idx_bytes(images)[:-1], compress)
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.*truncated"):
        datasets.read_idx(path)


def test_read_idx_rejects_truncated_header(tmp_path: Path) -> None:
    images, _ = small_split()
    path = write_file(tmp_path / IMAGES_FILE, idx_bytes(images)[:10], compress=False)
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.*truncated"):
        datasets.read_idx(path)


def test_read_idx_rejects_header_claiming_more_data_than_present(tmp_path: Path) -> None:
    content = struct.pack(">IIII", 0x00000803, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(100)
    path = write_file(tmp_path / IMAGES_FILE, content, compress=False)
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.*truncated"):
        datasets.read_idx(path)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_rejects_trailing_bytes(compress: bool, tmp_path: Path) -> None:
    images, _ = small_split()
    path = write_file(tmp_path / IMAGES_FILE, idx_bytes(images) + b"\x00", compress)
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.*trailing"):
        datasets.read_idx(path)


@pytest.mark.parametrize("damage", ["flipped_bytes", "cut_short"])
def test_read_idx_rejects_corrupt_gzip_stream(damage: str, tmp_path: Path) -> None:
    images, _ = small_split()
    content = bytearray(gzip.compress(idx_bytes(images), mtime=0))
    if damage == "flipped_bytes":
        middle = len(content) // 2
        content[middle : middle + 8] = bytes(255 - byte for byte in content[middle : middle + 8])
    else:
        content = content[: len(content) // 2]
    path = tmp_path / (IMAGES_FILE + ".gz")
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.gz.*gzip"):
        datasets.read_idx(path)


# ------------------------------------------------------------ load() from a directory


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("compress", [True, False])
def test_load_reads_idx_files_from_user_data_dir(
    name: str, compress: bool, tmp_path: Path
) -> None:
    images, labels = small_split()
    write_train_split(tmp_path, images, labels, compress)
    dataset = datasets.load(name, "train", data_dir=tmp_path, download=False)
    assert dataset.x.shape == (N_SMALL, 784)
    assert dataset.x.dtype == np.float32
    np.testing.assert_allclose(dataset.x, images.reshape(N_SMALL, 784) / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.labels.dtype == np.int64
    assert dataset.image_shape == (28, 28)
    assert dataset.name == name


def test_load_uint8_returns_raw_pixels(tmp_path: Path) -> None:
    images, labels = small_split()
    write_train_split(tmp_path, images, labels)
    dataset = datasets.load("mnist", data_dir=tmp_path, download=False, dtype=np.uint8)
    assert dataset.x.dtype == np.uint8
    np.testing.assert_array_equal(dataset.x, images.reshape(N_SMALL, 784))


def test_load_rejects_image_label_count_mismatch(tmp_path: Path) -> None:
    images, labels = small_split()
    write_train_split(tmp_path, images, labels[:-1])
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.*{LABELS_FILE}"):
        datasets.load("mnist", data_dir=tmp_path, download=False)


def test_load_rejects_labels_file_in_images_place(tmp_path: Path) -> None:
    _, labels = small_split()
    write_train_split(tmp_path, labels, labels)
    with pytest.raises(ValueError, match=f"{IMAGES_FILE}.*shape"):
        datasets.load("mnist", data_dir=tmp_path, download=False)


def test_load_rejects_labels_outside_0_to_9(tmp_path: Path) -> None:
    images, labels = small_split()
    labels[0] = 10
    write_train_split(tmp_path, images, labels)
    with pytest.raises(ValueError, match=f"{LABELS_FILE}.*0..9"):
        datasets.load("mnist", data_dir=tmp_path, download=False)


def test_load_without_download_raises_file_not_found_naming_directory(tmp_path: Path) -> None:
    missing_dir = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError) as error:
        datasets.load("mnist", data_dir=missing_dir, download=False)
    message = str(error.value)
    assert str(missing_dir) in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "data_dir=" in message
    assert not missing_dir.exists()


# ------------------------------------------------------------------ cache directory


def test_default_data_dir_follows_npvae_data_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPVAE_DATA", str(tmp_path))
    assert datasets.default_data_dir() == tmp_path


def test_default_data_dir_falls_back_to_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NPVAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.default_data_dir() == tmp_path / ".cache" / "npvae"


def test_load_without_data_dir_reads_npvae_data_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPVAE_DATA", str(tmp_path))
    monkeypatch.delenv("NPVAE_MNIST_DIR", raising=False)  # the MNIST alias would take precedence
    images, labels = small_split()
    write_train_split(tmp_path / "fashion-mnist", images, labels)
    dataset = datasets.load("fashion-mnist", download=False, dtype="uint8")
    np.testing.assert_array_equal(dataset.x, images.reshape(N_SMALL, 784))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "mnist")):
        datasets.load("mnist", download=False)


# ------------------------------------------------------------------------- downloads


def test_download_falls_back_to_second_mirror(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_mirror = tmp_path / "empty-mirror"
    empty_mirror.mkdir()
    mirrors = (as_base_url(empty_mirror), as_base_url(mirror))
    monkeypatch.setitem(datasets.MIRRORS, "mnist", mirrors)
    cache = tmp_path / "cache"
    dataset = datasets.load("mnist", data_dir=cache, dtype="uint8")
    np.testing.assert_array_equal(dataset.x, small_split()[0].reshape(N_SMALL, 784))
    cached_names = sorted(path.name for path in cache.iterdir())
    assert cached_names == [IMAGES_FILE + ".gz", LABELS_FILE + ".gz"]
    for path in cache.iterdir():
        assert path.read_bytes() == (mirror / path.name).read_bytes()


def test_download_goes_into_npvae_data_cache_and_is_reused(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPVAE_DATA", str(tmp_path / "cache-root"))
    monkeypatch.delenv("NPVAE_MNIST_DIR", raising=False)  # the MNIST alias would take precedence
    monkeypatch.setitem(datasets.MIRRORS, "mnist", (as_base_url(mirror),))
    first = datasets.load("mnist")
    assert (tmp_path / "cache-root" / "mnist" / (IMAGES_FILE + ".gz")).is_file()
    monkeypatch.setitem(datasets.MIRRORS, "mnist", ("http://127.0.0.1:9/",))
    second = datasets.load("mnist")
    np.testing.assert_array_equal(first.x, second.x)


def test_download_rejects_checksum_mismatch_and_leaves_no_file(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = {file_name: "0" * 32 for file_name in datasets.MD5_SUMS["mnist"]}
    monkeypatch.setitem(datasets.MD5_SUMS, "mnist", wrong)
    monkeypatch.setitem(datasets.MIRRORS, "mnist", (as_base_url(mirror),))
    cache = tmp_path / "cache"
    with pytest.raises(datasets.DownloadError, match="MD5"):
        datasets.load("mnist", data_dir=cache)
    assert list(cache.iterdir()) == []


class _BrokenResponse:
    """Stands in for an HTTP response: delivers some bytes, then raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.chunks_sent = 0

    def read(self, size: int) -> bytes:
        if self.chunks_sent == 0:
            self.chunks_sent += 1
            return b"\x1f\x8b partial download"
        raise self.error

    def __enter__(self) -> _BrokenResponse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


@pytest.mark.parametrize(
    ("error", "expected_exception"),
    [
        (ConnectionResetError("connection reset"), datasets.DownloadError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
def test_interrupted_download_leaves_no_partial_file(
    error: BaseException,
    expected_exception: type[BaseException],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def break_midway(url: str, timeout: float) -> _BrokenResponse:
        return _BrokenResponse(error)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", break_midway)
    cache = tmp_path / "cache"
    with pytest.raises(expected_exception):
        datasets.load("mnist", data_dir=cache)
    assert list(cache.iterdir()) == []


def test_download_tries_each_mirror_once_then_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested_urls = []

    def refuse(url: str, timeout: float) -> None:
        requested_urls.append(url)
        raise urllib.error.URLError("refused")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", refuse)
    with pytest.raises(datasets.DownloadError):
        datasets.load("mnist", data_dir=tmp_path)
    assert requested_urls == [base + IMAGES_FILE + ".gz" for base in datasets.MIRRORS["mnist"]]


def test_offline_download_fails_with_mirrors_and_directory_in_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for scheme in ("http", "https", "all"):  # a proxy would turn a refusal into a timeout
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)
    mirrors = ("http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/")
    monkeypatch.setitem(datasets.MIRRORS, "mnist", mirrors)
    cache = tmp_path / "cache"
    with pytest.raises(OSError) as error:
        datasets.load("mnist", "test", data_dir=cache)
    assert isinstance(error.value, datasets.DownloadError)
    message = str(error.value)
    for base in mirrors:
        assert base + "t10k-images-idx3-ubyte.gz" in message
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert str(cache) in message
    assert "data_dir=" in message
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------------- real MNIST


def _real_mnist_dir() -> Path:
    configured = os.environ.get("NPVAE_MNIST_DIR")
    if not configured:
        pytest.skip("set NPVAE_MNIST_DIR to a directory holding the four MNIST IDX files")
    directory = Path(configured)
    if not directory.is_dir():
        pytest.skip(f"NPVAE_MNIST_DIR={configured} is not a directory")
    return directory


@pytest.mark.parametrize(
    ("split", "n_images", "stems"),
    [
        ("train", 60000, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
        ("test", 10000, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    ],
)
def test_real_mnist_loads_with_published_content(
    split: str, n_images: int, stems: tuple[str, str]
) -> None:
    directory = _real_mnist_dir()
    raw = datasets.load("mnist", split, data_dir=directory, download=False, dtype="uint8")
    assert raw.x.shape == (n_images, 784)
    assert raw.labels.shape == (n_images,)
    np.testing.assert_array_equal(np.unique(raw.labels), np.arange(10))
    # re-encoding what was loaded must give back the exact published files
    images_idx = idx_bytes(raw.x.reshape(n_images, 28, 28))
    labels_idx = idx_bytes(raw.labels.astype(np.uint8))
    assert hashlib.sha256(images_idx).hexdigest() == REAL_MNIST_SHA256[stems[0]]
    assert hashlib.sha256(labels_idx).hexdigest() == REAL_MNIST_SHA256[stems[1]]

    scaled = datasets.load("mnist", split, data_dir=directory, download=False)
    assert scaled.x.dtype == np.float32
    assert scaled.x.min() == 0.0
    assert scaled.x.max() == 1.0
    np.testing.assert_array_equal(scaled.x, raw.x.astype(np.float32) / np.float32(255))


# ------------------------------------------------------------------------- issue 11


def test_a_header_claiming_millions_of_images_is_refused_before_the_body_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3,000,000 images claimed by the header of a small gzip file (the body is garbage): the old
    # loader decompressed the whole body (2.4 GB for a real bomb) before comparing the counts
    header = struct.pack(">IIII", 0x00000803, 3_000_000, 28, 28)
    write_file(tmp_path / IMAGES_FILE, header + b"\x00" * 4096, compress=True)
    write_file(tmp_path / LABELS_FILE, struct.pack(">II", 0x00000801, 3_000_000) + b"\x00" * 4096, compress=True)
    read = []
    monkeypatch.setattr(datasets, "read_idx", lambda path: read.append(path))
    with pytest.raises(ValueError, match=r"claims 3,000,000 images; the mnist 'train' split has 60,000 \(the body was not read\)"):
        datasets.load("mnist", data_dir=tmp_path, download=False)
    assert read == []


def test_counts_that_disagree_are_refused_from_the_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = small_split()
    write_train_split(tmp_path, images, labels[:3])
    monkeypatch.setattr(datasets, "read_idx", lambda path: pytest.fail(f"read the body of {path}"))
    with pytest.raises(ValueError, match="holds 5 images but .* holds 3 labels"):
        datasets.load("mnist", data_dir=tmp_path, download=False)


def test_npvae_mnist_dir_is_the_mnist_directory_when_no_data_dir_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = small_split()
    write_train_split(tmp_path / "mine", images, labels)
    monkeypatch.setenv("NPVAE_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("NPVAE_MNIST_DIR", str(tmp_path / "mine"))
    np.testing.assert_array_equal(datasets.load("mnist", dtype="uint8").x, images.reshape(N_SMALL, 784))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "cache" / "fashion-mnist")):
        datasets.load("fashion-mnist", download=False)  # the alias is MNIST's alone
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "other")):
        datasets.load("mnist", data_dir=tmp_path / "other", download=False)  # data_dir comes first
