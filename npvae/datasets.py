"""Image data sets: the embedded 8x8 digits, MNIST and Fashion-MNIST.

Every loader returns a :class:`Dataset` of flattened images ``x`` of shape ``(n, h * w)``
and integer ``labels`` of shape ``(n,)``.

* ``"digits"``: the UCI optdigits test set (1,797 images of 8x8 pixels, values 0..16),
  shipped inside the package (``npvae/data/optdigits-test.csv.gz``, CC BY 4.0, see
  ``npvae/data/DIGITS_LICENSE.txt``). It never touches the network.
* ``"mnist"`` and ``"fashion-mnist"``: 28x28 images, values 0..255, read from the four IDX
  files of each data set. Missing files are downloaded once into a cache directory and each
  download is checked against the MD5 checksum of the official ``.gz`` file before it is
  moved into place.

Cache and trust
---------------
Without ``data_dir`` the files live in ``default_data_dir() / name``, that is
``$NPVAE_DATA/<name>/`` when the environment variable ``NPVAE_DATA`` is set and
``~/.cache/npvae/<name>/`` otherwise. One rule everywhere (library, ``npvae`` command, demos,
tests): ``data_dir`` / ``--data-dir`` if given, else ``$NPVAE_DATA/<name>``, else the home cache.
``$NPVAE_MNIST_DIR`` is an alias kept for MNIST alone: when set, it is MNIST's directory (the
one ``$NPVAE_DATA/mnist`` would be), as the test suite and CI use it. A download is written to a temporary file in that
directory, its MD5 is checked, and only then is it renamed (``os.replace``) to its final
name; on any failure the temporary file is deleted. Hence a file can only appear in the cache
verified, or put there by hand. Files already present (in the cache or in a ``data_dir``
given by the user) are therefore not checksummed again: they are trusted, and only
parse-validated by :func:`read_idx` (magic number, dimensions against the payload size) and
by :func:`load` (image size 28x28, as many labels as images, labels in 0..9). This also lets
a directory of locally re-compressed or uncompressed copies of the files be used as is.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.resources
import math
import os
import struct
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from ._files import write_atomically

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist")
"""Names accepted by :func:`load`."""

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}
"""Base URLs tried in order for each downloadable data set; a file's URL is base + file name."""

MD5_SUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
"""MD5 of the official ``.gz`` downloads (the checksums torchvision checks)."""

DOWNLOAD_TIMEOUT_SECONDS = 30.0
"""Socket timeout of one download attempt from one mirror."""

_IDX_MAGIC_TO_NDIM = {0x00000801: 1, 0x00000803: 3}  # unsigned-byte labels (n,), images (n, h, w)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20

_SPLIT_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGE_SHAPE = (28, 28)
_SPLIT_SIZES = {"train": 60_000, "test": 10_000}  # MNIST's and Fashion-MNIST's; a file may hold fewer
MNIST_DIR_ALIAS = "NPVAE_MNIST_DIR"
_N_CLASSES = 10

_DIGITS_RESOURCE = "optdigits-test.csv.gz"
_DIGITS_IMAGE_SHAPE = (8, 8)
_DIGITS_MAX_PIXEL = 16
_DIGITS_SPLIT_SEED = 0
_DIGITS_N_TRAIN = 1500

_SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))

DATA_DIR_HINT = "pass data_dir= pointing to a directory that holds them"
"""The end of every missing-file message; the command line replaces it with its --data-dir."""


class Dataset(NamedTuple):
    """One split of an image data set.

    Attributes
    ----------
    x : np.ndarray, shape (n, h * w)
        Flattened images, row-major. float32 or float64 in [0, 1], or the raw uint8 pixel
        values when requested.
    labels : np.ndarray of int64, shape (n,)
        Class of each image, 0..9.
    image_shape : tuple of int
        ``(h, w)``: ``x[i].reshape(image_shape)`` is image ``i``.
    name : str
        Data set name, one of :data:`DATASETS`.
    """

    x: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, int]
    name: str


class DownloadError(OSError):
    """No mirror could deliver a verified copy of a data set file."""


class _ChecksumMismatch(Exception):
    """A downloaded file's MD5 differs from the expected one."""


