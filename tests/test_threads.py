"""Tests for npvae.threads: the BLAS thread policy, and fit / log_likelihood / the CLI using it.

Where no OpenBLAS can be found (another BLAS, another OS), the tests that need to read the
thread count skip: the policy then changes nothing, which ``describe`` says.
"""

from __future__ import annotations

import numpy as np
import pytest

import npvae.cli
from npvae import VAE, threads
from npvae.cli import main
from npvae.datasets import load
from npvae.train import fit

DIGITS = load("digits", "train").x[:256]


def needs_openblas() -> None:
    if threads.current() is None:
        pytest.skip("no OpenBLAS found to control in this process")


def test_limited_sets_the_count_in_every_openblas_and_restores_it():
    needs_openblas()
    before = [library.get() for library in threads._libraries()]
    with threads.limited(3) as used:
        assert used == 3
        assert [library.get() for library in threads._libraries()] == [3] * len(before)
    assert [library.get() for library in threads._libraries()] == before


def test_limited_restores_the_count_after_an_error():
    needs_openblas()
    before = threads.current()
    with pytest.raises(RuntimeError), threads.limited(before + 1):
        raise RuntimeError("inside")
    assert threads.current() == before


def test_none_means_the_default_policy():
    assert threads.resolve(None) == threads.DEFAULT_THREADS == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_thread_counts_are_refused_with_the_argument_name(bad):
    with pytest.raises((ValueError, TypeError), match="threads"):
        threads.resolve(bad)
    with pytest.raises((ValueError, TypeError), match="threads"):
        fit(VAE(64, (8,), 2, seed=0), DIGITS, epochs=1, threads=bad)
    with pytest.raises((ValueError, TypeError), match="threads"):
        VAE(64, (8,), 2, seed=0).log_likelihood(DIGITS[:2], k=2, rng=np.random.default_rng(0), threads=bad)


def test_fit_runs_under_the_requested_count_and_restores_it(monkeypatch):
    needs_openblas()
    seen = []
    before = threads.current()
    fit(VAE(64, (8,), 2, seed=0), DIGITS, epochs=2, batch_size=64, progress=False, threads=2,
        callbacks=[lambda epoch, history: seen.append(threads.current())])
    assert seen == [2, 2]
    assert threads.current() == before


@pytest.mark.parametrize("count", [1, 2])
def test_fit_is_bit_identical_for_a_fixed_seed_and_thread_count(count):
    def trained() -> dict[str, np.ndarray]:
        model = VAE(64, (32,), 4, seed=1, dtype=np.float32)
        fit(model, DIGITS, epochs=2, batch_size=32, seed=5, progress=False, threads=count)
        return model.state_dict()

    first, second = trained(), trained()
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value)


def test_fit_with_one_or_two_threads_agrees_to_rounding():
    # across thread counts OpenBLAS may split sums differently: equal to float64 rounding, not bits
    models = []
    for count in (1, 2):
        model = VAE(64, (32,), 4, seed=1, dtype=np.float64)
        fit(model, DIGITS, epochs=1, batch_size=32, seed=5, progress=False, threads=count)
        models.append(model.state_dict())
    for name, value in models[0].items():
        np.testing.assert_allclose(models[1][name], value, rtol=1e-9, atol=1e-12)


def test_log_likelihood_uses_the_count_and_gives_the_same_estimate():
    needs_openblas()
    model = VAE(64, (16,), 3, seed=2)
    estimates = [model.log_likelihood(DIGITS[:8], k=20, rng=np.random.default_rng(0), threads=count)
                 for count in (1, 2)]
    np.testing.assert_allclose(estimates[1], estimates[0], rtol=1e-12)


def test_train_and_eval_headers_say_how_many_threads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(npvae.cli, "_write_figures", lambda *args: [])  # figures are test_cli's
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--out", str(out), "--threads", "2",
                 "--no-progress"]) == 0
    assert "; 2 BLAS threads (chosen" in capsys.readouterr().out
    assert main(["eval", str(out / "model.npz"), "--iw-samples", "2"]) == 0
    assert f"; {threads.DEFAULT_THREADS} BLAS thread (default" in capsys.readouterr().out


def test_cli_refuses_a_zero_thread_count(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--threads", "0"])
    assert stopped.value.code == 2
    assert "--threads" in capsys.readouterr().err
