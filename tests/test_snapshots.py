"""Tests for npvae.snapshots: snapshot files every N epochs, a GIF with one frame each, runs unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import npvae
from npvae.snapshots import Snapshots, write_gif

X = (np.random.default_rng(0).random((40, 16)) < 0.3).astype(np.float64)


def train(callbacks, epochs=4):
    model = npvae.VAE(16, [8], 2, seed=0)
    npvae.fit(model, X, epochs, batch_size=10, seed=1, callbacks=callbacks, progress=False)
    return model


def test_snapshots_every_n_epochs_then_a_gif_with_one_frame_per_snapshot(tmp_path):
    model = npvae.VAE(16, [8], 2, seed=0)
    snapshots = Snapshots(model, X[:5], (4, 4), tmp_path / "snapshots", every=2, seed=0)
    npvae.fit(model, X, 5, batch_size=10, seed=1, callbacks=[snapshots], progress=False)
    names = sorted(path.name for path in (tmp_path / "snapshots").iterdir())
    assert names == [f"epoch_{e:04d}_{kind}.png" for e in (2, 4) for kind in ("reconstructions", "samples")]
    gif = snapshots.final(5)  # epoch 5 was not a snapshot epoch: drawn now, then the GIF
    assert (tmp_path / "snapshots" / "epoch_0005_samples.png").exists()
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 3


def test_snapshots_use_fixed_codes_and_leave_training_unchanged(tmp_path):
    plain = train([])
    model = npvae.VAE(16, [8], 2, seed=0)
    first = Snapshots(model, X[:5], (4, 4), tmp_path / "a", every=1, seed=7)
    second = Snapshots(model, X[:5], (4, 4), tmp_path / "b", every=1, seed=7)
    np.testing.assert_array_equal(first.codes, second.codes)
    npvae.fit(model, X, 4, batch_size=10, seed=1, callbacks=[first], progress=False)
    for own, other in zip(model.parameters(), plain.parameters()):
        np.testing.assert_array_equal(own.value, other.value)


def test_write_gif_without_snapshots_returns_none(tmp_path):
    assert write_gif(tmp_path) is None


def test_snapshots_check_their_arguments(tmp_path):
    model = npvae.VAE(16, [8], 2)
    with pytest.raises(ValueError, match="every: expected a positive integer"):
        Snapshots(model, X[:5], (4, 4), tmp_path, every=0, seed=0)
    with pytest.raises(ValueError, match=r"x_shown: expected shape \(batch, 16\)"):
        Snapshots(model, X[:5, :4], (4, 4), tmp_path, every=1, seed=0)


def test_vqvae_snapshots_decode_fixed_code_indices(tmp_path):
    model = npvae.VQVAE(16, [8], code_dim=2, num_latents=2, num_codes=4, seed=0)
    snapshots = Snapshots(model, X[:5], (4, 4), tmp_path, every=1, seed=0)
    assert snapshots.codes.shape == (64, 2) and snapshots.codes.max() < 4
    snapshots.write(1)
    assert (tmp_path / "epoch_0001_samples.png").is_file()