def default_data_dir() -> Path:
    """Root of the download cache: ``$NPVAE_DATA`` if set and non-empty, else ``~/.cache/npvae``.

    Each data set gets its own subdirectory, ``default_data_dir() / name``.

    Returns
    -------
    Path
        The cache root (not created by this function).
    """
    from_env = os.environ.get("NPVAE_DATA")
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "npvae"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an unsigned-byte IDX file (as used by MNIST), gzip-compressed or raw.

    Layout (big-endian): a 4-byte magic number ``0x000008DD`` (``08`` = unsigned byte,
    ``DD`` = number of dimensions), then one uint32 per dimension, then
    ``prod(dims)`` bytes of data in row-major order. Accepted magic numbers are
    ``0x00000803`` (images, ``(n, rows, cols)``) and ``0x00000801`` (labels, ``(n,)``).
    A gzip stream is recognised by its first two bytes, not by the file name.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    np.ndarray of uint8, shape dims
        A writable array with the dimensions stated in the header.

    Raises
    ------
    ValueError
        Naming the file, if the gzip stream is corrupt, the magic number is not one of the
        two above, or the payload is shorter or longer than the header's dimensions imply.
    TypeError
        ``path`` is not a str or os.PathLike.
    OSError
        The file cannot be opened (FileNotFoundError, IsADirectoryError, PermissionError).
    """
    path = _check_path_like("path", path)
    with open(path, "rb") as raw_file:
        is_gzip = raw_file.read(2) == _GZIP_MAGIC
        raw_file.seek(0)
        stream = gzip.GzipFile(fileobj=raw_file, mode="rb") if is_gzip else raw_file
        try:
            return _parse_idx(stream, path)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip stream ({error})") from error
        finally:
            stream.close()


def _read_idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions in the header of the IDX file at ``path`` (gzipped or not), read without its body."""
    with open(path, "rb") as raw_file:
        is_gzip = raw_file.read(2) == _GZIP_MAGIC
        raw_file.seek(0)
        stream = gzip.GzipFile(fileobj=raw_file, mode="rb") if is_gzip else raw_file
        try:
            return _parse_idx_header(stream, path)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip stream ({error})") from error
        finally:
            stream.close()


def _parse_idx_header(stream: BinaryIO, path: Path) -> tuple[int, ...]:
    """Read and check an IDX header (magic number, dimensions); return the dimensions."""
    magic_bytes = stream.read(4)
    if len(magic_bytes) < 4:
        raise ValueError(f"{path}: truncated IDX header, file has only {len(magic_bytes)} bytes")
    (magic,) = struct.unpack(">I", magic_bytes)
    if magic not in _IDX_MAGIC_TO_NDIM:
        raise ValueError(
            f"{path}: IDX magic number 0x{magic:08x} is not 0x00000803 (uint8 images) "
            "or 0x00000801 (uint8 labels)"
        )
    ndim = _IDX_MAGIC_TO_NDIM[magic]
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header, expected {ndim} dimension sizes")
    return struct.unpack(f">{ndim}I", dims_bytes)


