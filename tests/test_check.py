"""npvae.check: each bug id planted in a user's VAE (PyTorch and NumPy) is named, alone and in
pairs; correct VAEs of several architectures report ok; conventions are not bugs; differences
no id explains are reported as unexplained; bad input gets errors naming the argument.

The PyTorch half skips cleanly without torch. False alarms over 100 seeds are measured by
demos/check_false_alarms.py; here 20 seeds.
"""

from __future__ import annotations

import itertools
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from buggy_vaes import SAMPLER_BUGS, NumPyVAE, TorchVAE, compatible, data

import npvae
from npvae.check import (BUGS, check_gradients, check_loss, check_sampler, check_vae,
                         finite_difference_grads)
from npvae.interop import vae_from_linear_layers

ALL_PAIRS = [p for p in itertools.combinations(BUGS, 2) if compatible(p)]


def torch_vae(bugs=(), **options):
    pytest.importorskip("torch")
    return TorchVAE(bugs, **options)


def full_check(user, x, eps):
    return check_vae(user.npvae_model(), x=x, eps=eps, loss=user.loss, grads=user.grads, sample=user.sample)


def checks_for(user, bugs, x, eps):
    """check_vae with the parts the bugs touch: the sampler for sampler bugs, the loss for the
    others, the gradients for skipped-layer (central differences are slow for NumPy)."""
    sampler = set(bugs) & set(SAMPLER_BUGS)
    return check_vae(user.npvae_model(), x=x, eps=eps, loss=user.loss,
                     grads=user.grads if "skipped-layer" in bugs else None,
                     sample=user.sample if sampler else None)


# -- each bug named, alone and in pairs ------------------------------------------------------------
@pytest.mark.parametrize("bug", BUGS)
def test_torch_vae_with_one_planted_bug_is_named_by_full_check(bug):
    x, eps = data()
    report = full_check(torch_vae((bug,)), x, eps)
    assert report.bugs == (bug,), str(report)
    assert not report.ok and bug in str(report)


@pytest.mark.parametrize("bug", BUGS)
def test_numpy_vae_with_one_planted_bug_is_named(bug):
    x, eps = data()
    report = checks_for(NumPyVAE((bug,)), (bug,), x, eps)
    assert report.bugs == (bug,), str(report)


@pytest.mark.parametrize("pair", ALL_PAIRS, ids="+".join)
def test_torch_vae_with_two_planted_bugs_names_both(pair):
    x, eps = data()
    report = checks_for(torch_vae(pair), pair, x, eps)
    assert set(report.bugs) == set(pair), str(report)


@pytest.mark.parametrize("pair", [p for p in ALL_PAIRS if "skipped-layer" not in p], ids="+".join)
def test_numpy_vae_with_two_planted_bugs_names_both(pair):
    x, eps = data()
    report = checks_for(NumPyVAE(pair), pair, x, eps)
    assert set(report.bugs) == set(pair), str(report)


def test_numpy_skipped_layer_with_a_kl_bug_names_both_from_finite_difference_gradients():
    x, eps = data()
    report = full_check(NumPyVAE(("skipped-layer", "kl-sign")), x, eps)
    assert report.bugs == ("kl-sign", "skipped-layer"), str(report)
    assert report.gradients.skipped_layers == ("dec_sq.bias", "dec_sq.weight")


def test_loss_check_names_a_pair_with_the_value_it_predicts():
    user = NumPyVAE(("var-as-std", "kl-mean-over-latent"))
    x, eps = data()
    report = check_loss(user.npvae_model(), user.loss, x, eps)
    assert report.bugs == ("var-as-std", "kl-mean-over-latent")
    (explanation,) = report.explanations
    assert explanation.predicted == pytest.approx(user.loss(x, eps), rel=1e-12)
    assert "predicted" in str(report)


# -- correct implementations, conventions -----------------------------------------------------------
ARCHITECTURES = {
    "pytorch-examples-like (relu, one hidden)": dict(hidden=(7,), activation="relu", square=False),
    "two hidden layers, leaky_relu, extra square decoder layer": dict(hidden=(8, 5), activation="leaky_relu"),
    "tanh, gaussian output": dict(hidden=(6,), activation="tanh", output="gaussian"),
    "sigmoid hidden": dict(hidden=(5,), activation="sigmoid", square=False),
    "no hidden layer": dict(hidden=(), activation="identity"),
}


