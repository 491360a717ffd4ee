"""Tests for npvae.plots: every figure is a readable PNG written atomically, bad input is refused
at the door, and the helpers that place images and project latents put things where they belong."""

import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import scipy.special
import scipy.stats
from matplotlib.figure import Figure

from npvae import plots

SHAPE = (8, 8)
PIXELS = SHAPE[0] * SHAPE[1]


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, PIXELS))


def _decode(z):
    return np.tile(scipy.special.expit(z[:, :1]), (1, PIXELS))


def _means(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _labels(n):
    return np.arange(n) % 10


HISTORY = {
    "loss": [200.0, 150.0, 130.0],
    "val_loss": [205.0, 160.0, 140.0],
    "recon": [180.0, 125.0, 105.0],
    "val_recon": [185.0, 135.0, 115.0],
    "kl": [20.0, 25.0, 25.0],
    "val_kl": [20.0, 25.0, 25.0],
}

# name -> call(path, **overrides): one valid call per figure (and per latent-scatter branch)
FIGURES = {
    "reconstructions": lambda path, **kw: plots.save_reconstructions(
        **{"x": _images(12), "x_recon": _images(12, seed=1), "image_shape": SHAPE, "path": path, **kw}
    ),
    "image_grid": lambda path, **kw: plots.save_image_grid(
        **{"images": _images(20), "image_shape": SHAPE, "path": path, "title": "Samples", **kw}
    ),
    "manifold": lambda path, **kw: plots.save_manifold(
        **{"decode": _decode, "image_shape": SHAPE, "path": path, "n": 5, **kw}
    ),
    "latent_scatter_pca": lambda path, **kw: plots.save_latent_scatter(
        **{"means": _means(200, 5), "labels": _labels(200), "path": path, **kw}
    ),
    "latent_scatter_2d": lambda path, **kw: plots.save_latent_scatter(
        **{"means": _means(200, 2), "labels": _labels(200), "path": path, **kw}
    ),
    "latent_scatter_1d": lambda path, **kw: plots.save_latent_scatter(
        **{"means": _means(200, 1), "labels": _labels(200), "path": path, **kw}
    ),
    "interpolation": lambda path, **kw: plots.save_interpolation(
        **{"decoded": _images(7), "image_shape": SHAPE, "path": path, **kw}
    ),
    "history": lambda path, **kw: plots.save_history(**{"history": HISTORY, "path": path, **kw}),
    "side_by_side": lambda path, **kw: plots.save_side_by_side(
        **{
            "grids": [_images(16), _images(10, seed=1)],
            "image_shape": SHAPE,
            "path": path,
            "titles": ["AE", "VAE"],
            **kw,
        }
    ),
    "beta_sweep": lambda path, **kw: plots.save_beta_sweep(
        **{
            "betas": [0.5, 1.0, 4.0],
            "recon": [90.0, 95.0, 110.0],
            "kl": [30.0, 20.0, 8.0],
            "path": path,
            **kw,
        }
    ),
}


def _png_size(path):
    """(height, width) in pixels of the PNG at path; fails if it does not decode."""
    pixels = matplotlib.image.imread(path)
    return pixels.shape[:2]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written_as_a_legible_png_and_its_path_returned(tmp_path, name):
    path = tmp_path / f"{name}.png"
    returned = FIGURES[name](str(path))
    assert isinstance(returned, Path)
    assert returned == path
    height, width = _png_size(path)
    assert height > 100 and width > 100
    assert list(tmp_path.iterdir()) == [path], "a temp file was left behind"


@pytest.mark.parametrize(
    ("name", "bad", "argument"),
    [
        ("reconstructions", {"x": _images(12).reshape(12, 8, 8)}, "x"),
        ("reconstructions", {"x": np.full((12, PIXELS), np.nan)}, "x"),
        ("reconstructions", {"x_recon": _images(11)}, "x_recon"),
        ("reconstructions", {"image_shape": (8, 9)}, "x"),
        ("reconstructions", {"image_shape": (64,)}, "image_shape"),
        ("reconstructions", {"n": 0}, "n"),
        ("image_grid", {"images": _images(1)[0]}, "images"),
        ("image_grid", {"ncols": 0}, "ncols"),
        ("image_grid", {"path": "grid.jpg"}, "path"),
        ("manifold", {"n": 1}, "n"),
        ("manifold", {"decode": lambda z: _decode(z)[:-1]}, "decode"),
        ("manifold", {"decode": lambda z: np.full((len(z), PIXELS), np.inf)}, "decode"),
        ("latent_scatter_pca", {"means": _means(200, 5)[:, 0]}, "means"),
        ("latent_scatter_pca", {"labels": _labels(199)}, "labels"),
        ("latent_scatter_pca", {"labels": _labels(200) - 1}, "labels"),
        ("interpolation", {"decoded": _images(1)}, "decoded"),
        ("history", {"history": {}}, "history"),
        ("history", {"history": {"lr": [0.1, 0.1]}}, "history"),
        ("history", {"history": {"loss": []}}, "history['loss']"),
        ("side_by_side", {"grids": []}, "grids"),
        ("side_by_side", {"grids": [_images(4), _images(4)[:, :10]]}, "grids[1]"),
        ("side_by_side", {"titles": ["AE"]}, "titles"),
        ("beta_sweep", {"betas": [-1.0, 1.0, 4.0]}, "betas"),
        ("beta_sweep", {"recon": [90.0, 95.0]}, "recon"),
        ("beta_sweep", {"kl": [[30.0, 20.0, 8.0]]}, "kl"),
    ],
)
def test_bad_input_is_refused_naming_the_argument_and_writes_nothing(tmp_path, name, bad, argument):
    kwargs = {"path": tmp_path / "figure.png", **bad}
    with pytest.raises(ValueError, match=f"^{re.escape(argument)}(\\(z\\))?: expected"):
        FIGURES[name](**kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_existing_file_untouched_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    path.write_bytes(b"previous figure")

    def savefig_that_dies_halfway(self, file, **kwargs):
        file.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", savefig_that_dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        FIGURES["image_grid"](path)
    assert path.read_bytes() == b"previous figure"
    assert list(tmp_path.iterdir()) == [path]


def test_existing_file_is_replaced(tmp_path):
    path = tmp_path / "grid.png"
    path.write_bytes(b"previous figure")
    FIGURES["image_grid"](path)
    assert _png_size(path)[0] > 100


def test_missing_parent_directories_are_created(tmp_path):
    path = tmp_path / "run" / "figures" / "beta.png"
    assert FIGURES["beta_sweep"](path) == path
    assert _png_size(path)[0] > 100


def test_tile_puts_image_i_at_row_i_div_ncols_and_column_i_mod_ncols():
    h, w, pad, ncols, n = 2, 3, 1, 2, 5
    images = np.arange(n * h * w, dtype=float).reshape(n, h * w) / (n * h * w)
    tiled = plots._tile(images, (h, w), ncols, pad=pad, pad_value=-1.0)
    assert tiled.shape == (3 * (h + pad) - pad, ncols * (w + pad) - pad)
    placed = np.zeros(tiled.shape, dtype=bool)
    for i in range(n):
        top, left = i // ncols * (h + pad), i % ncols * (w + pad)
        np.testing.assert_array_equal(tiled[top:top + h, left:left + w], images[i].reshape(h, w))
        placed[top:top + h, left:left + w] = True
    assert (tiled[~placed] == -1.0).all(), "gaps and the unused last cell must hold pad_value"


def test_tile_uses_no_more_columns_than_images():
    tiled = plots._tile(_images(3), SHAPE, ncols=8, pad=0)
    assert tiled.shape == (8, 3 * 8)


def test_project_2d_uses_two_dimensional_means_as_they_are():
    means = _means(50, 2)
    coords, labels = plots._project_2d(means)
    np.testing.assert_array_equal(coords, means)
    assert labels == ("z1", "z2")


def test_project_2d_spreads_one_dimensional_means_with_fixed_bounded_jitter():
    means = _means(50, 1)
    coords, labels = plots._project_2d(means)
    np.testing.assert_array_equal(coords[:, 0], means[:, 0])
    assert np.abs(coords[:, 1]).max() <= 1.0 and coords[:, 1].std() > 0.1
    np.testing.assert_array_equal(plots._project_2d(means)[0], coords)
    assert labels[0] == "z1" and "jitter" in labels[1]


def test_project_2d_finds_the_plane_that_holds_higher_dimensional_means():
    rng = np.random.default_rng(3)
    plane = rng.normal(size=(300, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    means = plane @ basis.T + rng.normal(size=6)  # a tilted, shifted plane in 6-D
    coords, (xlabel, ylabel) = plots._project_2d(means)
    # PCA onto the plane that holds the data is a rigid motion of it: distances are kept
    np.testing.assert_allclose(
        np.linalg.norm(coords[:, None] - coords[None], axis=-1),
        np.linalg.norm(means[:, None] - means[None], axis=-1),
        atol=1e-9,
    )
    # independent reference: eigenvectors of the covariance matrix, up to sign
    _, eigenvectors = np.linalg.eigh(np.cov(means, rowvar=False))
    reference = (means - means.mean(axis=0)) @ eigenvectors[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(coords), np.abs(reference), atol=1e-9)
    share = [float(label.split("(")[1].split("%")[0]) for label in (xlabel, ylabel)]
    assert xlabel.startswith("PC1") and ylabel.startswith("PC2")
    assert share[0] > share[1] and sum(share) == pytest.approx(100.0, abs=0.15)


def test_manifold_decodes_the_normal_quantile_grid_with_z2_growing_upwards(tmp_path):
    seen = []

    def decode(z):
        seen.append(z.copy())
        return _decode(z)

    n = 4
    plots.save_manifold(decode, SHAPE, tmp_path / "manifold.png", n=n)
    (z,) = seen
    q = scipy.stats.norm.ppf(np.linspace(0.05, 0.95, n))
    assert z.shape == (n * n, 2)
    np.testing.assert_allclose(z.reshape(n, n, 2)[0, :, 0], q)  # z1 left to right
    np.testing.assert_allclose(z.reshape(n, n, 2)[:, 0, 1], q[::-1])  # z2 top to bottom


def test_history_without_kl_draws_only_the_loss_panel(tmp_path):
    ae = {key: HISTORY[key] for key in ("loss", "val_loss", "recon", "val_recon")}
    ae_width = _png_size(plots.save_history(ae, tmp_path / "ae.png"))[1]
    vae_width = _png_size(plots.save_history(HISTORY, tmp_path / "vae.png"))[1]
    assert vae_width > 1.5 * ae_width


def test_history_accepts_nan_from_a_diverged_epoch_and_a_single_epoch(tmp_path):
    path = plots.save_history({"loss": [100.0, np.nan], "val_loss": [101.0]}, tmp_path / "h.png")
    assert _png_size(path)[0] > 100


def test_beta_sweep_accepts_beta_zero_on_a_linear_axis(tmp_path):
    path = plots.save_beta_sweep([0.0, 1.0, 2.0], [90.0, 95.0, 99.0], [30.0, 20.0, 12.0],
                                 tmp_path / "beta.png")
    assert _png_size(path)[0] > 100


def test_plots_never_imports_pyplot():
    code = "import sys, npvae.plots; sys.exit('matplotlib.pyplot' in sys.modules)"
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or "npvae.plots imported matplotlib.pyplot"
