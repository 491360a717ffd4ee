"""Figures for autoencoders and VAEs: reconstructions, samples, the learned 2-D manifold, latent
scatter plots, interpolations, training curves and beta sweeps.

Every public function takes plain NumPy arrays (the manifold also takes a decoder callable), draws
with matplotlib's object-oriented API on an Agg canvas, writes one PNG atomically and returns its
path. pyplot is never imported, so a caller's backend and global figure state stay untouched and
everything runs headless.

Images are the rows of a 2-D array ``(n, h * w)`` holding intensities in [0, 1] (e.g. Bernoulli
means). They are drawn in grey, 0 = black and 1 = white; values outside [0, 1] are clipped.
Integer images (e.g. uint8 pixels 0..255) are refused rather than clipped to white: scale them
to [0, 1] first. Boolean images (binarized data) are drawn as 0 and 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import scipy.special
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from ._files import write_atomically

__all__ = [
    "save_reconstructions",
    "save_image_grid",
    "save_manifold",
    "save_latent_scatter",
    "save_interpolation",
    "save_history",
    "save_side_by_side",
    "save_beta_sweep",
    "save_code_usage",
]

_DPI = 100
_MAX_CLASSES = 256  # one colour and one colour-bar tick per class; beyond that, unreadable
_PAD = 1  # pixels between tiles
_PAD_VALUE = 0.5  # mid grey: a gap between tiles shows on black (MNIST) and on white backgrounds


def save_reconstructions(
    x: np.ndarray,
    x_recon: np.ndarray,
    image_shape: Sequence[int],
    path: str | os.PathLike[str],
    n: int = 10,
    title: str = "Reconstructions",
) -> Path:
    """Draw inputs (top row) above their reconstructions (bottom row).

    Parameters
    ----------
    x : np.ndarray, shape (batch, h * w)
        Input images, intensities in [0, 1].
    x_recon : np.ndarray, shape (batch, h * w)
        Reconstructions of ``x``, row for row (e.g. the decoder's Bernoulli means).
    image_shape : (h, w)
        Height and width of one image.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    n : int
        How many pairs to show: the first ``min(n, batch)`` rows.
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    shape = _check_image_shape(image_shape)
    x = _check_images("x", x, shape)
    x_recon = _check_images("x_recon", x_recon, shape)
    if x_recon.shape != x.shape:
        raise ValueError(f"x_recon: expected the shape of x, {x.shape}, got {x_recon.shape}")
    n = min(_check_positive_int("n", n), x.shape[0])

    tiled = _tile(np.concatenate([x[:n], x_recon[:n]]), shape, ncols=n)
    fig = _new_figure(_grid_figsize(tiled, n))
    ax = fig.add_subplot()
    _show_image(ax, tiled)
    h = shape[0]
    ax.set_yticks([(h - 1) / 2, h + _PAD + (h - 1) / 2], ["input", "reconstruction"])
    fig.suptitle(title)
    return _save(fig, path)


def save_image_grid(
    images: np.ndarray,
    image_shape: Sequence[int],
    path: str | os.PathLike[str],
    title: str,
    ncols: int = 8,
) -> Path:
    """Draw images in a grid, row by row (e.g. samples decoded from the prior).

    Parameters
    ----------
    images : np.ndarray, shape (n, h * w)
        Intensities in [0, 1].
    image_shape : (h, w)
        Height and width of one image.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    title : str
        Figure title.
    ncols : int
        Images per row (fewer if there are fewer images); the last row may be partly empty.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    shape = _check_image_shape(image_shape)
    images = _check_images("images", images, shape)
    ncols = min(_check_positive_int("ncols", ncols), images.shape[0])

    tiled = _tile(images, shape, ncols)
    fig = _new_figure(_grid_figsize(tiled, ncols))
    _show_image(fig.add_subplot(), tiled)
    fig.suptitle(title)
    return _save(fig, path)


def save_manifold(
    decode: Callable[[np.ndarray], np.ndarray],
    image_shape: Sequence[int],
    path: str | os.PathLike[str],
    n: int = 15,
    title: str = "Learned 2-D latent manifold",
) -> Path:
    """Decode a grid of 2-D latent codes and tile the images (Kingma & Welling 2013, Fig. 4).

    Each axis takes the values ``z_k = Phi^-1(q_k)``, ``q = linspace(0.05, 0.95, n)``, with
    ``Phi^-1`` the N(0, 1) quantile function, so equal steps on the grid cover equal prior mass.
    Columns follow z1 from left to right; rows follow z2 from bottom to top, as on a plot.

    Parameters
    ----------
    decode : callable
        ``decode(z)`` with ``z`` float64 of shape (n * n, 2) returns images (n * n, h * w) in
        [0, 1] (e.g. Bernoulli means, not logits). Wrap a float32 model as
        ``lambda z: model_decode(z.astype(np.float32))``.
    image_shape : (h, w)
        Height and width of one image.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    n : int
        Grid points per axis, at least 2.
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    shape = _check_image_shape(image_shape)
    n = _check_positive_int("n", n)
    if n < 2:
        raise ValueError(f"n: expected at least 2 grid points per axis, got {n}")
    if not callable(decode):
        raise TypeError(f"decode: expected a callable, got {type(decode).__name__}")

    z_values = scipy.special.ndtri(np.linspace(0.05, 0.95, n))  # N(0, 1) quantiles
    z1, z2 = np.meshgrid(z_values, z_values[::-1])  # row 0 holds the largest z2
    z = np.column_stack([z1.ravel(), z2.ravel()])
    images = _check_images("decode(z)", decode(z), shape)
    if images.shape[0] != n * n:
        raise ValueError(
            f"decode: expected {n * n} images for {n * n} latent codes, got {images.shape[0]}"
        )

    h, w = shape
    # a 1-pixel gap: 8x8 digits fill their tiles to the edge and would run together
    tiled = _tile(images, shape, ncols=n)
    fig = _new_figure((7.5, 7.8))
    ax = fig.add_subplot()
    _show_image(ax, tiled)
    ticks = _tick_indices(n, max_ticks=5)
    z_rounded = np.round(z_values, 2) + 0.0  # + 0.0 turns -0.0 into 0.0, so no "-0.00" label
    ax.set_xticks(ticks * (w + _PAD) + (w - 1) / 2, [f"{z_rounded[i]:.2f}" for i in ticks])
    ax.set_yticks(ticks * (h + _PAD) + (h - 1) / 2, [f"{z_rounded[::-1][i]:.2f}" for i in ticks])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title("decoded on a grid of N(0, 1) quantiles, 5% to 95%", fontsize="medium")
    fig.suptitle(title)
    return _save(fig, path)


def save_latent_scatter(
    means: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike[str],
    title: str = "Latent means by label",
) -> Path:
    """Scatter the encoder's means, coloured by class label.

    How ``d`` latent dimensions become two plot axes:

    - ``d == 1``: z1 against a uniform random jitter in [-1, 1] (fixed seed, so the figure is
      reproducible) that only spreads the points out; the y axis says so.
    - ``d == 2``: z1 against z2, as given.
    - ``d > 2``: the first two principal components of the centered means (NumPy SVD); the axis
      labels give each component's share of the total variance.

    Parameters
    ----------
    means : np.ndarray, shape (n, d)
        Encoder means, one row per example (at least 2 rows when ``d > 2``).
    labels : np.ndarray of int, shape (n,)
        Class labels ``0 .. K-1`` with ``K <= 256``; the colour bar shows ticks 0 .. max(labels).
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    means = _as_array("means", means, ndim=2)
    if means.shape[0] < 1 or means.shape[1] < 1:
        raise ValueError(f"means: expected shape (n, d) with n, d >= 1, got {means.shape}")
    if means.shape[1] > 2 and means.shape[0] < 2:
        raise ValueError(
            f"means: expected at least 2 rows to project d > 2 with PCA, got {means.shape}"
        )
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels: expected integer class labels, got dtype {labels.dtype}")
    if labels.shape != (means.shape[0],):
        raise ValueError(
            f"labels: expected shape ({means.shape[0]},) to match means, got {labels.shape}"
        )
    if labels.min() < 0:
        raise ValueError(f"labels: expected non-negative class labels, got minimum {labels.min()}")
    if labels.max() >= _MAX_CLASSES:
        raise ValueError(
            f"labels: expected class labels below {_MAX_CLASSES} (one colour each), got maximum {labels.max()}"
        )

    coords, (xlabel, ylabel) = _project_2d(means)
    n_classes = int(labels.max()) + 1
    fig = _new_figure((7.0, 6.0))
    ax = fig.add_subplot()
    points = ax.scatter(
        coords[:, 0], coords[:, 1], c=labels, s=10, alpha=0.8, linewidths=0,
        cmap=_label_colormap(n_classes),
        norm=BoundaryNorm(np.arange(n_classes + 1) - 0.5, n_classes),
    )
    fig.colorbar(points, ax=ax, ticks=np.arange(n_classes), label="label")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.suptitle(title)
    return _save(fig, path)


def save_interpolation(
    decoded: np.ndarray,
    image_shape: Sequence[int],
    path: str | os.PathLike[str],
    title: str = "Interpolation between two latent codes",
) -> Path:
    """Draw images decoded along a straight line between two latent codes, in one row.

    Image ``i`` of ``steps`` is expected to decode ``z = (1 - t) z_start + t z_end`` with
    ``t = i / (steps - 1)``; the x axis is labelled with ``t``.

    Parameters
    ----------
    decoded : np.ndarray, shape (steps, h * w)
        Decoded images in [0, 1], from ``z_start`` to ``z_end``, at least 2.
    image_shape : (h, w)
        Height and width of one image.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    shape = _check_image_shape(image_shape)
    decoded = _check_images("decoded", decoded, shape)
    steps = decoded.shape[0]
    if steps < 2:
        raise ValueError(f"decoded: expected at least 2 steps, got shape {decoded.shape}")

    tiled = _tile(decoded, shape, ncols=steps)
    fig = _new_figure(_grid_figsize(tiled, steps, text_height=1.0))
    ax = fig.add_subplot()
    _show_image(ax, tiled)
    w = shape[1]
    ticks = _tick_indices(steps, max_ticks=11)
    ax.set_xticks(ticks * (w + _PAD) + (w - 1) / 2, [f"{i / (steps - 1):.2g}" for i in ticks])
    ax.set_xlabel("t,  z = (1 - t) z_start + t z_end")
    fig.suptitle(title)
    return _save(fig, path)


def save_history(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    title: str = "Training history",
) -> Path:
    """Plot per-epoch training curves.

    Left panel: ``loss`` (train, solid) and ``val_loss`` (validation, dashed) in nats per example
    against the epoch, counted from 1. Right panel, only when ``kl`` or ``val_kl`` is present
    (a VAE): the reconstruction and KL terms, ``recon``/``kl`` solid and ``val_recon``/``val_kl``
    dashed. Missing keys are skipped and other keys ignored; NaN (e.g. a diverged epoch) leaves a
    gap.

    Parameters
    ----------
    history : Mapping[str, Sequence[float]]
        Per-epoch values under the keys ``loss``, ``val_loss``, ``recon``, ``val_recon``,
        ``kl``, ``val_kl``; at least one of ``loss``, ``val_loss``, ``kl``, ``val_kl``.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    if not isinstance(history, Mapping):
        hint = " (for a training History, pass history.as_dict())" if hasattr(history, "as_dict") else ""
        raise TypeError(
            f"history: expected a mapping of key -> per-epoch values, got {type(history).__name__}{hint}"
        )
    known = ("loss", "val_loss", "recon", "val_recon", "kl", "val_kl")
    curves = {}
    for key in known:
        if key in history:
            values = _as_array(f"history[{key!r}]", history[key], ndim=1, finite=False)
            if values.size == 0:
                raise ValueError(
                    f"history[{key!r}]: expected per-epoch values, got an empty sequence"
                )
            if np.isinf(values).any():
                raise ValueError(f"history[{key!r}]: expected finite values or NaN, got inf")
            curves[key] = values
    has_loss = "loss" in curves or "val_loss" in curves
    has_kl = "kl" in curves or "val_kl" in curves
    if not (has_loss or has_kl):
        raise ValueError(
            f"history: expected at least one of 'loss', 'val_loss', 'kl', 'val_kl', "
            f"got keys {sorted(history)}"
        )

    display_names = {"loss": "loss", "recon": "reconstruction", "kl": "KL"}
    panels = [("total loss", (("loss", "C0"),))] if has_loss else []
    if has_kl:
        panels.append(("reconstruction and KL terms", (("recon", "C2"), ("kl", "C3"))))
    fig = _new_figure((5.5 * len(panels), 4.2))
    for col, (panel_title, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), col + 1)
        for key, colour in series:
            for name, style, which in ((key, "-", "train"), (f"val_{key}", "--", "validation")):
                if name in curves:
                    values = curves[name]
                    ax.plot(
                        np.arange(1, values.size + 1), values, style, color=colour,
                        marker="o" if values.size <= 20 else None, markersize=3,
                        label=f"{display_names[key]} ({which})",
                    )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.set_title(panel_title, fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def save_side_by_side(
    grids: Sequence[np.ndarray],
    image_shape: Sequence[int],
    path: str | os.PathLike[str],
    titles: Sequence[str],
    title: str = "Samples decoded from z ~ N(0, I)",
    ncols: int = 8,
) -> Path:
    """Draw several image sets side by side, one titled grid per set.

    Parameters
    ----------
    grids : sequence of np.ndarray, each of shape (n_i, h * w)
        The image sets (e.g. AE samples and VAE samples), intensities in [0, 1].
    image_shape : (h, w)
        Height and width of one image, shared by all sets.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    titles : sequence of str
        One panel title per set.
    title : str
        Figure title.
    ncols : int
        Images per row within each panel.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    shape = _check_image_shape(image_shape)
    if isinstance(grids, np.ndarray) or not isinstance(grids, Sequence) or len(grids) == 0:
        raise ValueError(
            f"grids: expected a non-empty sequence of image arrays, got {type(grids).__name__}"
        )
    grids = [_check_images(f"grids[{i}]", grid, shape) for i, grid in enumerate(grids)]
    if isinstance(titles, str) or not isinstance(titles, Sequence) or len(titles) != len(grids):
        raise ValueError(
            f"titles: expected a sequence of {len(grids)} strings, one per grid, got {titles!r}"
        )
    ncols = _check_positive_int("ncols", ncols)

    tiles = [_tile(grid, shape, min(ncols, grid.shape[0])) for grid in grids]
    panel_width, _ = _grid_figsize(tiles[0], min(ncols, grids[0].shape[0]), max_width=6.0)
    tallest = max(tiled.shape[0] / tiled.shape[1] for tiled in tiles)
    fig = _new_figure((panel_width * len(tiles), panel_width * tallest + 0.9))
    for col, (tiled, panel_title) in enumerate(zip(tiles, titles)):
        ax = fig.add_subplot(1, len(tiles), col + 1)
        _show_image(ax, tiled)
        ax.set_title(panel_title, fontsize="medium")
    fig.suptitle(title)
    return _save(fig, path)


def save_beta_sweep(
    betas: Sequence[float],
    recon: Sequence[float],
    kl: Sequence[float],
    path: str | os.PathLike[str],
    title: str = "Reconstruction and KL across β",
) -> Path:
    """Plot reconstruction NLL and KL (nats per example) against the KL weight beta.

    The training objective behind each point is ``recon + beta * kl`` (beta-VAE, Higgins et al.
    2017). Points are joined in order of increasing beta; the x axis is logarithmic when every
    beta is positive.

    Parameters
    ----------
    betas : sequence of float, shape (k,)
        KL weights, non-negative.
    recon : sequence of float, shape (k,)
        Reconstruction negative log-likelihood (nats per example) for each beta.
    kl : sequence of float, shape (k,)
        KL(q(z|x) || p(z)) (nats per example) for each beta.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    betas = _as_array("betas", betas, ndim=1)
    if betas.size == 0 or (betas < 0).any():
        raise ValueError(
            f"betas: expected a non-empty sequence of non-negative values, got {betas}"
        )
    recon = _as_array("recon", recon, ndim=1)
    kl = _as_array("kl", kl, ndim=1)
    for name, values in (("recon", recon), ("kl", kl)):
        if values.shape != betas.shape:
            raise ValueError(
                f"{name}: expected shape {betas.shape} to match betas, got {values.shape}"
            )

    order = np.argsort(betas, kind="stable")
    fig = _new_figure((6.5, 4.5))
    ax = fig.add_subplot()
    ax.plot(betas[order], recon[order], "o-", label="reconstruction NLL")
    ax.plot(betas[order], kl[order], "s-", label="KL(q(z|x) || p(z))")
    if (betas > 0).all():
        ax.set_xscale("log")
    if np.unique(betas).size <= 10:
        ax.set_xticks(np.unique(betas), [f"{beta:g}" for beta in np.unique(betas)], minor=False)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("β (weight of the KL term)")
    ax.set_ylabel("nats per example")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def _tile(
    images: np.ndarray,
    image_shape: tuple[int, int],
    ncols: int,
    pad: int = _PAD,
    pad_value: float = _PAD_VALUE,
) -> np.ndarray:
    """Lay images out row by row in one 2-D array.

    With ``c = min(ncols, n)`` columns and ``r = ceil(n / c)`` rows the result has shape
    ``(r * (h + pad) - pad, c * (w + pad) - pad)``; image ``i`` has its top-left pixel at
    ``(i // c * (h + pad), i % c * (w + pad))``. Gaps and unused cells hold ``pad_value``.
    """
    h, w = image_shape
    n = images.shape[0]
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), pad_value)
    for i, image in enumerate(images.reshape(n, h, w)):
        top, left = i // ncols * (h + pad), i % ncols * (w + pad)
        out[top:top + h, left:left + w] = image
    return out


def _project_2d(means: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Map means (n, d) to plot coordinates (n, 2) and two axis labels (see save_latent_scatter).

    For d > 2: X_c = X - mean(X) = U S V^T, coordinates X_c V[:, :2]; component k explains
    S_k^2 / sum(S^2) of the variance. Each component's sign makes its largest loading positive,
    so the picture does not flip between LAPACK builds.
    """
    n, d = means.shape
    if d == 1:
        jitter = np.random.default_rng(0).uniform(-1.0, 1.0, size=n)
        return np.column_stack([means[:, 0], jitter]), ("z1", "random jitter (no meaning)")
    if d == 2:
        return means, ("z1", "z2")
    centered = means - means.mean(axis=0)
    _, singular_values, components = np.linalg.svd(centered, full_matrices=False)
    components = components[:2]
    components *= np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])[:, None]
    variance = singular_values**2
    explained = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    pc1, pc2 = (f"PC{k + 1} ({100 * explained[k]:.1f}% of variance)" for k in range(2))
    return centered @ components.T, (pc1, pc2)


