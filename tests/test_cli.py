"""Tests of the npvae command line: in-process ``main([...])`` calls on the embedded digits."""

from __future__ import annotations

import csv
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import npvae
import npvae.train
from npvae import checkpoint
from npvae.cli import main

# Small and fast: 1,500 digits in 6 steps per epoch through one hidden layer of 16.
FAST = ["--hidden", "16", "--batch-size", "256", "--lr", "0.01"]
FIGURES = ("reconstructions.png", "samples.png", "manifold.png", "latent.png", "interpolation.png", "history.png")
PACKAGE_PARENT = Path(npvae.__file__).resolve().parent.parent  # where the npvae under test is imported from
DEMOS = Path(__file__).resolve().parent.parent / "demos"


def train(out: Path, *options: str) -> int:
    return main(["train", "--out", str(out), *FAST, *options])


def saved_parameters(path: Path) -> dict[str, np.ndarray]:
    return checkpoint.load(path).state_dict()


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch VAE run on digits, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert train(out, "--epochs", "2") == 0
    return out


def test_train_writes_checkpoint_history_config_and_every_figure(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--epochs", "2", "--seed", "3") == 0
    stdout = capsys.readouterr().out
    for name in ("model.npz", "history.csv", "config.json", *FIGURES):
        assert (out / name).is_file(), name
        assert str(out / name) in stdout
    for name in FIGURES:
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 50
    assert re.search(r"^\s+1(\s+-?\d+\.\d+){6}\s+\d+\.\d+$", stdout, re.MULTILINE)
    assert re.search(r"^\s+2(\s+-?\d+\.\d+){6}\s+\d+\.\d+$", stdout, re.MULTILINE)
    assert re.search(r"VAE\(input_dim=64, hidden_dims=\[16\], latent_dim=2.*parameters, float32", stdout)
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 2 and config["seed"] == 3 and config["hidden"] == [16] and config["model"] == "vae"
    with open(out / "history.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    saved = checkpoint.load_checkpoint(out / "model.npz")
    assert type(saved.model).__name__ == "VAE" and len(saved.history) == 2
    assert saved.optimizer is not None and saved.rng is not None


def test_train_without_latent_dim_2_skips_the_manifold(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--epochs", "1", "--latent-dim", "3", "--model", "ae") == 0
    assert not (out / "manifold.png").exists()
    assert (out / "latent.png").is_file() and (out / "samples.png").is_file()
    assert type(checkpoint.load(out / "model.npz")).__name__ == "AE"


def test_eval_prints_finite_negative_elbo_terms_and_iwae_estimate(trained_run, capsys):
    assert main(["eval", str(trained_run / "model.npz"), "--iw-samples", "5"]) == 0
    stdout = capsys.readouterr().out
    numbers = {}
    for label in ("negative ELBO", "reconstruction", "KL", "IWAE -log p(x) estimate, K=5"):
        match = re.search(re.escape(label) + r".*?\s(-?\d+\.\d+)$", stdout, re.MULTILINE)
        assert match, (label, stdout)
        numbers[label] = float(match.group(1))
    assert all(np.isfinite(value) for value in numbers.values())
    assert numbers["negative ELBO"] == pytest.approx(numbers["reconstruction"] + numbers["KL"], abs=2e-4)
    assert numbers["KL"] >= 0


def _negative_elbo(stdout: str) -> float:
    return float(re.search(r"negative ELBO.*?\s(-?\d+\.\d+)$", stdout, re.MULTILINE).group(1))


def test_eval_binarizes_the_data_as_the_run_was_trained_unless_told_otherwise(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--epochs", "1", "--binarize") == 0
    capsys.readouterr()
    model = str(out / "model.npz")
    results = {}
    for name, options in (("config", []), ("on", ["--binarize"]), ("off", ["--no-binarize"])):
        assert main(["eval", model, "--iw-samples", "2", *options]) == 0
        stdout = capsys.readouterr().out
        assert ("binarized (one draw)" in stdout) == (name != "off"), stdout
        results[name] = _negative_elbo(stdout)
    assert results["config"] == results["on"]  # the run's setting, the same seed: the same draw
    assert results["off"] != results["on"]  # grey levels are other data


def test_eval_refuses_data_of_another_input_dim(tmp_path, capsys):
    path = npvae.save(npvae.VAE(10, (4,), 2), tmp_path / "model.npz")
    assert main(["eval", str(path), "--data", "digits"]) == 1
    stderr = capsys.readouterr().err
    assert "input_dim 10" in stderr and "64 pixels" in stderr
    assert_no_traceback(stderr)


def test_eval_without_data_and_without_config_asks_for_data(tmp_path, capsys):
    path = npvae.save(npvae.VAE(64, (4,), 2), tmp_path / "model.npz")
    assert main(["eval", str(path)]) == 1
    assert "--data" in capsys.readouterr().err


def test_sample_writes_a_png_grid(trained_run, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", str(trained_run / "model.npz"), "--n", "16", "--out", str(out), "--seed", "1"]) == 0
    assert matplotlib.image.imread(out).ndim == 3
    assert str(out) in capsys.readouterr().out


def test_sample_refuses_a_model_whose_input_is_not_a_square_image(tmp_path, capsys):
    path = npvae.save(npvae.VAE(10, (4,), 2), tmp_path / "model.npz")
    assert main(["sample", str(path), "--out", str(tmp_path / "s.png")]) == 1
    assert "10 pixels" in capsys.readouterr().err


def test_default_out_is_a_new_runs_directory_every_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["train", *FAST, "--epochs", "1", "--model", "ae"]) == 0
    runs = sorted(path.name for path in (tmp_path / "runs").iterdir())
    assert len(runs) == 2
    assert all(name.startswith("ae-digits-") for name in runs)
    assert all((tmp_path / "runs" / name / "model.npz").is_file() for name in runs)


def test_existing_non_empty_out_is_refused_unless_force(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert train(out, "--epochs", "1") == 1
    stderr = capsys.readouterr().err
    assert str(out) in stderr and "--force" in stderr
    assert_no_traceback(stderr)
    assert not (out / "model.npz").exists()
    assert train(out, "--epochs", "1", "--force") == 0
    assert (out / "model.npz").is_file() and (out / "notes.txt").read_text() == "mine"


def test_resumed_run_ends_with_the_parameters_of_an_uninterrupted_run(tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(straight, "--epochs", "2", "--kl-warmup", "1") == 0
    assert train(resumed, "--epochs", "1", "--kl-warmup", "1") == 0
    assert main(["train", "--resume", str(resumed), "--epochs", "2"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    expected, got = saved_parameters(straight / "model.npz"), saved_parameters(resumed / "model.npz")
    assert expected.keys() == got.keys()
    for name in expected:
        assert np.array_equal(expected[name], got[name]), name
    a, b = checkpoint.load_checkpoint(straight / "model.npz"), checkpoint.load_checkpoint(resumed / "model.npz")
    assert a.history.val_loss == b.history.val_loss
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    assert json.loads((resumed / "config.json").read_text())["epochs"] == 2


def test_resume_of_a_finished_run_says_so_and_changes_nothing(trained_run, capsys):
    before = (trained_run / "model.npz").read_bytes()
    assert main(["train", "--resume", str(trained_run), "--epochs", "2"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (trained_run / "model.npz").read_bytes() == before


def test_resume_refuses_a_changed_setting(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--epochs", "3", "--lr", "0.5"]) == 1
    stderr = capsys.readouterr().err
    assert "--lr" in stderr and "differs" in stderr


def test_resume_of_a_directory_without_a_run_fails_with_its_path(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 1
    stderr = capsys.readouterr().err
    assert str(tmp_path / "nothing" / "config.json") in stderr
    assert_no_traceback(stderr)


def _fit_that_breaks_in_epoch_2(monkeypatch, failure):
    """Replace npvae.train.fit by one whose model calls ``failure()`` at the 3rd step of epoch 2."""
    real_fit = npvae.train.fit

    def fit(model, *args, callbacks=(), **kwargs):
        real_step = model.loss_and_grads_unchecked
        calls = []

        def step(*step_args):
            calls.append(None)
            return failure() if len(calls) == 3 else real_step(*step_args)

        def arm(epoch, history):
            if epoch == 1:
                model.loss_and_grads_unchecked = step

        return real_fit(model, *args, callbacks=[*callbacks, arm], **kwargs)

    monkeypatch.setattr(npvae.train, "fit", fit)


def test_ctrl_c_keeps_the_checkpoint_of_the_last_finished_epoch(tmp_path, monkeypatch, capsys):
    reference = tmp_path / "one-epoch"
    assert train(reference, "--epochs", "1") == 0

    def interrupt():
        raise KeyboardInterrupt

    _fit_that_breaks_in_epoch_2(monkeypatch, interrupt)
    out = tmp_path / "interrupted"
    assert train(out, "--epochs", "3") == 130
    stderr = capsys.readouterr().err
    assert str(out / "model.npz") in stderr and f"--resume {out}" in stderr
    assert_no_traceback(stderr)
    saved = checkpoint.load_checkpoint(out / "model.npz")
    assert len(saved.history) == 1
    expected = saved_parameters(reference / "model.npz")
    for name, value in saved.model.state_dict().items():
        assert np.array_equal(value, expected[name]), name
    with open(out / "history.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == 1
    assert sorted(path.name for path in out.iterdir()) == ["config.json", "history.csv", "model.npz"]


def test_ctrl_c_between_checkpoint_and_csv_leaves_them_in_agreement(tmp_path, monkeypatch, capsys):
    real_to_csv = npvae.history.History.to_csv
    interrupted = []

    def to_csv(self, path):
        if len(self) == 2 and not interrupted:  # model.npz of epoch 2 is saved, history.csv not yet
            interrupted.append(True)
            raise KeyboardInterrupt
        return real_to_csv(self, path)

    monkeypatch.setattr(npvae.history.History, "to_csv", to_csv)
    out = tmp_path / "run"
    assert train(out, "--epochs", "3") == 130
    assert interrupted
    assert "checkpoint of epoch 2" in capsys.readouterr().err
    assert len(checkpoint.load_checkpoint(out / "model.npz").history) == 2
    with open(out / "history.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]


def test_non_finite_loss_exits_1_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    _fit_that_breaks_in_epoch_2(monkeypatch, lambda: float("nan"))
    out = tmp_path / "diverged"
    assert train(out, "--epochs", "3") == 1
    stderr = capsys.readouterr().err
    assert "epoch 2, batch 3" in stderr and str(out / "model.npz") in stderr
    assert_no_traceback(stderr)
    assert len(checkpoint.load_checkpoint(out / "model.npz").history) == 1


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "0"],
    ["train", "--epochs", "abc"],
    ["train", "--data", "nope"],
    ["train", "--lr", "-1"],
    ["train", "--beta", "nan"],
    ["train", "--no-such-flag"],
    ["eval"],
    [],
])
def test_bad_arguments_exit_2_with_one_error_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert len([line for line in stderr.splitlines() if "error:" in line]) == 1
    assert_no_traceback(stderr)


def test_beta_for_an_ae_is_refused(tmp_path, capsys):
    assert train(tmp_path / "run", "--model", "ae", "--beta", "2") == 1
    assert "--beta" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_missing_checkpoint_exits_1_naming_the_path(command, tmp_path, capsys):
    path = tmp_path / "absent" / "model.npz"
    assert main([command, str(path)]) == 1
    stderr = capsys.readouterr().err
    assert str(path) in stderr and stderr.startswith("npvae: error:")
    assert_no_traceback(stderr)


def test_corrupt_checkpoint_exits_1(trained_run, tmp_path, capsys):
    path = tmp_path / "model.npz"
    path.write_bytes((trained_run / "model.npz").read_bytes()[:300])
    assert main(["eval", str(path), "--data", "digits"]) == 1
    stderr = capsys.readouterr().err
    assert str(path) in stderr
    assert_no_traceback(stderr)


def test_python_dash_m_npvae_shows_help():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "npvae", "--help"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0
    assert "usage: npvae" in result.stdout and "train" in result.stdout


def test_gradcheck_walkthrough_demo_passes_and_catches_the_broken_backward(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gradcheck_walkthrough.py"])
    runpy.run_path(str(DEMOS / "gradcheck_walkthrough.py"), run_name="__main__")
    stdout = capsys.readouterr().out
    assert "all gradients match" in stdout
    assert "caught" in stdout
