"""The command line on users' own data, with snapshots, report.md, early stopping, best.npz, learning-
rate schedules and ``npvae encode``: in-process ``main([...])`` calls on tiny files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import npvae.train
from npvae import checkpoint
from npvae.cli import main

FAST = ["--hidden", "8", "--latent-dim", "2", "--batch-size", "32", "--lr", "0.01"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory):
    """200 binary-ish 4x4 images with labels 0..3, as uint8 pixels in an .npz."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    prototypes = rng.random((4, 16)) < 0.5
    flips = rng.random((200, 16)) < 0.1
    x = ((prototypes[labels] ^ flips) * 255).astype(np.uint8).reshape(200, 4, 4)
    path = tmp_path_factory.mktemp("data") / "mine.npz"
    np.savez(path, x=x, y=labels)
    return path


def train(out, data_file, *options: str) -> int:
    return main(["train", "--data", str(data_file), "--out", str(out), *FAST, *options])


def parameters(path):
    return np.concatenate([value.ravel() for value in checkpoint.load(path).state_dict().values()])


def test_train_on_own_file_writes_best_report_snapshots_and_gif(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(out, data_file, "--epochs", "4", "--snapshot-every", "2", "--val-fraction", "0.25") == 0
    stdout = capsys.readouterr().out
    assert "train (150, 16), validation (50, 16) (--val-fraction 0.25, seed 0)" in stdout
    for name in ("model.npz", "best.npz", "report.md", "snapshots/epoch_0004_samples.png", "snapshots/samples.gif"):
        assert (out / name).is_file(), name
    with Image.open(out / "snapshots" / "samples.gif") as gif:
        assert gif.n_frames == 2
    best = checkpoint.load_checkpoint(out / "best.npz")
    history = checkpoint.load_checkpoint(out / "model.npz").history
    assert len(best.history) == int(np.argmin(history.val_loss)) + 1  # best.npz is the lowest validation loss
    report = (out / "report.md").read_text()
    assert "npvae train --data" in report and "| negative ELBO (1 z per example) |" in report
    assert "-L_10 (IWAE bound, K=10)" in report and "![samples](snapshots/samples.gif)" in report
    assert "Metrics on the validation split (50 images)" in report


def test_eval_and_sample_take_best_npz_and_encode_writes_latents(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(out, data_file, "--epochs", "2") == 0
    capsys.readouterr()
    assert main(["eval", str(out / "best.npz"), "--iw-samples", "5"]) == 0
    assert "20 images of 4x4" in capsys.readouterr().out  # the held-out 10% of 200
    assert main(["sample", str(out / "best.npz"), "--out", str(tmp_path / "s.png"), "--n", "4"]) == 0
    assert main(["encode", str(out / "model.npz"), "--split", "train", "--out", str(tmp_path / "z.npz")]) == 0
    with np.load(tmp_path / "z.npz", allow_pickle=False) as latents:
        mu, logvar, labels = latents["mu"], latents["logvar"], latents["labels"]
    assert mu.shape == (180, 2) and logvar.shape == (180, 2) and labels.shape == (180,)
    with np.load(data_file) as full:
        x, y = full["x"].reshape(200, 16) / 255.0, full["y"]
    all_mu = checkpoint.load(out / "model.npz").encode(x)[0]
    distances = np.abs(mu[:, None, :] - all_mu[None, :, :]).max(axis=2)
    rows = distances.argmin(axis=1)  # the image each code belongs to (batching may round differently)
    assert distances.min(axis=1).max() < 1e-5
    np.testing.assert_array_equal(labels, y[rows])


def test_early_stopping_stops_and_a_resume_has_nothing_to_do(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(out, data_file, "--epochs", "60", "--lr", "0.1", "--patience", "1") == 0
    history = checkpoint.load_checkpoint(out / "model.npz").history
    assert len(history) < 60 and "stopped after epoch" in capsys.readouterr().out
    assert np.argmin(history.val_loss) == len(history) - 2  # the last epoch was the first without progress
    assert main(["train", "--resume", str(out)]) == 0
    assert "stopped early" in capsys.readouterr().out


def interrupt_after_epoch(monkeypatch, stop: int) -> None:
    """Make npvae.train.fit raise KeyboardInterrupt (Ctrl-C) once epoch ``stop`` is checkpointed."""
    real_fit = npvae.train.fit

    def ctrl_c(epoch, history):
        if epoch == stop:
            raise KeyboardInterrupt

    def fit(*args, callbacks=(), **kwargs):
        return real_fit(*args, callbacks=[*callbacks, ctrl_c], **kwargs)

    monkeypatch.setattr(npvae.train, "fit", fit)


def test_schedule_patience_and_snapshots_resume_to_the_bit(tmp_path, data_file, monkeypatch):
    # cosine: the rate changes every epoch (tests/test_schedules.py resumes the others through fit)
    options = ["--epochs", "6", "--lr-schedule", "cosine", "--patience", "3", "--snapshot-every", "2"]
    assert train(tmp_path / "whole", data_file, *options) == 0
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 3)
        assert train(tmp_path / "parts", data_file, *options) == 130
    assert main(["train", "--resume", str(tmp_path / "parts")]) == 0
    np.testing.assert_array_equal(parameters(tmp_path / "parts" / "model.npz"),
                                  parameters(tmp_path / "whole" / "model.npz"))
    np.testing.assert_array_equal(parameters(tmp_path / "parts" / "best.npz"),
                                  parameters(tmp_path / "whole" / "best.npz"))
    whole = checkpoint.load_checkpoint(tmp_path / "whole" / "model.npz")
    parts = checkpoint.load_checkpoint(tmp_path / "parts" / "model.npz")
    assert parts.optimizer.lr == whole.optimizer.lr
    assert parts.history.val_loss == whole.history.val_loss
    with Image.open(tmp_path / "parts" / "snapshots" / "samples.gif") as gif:
        assert gif.n_frames == 3  # epochs 2, 4, 6: the frame from before the interruption is kept
    assert whole.optimizer.lr < 0.01  # the rate did decay


def test_gaussian_output_trains_on_data_outside_unit_range(tmp_path, capsys):
    x = np.random.default_rng(1).normal(0.0, 3.0, (60, 9))
    np.save(tmp_path / "real.npy", x)
    assert main(["train", "--data", str(tmp_path / "real.npy"), "--out", str(tmp_path / "b"), *FAST,
                 "--epochs", "1"]) == 1
    assert "after scaling, expected [0, 1]" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "real.npy"), "--out", str(tmp_path / "g"), *FAST,
                 "--epochs", "2", "--output", "gaussian"]) == 0
    assert checkpoint.load(tmp_path / "g" / "model.npz").output == "gaussian"


