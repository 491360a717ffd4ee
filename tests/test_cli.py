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
import npvae._files
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
    assert f"--resume {tmp_path / 'nothing'}: no such directory" in stderr
    assert_no_traceback(stderr)
    (tmp_path / "empty").mkdir()
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 1
    stderr = capsys.readouterr().err
    assert str(tmp_path / "empty" / "config.json") in stderr
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


# -- issue 11: every fault leaves a usable run; no traceback, no memory bomb ---------------------------
import shutil
import signal
import struct
import time

from npvae import VAE
LOCK_FILE = ".npvae.lock"  # the run lock, documented in npvae.cli


def copy_run(trained_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


def rewrite_checkpoint(path: Path, **replace: np.ndarray) -> None:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(replace)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_resume_of_a_run_stopped_before_its_figures_draws_them_and_writes_history(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    for name in (*FIGURES, "history.csv"):
        (run / name).unlink()
    # before: "already trained 2 epochs: nothing to do", and the figures were never drawn
    assert main(["train", "--resume", str(run)]) == 0
    stdout = capsys.readouterr().out
    for name in (*FIGURES, "history.csv"):
        assert (run / name).is_file() and str(run / name) in stdout, name
    assert not (run / LOCK_FILE).exists()


def test_plot_redraws_a_runs_figures_from_its_files(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    drawn = {name: (run / name).read_bytes() for name in FIGURES}
    for name in FIGURES:
        (run / name).unlink()
    assert main(["plot", str(run)]) == 0  # before: argparse exit 2, no such command
    for name in FIGURES:
        image = matplotlib.image.imread(run / name)
        assert image.shape == matplotlib.image.imread(trained_run / name).shape, name
    assert (run / "reconstructions.png").read_bytes() == drawn["reconstructions.png"]  # same code path twice


def test_a_run_interrupted_before_its_first_epoch_can_be_resumed(tmp_path, monkeypatch, capsys):
    real_fit = npvae.train.fit

    def interrupted_fit(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(npvae.train, "fit", interrupted_fit)
    out = tmp_path / "run"
    assert train(out, "--epochs", "1") == 130
    assert f"--resume {out}" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == ["config.json"]
    monkeypatch.setattr(npvae.train, "fit", real_fit)
    assert train(out, "--epochs", "1") == 1  # the directory is not empty: the message points to --resume
    assert f"--resume {out}" in capsys.readouterr().err
    # before: "checkpoint not found"
    assert main(["train", "--resume", str(out)]) == 0
    assert len(checkpoint.load_checkpoint(out / "model.npz").history) == 1


def test_resume_removes_only_the_runs_own_stale_temp_files(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    own = [run / f".model.npz.{'a' * 32}.tmp", run / f".history.csv.{'0123456789abcdef' * 2}.tmp",
           run / f".samples.png.{'f' * 32}.tmp"]
    others = [run / f".notes.txt.{'a' * 32}.tmp", run / f".model.npz.{'a' * 31}.tmp", run / "model.npz.tmp"]
    for path in own + others:
        path.write_bytes(b"x")
    assert main(["train", "--resume", str(run)]) == 0
    assert not any(path.exists() for path in own)
    assert all(path.exists() for path in others)


def test_force_removes_the_previous_runs_figures(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    (run / "notes.txt").write_text("mine")
    assert train(run, "--epochs", "1", "--model", "ae", "--latent-dim", "3", "--force") == 0
    assert not (run / "manifold.png").exists()  # before: the 2-D VAE's manifold stayed beside the 3-D AE
    assert (run / "notes.txt").read_text() == "mine"


def test_a_live_lock_refuses_a_second_run_and_a_stale_lock_is_taken_over(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / LOCK_FILE).write_text(f"{sleeper.pid}\n")
        assert main(["train", "--resume", str(run), "--epochs", "3"]) == 1
        stderr = capsys.readouterr().err
        assert f"another npvae process (PID {sleeper.pid})" in stderr
        assert len(checkpoint.load_checkpoint(run / "model.npz").history) == 2
    finally:
        sleeper.kill()
        sleeper.wait()
    # the sleeper is gone: its lock is stale
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert len(checkpoint.load_checkpoint(run / "model.npz").history) == 3
    assert not (run / LOCK_FILE).exists()


def test_resume_refuses_a_config_that_does_not_describe_the_checkpoint(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "model": "ae", "beta": 1.0}))
    before = (run / "config.json").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 1
    stderr = capsys.readouterr().err
    assert "does not describe the model" in stderr and "model 'ae' vs 'vae'" in stderr
    assert (run / "config.json").read_bytes() == before


def test_sigterm_keeps_the_checkpoint_and_exits_143_with_one_line(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
    process = subprocess.Popen([sys.executable, "-m", "npvae", "train", "--out", str(out), *FAST, "--epochs", "100000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / "model.npz").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143  # before: -15, killed without a word
    assert_no_traceback(stderr)
    assert "terminated (SIGTERM)" in stderr and f"--resume {out}" in stderr
    assert len(checkpoint.load_checkpoint(out / "model.npz").history) >= 1


@pytest.mark.parametrize("field", ["state", "uinteger"])
def test_an_out_of_range_generator_state_fails_resume_cleanly_and_does_not_stop_eval_or_sample(
        trained_run, tmp_path, capsys, field):
    run = copy_run(trained_run, tmp_path)
    with np.load(run / "model.npz") as archive:
        state = json.loads(str(archive["rng_state"]))
    if field == "state":
        state["state"]["state"] = -1
    else:
        state["uinteger"] = -5
    rewrite_checkpoint(run / "model.npz", rng_state=np.array(json.dumps(state)))
    assert main(["eval", str(run / "model.npz"), "--iw-samples", "2"]) == 0
    assert main(["sample", str(run / "model.npz"), "--n", "4"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 1
    stderr = capsys.readouterr().err
    assert "rng_state: not a valid PCG64 state" in stderr
    assert_no_traceback(stderr)


def test_a_deeply_nested_config_json_is_a_clear_error(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / "config.json").write_text("[" * 100_00 + "]" * 100_00)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 1
    stderr = capsys.readouterr().err
    assert "nested too deeply" in stderr
    assert_no_traceback(stderr)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_a_fifo_named_config_json_does_not_hang_resume_or_eval(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / "config.json").unlink()
    os.mkfifo(run / "config.json")

    def hung(signum, frame):
        raise AssertionError("blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        assert main(["train", "--resume", str(run), "--epochs", "3"]) == 1
        assert "is not a regular file" in capsys.readouterr().err
        assert main(["eval", str(run / "model.npz")]) == 1
        assert "give --data" in capsys.readouterr().err
        assert main(["eval", str(run / "model.npz"), "--data", "digits", "--iw-samples", "2"]) == 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


GIB = 1 << 30


@pytest.mark.parametrize(("argv", "figure"), [
    (["train", "--hidden", "1000000000"], "training a model of 136,000,000,068 parameters"),
    (["train", "--latent-dim", "1000000"], "training a model of 386,"),
])
def test_training_requests_that_cannot_fit_are_refused_with_the_estimate(argv, figure, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("npvae.cli.available_memory", lambda: 8 * GIB)  # a figure every CI machine can claim
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    stderr = capsys.readouterr().err
    assert figure in stderr and "more than the 8.0 GiB of memory available" in stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_sample_and_eval_requests_that_cannot_fit_or_finish_are_refused(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("npvae.cli.available_memory", lambda: 8 * GIB)
    assert main(["sample", str(trained_run / "model.npz"), "--n", "100000000", "--out", str(tmp_path / "s.png")]) == 1
    assert "--n 100000000 samples of 8x8 needs about" in capsys.readouterr().err
    assert main(["eval", str(trained_run / "model.npz"), "--iw-samples", "100000000000"]) == 1
    stderr = capsys.readouterr().err
    assert "--iw-samples 100000000000 on 297 images is 2.97e+13 decoder passes, about" in stderr
    assert "days at the" in stderr and "rows per second measured here" in stderr


def test_a_checkpoint_claiming_a_billion_inputs_is_refused(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    with np.load(run / "model.npz") as archive:
        config = json.loads(str(archive["model_config"]))
    rewrite_checkpoint(run / "model.npz", model_config=np.array(json.dumps({**config, "input_dim": 10**9})))
    assert main(["sample", str(run / "model.npz"), "--n", "4"]) == 1
    stderr = capsys.readouterr().err
    assert "refusing to build a model the file cannot fill" in stderr
    assert_no_traceback(stderr)


def test_an_overflowing_adam_state_is_reported_as_a_diverged_run(tmp_path, monkeypatch, capsys):
    real_fit = npvae.train.fit

    def fit(model, *args, callbacks=(), **kwargs):
        real_step = model.loss_and_grads_unchecked

        def huge_gradients(*step_args):
            loss = real_step(*step_args)
            for parameter in model.parameters():
                parameter.grad[...] = 1e20  # finite, but its square overflows float32's exp_avg_sq
            return loss

        def arm(epoch, history):
            if epoch == 1:
                model.loss_and_grads_unchecked = huge_gradients

        return real_fit(model, *args, callbacks=[*callbacks, arm], **kwargs)

    monkeypatch.setattr(npvae.train, "fit", fit)
    out = tmp_path / "run"
    assert train(out, "--epochs", "3") == 1
    stderr = capsys.readouterr().err
    # before: fit returned normally and the CLI failed to save ("optim/exp_avg_sq holds NaN or inf")
    assert "training diverged: non-finite optimizer state after epoch 2: Adam's exp_avg_sq" in stderr
    assert f"the last good checkpoint (epoch 1) is {out / 'model.npz'}, kept" in stderr
    assert_no_traceback(stderr)
    assert len(checkpoint.load_checkpoint(out / "model.npz").history) == 1


def test_a_full_disk_names_the_file_and_says_the_last_checkpoint_is_kept(tmp_path, monkeypatch, capsys):
    real_write_atomically = npvae._files.write_atomically
    calls = []

    def write_atomically(path, write):
        calls.append(path)

        def full_disk(file):
            file.write(b"partial")
            raise OSError(28, "No space left on device")  # as file.write raises it: no file name

        return real_write_atomically(path, full_disk if len(calls) == 2 else write)  # the checkpoint of epoch 2

    monkeypatch.setattr("npvae.checkpoint.write_atomically", write_atomically)
    out = tmp_path / "run"
    assert train(out, "--epochs", "3") == 1
    stderr = capsys.readouterr().err
    assert f"cannot write {out / 'model.npz'}: no space left on device" in stderr
    assert "the last good checkpoint (epoch 1)" in stderr and "kept" in stderr
    assert len(checkpoint.load_checkpoint(out / "model.npz").history) == 1
    assert not [path for path in out.iterdir() if path.name.endswith(".tmp")]


def test_eval_of_a_model_with_huge_weights_blames_the_weights_not_the_data(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    model = checkpoint.load(run / "model.npz")
    for parameter in model.parameters():
        parameter.value[...] = 1e30
    checkpoint.save(model, run / "model.npz")
    assert main(["eval", str(run / "model.npz"), "--iw-samples", "2"]) == 1
    stderr = capsys.readouterr().err
    assert "rescale" not in stderr and "the checkpoint's weights are too large" in stderr
    assert_no_traceback(stderr)


def _fake_mnist(directory: Path, n: int = 20) -> None:
    rng = np.random.default_rng(0)
    for stem, count in (("train", n), ("t10k", n)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, count, 28, 28) + images.tobytes())
        (directory / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, count) + labels.tobytes())


def _no_network(*args, **kwargs):
    raise OSError("network disabled in tests")


def test_eval_uses_the_data_dir_recorded_by_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("urllib.request.urlopen", _no_network)
    monkeypatch.setenv("NPVAE_DATA", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("NPVAE_MNIST_DIR", raising=False)
    data_dir = tmp_path / "my-mnist"
    _fake_mnist(data_dir)
    run = tmp_path / "run"
    run.mkdir()
    checkpoint.save(VAE(784, hidden_dims=[4], latent_dim=2, dtype=np.float32), run / "model.npz")
    config = {"model": "vae", "data": "mnist", "epochs": 1, "latent_dim": 2, "hidden": [4], "beta": 1.0,
              "batch_size": 8, "lr": 1e-3, "seed": 0, "kl_warmup": 0, "binarize": False,
              "activation": "leaky_relu", "dtype": "float32", "data_dir": str(data_dir)}
    (run / "config.json").write_text(json.dumps(config))
    # before: the recorded data_dir was ignored and the cache's download failed
    assert main(["eval", str(run / "model.npz"), "--iw-samples", "2"]) == 0
    assert "data mnist test: 20 images of 28x28" in capsys.readouterr().out


def test_a_missing_data_dir_is_an_error_and_is_not_created(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("urllib.request.urlopen", _no_network)
    missing = tmp_path / "nonexistent"
    assert train(tmp_path / "run", "--data", "mnist", "--data-dir", str(missing)) == 1
    stderr = capsys.readouterr().err
    assert f"--data-dir {missing}: no such directory" in stderr
    assert not missing.exists() and not (tmp_path / "run").exists()


def test_a_failed_download_speaks_in_command_line_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("urllib.request.urlopen", _no_network)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(tmp_path / "run", "--data", "mnist", "--data-dir", str(empty)) == 1
    stderr = capsys.readouterr().err
    assert "give --data-dir DIR" in stderr and "data_dir=" not in stderr


def test_sample_writes_beside_the_checkpoint_and_never_overwrites_without_force(trained_run, tmp_path, monkeypatch,
                                                                                capsys):
    run = copy_run(trained_run, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(run / "model.npz"), "--n", "4"]) == 0
    written = run / "samples-n4-seed0.png"
    assert written.is_file() and not (tmp_path / "samples.png").exists()
    before = written.read_bytes()
    assert main(["sample", str(run / "model.npz"), "--n", "4", "--out", str(written), "--seed", "1"]) == 1
    assert "exists: add --force" in capsys.readouterr().err and written.read_bytes() == before
    assert main(["sample", str(run / "model.npz"), "--n", "4", "--out", str(written), "--seed", "1", "--force"]) == 0
    assert written.read_bytes() != before


@pytest.mark.parametrize("demo", ["ae_vs_vae", "beta_sweep", "latent_map", "seed_vae"])
def test_every_small_demo_takes_data_dir_and_reports_missing_files_in_one_line(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("urllib.request.urlopen", _no_network)
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for data_dir, status, message in ((tmp_path / "missing", 2, "no such directory"),
                                      (empty, 1, "could not download")):
        monkeypatch.setattr(sys, "argv", [f"{demo}.py", "--data", "mnist", "--data-dir", str(data_dir)])
        with pytest.raises(SystemExit) as exited:  # before: "unrecognized arguments: --data-dir"
            runpy.run_path(str(DEMOS / f"{demo}.py"), run_name="__main__")
        assert exited.value.code == status
        stderr = capsys.readouterr().err
        assert message in stderr and str(data_dir) in stderr
        assert_no_traceback(stderr)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(("interrupt", "status", "said"), [
    (KeyboardInterrupt, 130, "interrupted while starting"),
    (None, 143, "terminated (SIGTERM) while starting"),
])
def test_the_npvae_command_reports_an_interrupt_during_its_imports_in_one_line(interrupt, status, said,
                                                                               monkeypatch, capsys):
    import builtins

    entry = runpy.run_path(str(PACKAGE_PARENT / "_npvae_entry.py"))
    real_import = builtins.__import__

    def slow_import(name, *args, **kwargs):
        if name == "npvae.cli":  # the signal arrives while NumPy and SciPy are being imported
            if interrupt is None:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            raise interrupt()
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", slow_import)
    assert entry["main"]() == status  # before: the console script imported npvae.cli unguarded
    stderr = capsys.readouterr().err
    assert stderr.strip() == f"npvae: {said}"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