def _parse_idx(stream: BinaryIO, path: Path) -> np.ndarray:
    """Parse an IDX byte stream; ``path`` only names the file in error messages."""
    dims = _parse_idx_header(stream, path)
    expected_bytes = math.prod(dims)
    # read in bounded chunks so that a corrupt header claiming terabytes costs no memory
    payload = bytearray()
    while len(payload) < expected_bytes:
        chunk = stream.read(min(expected_bytes - len(payload), _CHUNK_BYTES))
        if not chunk:
            raise ValueError(
                f"{path}: truncated IDX data, header dims {dims} need {expected_bytes} bytes, "
                f"got {len(payload)}"
            )
        payload += chunk
    if stream.read(1):  # for gzip this read also reaches the end of stream and checks the CRC
        raise ValueError(
            f"{path}: trailing data after the {expected_bytes} bytes that header dims {dims} "
            "describe"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def load(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    dtype: str | np.dtype | type = np.float32,
) -> Dataset:
    """Load one split of an image data set as flattened images and labels.

    Pixel values are scaled to [0, 1] for float dtypes: ``x = pixel / 255`` for MNIST and
    Fashion-MNIST, ``x = pixel / 16`` for digits. With ``dtype="uint8"`` the raw pixel
    values are returned unscaled (0..255, or 0..16 for digits).

    Splits. MNIST and Fashion-MNIST have their official ``"train"`` (60,000 images) and
    ``"test"`` (10,000 images) files. Digits has no official split, so a fixed one is used:
    ``perm = np.random.default_rng(0).permutation(1797)``; rows ``perm[:1500]`` are
    ``"train"`` and rows ``perm[1500:]`` (297) are ``"test"``, each kept in file order;
    ``"all"`` is the whole file in order. The generator is local: global NumPy random state
    is neither used nor changed.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``"digits"``, ``"mnist"``, ``"fashion-mnist"``.
    split : str
        ``"train"`` or ``"test"``; for digits also ``"all"``.
    data_dir : str, os.PathLike or None
        MNIST / Fashion-MNIST only: directory holding the IDX files directly (e.g.
        ``train-images-idx3-ubyte.gz`` or the uncompressed ``train-images-idx3-ubyte``).
        Its files are trusted (parse-validated, not checksummed); downloads, if needed,
        go into it. ``None`` uses ``default_data_dir() / name``. Ignored for digits,
        which is package data.
    download : bool
        Download missing MNIST / Fashion-MNIST files (trying each of ``MIRRORS[name]`` once,
        in order, each with a timeout of ``DOWNLOAD_TIMEOUT_SECONDS``).
    dtype : np.float32, np.float64 or "uint8"
        Dtype of ``x`` (any spelling ``np.dtype`` understands for these three).

    Returns
    -------
    Dataset
        ``x`` of shape ``(n, h * w)`` and dtype ``dtype``, ``labels`` int64 of shape ``(n,)``,
        ``image_shape`` ``(8, 8)`` for digits and ``(28, 28)`` otherwise.

    Raises
    ------
    ValueError
        Unknown ``name`` or ``split``; an IDX file that does not parse or does not fit its
        partner (different counts, wrong image size, labels outside 0..9).
    TypeError
        ``dtype`` not one of float32, float64, uint8; ``data_dir`` not a str, os.PathLike or
        None; ``download`` not a bool.
    FileNotFoundError
        Files missing and ``download=False``; the message names the directory to put them in.
    DownloadError
        Files missing and no mirror delivered a verified copy; the message lists each mirror
        tried with its reason and the directory to put the files in by hand.
    """
    # isinstance first: ``in`` on a NumPy array argument would compare elementwise
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    valid_splits = ("train", "test", "all") if name == "digits" else ("train", "test")
    if not isinstance(split, str) or split not in valid_splits:
        raise ValueError(f"split: expected one of {valid_splits} for {name!r}, got {split!r}")
    out_dtype = _check_dtype(dtype)
    if data_dir is not None:
        _check_path_like("data_dir", data_dir)
    # a truthy string such as "no" must not mean "yes, use the network"
    if not isinstance(download, (bool, np.bool_)):
        raise TypeError(f"download: expected True or False, got {download!r}")
    if name == "digits":
        return _load_digits(split, out_dtype)
    return _load_idx_dataset(name, split, data_dir, download, out_dtype)


def _check_path_like(name: str, path: object) -> Path:
    """``Path(path)`` for a str or os.PathLike of str; TypeError naming the argument otherwise."""
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(f"{name}: expected a str or os.PathLike path, got {type(path).__name__}")
    return Path(path)


def _check_dtype(dtype: object) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32, float64 or uint8, else raise TypeError."""
    expected = "np.float32, np.float64 or 'uint8'"
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise TypeError(f"dtype: expected {expected}, got None")
    try:
        resolved = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"dtype: expected {expected}, got {dtype!r}") from error
    if resolved not in _SUPPORTED_DTYPES:
        raise TypeError(f"dtype: expected {expected}, got {dtype!r}")
    return resolved


def _to_dtype(pixels: np.ndarray, max_pixel: int, out_dtype: np.dtype) -> np.ndarray:
    """Raw integer pixels -> ``out_dtype``; floats are divided by ``max_pixel`` into [0, 1]."""
    if out_dtype == np.uint8:
        return pixels.astype(np.uint8, copy=False)
    scaled = pixels.astype(out_dtype)
    scaled /= out_dtype.type(max_pixel)
    return scaled


def _load_digits(split: str, out_dtype: np.dtype) -> Dataset:
    """The packaged optdigits CSV: 64 pixel columns (0..16), then the label."""
    resource = importlib.resources.files(__package__) / "data" / _DIGITS_RESOURCE
    with resource.open("rb") as compressed, gzip.open(compressed, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if split != "all":
        permutation = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(table))
        rows = permutation[:_DIGITS_N_TRAIN] if split == "train" else permutation[_DIGITS_N_TRAIN:]
        table = table[np.sort(rows)]
    return Dataset(
        x=_to_dtype(table[:, :-1], _DIGITS_MAX_PIXEL, out_dtype),
        labels=table[:, -1].astype(np.int64),
        image_shape=_DIGITS_IMAGE_SHAPE,
        name="digits",
    )


def _load_idx_dataset(
    name: str, split: str, data_dir: str | os.PathLike | None, download: bool, out_dtype: np.dtype
) -> Dataset:
    """MNIST-format data set: find (or fetch) the split's two IDX files, parse and check them."""
    directory = _default_directory(name) if data_dir is None else Path(data_dir).expanduser()
    stems = _SPLIT_STEMS[split]
    missing = [stem for stem in stems if _find_idx_file(directory, stem) is None]
    if missing:
        wanted = [stem + ".gz" for stem in missing]
        if not download:
            raise FileNotFoundError(
                f"{name} ({split!r} split): missing {', '.join(wanted)} in {directory} and "
                f"download=False. {_manual_install_hint(directory)}"
            )
        directory.mkdir(parents=True, exist_ok=True)
        for file_name in wanted:
            _download_verified(name, file_name, directory, wanted)

    images_path = _find_idx_file(directory, stems[0])
    labels_path = _find_idx_file(directory, stems[1])
    # the headers first: a small gzip file whose header claims millions of images must be
    # refused before its body is decompressed
    image_dims, label_dims = _read_idx_dims(images_path), _read_idx_dims(labels_path)
    if len(image_dims) != 3 or image_dims[1:] != _IDX_IMAGE_SHAPE:
        raise ValueError(f"{images_path}: expected images of shape (n, 28, 28), got {image_dims}")
    if len(label_dims) != 1:
        raise ValueError(f"{labels_path}: expected labels of shape (n,), got {label_dims}")
    if image_dims[0] != label_dims[0]:
        raise ValueError(
            f"{name}: {images_path} holds {image_dims[0]} images but {labels_path} holds "
            f"{label_dims[0]} labels"
        )
    if image_dims[0] > _SPLIT_SIZES[split]:
        raise ValueError(f"{images_path}: the header claims {image_dims[0]:,} images; the {name} {split!r} split "
                         f"has {_SPLIT_SIZES[split]:,} (the body was not read)")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if len(labels) and labels.max() >= _N_CLASSES:
        raise ValueError(f"{labels_path}: expected labels 0..9, found {labels.max()}")
    return Dataset(
        x=_to_dtype(images.reshape(len(images), math.prod(_IDX_IMAGE_SHAPE)), 255, out_dtype),
        labels=labels.astype(np.int64),
        image_shape=_IDX_IMAGE_SHAPE,
        name=name,
    )


def _default_directory(name: str) -> Path:
    """Where ``name``'s files are when no data_dir is given: ``$NPVAE_MNIST_DIR`` for MNIST if
    set (the alias), else ``default_data_dir() / name``."""
    alias = os.environ.get(MNIST_DIR_ALIAS)
    if name == "mnist" and alias:
        return Path(alias).expanduser()
    return default_data_dir() / name


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem.gz`` if it exists, else ``directory/stem`` if it exists, else None."""
    for candidate in (directory / (stem + ".gz"), directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _manual_install_hint(directory: Path) -> str:
    """The sentence every missing-file error ends with: where to put the files by hand."""
    return (
        f"To install them by hand, put the files (gzipped or uncompressed) into {directory} "
        f"or {DATA_DIR_HINT}."
    )


def _download_verified(name: str, file_name: str, directory: Path, wanted: list[str]) -> None:
    """Fetch ``file_name`` into ``directory`` from the first mirror that delivers it verified.

    Each mirror is tried exactly once; the first complete failure raises, without trying the
    remaining files, so that an offline machine fails fast.
    """
    expected_md5 = MD5_SUMS[name][file_name]
    failures = []
    for base_url in MIRRORS[name]:
        url = base_url + file_name
        try:
            _fetch_to(url, directory / file_name, expected_md5)
            return
        except (OSError, http.client.HTTPException, _ChecksumMismatch) as error:
            failures.append(f"  {url}: {error}")
    raise DownloadError(
        f"{name}: could not download {file_name} (needed: {', '.join(wanted)}). "
        "Mirrors tried:\n" + "\n".join(failures) + "\n" + _manual_install_hint(directory)
    )


def _fetch_to(url: str, target: Path, expected_md5: str) -> None:
    """Download ``url`` to a temp file beside ``target``, check its MD5, then rename it.

    ``write_atomically`` removes the temp file on every failure (a checksum mismatch raised
    inside the write, a network error, KeyboardInterrupt), so ``target`` either appears
    complete and verified or not at all.
    """

    def download(temp_file: BinaryIO) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                temp_file.write(chunk)
        if digest.hexdigest() != expected_md5:
            raise _ChecksumMismatch(
                f"MD5 checksum mismatch: got {digest.hexdigest()}, expected {expected_md5}"
            )

    write_atomically(target, download)



# Your own data (.npy, .npz, .csv, a folder of images): defined in userdata.py, which builds on
# Dataset above, and imported last so that the two modules load in either order.
from .userdata import load_path  # noqa: E402