def test_bad_own_data_and_options_give_clear_errors(tmp_path, capsys):
    (tmp_path / "ragged.csv").write_text("a,b,label\n0,1,0\n1\n")
    assert main(["train", "--data", str(tmp_path / "ragged.csv"), "--out", str(tmp_path / "r"), "--epochs", "1"]) == 1
    assert "ragged.csv: row 3 has 1 values, expected 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "missing.npz")])
    assert exit_info.value.code == 2
    assert "expected one of digits, mnist, fashion-mnist or an existing file or folder" in capsys.readouterr().err
    assert main(["train", "--patience", "2", "--out", str(tmp_path / "p")]) == 1
    assert "--patience needs a validation set" in capsys.readouterr().err
    assert main(["train", "--resize", "4", "4", "--out", str(tmp_path / "z")]) == 1
    assert "--resize applies to your own data" in capsys.readouterr().err


def test_force_removes_an_earlier_runs_best_report_and_snapshots(tmp_path, data_file):
    out = tmp_path / "run"
    assert train(out, data_file, "--epochs", "2", "--snapshot-every", "1") == 0
    assert train(out, data_file, "--epochs", "1", "--val-fraction", "0", "--force", "--model", "ae") == 0
    assert not (out / "best.npz").exists() and not (out / "snapshots" / "samples.gif").exists()
    assert not list((out / "snapshots").glob("epoch_*.png"))
    assert "Trained 1 epoch." in (out / "report.md").read_text()