def _label_colormap(n_classes: int) -> Colormap:
    """One colour per class; up to 20 classes, label k keeps its colour whatever their number."""
    if n_classes <= 10:
        return ListedColormap(matplotlib.colormaps["tab10"].colors[:n_classes])
    if n_classes <= 20:
        return ListedColormap(matplotlib.colormaps["tab20"].colors[:n_classes])
    return matplotlib.colormaps["viridis"].resampled(n_classes)


def _tick_indices(count: int, max_ticks: int) -> np.ndarray:
    """At most max_ticks indices spread evenly over 0 .. count - 1, both ends included."""
    return np.unique(np.linspace(0, count - 1, min(count, max_ticks)).round().astype(int))


def _show_image(ax: Axes, tiled: np.ndarray) -> None:
    """Draw a tiled image in grey, 0 = black and 1 = white, without ticks."""
    ax.imshow(tiled, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.tick_params(length=0)


def _grid_figsize(
    tiled: np.ndarray, ncols: int, max_width: float = 11.0, text_height: float = 0.6
) -> tuple[float, float]:
    """Figure size (inches) for a tiled image with ncols columns, about 0.9 inch per image, plus
    text_height inches for the title and any tick labels."""
    width = float(np.clip(0.9 * ncols + 0.6, 4.0, max_width))
    height = (width - 0.6) * tiled.shape[0] / tiled.shape[1] + text_height
    return width, max(height, 1.8)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure on its own Agg canvas, independent of pyplot and of the user's backend."""
    fig = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Write fig as PNG to path atomically (see ``npvae._files``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda file: fig.savefig(file, format="png"))


def _check_path(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path: expected a file name ending in .png, got {str(path)!r}")
    return path


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, np.ndarray)) else ()
    if len(shape) != 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"image_shape: expected (height, width), two positive integers, got {image_shape!r}"
        )
    return int(shape[0]), int(shape[1])