@pytest.mark.parametrize("options", ARCHITECTURES.values(), ids=ARCHITECTURES)
def test_correct_torch_vaes_of_several_architectures_report_ok(options):
    x, eps = data()
    if options.get("output") == "gaussian":
        x = x * 4 - 2
    report = full_check(torch_vae(**options), x, eps)
    assert report.ok and report.bugs == () and report.conventions == (), str(report)
    assert str(report).startswith("npvae check: OK")


@pytest.mark.parametrize("options", ARCHITECTURES.values(), ids=ARCHITECTURES)
def test_correct_numpy_vaes_of_several_architectures_report_ok(options):
    x, eps = data()
    if options.get("output") == "gaussian":
        x = x * 4 - 2
    user = NumPyVAE(**options)
    report = check_vae(user.npvae_model(), x=x, eps=eps, loss=user.loss, sample=user.sample)
    assert report.ok, str(report)


def test_correct_models_report_ok_on_20_seeds():
    for seed in range(20):
        x, eps = data(seed=seed)
        user = NumPyVAE(seed=seed)
        report = check_vae(user.npvae_model(), x=x, eps=eps, loss=user.loss, sample=user.sample)
        assert report.ok, f"seed {seed}:\n{report}"


def test_loss_summed_over_the_batch_is_a_convention_not_a_bug():
    user = torch_vae(batch_sum=True)
    x, eps = data()
    report = full_check(user, x, eps)
    assert report.ok and report.bugs == () and report.conventions == ("batch-sum",), str(report)


def test_torch_binary_cross_entropy_clamp_is_a_convention_not_a_bug():
    user = torch_vae(bce_clamp=True)
    with user.torch.no_grad():  # saturate the decoder: sigmoid(l) == 1.0 exactly, log clamped at -100
        user.layers["dec_out"].bias[:3] = 60.0
    x, eps = data()
    x[:, :3] = 0.0
    report = check_loss(user.npvae_model(), user.loss, x, eps)
    assert report.ok and report.conventions == ("bce-clamp",), str(report)
    assert report.rel_diff["loss"] > 1e-3  # the clamp really changes the number


def test_sum_of_squares_recon_is_a_gaussian_convention():
    user = NumPyVAE(output="gaussian")
    x, eps = data()
    model = user.npvae_model()
    terms = model.terms(x, eps=eps)
    sse = 2 * (terms.recon - 0.5 * np.log(2 * np.pi) * x.shape[1])
    report = check_loss(model, lambda x_, e_: float((sse + terms.kl).sum()), x, eps)
    assert report.ok and report.conventions == ("batch-sum", "gaussian-sse"), str(report)


# -- what no id explains ------------------------------------------------------------------------------
def test_loss_off_by_a_factor_no_id_explains_is_unexplained_with_no_id():
    user = NumPyVAE()
    x, eps = data()
    report = check_loss(user.npvae_model(), lambda x_, e_: 1.37 * user.loss(x_, e_), x, eps)
    assert not report.ok and report.unexplained and report.bugs == ()
    assert "UNEXPLAINED" in str(report)


def test_sampler_with_an_unknown_spread_is_unexplained_with_no_id():
    rng = np.random.default_rng(0)
    report = check_sampler(lambda mu, logvar: mu + np.exp(logvar / 3) * rng.standard_normal(mu.shape))
    assert not report.ok and report.unexplained and report.bugs == ()


def test_correct_sampler_is_ok_on_20_seeds():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        report = check_sampler(lambda mu, logvar: mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape))
        assert report.ok, f"seed {seed}: {report}"


@pytest.mark.parametrize("pair", [("uniform-noise", "var-as-std"), ("uniform-noise", "logvar-as-logstd")])
def test_sampler_names_uniform_noise_with_a_spread_bug(pair):
    report = check_sampler(NumPyVAE(pair).sample)
    assert report.bugs == pair


def test_gradient_check_catches_a_planted_wrong_gradient_in_one_layer():
    user = torch_vae()
    x, eps = data()
    grads = user.grads(x, eps)
    grads["dec0.weight"] = grads["dec0.weight"] * 1.01  # a backward off by 1% in one layer
    report = check_gradients(user.npvae_model(), grads, x, eps)
    assert not report.ok and report.first_difference == "dec0.weight" and report.differing == ("dec0.weight",)
    assert report.unexplained and report.bugs == ()
    correct = check_gradients(user.npvae_model(), user.grads(x, eps), x, eps)
    assert correct.ok and max(e.rel_diff for e in correct.entries) < 1e-12


