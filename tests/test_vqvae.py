"""VQVAE: its gradients against finite differences and PyTorch autograd, the EMA codebook
against its formula, dead-code restart, the public methods, and bad input.

What has a true gradient is checked by central finite differences in float64 (rtol 1e-5,
atol 1e-7, ``npvae.gradcheck``'s defaults), always with the code assignment held fixed:
- the decoder parameters, on the full loss (they do not move the assignment);
- the codebook (loss mode), on its own term sum |sg[z_e] - e_k|^2 / batch;
- the encoder, on the straight-through surrogate recon(decoder(z_e + c)) + beta |z_e - sg[e]|^2
  with c = sg[z_q - z_e]: its true gradient is the straight-through estimate the model computes.
The surrogate check is shown catching a planted mistake (the commitment gradient left out).
"""

from __future__ import annotations

import numpy as np
import pytest

import npvae
from npvae import LeakyReLU, MADEPrior, VQVAE
from npvae.models.vqvae import EMA_EPSILON, code_usage

INPUT_DIM = 7
BATCH = 6


def _model(codebook: str = "loss", dtype=np.float64, **kwargs) -> VQVAE:
    options = dict(hidden_dims=(5,), num_latents=3, code_dim=2, num_codes=4, codebook=codebook, seed=3, dtype=dtype)
    options.update(kwargs)
    model = VQVAE(INPUT_DIM, **options)
    # codebook vectors at the encoder's scale, so that several codes are in use
    model.codebook.value[...] = np.random.default_rng(1).normal(0.0, 1.0, model.codebook.value.shape)
    if codebook == "ema":
        model.ema_sum[...] = model.codebook.value
    return model


def _data(dtype=np.float64, rows: int = BATCH) -> np.ndarray:
    return np.random.default_rng(2).uniform(0.0, 1.0, (rows, INPUT_DIM)).astype(dtype)