def _as_array(name: str, value: object, ndim: int, finite: bool = True) -> np.ndarray:
    """value as a float64 array with ndim dimensions (and only finite entries if finite)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if finite and not np.isfinite(arr).all():
        raise ValueError(
            f"{name}: expected finite values, got {np.count_nonzero(~np.isfinite(arr))} NaN or inf"
        )
    return arr.astype(np.float64)


def _check_images(name: str, images: object, image_shape: tuple[int, int]) -> np.ndarray:
    """images as float64 (n, h * w) with n >= 1 and finite values; integer pixels are refused."""
    h, w = image_shape
    arr = np.asarray(images)
    if arr.dtype.kind in "iu":
        raise TypeError(
            f"{name}: expected intensities in [0, 1] as floats, got dtype {arr.dtype} "
            "(scale pixel values first, e.g. x / 255)"
        )
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != h * w:
        raise ValueError(
            f"{name}: expected shape (n, {h * w}) with n >= 1 for image_shape ({h}, {w}), "
            f"got {arr.shape}"
        )
    return _as_array(name, arr, ndim=2)


def save_code_usage(
    counts: Mapping[str, Sequence[int]],
    path: str | os.PathLike[str],
    title: str = "Codebook usage",
) -> Path:
    """Bar charts of how often each codebook vector is assigned (a VQ-VAE's code usage).

    One panel per entry of ``counts``, side by side (e.g. the loss and the EMA codebook): code
    index against the fraction of latent vectors assigned to it, with the perplexity
    exp(-sum_k p_k log p_k) and the number of codes used in the panel title.

    Parameters
    ----------
    counts : Mapping[str, Sequence[int]]
        Panel title -> assignment counts per code (``VQVAE.code_counts(x)``), non-negative, not all 0.
    path : str or os.PathLike
        Where to write the PNG (must end in ``.png``; missing parent directories are created).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``, now holding the PNG.
    """
    path = _check_path(path)
    if not isinstance(counts, Mapping) or not counts:
        raise TypeError(f"counts: expected a non-empty mapping of panel title -> counts, got {type(counts).__name__}")
    panels = {}
    for name, values in counts.items():
        values = _as_array(f"counts[{name!r}]", values, ndim=1)
        if values.size == 0 or (values < 0).any() or values.sum() == 0:
            raise ValueError(f"counts[{name!r}]: expected non-negative counts, not all 0, got {values.size} values")
        panels[name] = values / values.sum()
    fig = _new_figure((5.0 * len(panels), 3.6))
    for col, (name, fractions) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), col + 1)
        used = fractions[fractions > 0]
        perplexity = float(np.exp(-np.sum(used * np.log(used))))
        ax.bar(np.arange(fractions.size), fractions, width=1.0, color="C0", edgecolor="white", linewidth=0.3)
        ax.axhline(1.0 / fractions.size, color="C3", linestyle="--", linewidth=1, label="uniform use")
        ax.set_xlim(-0.5, fractions.size - 0.5)
        ax.set_xlabel("code index")
        ax.set_ylabel("fraction of latent vectors")
        ax.set_title(f"{name}\nperplexity {perplexity:.1f}, {used.size} of {fractions.size} codes used",
                     fontsize="medium")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return _save(fig, path)
