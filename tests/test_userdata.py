"""Tests for npvae.userdata: load_path on .npy, .npz, .csv and image folders; the validation split."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from PIL import Image

from npvae import datasets
from npvae.userdata import NO_LABEL, load_path, split_validation


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """Save a greyscale (h, w) array of 0..255 as an 8-bit greyscale PNG."""
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)  # 2-D uint8: mode "L"
    return path


# -- the formats -----------------------------------------------------------------------------------
def test_npy_of_uint8_pixels_is_divided_by_255(tmp_path):
    raw = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    np.save(tmp_path / "x.npy", raw)
    data = load_path(tmp_path / "x.npy", dtype=np.float64)
    assert data.x.shape == (2, 12) and data.image_shape == (3, 4)
    np.testing.assert_array_equal(data.x, raw.reshape(2, 12) / 255.0)
    np.testing.assert_array_equal(data.labels, [NO_LABEL, NO_LABEL])


def test_npz_float_x_kept_as_is_with_labels_y(tmp_path):
    x = np.random.default_rng(0).random((5, 16))
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 1, 0]))
    data = load_path(tmp_path / "d.npz", dtype=np.float64)
    np.testing.assert_array_equal(data.x, x)
    assert data.image_shape == (4, 4) and data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, [0, 1, 2, 1, 0])


def test_npz_without_x_names_the_arrays_found(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"d\.npz: expected an array named 'x'.*\['images'\]"):
        load_path(tmp_path / "d.npz")


def test_npz_labels_must_match_the_images(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4)), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"y has shape \(2,\), expected \(3,\)"):
        load_path(tmp_path / "d.npz")
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4)), y=np.array([0.0, 1.5, 2.0]))
    with pytest.raises(ValueError, match=r"y\[1\] is 1\.5, expected a whole number"):
        load_path(tmp_path / "d.npz")


def test_csv_with_label_column_and_integer_pixels(tmp_path):
    (tmp_path / "t.csv").write_text("p0,p1,label,p2,p3\n0,255,7,51,102\n255,0,3,0,0\n")
    data = load_path(tmp_path / "t.csv", dtype=np.float64)
    np.testing.assert_array_equal(data.labels, [7, 3])
    np.testing.assert_array_equal(data.x, np.array([[0, 255, 51, 102], [255, 0, 0, 0]]) / 255.0)
    assert data.image_shape == (2, 2)


def test_csv_without_header_and_float_pixels_kept(tmp_path):
    (tmp_path / "t.csv").write_text("0.0,1.0,0.5\n0.25,0.75,1.0\n")
    data = load_path(tmp_path / "t.csv", dtype=np.float64)
    np.testing.assert_array_equal(data.x, [[0.0, 1.0, 0.5], [0.25, 0.75, 1.0]])
    assert data.image_shape == (1, 3)
    assert load_path(tmp_path / "t.csv", image_shape=(3, 1)).image_shape == (3, 1)


def test_ragged_csv_names_the_row(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(ValueError, match=r"t\.csv: row 3 has 2 values, expected 3 \(as the header\)"):
        load_path(tmp_path / "t.csv")


def test_csv_cell_that_is_not_a_number_names_row_and_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n4,x\n")
    with pytest.raises(ValueError, match=r"row 3, column 'b': 'x' is not a number"):
        load_path(tmp_path / "t.csv")


def test_csv_nan_names_the_row(tmp_path):
    (tmp_path / "t.csv").write_text("0.1,0.2\n0.3,0.4\n0.5,nan\n")
    with pytest.raises(ValueError, match=r"t\.csv: row 3 holds NaN or inf"):
        load_path(tmp_path / "t.csv")


def test_csv_wrong_label_column_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("Label,a,b\n1,0,0\n")
    with pytest.raises(ValueError, match=r"column 'Label' looks like labels.*named exactly 'label'"):
        load_path(tmp_path / "t.csv")
    (tmp_path / "t.csv").write_text("label,a,b\n1,0,0\n-2,0,0\n")
    with pytest.raises(ValueError, match=r"row 3, column 'label' is -2\.0, expected a whole number"):
        load_path(tmp_path / "t.csv")


def test_values_outside_unit_range_name_the_row_unless_allowed(tmp_path):
    x = np.array([[0.0, 0.5], [0.2, 3.0]])
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=r"image x\[1\] has values in \[0\.2, 3\].*--output gaussian"):
        load_path(tmp_path / "x.npy")
    np.testing.assert_array_equal(load_path(tmp_path / "x.npy", unit_range=False, dtype=np.float64).x, x)
    np.testing.assert_array_equal(load_path(tmp_path / "x.npy", scale=3.0, dtype=np.float64).x, x / 3.0)


def test_folder_of_images_read_as_greyscale_in_file_order(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (5, 7)) for _ in range(3)]
    for index, image in enumerate(images):
        write_png(tmp_path / f"img{index}.png", image)
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_path(tmp_path, dtype=np.float64)
    assert data.x.shape == (3, 35) and data.image_shape == (5, 7)
    np.testing.assert_allclose(data.x, np.stack(images).reshape(3, 35) / 255, rtol=1e-6)  # float32 PNG reader
    np.testing.assert_array_equal(data.labels, [NO_LABEL] * 3)


def test_colour_image_becomes_bt601_luma(tmp_path):
    rgb = np.zeros((2, 2, 3))
    rgb[..., 0] = 1.0  # pure red
    matplotlib.image.imsave(tmp_path / "red.png", rgb)
    data = load_path(tmp_path, dtype=np.float64)
    np.testing.assert_allclose(data.x, 0.299, rtol=1e-12)


def test_mixed_image_sizes_name_the_image_and_resize_fixes_them(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4)))
    write_png(tmp_path / "b.png", np.full((6, 8), 255))
    with pytest.raises(ValueError, match=r"b\.png: image is 6x8, but a\.png \(the first\) is 4x4.*resize"):
        load_path(tmp_path)
    data = load_path(tmp_path, resize=(3, 3))
    assert data.x.shape == (2, 9) and data.image_shape == (3, 3)
    np.testing.assert_allclose(data.x[1], 1.0, atol=1e-6)  # a constant image stays constant


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("")
    with pytest.raises(ValueError, match=r"no \.png/\.jpg/\.jpeg images in this folder"):
        load_path(tmp_path)


def test_jpeg_is_read_through_pillow(tmp_path):
    Image.fromarray(np.full((4, 4), 128, dtype=np.uint8)).save(tmp_path / "grey.jpg")
    data = load_path(tmp_path, dtype=np.float64)
    np.testing.assert_allclose(data.x, 128 / 255, atol=2 / 255)  # JPEG is lossy: within 2 levels


def test_unknown_suffix_and_missing_path(tmp_path):
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(ValueError, match=r"expected a \.npy, \.npz or \.csv file or a folder"):
        load_path(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_path(tmp_path / "missing.npy")


def test_load_path_is_exposed_by_datasets():
    assert datasets.load_path is load_path


# -- the validation split --------------------------------------------------------------------------
def test_split_validation_is_a_seeded_partition_in_file_order(tmp_path):
    x = np.arange(20, dtype=np.float64).reshape(10, 2) / 20
    data = datasets.Dataset(x=x, labels=np.arange(10), image_shape=(1, 2), name="t")
    train, val = split_validation(data, 0.3, seed=4)
    assert len(val.x) == 3 and len(train.x) == 7
    assert sorted([*train.labels, *val.labels]) == list(range(10))
    assert list(val.labels) == sorted(val.labels)
    again = split_validation(data, 0.3, seed=4)[1]
    other = split_validation(data, 0.3, seed=5)[1]
    np.testing.assert_array_equal(again.x, val.x)
    assert not np.array_equal(other.labels, val.labels)
    assert split_validation(data, 0.0, seed=0) == (data, None)
    with pytest.raises(ValueError, match=r"val_fraction: expected a number in \[0, 1\)"):
        split_validation(data, 1.0, seed=0)