def _brute_force_indices(model: VQVAE, x: np.ndarray) -> np.ndarray:
    z_e = model.encoder.forward(x).reshape(-1, model.code_dim)
    distances = ((z_e[:, None, :] - model.codebook.value[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)


def _surrogate_loss(model: VQVAE, x: np.ndarray, offset: np.ndarray, z_q: np.ndarray) -> float:
    """recon(decoder(z_e + offset)) + beta |z_e - z_q|^2, batch mean, offset and z_q constants."""
    z_e = model.encoder.forward(x)
    logits = model.decoder.forward(z_e + offset)
    recon, _ = npvae.bce_with_logits(logits, x)
    return float(recon.mean() + model.beta * ((z_e - z_q) ** 2).sum() / x.shape[0])


def _check_encoder(model: VQVAE, x: np.ndarray, commitment_in_backward: bool = True) -> npvae.GradcheckReport:
    z_e = model.encoder.forward(x).copy()
    z_q = model.codebook.value[_brute_force_indices(model, x)].reshape(z_e.shape)
    beta = model.beta
    if not commitment_in_backward:
        model.beta = 0.0  # the planted mistake: the backward forgets 2 beta (z_e - e)
    model.loss_and_grads(x, update_codebook=False)
    model.beta = beta
    parameters = dict(model.encoder.named_parameters())
    grads = [parameters[name].grad.copy() for name in parameters]
    return npvae.gradcheck(lambda *_: (_surrogate_loss(model, x, z_q - z_e, z_q), grads),
                           [p.value for p in parameters.values()], names=list(parameters))


@pytest.mark.parametrize("codebook", ["loss", "ema"])
def test_encoder_gradient_is_the_straight_through_surrogate_gradient(codebook):
    report = _check_encoder(_model(codebook), _data())
    assert report.passed, str(report)


def test_encoder_gradient_check_catches_a_missing_commitment_gradient():
    report = _check_encoder(_model("loss", beta=0.5), _data(), commitment_in_backward=False)
    assert not report.passed


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("codebook", ["loss", "ema"])
def test_decoder_gradients_match_finite_differences_of_the_full_loss(codebook, output):
    model, x = _model(codebook, output=output), _data()
    model.loss_and_grads(x, update_codebook=False)
    parameters = dict(model.decoder.named_parameters())
    grads = [parameters[name].grad.copy() for name in parameters]
    report = npvae.gradcheck(lambda *_: (float(model.terms(x).loss.mean()), grads),
                             [p.value for p in parameters.values()], names=list(parameters))
    assert report.passed, str(report)


def test_codebook_gradient_matches_finite_differences_of_the_codebook_term():
    model, x = _model("loss"), _data()
    indices = _brute_force_indices(model, x)
    z_e = model.encoder.forward(x).reshape(-1, model.code_dim).copy()
    assert len(set(indices.tolist())) > 1  # several codes get a gradient
    model.loss_and_grads(x)
    grad = model.codebook.grad.copy()

    def codebook_term(codebook):
        return float(((z_e - codebook[indices]) ** 2).sum() / x.shape[0]), [grad]

    report = npvae.gradcheck(codebook_term, [model.codebook.value], names=["codebook"])
    assert report.passed, str(report)
    unused = np.setdiff1d(np.arange(model.num_codes), indices)
    assert np.all(grad[unused] == 0)


def _torch_loss(torch, model: VQVAE, x: np.ndarray):
    """The textbook VQ-VAE in PyTorch, from model's weights: (loss, recon, vq, {name: tensor}, indices)."""
    tensors = {name: torch.tensor(p.value, requires_grad=True) for name, p in model.named_parameters()}
    codebook = tensors["codebook"] if "codebook" in tensors else torch.tensor(model.codebook.value)

    def run(prefix, sequential, h):
        for index, layer in enumerate(sequential.layers):
            if isinstance(layer, LeakyReLU):
                h = torch.nn.functional.leaky_relu(h, layer.negative_slope)
            else:
                h = h @ tensors[f"{prefix}.{index}.weight"] + tensors[f"{prefix}.{index}.bias"]
        return h

    xt = torch.tensor(x)
    batch = x.shape[0]
    z_e = run("encoder", model.encoder, xt).reshape(-1, model.code_dim)
    indices = ((z_e.detach()[:, None, :] - codebook.detach()[None]) ** 2).sum(-1).argmin(1)
    z_q = codebook[indices]
    straight_through = z_e + (z_q - z_e).detach()
    logits = run("decoder", model.decoder, straight_through.reshape(batch, -1))
    recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, xt, reduction="sum") / batch
    commitment = model.beta * ((z_e - z_q.detach()) ** 2).sum() / batch
    vq = commitment + (((z_e.detach() - z_q) ** 2).sum() / batch if model.codebook_kind == "loss" else 0.0)
    loss = recon + vq
    loss.backward()
    return loss, recon, vq, tensors, indices.numpy()


@pytest.mark.parametrize("dtype, rtol, atol_scale", [(np.float64, 1e-10, 1e-12), (np.float32, 1e-5, 2e-6)])
@pytest.mark.parametrize("codebook", ["loss", "ema"])
def test_straight_through_loss_and_gradients_match_pytorch_autograd(codebook, dtype, rtol, atol_scale):
    """|npvae - torch| <= rtol |torch| + atol_scale * max|torch array| (the convention of
    test_reference_torch.py), for the loss, its two parts and every parameter's gradient."""
    torch = pytest.importorskip("torch")
    model = _model(codebook, dtype=dtype, hidden_dims=(6, 5))
    x = _data(dtype, rows=16)
    loss, recon, vq, tensors, indices = _torch_loss(torch, model, x)
    np.testing.assert_array_equal(model.encode(x).reshape(-1), indices)
    ours = model.loss_and_grads(x, update_codebook=False)
    for mine, theirs in ((ours, loss), (model.last_recon, recon), (model.last_kl, vq)):
        theirs = float(theirs.detach()) if hasattr(theirs, "detach") else float(theirs)
        assert abs(mine - theirs) <= rtol * abs(theirs) + atol_scale * abs(theirs)
    for name, parameter in model.named_parameters():
        expected = tensors[name].grad.numpy()
        np.testing.assert_allclose(parameter.grad, expected, rtol=rtol, atol=atol_scale * np.abs(expected).max(),
                                   err_msg=name)


def test_ema_step_follows_its_formula():
    model, x = _model("ema", decay=0.9), _data(rows=20)
    count, total, before = model.ema_count.copy(), model.ema_sum.copy(), model.codebook.value.copy()
    model.ema_count[...] = count = np.linspace(0.5, 2.0, model.num_codes)  # not all equal
    indices = _brute_force_indices(model, x)
    z_e = model.encoder.forward(x).reshape(-1, model.code_dim).copy()
    model.loss_and_grads(x)
    n = np.array([np.sum(indices == k) for k in range(model.num_codes)], dtype=float)
    s = np.array([z_e[indices == k].sum(axis=0) for k in range(model.num_codes)])
    expected_count = 0.9 * count + 0.1 * n
    expected_sum = 0.9 * total + 0.1 * s
    all_counts = expected_count.sum()
    smoothed = (expected_count + EMA_EPSILON) / (all_counts + model.num_codes * EMA_EPSILON) * all_counts
    np.testing.assert_allclose(model.ema_count, expected_count, rtol=1e-14)
    np.testing.assert_allclose(model.ema_sum, expected_sum, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(model.codebook.value, expected_sum / smoothed[:, None], rtol=1e-13, atol=1e-15)
    assert not np.array_equal(model.codebook.value, before)
    assert "codebook" not in dict(model.named_parameters())  # the optimizer never touches it


def test_ema_codebook_is_left_alone_when_update_codebook_is_false():
    model, x = _model("ema"), _data()
    before = model.state_dict()
    model.loss_and_grads(x, update_codebook=False)
    for key in ("codebook", "codebook_ema_count", "codebook_ema_sum"):
        np.testing.assert_array_equal(model.state_dict()[key], before[key])


@pytest.mark.parametrize("codebook", ["loss", "ema"])
def test_dead_codes_restart_on_encoder_outputs_of_the_last_batch(codebook):
    model, x = _model(codebook, num_codes=12, restart_dead_codes=True), _data()
    model.loss_and_grads(x)
    used = np.unique(_brute_force_indices(model, x))
    z_e = model.encoder.forward(x).reshape(-1, model.code_dim).copy()
    before = model.codebook.value.copy()
    perplexity, fraction = model.end_epoch(np.random.default_rng(0))
    assert fraction == pytest.approx(len(used) / 12) and 1 <= perplexity <= len(used)
    dead = np.setdiff1d(np.arange(12), used)
    assert dead.size > 0
    for k in dead:
        assert np.any(np.all(model.codebook.value[k] == z_e, axis=1)), k
    np.testing.assert_array_equal(model.codebook.value[used], before[used])
    assert not model.epoch_counts.any()
    if codebook == "ema":
        np.testing.assert_array_equal(model.ema_sum[dead], model.codebook.value[dead])
        np.testing.assert_array_equal(model.ema_count[dead], 1.0)


def test_no_restart_by_default():
    model, x = _model("loss", num_codes=12), _data()
    model.loss_and_grads(x)
    before = model.codebook.value.copy()
    model.end_epoch(np.random.default_rng(0))
    np.testing.assert_array_equal(model.codebook.value, before)


def test_encode_is_the_nearest_code_and_reconstruct_decodes_it():
    model, x = _model(), _data()
    indices = model.encode(x)
    assert indices.shape == (BATCH, 3) and indices.dtype == np.int64
    np.testing.assert_array_equal(indices.reshape(-1), _brute_force_indices(model, x))
    np.testing.assert_array_equal(model.reconstruct(x), model.decode_indices(indices))
    assert model.reconstruct(x).min() >= 0 and model.reconstruct(x).max() <= 1


def test_code_usage_perplexity_and_fraction():
    assert code_usage(np.array([5, 5, 5, 5, 0, 0, 0, 0])) == (pytest.approx(4.0), 0.5)
    assert code_usage(np.array([0, 9, 0])) == (pytest.approx(1.0), pytest.approx(1 / 3))
    model, x = _model(), _data()
    counts = np.bincount(_brute_force_indices(model, x), minlength=4)
    assert model.perplexity(x) == pytest.approx(code_usage(counts)[0])
    assert model.codes_used(x) == code_usage(counts)[1]


def test_loss_terms_add_up_and_name_the_vq_terms_kl():
    for codebook, weight in (("loss", 1.25), ("ema", 0.25)):
        model, x = _model(codebook), _data()
        terms = model.terms(x)
        z_e = model.encoder.forward(x)
        z_q = model.codebook.value[_brute_force_indices(model, x)].reshape(z_e.shape)
        np.testing.assert_allclose(terms.kl, weight * ((z_e - z_q) ** 2).sum(axis=1), rtol=1e-12)
        np.testing.assert_allclose(terms.loss, terms.recon + terms.kl, rtol=1e-15)


def test_float32_model_stays_float32():
    model, x = _model("ema", dtype=np.float32), _data(np.float32)
    model.loss_and_grads(x)
    assert model.codebook.value.dtype == model.ema_sum.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())
    assert model.reconstruct(x).dtype == np.float32


def test_state_dict_round_trip_restores_the_ema_codebook():
    model, x = _model("ema"), _data()
    model.loss_and_grads(x)
    other = _model("ema")
    other.load_state_dict(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"num_codes": 0}, ValueError, r"^num_codes: expected a positive integer"),
    ({"code_dim": 3, "latent_dim": 8}, ValueError, r"^code_dim: 3 does not divide"),
    ({"num_latents": 3, "code_dim": 2, "latent_dim": 8}, ValueError, r"^num_latents: expected"),
    ({"codebook": "kmeans"}, ValueError, r"^codebook: expected one of"),
    ({"decay": 1.0}, ValueError, r"^decay: expected a value in \[0, 1\)"),
    ({"beta": -1}, ValueError, r"^beta: expected a finite value >= 0"),
    ({"restart_dead_codes": 1}, TypeError, r"^restart_dead_codes: expected True or False"),
])
def test_constructor_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        VQVAE(INPUT_DIM, **kwargs)