def test_gradients_by_layer_position_in_npvae_layout():
    user = torch_vae()
    x, eps = data()
    named = {k: v.numpy() for k, v in user.grads(x, eps).items()}
    layers = ["enc0", "mu", "logvar", "dec0", "dec_sq", "dec_out"]
    by_position = {i: (named[f"{n}.weight"].T, named[f"{n}.bias"]) for i, n in enumerate(layers)}
    assert check_gradients(user.npvae_model(), by_position, x, eps, layout="npvae").ok


def test_finite_difference_grads_match_npvae_on_its_own_loss():
    model = npvae.VAE(5, (4,), 2, seed=1)
    x, eps = data(5, 2, batch=3)
    weight = model.decoder[0].weight.value

    def loss(x_, e_):
        return float(model.terms(x_, eps=e_).loss.mean())

    numeric = finite_difference_grads(loss, {"w": weight}, x, eps)["w"]
    model.loss_and_grads(x, eps=eps)
    np.testing.assert_allclose(numeric, model.decoder[0].weight.grad, rtol=1e-6, atol=1e-9)


# -- bad input ------------------------------------------------------------------------------------------
@pytest.fixture
def numpy_user():
    return NumPyVAE()


def test_check_loss_rejects_wrong_shapes_naming_the_argument(numpy_user):
    x, eps = data()
    model = numpy_user.npvae_model()
    with pytest.raises(ValueError, match="^x: expected shape"):
        check_loss(model, numpy_user.loss, x[:, :4], eps)
    with pytest.raises(ValueError, match="^eps: expected shape"):
        check_loss(model, numpy_user.loss, x, eps[:, :2])


def test_check_loss_names_a_user_loss_that_raises_or_returns_nan(numpy_user):
    x, eps = data()
    model = numpy_user.npvae_model()

    def broken(x_, e_):
        raise KeyError("oops")

    with pytest.raises(RuntimeError, match="^user_loss: raised KeyError"):
        check_loss(model, broken, x, eps)
    with pytest.raises(ValueError, match="^user_loss: returned nan"):
        check_loss(model, lambda x_, e_: float("nan"), x, eps)
    with pytest.raises(ValueError, match="user_loss: returned a dict without 'loss'"):
        check_loss(model, lambda x_, e_: {"recon": 1.0}, x, eps)
    with pytest.raises(TypeError, match="^user_loss: expected a callable"):
        check_loss(model, 3.0, x, eps)
    with pytest.raises(TypeError, match="^model: expected an npvae VAE"):
        check_loss(npvae.AE(10, (4,), 2), numpy_user.loss, x, eps)


def test_check_gradients_names_missing_unknown_and_misshapen_gradients(numpy_user):
    x, eps = data()
    model = numpy_user.npvae_model()
    grads = {k: np.zeros_like(v) for k, v in numpy_user.params.items()}
    with pytest.raises(ValueError, match=r"^user_grads: missing \['mu.weight'\]"):
        check_gradients(model, {k: v for k, v in grads.items() if k != "mu.weight"}, x, eps)
    with pytest.raises(ValueError, match="^user_grads: unknown parameter 'fc9.weight'"):
        check_gradients(model, {**grads, "fc9.weight": np.zeros(3)}, x, eps)
    with pytest.raises(ValueError, match=r"^user_grads\['enc0.weight'\]: expected shape \(6, 10\)"):
        check_gradients(model, {**grads, "enc0.weight": np.zeros((10, 6))}, x, eps)
    with pytest.raises(ValueError, match=r"^user_grads\['mu.bias'\]: expected finite values"):
        check_gradients(model, {**grads, "mu.bias": np.full(3, np.nan)}, x, eps)


def test_check_sampler_names_a_sampler_that_raises_or_returns_the_wrong_shape():
    with pytest.raises(ValueError, match=r"^user_sample: returned shape \(500, 3\), expected \(500, 6\)"):
        check_sampler(lambda mu, logvar: mu[:, :3])
    with pytest.raises(ValueError, match="^user_sample: returned NaN"):
        check_sampler(lambda mu, logvar: mu * np.nan)
    with pytest.raises(RuntimeError, match="^user_sample: raised ZeroDivisionError"):
        check_sampler(lambda mu, logvar: 1 / 0)
    with pytest.raises(ValueError, match="^mu, logvar: expected two"):
        check_sampler(lambda mu, logvar: mu, np.zeros((2, 3)), np.zeros((2, 2)))


