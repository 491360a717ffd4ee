"""Your own images as a :class:`~npvae.datasets.Dataset`: ``.npy``, ``.npz``, ``.csv`` or a folder.

    load_path("faces.npz")          arrays x (n, h, w) or (n, d), and optionally y (n,) labels
    load_path("pixels.npy")         one array x, no labels
    load_path("table.csv")          one image per row; a header row may name a "label" column
    load_path("photos/")            every .png/.jpg/.jpeg directly in the folder, by file name

Scaling to [0, 1], stated once for every format:

* integer pixels (a uint8 ``.npy``, a CSV of whole numbers, a JPEG) are divided by 255, the
  8-bit range, unless ``scale`` gives another divisor;
* floating-point arrays are taken as they are (``scale`` divides them too when given);
* PNG files come as floats in [0, 1] already (matplotlib divides by the bit depth).

After scaling, every value must be finite and, unless ``unit_range=False`` (data for a
Gaussian decoder), in [0, 1]; the error names the file and the first row or image at fault.

Colour images become greyscale with the ITU-R BT.601 luma weights,
``grey = 0.299 R + 0.587 G + 0.114 B`` (an alpha channel is dropped). Images must all have the
same size, or ``resize=(h, w)`` resamples each one bilinearly (with Pillow, which matplotlib
already depends on).

Files without labels give ``labels`` filled with :data:`NO_LABEL` (-1).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks
from .datasets import Dataset

__all__ = ["NO_LABEL", "IMAGE_SUFFIXES", "load_path", "split_validation"]

NO_LABEL = -1
"""The label of every image of a file that has none."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Files of a folder that :func:`load_path` reads (case-insensitive); other files are ignored."""

LABEL_COLUMN = "label"
"""Name of the CSV header column that holds the labels."""

_INTEGER_PIXEL_MAX = 255
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def load_path(
    path: str | os.PathLike,
    *,
    scale: float | None = None,
    resize: Sequence[int] | None = None,
    image_shape: Sequence[int] | None = None,
    unit_range: bool = True,
    dtype: Any = np.float32,
) -> Dataset:
    """Read images from a ``.npy``, ``.npz``, ``.csv`` file or a folder of PNG/JPEG files.

    Parameters
    ----------
    path : str or os.PathLike
        The file or folder (see the module docstring for each format).
    scale : float or None
        Divisor of the raw values: ``x = raw / scale``. None divides integer pixels by 255 and
        leaves floats (and PNGs) as they are. Not allowed with a folder of images.
    resize : (h, w) or None
        Folder only: resample every image to h x w (bilinear). Without it, all images must
        have the size of the first one.
    image_shape : (h, w) or None
        Shape of one image of flat data (``.csv``, or an ``(n, d)`` array) with h * w = d.
        None: square images if d is a square number, else ``(1, d)``.
    unit_range : bool
        Require values in [0, 1] after scaling (what a Bernoulli decoder needs). False for
        data meant for a Gaussian decoder.
    dtype : np.float32 or np.float64
        Dtype of ``x``.

    Returns
    -------
    Dataset
        ``x`` (n, h * w), ``labels`` int64 (n,) (``NO_LABEL`` where the file has none),
        ``image_shape`` (h, w), ``name`` the path as given.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        An unknown suffix, an empty file or folder, a ragged CSV row, mixed image sizes, NaN or
        inf, values outside [0, 1], labels that are not whole numbers or do not match the
        images, an ``image_shape`` that does not fit: the message names the file and the row or
        image.
    TypeError
        An argument of the wrong kind.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
            raise TypeError(f"scale: expected a positive number or None, got {type(scale).__name__}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: expected a finite number > 0, got {scale!r}")
    resize = None if resize is None else _pair("resize", resize)
    image_shape = None if image_shape is None else _pair("image_shape", image_shape)
    _checks.boolean("unit_range", unit_range)
    out_dtype = _checks.float_dtype(dtype)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))

    if path.is_dir():
        if scale is not None:
            raise ValueError(f"scale: images in a folder are always scaled to [0, 1] by their bit depth ({path})")
        x, labels, shape, names = _read_folder(path, resize)
        where = lambda index: f"image {names[index]}"
    else:
        if resize is not None:
            raise ValueError(f"resize: applies to a folder of images only, not to the file {path}")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            raw, labels, first_line = _read_csv(path)
            where = lambda index: f"row {index + first_line}"  # the line number in the file
        elif suffix in (".npy", ".npz"):
            raw, labels = _read_numpy(path)
            where = lambda index: f"image x[{index}]"
        else:
            raise ValueError(f"{path}: expected a .npy, .npz or .csv file or a folder of images, "
                             f"got the suffix {path.suffix!r}")
        x, shape = _flatten(path, raw, image_shape)
        x = _scaled(x, scale)
    x = _check_values(path, x, unit_range, where).astype(out_dtype, copy=False)
    return Dataset(x=x, labels=labels, image_shape=shape, name=str(path))


def split_validation(data: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """Hold out ``round(val_fraction * n)`` rows (at least 1) as a validation set.

    ``perm = np.random.default_rng(seed).permutation(n)``; rows ``perm[:m]`` are the validation
    set and the rest the training set, each kept in file order. ``val_fraction = 0`` returns
    ``(data, None)``. Both parts must have at least one row.
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"data: expected a Dataset, got {type(data).__name__}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"val_fraction: expected a number in [0, 1), got {type(val_fraction).__name__}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    seed = _checks.int_at_least("seed", seed, 0)
    if val_fraction == 0:
        return data, None
    n = data.x.shape[0]
    m = max(1, round(val_fraction * n))
    if m >= n:
        raise ValueError(f"val_fraction: {val_fraction} of {n} rows leaves no training rows")
    permutation = np.random.default_rng(seed).permutation(n)
    val_rows, train_rows = np.sort(permutation[:m]), np.sort(permutation[m:])
    return (data._replace(x=data.x[train_rows], labels=data.labels[train_rows]),
            data._replace(x=data.x[val_rows], labels=data.labels[val_rows]))