@pytest.mark.parametrize("indices, error, message", [
    (np.array([[0, 1, 4]]), ValueError, r"^indices: expected values in \[0, 4\)"),
    (np.array([[0, -1, 2]]), ValueError, r"^indices: expected values in \[0, 4\)"),
    (np.array([[0.0, 1.0, 2.0]]), TypeError, r"^indices: expected an integer array"),
    (np.array([0, 1, 2]), ValueError, r"^indices: expected shape \(batch, 3\)"),
])
def test_decode_indices_rejects_bad_indices(indices, error, message):
    with pytest.raises(error, match=message):
        _model().decode_indices(indices)


def test_methods_reject_bad_data():
    model = _model()
    with pytest.raises(ValueError, match=r"^x: expected shape \(batch, 7\)"):
        model.encode(np.zeros((2, 6)))
    with pytest.raises(TypeError, match=r"^x: expected a floating-point array"):
        model.reconstruct(np.zeros((2, 7), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"^prior: expected a fitted prior"):
        model.sample(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^prior: expected one over 3 latents of 4 codes"):
        model.sample(3, np.random.default_rng(0), prior=npvae.CategoricalPrior(2, 4))


def test_an_ema_step_that_would_make_the_codebook_non_finite_is_refused():
    model, x = _model("ema"), _data()
    model.ema_count[...] = 0.0
    model.ema_sum[...] = 1e308
    before = model.codebook.value.copy()
    with pytest.raises(ValueError, match=r"^codebook: the EMA update would make the codebook non-finite"):
        model.loss_and_grads(x)
    np.testing.assert_array_equal(model.codebook.value, before)


def test_load_state_dict_rejects_a_non_finite_codebook_and_changes_nothing():
    model = _model("ema")
    state = model.state_dict()
    state["codebook"] = np.full_like(state["codebook"], np.nan)
    before = model.codebook.value.copy()
    with pytest.raises(ValueError, match=r"^state\['codebook'\]: expected finite values"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model.codebook.value, before)


# -- the house: fit, evaluate, checkpoints -------------------------------------------------------
def _digits():
    return npvae.datasets.load("digits", "train").x[:300], npvae.datasets.load("digits", "test").x[:100]


def _digits_model(codebook="ema", **kwargs):
    return VQVAE(64, (32,), num_latents=4, code_dim=2, num_codes=16, codebook=codebook, dtype=np.float32, **kwargs)


@pytest.mark.parametrize("codebook", ["loss", "ema"])
def test_fit_lowers_the_loss_and_records_code_usage(codebook):
    x_train, x_test = _digits()
    model = _digits_model(codebook)
    before = npvae.evaluate(model, x_test)
    # in loss mode the VQ terms rise for a few epochs while the codebook catches up with the encoder
    history = npvae.fit(model, x_train, 6, batch_size=50, x_val=x_test, optimizer=npvae.Adam(model.parameters(), lr=1e-2))
    after = npvae.evaluate(model, x_test)
    assert after["loss"] < before["loss"]
    assert after["loss"] == pytest.approx(after["recon"] + after["kl"])
    assert history.loss == pytest.approx(np.add(history.recon, history.kl).tolist())
    assert len(history.perplexity) == len(history.codes_used) == 6
    assert all(1 <= p <= 16 for p in history.perplexity) and all(0 < f <= 1 for f in history.codes_used)
    assert after["perplexity"] == pytest.approx(model.perplexity(x_test))
    assert after["codes_used"] == model.codes_used(x_test)


def test_evaluate_of_other_models_has_no_code_usage():
    assert set(npvae.evaluate(npvae.AE(64, (8,), 2), _digits()[1])) == {"loss", "recon", "kl"}


def test_history_csv_of_a_vqvae_has_the_code_usage_columns(tmp_path):
    history = npvae.History(loss=[1.0], recon=[0.5], kl=[0.5], seconds=[0.1], kl_weight=[1.0],
                            perplexity=[3.5], codes_used=[0.25])
    text = history.to_csv(tmp_path / "h.csv").read_text()
    assert text.splitlines()[0].endswith("kl_weight,perplexity,codes_used")
    assert text.splitlines()[1].endswith(",3.5,0.25")
    with pytest.raises(ValueError, match=r"^perplexity: expected 1 values"):
        npvae.History(loss=[1.0], recon=[0.5], kl=[0.5], seconds=[0.1], kl_weight=[1.0], perplexity=[1.0, 2.0])


@pytest.mark.parametrize("codebook", ["loss", "ema"])
def test_resume_from_a_checkpoint_is_exact(tmp_path, codebook):
    """Two epochs in one go, against one epoch, save, load, one more: bit-identical parameters,
    EMA codebook and history (dead-code restarts on, so the generator's state matters too)."""
    x_train, _ = _digits()
    path = tmp_path / "model.npz"

    def run(model, epochs, optimizer, rng, history=None, callbacks=()):
        return npvae.fit(model, x_train, epochs, batch_size=64, optimizer=optimizer, rng=rng,
                         history=history, callbacks=callbacks)

    model = _digits_model(codebook, restart_dead_codes=True)
    optimizer, rng = npvae.Adam(model.parameters(), lr=3e-3), np.random.default_rng(7)
    run(model, 1, optimizer, rng, callbacks=[lambda e, h: npvae.save(model, path, optimizer, h, rng)])
    history = run(model, 1, optimizer, rng, history=npvae.load_checkpoint(path).history)

    saved = npvae.load_checkpoint(path)
    assert type(saved.model) is VQVAE and saved.model.config() == model.config()
    resumed = run(saved.model, 1, saved.optimizer, saved.rng, history=saved.history)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(saved.model.state_dict()[key], value, err_msg=key)
    assert resumed.perplexity == history.perplexity and resumed.loss == history.loss


def test_priors_are_saved_and_loaded_like_models(tmp_path):
    indices = np.random.default_rng(0).integers(0, 5, (40, 3))
    made = MADEPrior(3, 5, (8,), seed=1)
    made.fit(indices, 2, rng=np.random.default_rng(0))
    categorical = npvae.CategoricalPrior(3, 5).fit(indices)
    for prior in (made, categorical):
        loaded = npvae.load(npvae.save(prior, tmp_path / f"{type(prior).__name__}.npz"))
        assert type(loaded) is type(prior)
        np.testing.assert_array_equal(loaded.log_prob(indices), prior.log_prob(indices))


def test_code_usage_figure_is_a_png_and_refuses_all_zero_counts(tmp_path):
    pytest.importorskip("matplotlib")
    import npvae.plots

    path = npvae.plots.save_code_usage({"loss": [3, 0, 1, 4], "ema": np.array([1, 1, 1, 1])}, tmp_path / "usage.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"^counts\['a'\]: expected non-negative counts, not all 0"):
        npvae.plots.save_code_usage({"a": [0, 0]}, tmp_path / "bad.png")


# -- the command line --------------------------------------------------------------------------------
CLI_FAST = ["train", "--model", "vqvae", "--hidden", "16", "--batch-size", "256", "--lr", "0.01",
            "--prior-epochs", "1", "--prior-hidden", "8", "--restart-dead-codes"]


def test_cli_trains_evaluates_and_samples_a_vqvae(tmp_path, capsys):
    from npvae.cli import main

    out = tmp_path / "run"
    assert main([*CLI_FAST, "--epochs", "2", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    for name in ("model.npz", "prior_made.npz", "prior_categorical.npz", "reconstructions.png", "code_usage.png",
                 "samples.png", "history.png"):
        assert (out / name).is_file() and str(out / name) in stdout, name
    assert "perplexity" in stdout.splitlines()[4] and "vq" in stdout.splitlines()[4]
    assert "perplexity,codes_used" in (out / "history.csv").read_text().splitlines()[0]
    assert main(["eval", str(out / "model.npz")]) == 0
    stdout = capsys.readouterr().out
    assert "-log p(codes), made prior" in stdout and "-log p(codes), categorical prior" in stdout
    assert "code perplexity" in stdout
    for prior in ("made", "categorical"):
        assert main(["sample", str(out / "model.npz"), "--prior", prior, "--n", "4", "--out", str(tmp_path / f"{prior}.png")]) == 0
        assert (tmp_path / f"{prior}.png").read_bytes().startswith(b"\x89PNG")
    (out / "samples.png").unlink()
    assert main(["plot", str(out)]) == 0  # redraws the VQ-VAE's figures from the run's files
    assert (out / "samples.png").is_file() and (out / "code_usage.png").is_file()


def test_cli_resumed_vqvae_run_ends_with_the_same_parameters(tmp_path):
    from npvae.cli import main

    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*CLI_FAST, "--epochs", "2", "--out", str(whole)]) == 0
    assert main([*CLI_FAST, "--epochs", "1", "--out", str(split)]) == 0
    assert main(["train", "--resume", str(split), "--epochs", "2"]) == 0
    expected, resumed = npvae.load(whole / "model.npz").state_dict(), npvae.load(split / "model.npz").state_dict()
    assert expected.keys() == resumed.keys() and "codebook_ema_sum" in expected
    for key in expected:
        np.testing.assert_array_equal(resumed[key], expected[key], err_msg=key)


@pytest.mark.parametrize("options, message", [
    (["--model", "vqvae", "--code-dim", "3"], "code_dim: 3 does not divide the encoder output width latent_dim=16"),
    (["--model", "vae", "--codebook", "loss"], "--codebook applies to --model vqvae only"),
    (["--model", "vqvae", "--beta", "2"], "--beta applies to --model vae only"),
    (["--model", "vqvae", "--decay", "1"], "--decay 1.0: expected a value in [0, 1)"),
])
def test_cli_rejects_bad_vqvae_options(tmp_path, capsys, options, message):
    from npvae.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), *options]) == 1
    assert message in capsys.readouterr().err