def test_check_vae_without_a_loss_lists_it_missing_and_is_not_ok(numpy_user):
    report = check_vae(numpy_user.npvae_model(), sample=numpy_user.sample)
    assert report.missing == ("loss",) and not report.ok and report.bugs == ()
    assert "missing: loss" in str(report)
    with pytest.raises(ValueError, match="^x, eps: expected both"):
        check_vae(numpy_user.npvae_model(), loss=numpy_user.loss)


def test_float32_model_is_checked_in_float64():
    user = NumPyVAE()
    x, eps = data()
    model64 = user.npvae_model()
    model32 = vae_from_linear_layers([(user.params["enc0.weight"], user.params["enc0.bias"])],
                                     (user.params["mu.weight"], user.params["mu.bias"]),
                                     (user.params["logvar.weight"], user.params["logvar.bias"]),
                                     [(user.params[f"{n}.weight"], user.params[f"{n}.bias"])
                                      for n in ("dec0", "dec_sq", "dec_out")],
                                     activation="leaky_relu", dtype=np.float32)
    report = check_loss(model32, user.loss, x, eps)
    assert report.ok and report.npvae["loss"] == pytest.approx(check_loss(model64, user.loss, x, eps).npvae["loss"],
                                                                rel=1e-6)


# -- the seed demo ----------------------------------------------------------------------------------------
DEMO = Path(__file__).resolve().parent.parent / "demos" / "check_the_seed.py"
SEED_FINDINGS = ("uniform-noise", "var-as-std", "skipped-layer")


def test_seed_demo_names_the_sketchs_bugs_in_pytorch(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(sys, "argv", [str(DEMO)])
    runpy.run_path(str(DEMO), run_name="__main__")
    out = capsys.readouterr().out
    assert "npvae check: NOT OK" in out and f"bugs: {', '.join(SEED_FINDINGS)}" in out
    assert "missing: loss" in out and "generation_layer.0" in out


def test_seed_demo_numpy_transliteration_names_the_same_bugs():
    demo = runpy.run_path(str(DEMO))  # not __main__: its functions only
    state, sample, grads = demo["numpy_sketch"](input_dim=16, hidden_dim=8, latent_dim=6)
    x = np.random.default_rng(0).uniform(size=(4, 16))
    report = demo["check_sketch"](state, sample, grads, x)
    assert report.bugs == SEED_FINDINGS and report.missing == ("loss",), str(report)
    assert report.gradients.skipped_layers == ("generation_layer.0.weight", "generation_layer.0.bias")


def test_sampler_at_logvar_zero_blames_no_rule_that_coincides_with_the_correct_one():
    # at logvar = 0, exp(h / 2) = exp(h) = 1: a correct sampler must still be ok
    rng = np.random.default_rng(3)
    correct = check_sampler(lambda mu, lv: mu + np.exp(0.5 * lv) * rng.standard_normal(mu.shape),
                            np.zeros((1, 4)), np.zeros((1, 4)))
    assert correct.ok
    uniform = check_sampler(lambda mu, lv: mu + np.exp(lv) * rng.random(mu.shape), np.zeros((1, 4)), np.zeros((1, 4)))
    assert uniform.bugs == ("uniform-noise",)  # the fewest ids that fit: exp(h) is not needed to explain it


def test_float64_loss_tells_apart_sampler_rules_that_both_land_within_rtol():
    # relu, hidden (8, 5), seed 73: the decoder barely feels z, and no-noise predicts the loss of
    # var-as-std to 9e-6 relative; the float64 user's number matches var-as-std to 1e-15
    user = NumPyVAE(("var-as-std",), seed=73, hidden=(8, 5), activation="relu")
    x, eps = data(seed=73)
    report = check_loss(user.npvae_model(), user.loss, x, eps)
    assert report.bugs == ("var-as-std",), str(report)
    rounded = check_loss(user.npvae_model(), lambda x_, e_: user.loss(x_, e_) * (1 + 3e-6), x, eps)
    assert set(rounded.bugs) == {"var-as-std", "no-noise"}  # float32-sized rounding: both stay


def test_check_vae_keeps_the_loss_explanation_the_sampler_check_agrees_with():
    user = NumPyVAE(("var-as-std",), seed=73, hidden=(8, 5), activation="relu")
    x, eps = data(seed=73)
    report = check_vae(user.npvae_model(), x=x, eps=eps, loss=lambda x_, e_: user.loss(x_, e_) * (1 + 3e-6),
                       sample=user.sample)
    assert report.bugs == ("var-as-std",) and "sampler check's rule is kept" in str(report), str(report)