# -- argument checks ---------------------------------------------------------------------------
def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) or len(value) != 2:
        raise TypeError(f"{name}: expected (height, width), got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in value):
        raise ValueError(f"{name}: expected two positive integers (height, width), got {value!r}")
    return int(value[0]), int(value[1])


# -- the formats -----------------------------------------------------------------------------------
def _read_numpy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x (and y) of a .npy or .npz, loaded without pickle."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable NumPy file without pickle ({error})") from None
    if isinstance(loaded, np.ndarray):
        x = _numeric(path, "the array", loaded)
        return x, np.full(x.shape[0], NO_LABEL, dtype=np.int64)
    with loaded:
        keys = sorted(loaded.files)
        if "x" not in keys:
            raise ValueError(f"{path}: expected an array named 'x' (and optionally 'y'), found {keys}")
        x = _numeric(path, "x", loaded["x"])
        if "y" not in keys:
            return x, np.full(x.shape[0], NO_LABEL, dtype=np.int64)
        y = loaded["y"]
    if y.shape != (x.shape[0],):
        raise ValueError(f"{path}: y has shape {y.shape}, expected ({x.shape[0]},): one label per image of x")
    return x, _labels(path, y, lambda index: f"y[{index}]")


def _numeric(path: Path, what: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{path}: {what} has dtype {array.dtype}, expected integer or floating-point pixels")
    if array.ndim not in (2, 3) or array.shape[0] == 0:
        raise ValueError(f"{path}: {what} has shape {array.shape}, expected (n, h, w) images or (n, d) flat "
                         "rows, n >= 1")
    return array


def _labels(path: Path, values: np.ndarray, where: Any) -> np.ndarray:
    """Labels as int64: whole numbers >= 0; the error names the first bad one."""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{path}: labels have dtype {values.dtype}, expected whole numbers >= 0")
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (values == np.round(values)) & (values >= 0)) if values.dtype.kind == "f" \
            else values < 0
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {where(index)} is {values[index].item()!r}, expected a whole number >= 0 (a class label)")
    return values.astype(np.int64)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows of numbers, their labels, and the file line of the first row (2 after a header).

    A first row with any cell that is not a number is a header; it may name a ``label`` column.
    The numbers are parsed by ``np.loadtxt`` (fast, for files of MNIST's size); only when it
    fails is the file read again, row by row, to name the row and column at fault.
    """
    with open(path, newline="", encoding="utf-8") as file:
        first = next((row for row in csv.reader(file) if row), None)
    if first is None:
        raise ValueError(f"{path}: empty file, expected one image per row")
    header = None if all(_is_number(cell) for cell in first) else [cell.strip() for cell in first]
    first_line = 1 if header is None else 2
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=first_line - 1, dtype=np.float64, ndmin=2,
                           encoding="utf-8")
    except ValueError as error:
        _find_csv_error(path, header, first_line)
        raise ValueError(f"{path}: not a table of numbers ({error})") from None
    if table.shape[0] == 0:
        raise ValueError(f"{path}: only a header row, expected one image per row after it")
    if header is not None and table.shape[1] != len(header):
        raise ValueError(f"{path}: the rows have {table.shape[1]} values, but the header names {len(header)} columns")
    # integers ("17", not "17.0" or "1.7e1") are pixels, divided by 255 by default
    with open(path, encoding="utf-8") as file:
        rows_text = file.read().split("\n", first_line - 1)[-1]
    integers = not any(mark in rows_text for mark in ".eE")
    if header is not None and LABEL_COLUMN in header:
        column = header.index(LABEL_COLUMN)
        labels = _labels(path, table[:, column], lambda index: f"row {index + first_line}, column {LABEL_COLUMN!r}")
        table = np.delete(table, column, axis=1)
        if table.shape[1] == 0:
            raise ValueError(f"{path}: only a {LABEL_COLUMN!r} column, expected pixel columns too")
    else:
        near = [name for name in header or () if name.lower() in ("label", "labels", "class", "target", "y")]
        if near:
            raise ValueError(f"{path}: column {near[0]!r} looks like labels, but the label column must be "
                             f"named exactly {LABEL_COLUMN!r} (rename it, or drop the column)")
        labels = np.full(len(table), NO_LABEL, dtype=np.int64)
    if integers:
        table = table.astype(np.int64)
    return table, labels, first_line


def _find_csv_error(path: Path, header: list[str] | None, first_line: int) -> None:
    """Raise the error naming the first ragged row or the first cell that is not a number, if any."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = [row for row in csv.reader(file)][first_line - 1:]
    width = len(header) if header is not None else len(rows[0])
    what = "the header" if header is not None else "the first row"
    for index, row in enumerate(rows):
        if not row:
            continue
        if len(row) != width:
            raise ValueError(f"{path}: row {index + first_line} has {len(row)} values, expected {width} (as {what})")
        for column, cell in enumerate(row):
            if not _is_number(cell):
                name = f"column {header[column]!r}" if header is not None else f"column {column + 1}"
                raise ValueError(f"{path}: row {index + first_line}, {name}: {cell!r} is not a number")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_folder(
    path: Path, resize: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], list[str]]:
    """Every image file directly in ``path``, by name, greyscale in [0, 1]; and the file names."""
    import matplotlib.image

    files = sorted(entry for entry in path.iterdir() if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder (subfolders are not read)")
    images = []
    shape = resize
    for file in files:
        try:
            pixels = matplotlib.image.imread(file)
        except Exception as error:  # Pillow and matplotlib raise many kinds for a damaged file
            raise ValueError(f"{file}: not a readable image ({type(error).__name__}: {error})") from None
        grey = _greyscale(pixels)
        if resize is not None:
            grey = _resized(grey, resize)
        elif shape is None:
            shape = grey.shape
        elif grey.shape != shape:
            raise ValueError(f"{file}: image is {grey.shape[0]}x{grey.shape[1]}, but {files[0].name} (the first) "
                             f"is {shape[0]}x{shape[1]}; give resize=(h, w) (--resize H W) to resample them all")
        images.append(grey.ravel())
    labels = np.full(len(images), NO_LABEL, dtype=np.int64)
    return np.stack(images), labels, (int(shape[0]), int(shape[1])), [file.name for file in files]


def _greyscale(pixels: np.ndarray) -> np.ndarray:
    """(h, w), (h, w, 3) or (h, w, 4) pixels -> (h, w) float64 in [0, 1]."""
    if pixels.dtype.kind in "iu":
        pixels = pixels / np.iinfo(pixels.dtype).max
    pixels = pixels.astype(np.float64, copy=False)
    if pixels.ndim == 3:
        pixels = pixels[..., :3] @ _LUMA_WEIGHTS if pixels.shape[2] >= 3 else pixels[..., 0]
    return pixels


def _resized(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(grey.astype(np.float32))
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float64)


# -- shape and values ------------------------------------------------------------------------------
def _flatten(path: Path, raw: np.ndarray, image_shape: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    if raw.ndim == 3:
        shape = raw.shape[1:]
        if image_shape is not None and image_shape != shape:
            raise ValueError(f"image_shape: {image_shape} differs from the images' own shape {shape} in {path}")
        return raw.reshape(raw.shape[0], -1), (int(shape[0]), int(shape[1]))
    d = raw.shape[1]
    if image_shape is not None:
        if image_shape[0] * image_shape[1] != d:
            raise ValueError(f"image_shape: {image_shape} has {image_shape[0] * image_shape[1]} pixels, "
                             f"but the rows of {path} have {d}")
        return raw, image_shape
    side = math.isqrt(d)
    return raw, ((side, side) if side * side == d else (1, d))


def _scaled(x: np.ndarray, scale: float | None) -> np.ndarray:
    if scale is None:
        return x / _INTEGER_PIXEL_MAX if x.dtype.kind in "iu" else x.astype(np.float64)
    return x / float(scale)


def _check_values(path: Path, x: np.ndarray, unit_range: bool, where: Callable[[int], str]) -> np.ndarray:
    """Finite, and in [0, 1] when asked; the error names the first row (or image) at fault."""
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{path}: {where(index)} holds NaN or inf")
    if unit_range:
        inside = ((x >= 0) & (x <= 1)).all(axis=1)
        if not inside.all():
            index = int(np.flatnonzero(~inside)[0])
            raise ValueError(
                f"{path}: {where(index)} has values in [{x[index].min():g}, {x[index].max():g}] after scaling, "
                "expected [0, 1] (integers are divided by 255, floats kept as they are): give scale= "
                "(--scale), or train a Gaussian decoder (--output gaussian, unit_range=False)")
    return x
