"""Snapshots over training: reconstructions and samples every N epochs, and a GIF of the samples.

    snapshots = Snapshots(model, x_test[:10], (8, 8), run_dir / "snapshots", every=5, seed=0)
    fit(model, x, epochs, callbacks=[snapshots])       # epoch_0005_samples.png, ..._reconstructions.png
    snapshots.write_gif()                              # samples.gif: one frame per snapshot

The samples decode the same codes every time, drawn once from ``default_rng(seed)`` (not from
the training generator, so snapshots never change a run), which shows one set of images taking
shape over training: z ~ N(0, I) for an AE or a VAE, code indices drawn uniformly from the
codebook for a VQ-VAE (which has no fixed prior; its learned priors come after training). The GIF is assembled from the sample PNGs on disk, so the frames of a run
stopped and resumed are all there. Like every npvae figure, nothing here prints or uses pyplot.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks
from .history import History
from .models.base import Autoencoder

__all__ = ["Snapshots", "write_gif"]

_SAMPLES = re.compile(r"epoch_(\d+)_samples\.png")
_FRAME_SECONDS = 0.5


class Snapshots:
    """A ``fit`` callback writing ``epoch_NNNN_reconstructions.png`` and ``epoch_NNNN_samples.png``
    into ``directory`` after every ``every``-th epoch (and the last one, via :meth:`final`).

    Parameters
    ----------
    model : AE or VAE
    x_shown : array (n, input_dim)
        The images whose reconstructions are drawn (e.g. the first 10 test images).
    image_shape : (h, w)
    directory : path
        Created if missing.
    every : int
        Snapshot epochs are the multiples of ``every``.
    seed : int
        Seed of the fixed codes z of the samples.
    n_samples : int
        Samples per snapshot.
    """

    def __init__(self, model: Autoencoder, x_shown: Any, image_shape: Sequence[int], directory: str | os.PathLike,
                 every: int, seed: int, n_samples: int = 64) -> None:
        if not isinstance(model, Autoencoder):
            raise TypeError(f"model: expected an npvae AE or VAE, got {type(model).__name__}")
        self.every = _checks.positive_int("every", every)
        n_samples = _checks.positive_int("n_samples", n_samples)
        seed = _checks.int_at_least("seed", seed, 0)
        self.model = model
        self.x_shown = model.validate(x_shown, name="x_shown")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.directory = _checks.file_path(directory, name="directory")
        rng = np.random.default_rng(seed)
        if hasattr(model, "decode_indices"):  # a VQ-VAE: fixed code indices, uniform over the codebook
            self.codes = rng.integers(0, model.num_codes, (n_samples, model.num_latents))
            self._decode = lambda: model.decode_indices(self.codes)
        else:
            self.codes = rng.standard_normal((n_samples, model.latent_dim)).astype(model.dtype)
            self._decode = lambda: model.decode(self.codes)

    def __call__(self, epoch: int, history: History) -> None:
        if epoch % self.every == 0:
            self.write(epoch)

    def write(self, epoch: int) -> list[Path]:
        """Draw the snapshot of ``epoch`` now; return the two PNGs."""
        from . import plots  # matplotlib is imported only when a snapshot is drawn

        name = type(self.model).__name__
        # a Gaussian decoder's means may leave [0, 1]: clipped for display only
        shown = np.clip(self.model.reconstruct(self.x_shown), 0.0, 1.0)
        samples = np.clip(self._decode(), 0.0, 1.0)
        return [
            plots.save_reconstructions(np.clip(self.x_shown, 0.0, 1.0), shown, self.image_shape,
                                       self.directory / f"epoch_{epoch:04d}_reconstructions.png",
                                       n=len(shown), title=f"{name} reconstructions after epoch {epoch}"),
            plots.save_image_grid(samples, self.image_shape, self.directory / f"epoch_{epoch:04d}_samples.png",
                                  title=f"{name}: the same codes decoded after epoch {epoch}"),
        ]

    def final(self, epoch: int) -> Path | None:
        """At the end of training: the last epoch's snapshot if it was not one, then the GIF."""
        if epoch >= 1 and not (self.directory / f"epoch_{epoch:04d}_samples.png").exists():
            self.write(epoch)
        return write_gif(self.directory)


def write_gif(directory: str | os.PathLike, name: str = "samples.gif") -> Path | None:
    """Animate every ``epoch_NNNN_samples.png`` of ``directory``, by epoch, into ``directory/name``.

    Written with matplotlib's Pillow writer, to a temporary file renamed into place. Returns the
    GIF's path, or None when there is no sample snapshot.
    """
    import matplotlib.image
    from matplotlib.animation import ArtistAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    directory = Path(directory)
    frames = sorted((int(match.group(1)), path) for path in directory.glob("epoch_*_samples.png")
                    if (match := _SAMPLES.fullmatch(path.name)))
    if not frames:
        return None
    first = matplotlib.image.imread(frames[0][1])
    height, width = first.shape[:2]
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    artists = [[ax.imshow(matplotlib.image.imread(path), animated=True)] for _, path in frames]
    animation = ArtistAnimation(fig, artists, interval=_FRAME_SECONDS * 1000, blit=False)
    target = directory / name
    temp = directory / f".{name}.{os.getpid()}.tmp.gif"
    try:
        animation.save(temp, writer=PillowWriter(fps=1 / _FRAME_SECONDS))
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target