def test_save_refuses_a_non_finite_ema_codebook_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _model("ema")
    path = npvae.save(model, tmp_path / "model.npz")
    good = path.read_bytes()
    model.codebook.value[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^model: param/codebook holds NaN or inf"):
        npvae.save(model, path)
    assert path.read_bytes() == good


def test_demo_ae_vae_vqvae_runs_and_prints_the_table(tmp_path, capsys, monkeypatch):
    import runpy
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "demos" / "ae_vae_vqvae.py"
    monkeypatch.setattr("sys.argv", [str(demo), "--epochs", "1", "--prior-epochs", "1", "--out", str(tmp_path)])
    runpy.run_path(str(demo), run_name="__main__")
    stdout = capsys.readouterr().out
    for row in ("AE ", "VAE ", "VQ-VAE (loss)", "VQ-VAE (EMA)"):
        assert row in stdout
    for name in ("reconstructions.png", "samples.png", "code_usage.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_public_methods_refuse_an_encoder_that_overflows_instead_of_picking_code_0():
    model, x = _model(dtype=np.float32), _data(np.float32)
    model.encoder[0].weight.value[...] = 3e38
    for method in (model.encode, model.reconstruct, model.perplexity):
        with pytest.raises(ValueError, match=r"^x: the model's encoder output overflows float32"):
            method(x)
