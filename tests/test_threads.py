"""Tests for npvae.threads: the thread policy, the helper threads that run the kernels' parts, and
fit / log_likelihood / the CLI using them.

Where no OpenBLAS can be found (another BLAS, another OS), the tests that read OpenBLAS's own
thread count skip: npvae's threads work the same, and OpenBLAS's count is left alone.

The digits models here are too small for the kernels to cut their work (``PARALLEL_MIN_FLOPS``,
``PARALLEL_MIN_ELEMENTS``); the ``cut_everything`` fixture sets both to 0, so that every product and
BCE of these small models is cut into one part per thread.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import npvae
import npvae.cli
from npvae import VAE, kernels, threads
from npvae.cli import main
from npvae.datasets import load
from npvae.train import fit

DIGITS = load("digits", "train").x[:256]


def needs_openblas() -> None:
    if threads.blas_threads() is None:
        pytest.skip("no OpenBLAS found to control in this process")


@pytest.fixture
def cut_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_ELEMENTS", 0)


def test_limited_sets_npvae_threads_puts_openblas_at_one_and_restores_both():
    needs_openblas()
    before = [library.get() for library in threads._libraries()]
    with threads.limited(3) as used:
        assert used == 3 and threads.current() == 3
        assert [library.get() for library in threads._libraries()] == [1] * len(before)
    assert threads.current() == 1
    assert [library.get() for library in threads._libraries()] == before


def test_limited_restores_the_count_after_an_error():
    with pytest.raises(RuntimeError), threads.limited(2):
        raise RuntimeError("inside")
    assert threads.current() == 1


def test_none_means_the_default_policy_of_two_threads_or_one_on_a_one_cpu_machine():
    assert threads.resolve(None) == threads.DEFAULT_THREADS == min(2, threads._usable_cpus())


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_thread_counts_are_refused_with_the_argument_name(bad):
    with pytest.raises((ValueError, TypeError), match="threads"):
        threads.resolve(bad)
    with pytest.raises((ValueError, TypeError), match="threads"):
        fit(VAE(64, (8,), 2, seed=0), DIGITS, epochs=1, threads=bad)
    with pytest.raises((ValueError, TypeError), match="threads"):
        VAE(64, (8,), 2, seed=0).log_likelihood(DIGITS[:2], k=2, rng=np.random.default_rng(0), threads=bad)


def test_fit_runs_under_the_requested_count_and_restores_it():
    seen = []
    before = threads.current()
    fit(VAE(64, (8,), 2, seed=0), DIGITS, epochs=2, batch_size=64, progress=False, threads=2,
        callbacks=[lambda epoch, history: seen.append(threads.current())])
    assert seen == [2, 2]
    assert threads.current() == before


@pytest.mark.parametrize("count", [1, 2, 3])
def test_fit_is_bit_identical_for_a_fixed_seed_and_thread_count(count, cut_everything):
    def trained() -> dict[str, np.ndarray]:
        model = VAE(64, (32,), 4, seed=1, dtype=np.float32)
        fit(model, DIGITS, epochs=2, batch_size=32, seed=5, progress=False, threads=count)
        return model.state_dict()

    first, second = trained(), trained()
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value)


def test_fit_with_one_two_or_three_threads_agrees_to_rounding(cut_everything):
    # a product cut into parts may round differently from the whole: equal to float64 rounding, not bits
    models = []
    for count in (1, 2, 3):
        model = VAE(64, (32,), 4, seed=1, dtype=np.float64)
        fit(model, DIGITS, epochs=1, batch_size=32, seed=5, progress=False, threads=count)
        models.append(model.state_dict())
    for other in models[1:]:
        for name, value in models[0].items():
            np.testing.assert_allclose(other[name], value, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rows, k", [(8, 20), (1, 300), (5, 300)])
def test_log_likelihood_gives_the_same_estimate_on_one_two_or_three_threads(rows, k, cut_everything):
    # (1, 300) and (5, 300) with max_rows 256: blocks of one example, cut by rows of its block
    model = VAE(64, (16,), 3, seed=2)
    estimates = [model.log_likelihood(DIGITS[:rows], k=k, rng=np.random.default_rng(0), threads=count, max_rows=256)
                 for count in (1, 2, 3)]
    for other in estimates[1:]:
        np.testing.assert_allclose(other, estimates[0], rtol=1e-12)


def test_a_training_step_on_three_threads_equals_one_thread_to_rounding(cut_everything):
    model = VAE(64, (32, 16), 4, seed=3)
    x, eps = DIGITS[:37], np.random.default_rng(1).standard_normal((37, 4))
    results = []
    for count in (1, 3):
        with threads.limited(count):
            loss = model.loss_and_grads(x, eps=eps)
        results.append((loss, [parameter.grad.copy() for parameter in model.parameters()]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    for cut, whole in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(cut, whole, rtol=1e-10, atol=1e-12 * np.abs(whole).max())


# -- run_parts: the helper threads ---------------------------------------------------------------
def test_run_parts_runs_every_part_at_once_each_on_its_own_thread():
    meeting = threading.Barrier(3, timeout=10)  # broken (an error) unless the three parts run together

    def part(index: int) -> tuple[int, int]:
        meeting.wait()
        return index, threading.get_ident()

    with threads.limited(3):
        results = threads.run_parts(part, [0, 1, 2])
    assert [index for index, _ in results] == [0, 1, 2]  # in the order of the parts
    assert results[0][1] == threading.get_ident() and len({ident for _, ident in results}) == 3


def test_run_parts_raises_a_parts_error_only_after_every_part_has_finished():
    finished = []

    def part(index: int) -> None:
        if index == 0:
            raise ValueError("part 0")
        time.sleep(0.05)
        finished.append(index)

    with threads.limited(2), pytest.raises(ValueError, match="part 0"):
        threads.run_parts(part, [0, 1])
    assert finished == [1]
    with threads.limited(2):  # the helper is usable again
        assert threads.run_parts(lambda index: index * 2, [1, 2]) == [2, 4]


def test_run_parts_refuses_more_parts_than_threads():
    with threads.limited(2), pytest.raises(ValueError, match="parts"):
        threads.run_parts(lambda index: index, [0, 1, 2])


def test_run_parts_from_a_second_thread_runs_its_parts_there_while_the_helpers_are_busy():
    release = threading.Event()
    second = []

    def from_another_thread() -> None:
        with threads.limited(2):
            second.append(threads.run_parts(lambda index: (index, threading.get_ident()), [0, 1]))
        release.set()

    def part(index: int) -> None:
        if index == 0:
            other = threading.Thread(target=from_another_thread)
            other.start()
            assert release.wait(10)
            other.join()

    with threads.limited(2):
        threads.run_parts(part, [0, 1])
    (first, ident_0), (index_1, ident_1) = second[0]
    assert (first, index_1) == (0, 1) and ident_0 == ident_1  # both on the second thread itself


def test_train_and_eval_headers_say_how_many_threads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(npvae.cli, "_write_figures", lambda *args: [])  # figures are test_cli's
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--out", str(out), "--threads", "3",
                 "--no-progress"]) == 0
    assert "; 3 threads (chosen" in capsys.readouterr().out
    assert main(["eval", str(out / "model.npz"), "--iw-samples", "2"]) == 0
    plural = "s" if threads.DEFAULT_THREADS > 1 else ""
    assert f"; {threads.DEFAULT_THREADS} thread{plural} (default" in capsys.readouterr().out


def test_cli_refuses_a_zero_thread_count(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--threads", "0"])
    assert stopped.value.code == 2
    assert "--threads" in capsys.readouterr().err


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_adam_on_two_or_three_threads_equals_one_thread_to_rounding(dtype, rtol):
    """Above PARALLEL_MIN_ELEMENTS parameters each thread updates its own share (NumPy passes
    instead of BLAS axpy: the same formula, rounded in another order)."""
    results = []
    for count in (1, 2, 3):
        model = VAE(64, (300,), 4, seed=4, dtype=dtype)
        assert model.num_parameters() >= kernels.PARALLEL_MIN_ELEMENTS
        optimizer = npvae.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(5)
        with threads.limited(count):
            for _ in range(60):  # past a fold of the scales (every 50 steps)
                for parameter in model.parameters():
                    parameter.grad[...] = rng.standard_normal(parameter.shape)
                optimizer.step()
            assert len(optimizer._blocks(optimizer._exp_avg, optimizer._exp_avg_sq)) == (count if count > 1 else 6)  # 42,672 in blocks of 8,192
        results.append(model.state_dict())
    for other in results[1:]:
        for name, value in results[0].items():
            np.testing.assert_allclose(other[name], value, rtol=rtol, atol=rtol * np.abs(value).max())


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_sigmask"), reason="POSIX signal masks")
def test_a_ctrl_c_while_a_helper_works_arrives_after_it_finished_and_the_helpers_stay_right():
    import os
    import signal

    finished = []

    def part(index: int) -> str:
        if index == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the main thread waits for this part
            time.sleep(0.05)
            finished.append(index)
        return f"result {index}"

    with threads.limited(2):
        with pytest.raises(KeyboardInterrupt):
            threads.run_parts(part, [0, 1])
            time.sleep(1)  # not reached if the interrupt arrives as run_parts returns, as it should
        assert finished == [1]
        assert threads.run_parts(lambda index: f"next {index}", [0, 1]) == ["next 0", "next 1"]


def test_program_threads_each_have_their_own_count_and_openblas_is_restored_after_the_last():
    before = threads.blas_threads()
    seen, errors = {}, []
    inside = threading.Barrier(2, timeout=10)

    def run(name: str, count: int) -> None:
        try:
            with threads.limited(count):
                inside.wait()  # both blocks overlap here
                for _ in range(50):
                    assert threads.run_parts(lambda index: index, list(range(count))) == list(range(count))
                seen[name] = threads.current()
                inside.wait()
        except Exception as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=run, args=("a", 2)), threading.Thread(target=run, args=("b", 3))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors and seen == {"a": 2, "b": 3}
    assert threads.current() == 1 and threads.blas_threads() == before


def test_helpers_call_the_callers_numpy_error_callback():
    calls = []

    def part(index: int) -> None:
        np.exp(np.full(600, 1000.0))  # overflows

    old = np.seterrcall(lambda kind, flag: calls.append(threading.get_ident()))
    try:
        with threads.limited(2), np.errstate(over="call"):
            threads.run_parts(part, [0, 1])
    finally:
        np.seterrcall(old)
    assert len(calls) == 2 and len(set(calls)) == 2


@pytest.mark.parametrize("weight_decay, betas", [(0.0, (0.9, 0.999)), (0.1, (0.9, 0.999)), (0.0, (0.5, 0.999))])
def test_adam_over_parameters_not_in_one_buffer_gives_each_thread_an_even_share(weight_decay, betas):
    """A decoder's parameters alone are not one flat buffer: one group per parameter, each cut in
    one share per thread. With weight decay, and with beta1 below the unscaled form's limit."""
    results = []
    for count in (1, 2):
        model = VAE(64, (600,), 4, seed=6)
        optimizer = npvae.Adam(model.decoder.parameters(), lr=1e-2, betas=betas, weight_decay=weight_decay)
        rng = np.random.default_rng(7)
        with threads.limited(count):
            for _ in range(10):
                for parameter in model.decoder.parameters():
                    parameter.grad[...] = rng.standard_normal(parameter.shape)
                optimizer.step()
            blocks = optimizer._blocks(optimizer._exp_avg, optimizer._exp_avg_sq)
        if count == 2:
            assert sum(block[0].size for block in blocks) >= kernels.PARALLEL_MIN_ELEMENTS
            shares = [sum(block[0].size for block in blocks[cut]) for cut in kernels._cuts(len(blocks), 2)]
            assert abs(shares[0] - shares[1]) <= len(model.decoder.parameters())
        results.append(model.decoder.state_dict())
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, rtol=1e-12, atol=1e-12 * np.abs(value).max())
