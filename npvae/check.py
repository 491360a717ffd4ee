"""Check another VAE against npvae: same weights, same data, same noise; then name the bug.

Load the other implementation's weights into an npvae ``VAE`` (``npvae.interop``), then

    check_loss(model, user_loss, x, eps)        the user's loss vs npvae's negative ELBO
    check_gradients(model, user_grads, x, eps)  the user's gradients vs npvae's, layer by layer
    check_sampler(user_sample)                  the user's z = sample(mu, logvar), many draws
    check_vae(model, ...)                       all of the above that it is given, one report

Every report has ``.ok``, ``.bugs`` (ids from ``BUGS``) and ``.conventions`` (ids from
``CONVENTIONS``: choices that change the number without being wrong), and prints readably.

How a loss is diagnosed: with the user's weights, data and noise, npvae computes the loss that
each bug id (alone, and every compatible pair), under each convention, would give. The ids
named are those of the explanations with the fewest ids that reproduce the user's number to
``rtol``; when none does, the report says the difference is unexplained (not ok, no id). An
explanation is never guessed: each one named was computed and matched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.special

from . import _checks
from .interop import _names_for, as_array, layer_names, off_path_layers
from .losses import LOG_2PI
from .models import VAE
from .nn import Dense, Module

__all__ = ["BUGS", "CONVENTIONS", "LossReport", "GradientReport", "SamplerReport", "VAEReport",
           "check_loss", "check_gradients", "check_sampler", "check_vae", "finite_difference_grads"]

#: Every bug id the checks can name, with what it is.
BUGS = {
    "uniform-noise": "eps drawn from U(0, 1) (rand_like) instead of N(0, I)",
    "var-as-std": "z = mu + h * eps: the head's second output used directly as the spread",
    "logvar-as-logstd": "z = mu + exp(h) * eps: the log-variance used as a log-std",
    "no-noise": "z = mu while training: no sampling",
    "kl-sign": "the KL term added with the wrong sign",
    "kl-sigma-as-variance": "KL = -1/2 sum(1 + logvar - mu^2 - sigma): sigma where sigma^2 belongs",
    "kl-logvar-as-logstd": "KL = -1/2 sum(1 + 2h - mu^2 - exp(2h)): the head read as log sigma",
    "kl-mean-over-latent": "the KL averaged over the latent dimensions instead of summed",
    "kl-missing": "no KL term",
    "recon-mean-kl-sum": "the reconstruction divided by the pixel count D, the KL summed",
    "sigmoid-twice": "a logits loss applied to sigmoid outputs",
    "skipped-layer": "a layer defined but not on the forward path (its gradient is 0)",
}

#: Choices that change the number but not the model: reported, never as bugs.
CONVENTIONS = {
    "batch-sum": "the loss summed over the batch (npvae: the batch mean)",
    "bce-clamp": "binary cross-entropy on probabilities with log clamped at -100 (torch's binary_cross_entropy)",
    "gaussian-half-sse": "Gaussian reconstruction as 1/2 sum (x - mean)^2, without D/2 log(2 pi)",
    "gaussian-sse": "Gaussian reconstruction as sum (x - mean)^2 (MSE summed): a unit Gaussian's NLL x 2, no constant",
}

_Z_RULES = {None: "std", "var-as-std": "h", "logvar-as-logstd": "exp_h", "no-noise": "mu"}
_KL_FORMS = {None: "ok", "kl-sigma-as-variance": "sigma", "kl-logvar-as-logstd": "2h"}
_KL_SLOTS = ("kl_form", "kl_mean", "kl_sign", "kl_missing")
_SAMPLER_RULES = {"var-as-std", "logvar-as-logstd", "no-noise"}  # what the sampler check and the loss check both see


def _check_vae(model: Any) -> VAE:
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected an npvae VAE (see npvae.interop to build one from your weights), "
                        f"got {type(model).__name__}")
    return model


def _float64_copy(model: VAE) -> VAE:
    """The model in float64 (itself if it is): the checks compute in float64."""
    if model.dtype == np.float64:
        return model
    copy = VAE(**{**model.config(), "dtype": "float64"})
    copy.load_state_dict(model.state_dict())
    return copy


def _inputs(model: VAE, x: Any, eps: Any) -> tuple[np.ndarray, np.ndarray]:
    """x and eps as float64 arrays checked by the model (errors name ``x`` / ``eps``)."""
    x = as_array(x, "x").astype(np.float64)
    eps = as_array(eps, "eps").astype(np.float64)
    model.terms(x, eps=eps)  # validates shapes, ranges and finiteness, naming x or eps
    return x, eps


def _call_user(argument: str, function: Callable[..., Any], *args: Any) -> Any:
    """function(*args); an exception it raises is re-raised naming ``argument``."""
    try:
        return function(*args)
    except Exception as error:
        raise RuntimeError(f"{argument}: raised {type(error).__name__}: {error}") from error


def _scalar(argument: str, value: Any) -> float:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "fiu":
        raise TypeError(f"{argument}: expected a real number, got {type(value).__name__} of shape {array.shape}")
    number = float(array.reshape(()))
    if not math.isfinite(number):
        raise ValueError(f"{argument}: returned {number} (expected a finite number)")
    return number


# -- the loss ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Explanation:
    """Bug ids and conventions that, applied to npvae's loss, give ``predicted``."""

    bugs: tuple[str, ...]
    details: tuple[str, ...]
    conventions: tuple[str, ...]
    predicted: float
    predicted_recon: float
    predicted_kl: float

    def describe(self) -> str:
        parts = list(self.details) + [f"convention {c}" for c in self.conventions]
        return " + ".join(parts) if parts else "npvae's loss"


@dataclass(frozen=True)
class LossReport:
    """npvae's loss terms, the user's, and the explanations that reproduce the user's loss."""

    npvae: dict[str, float]
    user: dict[str, float]
    explanations: tuple[Explanation, ...]
    rtol: float

    @property
    def unexplained(self) -> bool:
        return not self.explanations

    @property
    def bugs(self) -> tuple[str, ...]:
        named = {bug for e in self.explanations for bug in e.bugs}
        return tuple(bug for bug in BUGS if bug in named)

    @property
    def conventions(self) -> tuple[str, ...]:
        named = {c for e in self.explanations for c in e.conventions}
        return tuple(c for c in CONVENTIONS if c in named)

    @property
    def ok(self) -> bool:
        return bool(self.explanations) and not self.bugs

    @property
    def rel_diff(self) -> dict[str, float]:
        """|user - npvae| / |npvae| per term the user gave."""
        return {k: abs(v - self.npvae[k]) / max(abs(self.npvae[k]), 1e-300) for k, v in self.user.items()}

    def __str__(self) -> str:
        lines = [f"loss check (rtol {self.rtol:g}; npvae: recon {self.npvae['recon']:.10g} + kl "
                 f"{self.npvae['kl']:.10g}):"]
        for key, value in self.user.items():
            lines.append(f"  {key:<6} yours {value:.10g}   npvae {self.npvae[key]:.10g}   "
                         f"rel. diff {self.rel_diff[key]:.2e}")
        if self.unexplained:
            lines.append("  UNEXPLAINED: no bug id or convention (alone or in pairs) reproduces your loss")
        elif self.ok:
            what = f" under convention {', '.join(self.conventions)}" if self.conventions else ""
            lines.append(f"  matches{what}")
        else:
            lines.append("  reproduced by:" if len(self.explanations) == 1 else "  reproduced by each of:")
            for e in self.explanations:
                lines.append(f"    {e.describe()}: predicted {e.predicted:.10g}")
        for c in self.conventions:
            lines.append(f"  convention {c}: {CONVENTIONS[c]}")
        for bug in self.bugs:
            lines.append(f"  bug {bug}: {BUGS[bug]}")
        return "\n".join(lines)


def _forward_layers(layers: tuple[Module, ...], x: np.ndarray, skip: tuple[int, ...]) -> np.ndarray:
    for index, layer in enumerate(layers):
        if index not in skip:
            x = layer.forward(x).copy()
    return x


def _skip_options(model: VAE) -> list[tuple[str, str, tuple[int, ...], str]]:
    """Each square hidden layer of the encoder or decoder, left out alone or with its activation:
    (part, the user's name for it, skipped indices, description)."""
    user_names = iter(layer_names(model))
    names = {}
    for part in ("encoder", "mu", "logvar", "decoder"):
        layers = getattr(model, part).layers if part in ("encoder", "decoder") else (None,)
        for index, layer in enumerate(layers):
            if layer is None or isinstance(layer, Dense):
                names[part, index] = next(user_names)
    options = []
    for part in ("encoder", "decoder"):
        layers = getattr(model, part).layers
        for index, layer in enumerate(layers):
            if isinstance(layer, Dense) and layer.in_features == layer.out_features:
                name = names[part, index]
                options.append((part, name, (index,), f"skipped-layer ({name})"))
                if index + 1 < len(layers) and not isinstance(layers[index + 1], Dense):
                    options.append((part, name, (index, index + 1), f"skipped-layer ({name} and its activation)"))
    return options


class _LossModel:
    """npvae's loss with any bug slots set, computed from the model's layers (float64), cached."""

    def __init__(self, model: VAE, x: np.ndarray, eps: np.ndarray) -> None:
        self.model, self.x, self.eps = model, x, eps
        self._cache: dict[Any, Any] = {}

    def _stats(self, enc_skip: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        key = ("stats", enc_skip)
        if key not in self._cache:
            hidden = _forward_layers(self.model.encoder.layers, self.x, enc_skip)
            stats = self.model.head.forward(hidden).copy()
            k = self.model.latent_dim
            self._cache[key] = (stats[:, :k], stats[:, k:])
        return self._cache[key]

    def _decoded(self, enc_skip: tuple[int, ...], dec_skip: tuple[int, ...], z_rule: str) -> np.ndarray:
        key = ("decoded", enc_skip, dec_skip, z_rule)
        if key not in self._cache:
            mu, h = self._stats(enc_skip)
            spread = {"std": np.exp(0.5 * h), "h": h, "exp_h": np.exp(h), "mu": np.zeros_like(h)}[z_rule]
            z = mu + spread * self.eps
            with np.errstate(over="ignore", invalid="ignore"):
                self._cache[key] = _forward_layers(self.model.decoder.layers, z, dec_skip)
        return self._cache[key]

    def recon(self, slots: dict[str, Any], bce: str) -> np.ndarray:
        decoded = self._decoded(slots["enc_skip"], slots["dec_skip"], slots["z"])
        x = self.x
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.model.output == "gaussian":
                sse = ((x - decoded) ** 2).sum(axis=1)
                nll = {"nll": 0.5 * sse + 0.5 * LOG_2PI * x.shape[1], "half-sse": 0.5 * sse, "sse": sse}[bce]
            elif slots["sigmoid_twice"]:
                probs = scipy.special.expit(decoded)
                nll = (np.logaddexp(0.0, probs) - x * probs).sum(axis=1)
            elif bce == "clamp":
                probs = scipy.special.expit(decoded)
                log_p = np.maximum(np.log(probs), -100.0)
                log_q = np.maximum(np.log1p(-probs), -100.0)
                nll = -(x * log_p + (1 - x) * log_q).sum(axis=1)
            else:  # softplus(l) - x l, stable for any l
                nll = (np.logaddexp(0.0, decoded) - x * decoded).sum(axis=1)
        return nll / x.shape[1] if slots["recon_mean"] else nll

    def kl(self, slots: dict[str, Any]) -> np.ndarray:
        mu, h = self._stats(slots["enc_skip"])
        with np.errstate(over="ignore", invalid="ignore"):
            terms = {"ok": 1 + h - mu**2 - np.exp(h), "sigma": 1 + h - mu**2 - np.exp(0.5 * h),
                     "2h": 1 + 2 * h - mu**2 - np.exp(2 * h)}[slots["kl_form"]]
            kl = -0.5 * (terms.mean(axis=1) if slots["kl_mean"] else terms.sum(axis=1))
        return kl


def _loss_options(model: VAE) -> list[tuple[str, dict[str, Any], str]]:
    """(bug id, the slots it sets, description) for every way a single bug changes the loss."""
    options: list[tuple[str, dict[str, Any], str]] = []
    for bug, rule in _Z_RULES.items():
        if bug:
            options.append((bug, {"z": rule}, bug))
    for bug, form in _KL_FORMS.items():
        if bug:
            options.append((bug, {"kl_form": form}, bug))
    options += [("kl-mean-over-latent", {"kl_mean": True}, "kl-mean-over-latent"),
                ("kl-sign", {"kl_sign": -1.0}, "kl-sign"),
                ("kl-missing", {"kl_missing": True}, "kl-missing"),
                ("recon-mean-kl-sum", {"recon_mean": True}, "recon-mean-kl-sum")]
    if model.output == "bernoulli":
        options.append(("sigmoid-twice", {"sigmoid_twice": True}, "sigmoid-twice"))
    for part, _, skipped, description in _skip_options(model):
        options.append(("skipped-layer", {"enc_skip" if part == "encoder" else "dec_skip": skipped}, description))
    return options


def _compatible(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if set(a) & set(b):
        return False
    # a missing KL hides every other change to the KL: such a pair is kl-missing alone
    return not (("kl_missing" in a and set(b) & set(_KL_SLOTS)) or ("kl_missing" in b and set(a) & set(_KL_SLOTS)))


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return math.isfinite(b) and abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def _user_terms(value: Any) -> dict[str, float]:
    if isinstance(value, Mapping):
        if "loss" not in value:
            raise ValueError(f"user_loss: returned a dict without 'loss' (keys {sorted(value)})")
        unknown = sorted(set(value) - {"loss", "recon", "kl"})
        if unknown:
            raise ValueError(f"user_loss: returned unknown keys {unknown} (expected loss, recon, kl)")
        return {key: _scalar(f"user_loss: [{key!r}]", value[key]) for key in ("loss", "recon", "kl") if key in value}
    return {"loss": _scalar("user_loss", value)}


def check_loss(model: VAE, user_loss: Callable[[np.ndarray, np.ndarray], Any], x: Any, eps: Any, *,
               rtol: float = 1e-5, atol: float = 1e-8) -> LossReport:
    """Compare the user's loss with npvae's on the same weights, data and noise; name the bug.

    Parameters
    ----------
    model : VAE
        npvae's copy of the user's network (``npvae.interop``).
    user_loss : callable
        ``user_loss(x, eps)`` with float64 arrays x (batch, input_dim) and eps (batch,
        latent_dim): the user's loss using exactly this noise (z = mu + sigma * eps in a correct
        VAE). Returns a number (or 0-d tensor), or a dict with ``loss`` and optionally ``recon``
        and ``kl`` (the user's terms, reduced over the batch as the loss is).
    x, eps : arrays
    rtol, atol : a number reproduces another when |a - b| <= atol + rtol * max(|a|, |b|); the
        default suits float64 and float32 user code.

    Returns a ``LossReport``: ok when npvae's loss (with conventions) reproduces the user's; its
    ``bugs`` are the ids of the explanations with fewest ids that do (alone or in pairs).
    """
    model = _float64_copy(_check_vae(model))
    if not callable(user_loss):
        raise TypeError(f"user_loss: expected a callable user_loss(x, eps), got {type(user_loss).__name__}")
    x, eps = _inputs(model, x, eps)
    user = _user_terms(_call_user("user_loss", user_loss, x.copy(), eps.copy()))
    terms = model.terms(x, eps=eps)
    batch = x.shape[0]
    npvae = {"loss": float(terms.loss.mean()), "recon": float(terms.recon.mean()), "kl": float(terms.kl.mean())}
    losses = _LossModel(model, x, eps)
    base = {"enc_skip": (), "dec_skip": (), "z": "std", "kl_form": "ok", "kl_mean": False, "kl_sign": 1.0,
            "kl_missing": False, "recon_mean": False, "sigmoid_twice": False}
    options = _loss_options(model)
    combos: list[tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]]] = [((), (), {})]
    combos += [((bug,), (detail,), slots) for bug, slots, detail in options]
    for (bug_a, slots_a, detail_a), (bug_b, slots_b, detail_b) in itertools.combinations(options, 2):
        if bug_a != bug_b and _compatible(slots_a, slots_b):
            combos.append(((bug_a, bug_b), (detail_a, detail_b), {**slots_a, **slots_b}))
    recon_conventions = ({"nll": (), "half-sse": ("gaussian-half-sse",), "sse": ("gaussian-sse",)}
                         if model.output == "gaussian" else {"logits": (), "clamp": ("bce-clamp",)})
    found: list[Explanation] = []
    for bugs, details, changes in combos:
        slots = {**base, **changes}
        kl = np.zeros(batch) if slots["kl_missing"] else losses.kl(slots)
        for recon_kind, recon_conv in recon_conventions.items():
            if recon_kind == "clamp" and slots["sigmoid_twice"]:
                continue
            recon = losses.recon(slots, recon_kind)
            per_example = recon + slots["kl_sign"] * model.beta * kl
            for batch_conv, reduce in (((), np.mean), (("batch-sum",), np.sum)):
                predicted = float(reduce(per_example))
                if not _close(user["loss"], predicted, rtol, atol):
                    continue
                p_recon, p_kl = float(reduce(recon)), float(reduce(kl))
                if "recon" in user and not _close(user["recon"], p_recon, rtol, atol):
                    continue
                if "kl" in user and not slots["kl_missing"] and not (
                        _close(user["kl"], p_kl, rtol, atol) or _close(user["kl"], -p_kl, rtol, atol)):
                    continue
                found.append(Explanation(bugs, details, recon_conv + batch_conv, predicted, p_recon, p_kl))
    if found:
        fewest = min((len(e.bugs), len(e.conventions)) for e in found)
        found = [e for e in found if (len(e.bugs), len(e.conventions)) == fewest]
        # of those, the ones that reproduce the number far better than the rest (a small decoder
        # barely feels z, so two sampler rules can both land within rtol; float64 code tells them
        # apart by ~1e-15 against ~1e-6, float32 code may not, and then both are reported)
        miss = [abs(user["loss"] - e.predicted) for e in found]
        closest = max(min(miss), 1e-14 * abs(user["loss"]), atol)
        found = [e for e, m in zip(found, miss) if m <= 100 * closest]
    scale = batch if found and "batch-sum" in found[0].conventions else 1
    shown = {key: value * scale for key, value in npvae.items()}
    return LossReport(shown, user, tuple(found), rtol)


# -- the gradients -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerGradient:
    """One parameter's comparison: max |user - npvae| / max |npvae|."""

    name: str
    rel_diff: float
    user_zero: bool
    npvae_zero: bool
    off_path: bool = False

    @property
    def skipped(self) -> bool:
        return self.user_zero and (not self.npvae_zero or self.off_path)


@dataclass(frozen=True)
class GradientReport:
    """Per-parameter gradient comparison, from the loss backwards (the decoder's last layer first)."""

    entries: tuple[LayerGradient, ...]
    conventions: tuple[str, ...]
    rtol: float
    eps_note: str = ""

    @property
    def skipped_layers(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries if e.skipped)

    @property
    def differing(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries if not e.skipped and not e.off_path and e.rel_diff > self.rtol)

    @property
    def first_difference(self) -> str | None:
        """The first parameter, from the loss backwards, whose gradient differs."""
        differing = set(self.differing)
        return next((e.name for e in self.entries if e.skipped or e.name in differing), None)

    @property
    def bugs(self) -> tuple[str, ...]:
        return ("skipped-layer",) if self.skipped_layers else ()

    @property
    def unexplained(self) -> bool:
        """Gradients differ and no skipped layer explains it (a different forward path would)."""
        return bool(self.differing) and not self.skipped_layers

    @property
    def ok(self) -> bool:
        return not self.skipped_layers and not self.differing

    def __str__(self) -> str:
        lines = [f"gradient check (rel. diff = max|yours - npvae| / max|npvae|, rtol {self.rtol:g}){self.eps_note}:"]
        for e in self.entries:
            if e.skipped:
                flag = "ZERO: skipped-layer" + (" (on no forward path npvae can build)" if e.off_path else "")
            elif e.off_path:
                flag = "not on the forward path, gradient not zero"
            else:
                flag = "ok" if e.rel_diff <= self.rtol else "DIFFERS"
            lines.append(f"  {e.name:<28}{e.rel_diff:>11.2e}  {flag}")
        if self.first_difference:
            lines.append(f"  first difference from the loss backwards: {self.first_difference}")
        if self.skipped_layers and self.differing:
            lines.append("  (a skipped layer changes the forward path, so the other layers' gradients differ too)")
        if self.unexplained:
            lines.append("  UNEXPLAINED by the gradients alone: compare the losses (check_loss) to find why")
        for c in self.conventions:
            lines.append(f"  convention {c}: {CONVENTIONS[c]}")
        if self.skipped_layers:
            lines.append(f"  bug skipped-layer: {BUGS['skipped-layer']}")
        return "\n".join(lines)


def _gradients_by_layer(model: VAE) -> list[tuple[np.ndarray, np.ndarray]]:
    """The gradients left by loss_and_grads, per torch-layout layer (mu, logvar separate)."""
    k = model.latent_dim
    layers = []
    for module in [m for m in model.encoder.layers if isinstance(m, Dense)]:
        layers.append((module.weight.grad.T.copy(), module.bias.grad.copy()))
    head_w, head_b = model.head.weight.grad, model.head.bias.grad
    layers += [(head_w[:, :k].T.copy(), head_b[:k].copy()), (head_w[:, k:].T.copy(), head_b[k:].copy())]
    for module in [m for m in model.decoder.layers if isinstance(m, Dense)]:
        layers.append((module.weight.grad.T.copy(), module.bias.grad.copy()))
    return layers


def _user_gradient(key: Any, value: Any, shape: tuple[int, ...], layout: str) -> np.ndarray:
    argument = f"user_grads[{key!r}]"
    if value is None:  # torch leaves .grad None on a parameter the loss does not reach
        return np.zeros(shape)
    array = as_array(value, argument).astype(np.float64)
    if layout == "npvae" and array.ndim == 2:
        array = array.T
    if array.shape != shape:
        expected = shape if layout == "torch" or len(shape) == 1 else shape[::-1]
        raise ValueError(f"{argument}: expected shape {expected} ({layout} layout), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{argument}: expected finite values, found NaN or inf")
    return array


def check_gradients(model: VAE, user_grads: Mapping[Any, Any], x: Any, eps: Any, *,
                    names: Any = None, layout: str = "torch", rtol: float = 1e-4) -> GradientReport:
    """Compare the user's parameter gradients with npvae's, layer by layer.

    ``user_grads`` maps parameter names (``"fc1.weight"``, ``"fc1.bias"``: the names of
    ``npvae.interop.layer_names(model)`` or of ``names``) or layer positions (0, 1, ... in
    forward order, mu and logvar separate; the value a (weight, bias) pair) to gradient arrays
    or tensors, computed by the user's code at (x, eps) for its loss reduced as a batch mean
    (a batch sum is recognised as a convention). A value None (torch's ``.grad`` of a parameter
    the loss never reached) counts as zero. Weights are (out, in) with ``layout="torch"``.

    A gradient that is exactly zero where npvae's is not is ``skipped-layer``; the report names
    the first parameter, from the loss backwards, whose gradient differs by more than ``rtol``
    (relative to the largest entry of npvae's gradient).
    """
    model = _check_vae(model)
    layer_names = _names_for(model, names)
    if layout not in ("torch", "npvae"):
        raise ValueError(f"layout: expected 'torch' or 'npvae', got {layout!r}")
    if not isinstance(user_grads, Mapping):
        raise TypeError(f"user_grads: expected a mapping of parameter names to gradients, got "
                        f"{type(user_grads).__name__}")
    model64 = _float64_copy(model)
    x, eps = _inputs(model64, x, eps)
    model64.loss_and_grads(x, eps=eps)
    reference = _gradients_by_layer(model64)
    expected: dict[str, np.ndarray] = {}
    for name, (weight, bias) in zip(layer_names, reference):
        expected[f"{name}.weight"], expected[f"{name}.bias"] = weight, bias
    off_path = off_path_layers(model)
    given: dict[str, np.ndarray] = {}
    off: dict[str, np.ndarray] = {}
    for key, value in user_grads.items():
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not 0 <= key < len(layer_names):
                raise ValueError(f"user_grads: position {key} out of range (0..{len(layer_names) - 1})")
            pair = value if isinstance(value, (tuple, list)) else (value, None)
            if len(pair) != 2:
                raise ValueError(f"user_grads[{key}]: expected a (weight grad, bias grad) pair")
            for leaf, part in zip(("weight", "bias"), pair):
                full = f"{layer_names[key]}.{leaf}"
                if part is not None or leaf == "weight":
                    given[full] = _user_gradient(key, part, expected[full].shape, layout)
        elif isinstance(key, str) and key in expected:
            given[key] = _user_gradient(key, value, expected[key].shape, layout)
        elif isinstance(key, str) and key.rpartition(".")[0] in off_path:
            off[key] = as_array(value, f"user_grads[{key!r}]") if value is not None else np.zeros(1)
        else:
            raise ValueError(f"user_grads: unknown parameter {key!r}; expected names {sorted(expected)} "
                             f"or layer positions 0..{len(layer_names) - 1}")
    missing = [name for name in expected if name not in given and not name.endswith(".bias")]
    if missing:
        raise ValueError(f"user_grads: missing {missing} (give every layer's weight gradient; None for a "
                         f"parameter without one)")
    conventions: tuple[str, ...] = ()
    batch = x.shape[0]

    def rel(name: str, scale: float) -> float:
        ref = expected[name]
        return float(np.abs(given[name] / scale - ref).max() / max(np.abs(ref).max(), 1e-300))

    if any(rel(n, 1) > rtol for n in given) and batch > 1 and all(
            rel(n, batch) <= rtol or not given[n].any() for n in given):
        conventions = ("batch-sum",)
    scale = batch if conventions else 1
    entries = []
    for name in reversed(list(expected)):  # from the loss backwards
        if name in given:
            entries.append(LayerGradient(name, rel(name, scale), not given[name].any(), not expected[name].any()))
    for name, value in off.items():
        entries.append(LayerGradient(name, float("nan"), not value.any(), True, off_path=True))
    return GradientReport(tuple(entries), conventions, rtol)


def finite_difference_grads(user_loss: Callable[[np.ndarray, np.ndarray], Any], params: Mapping[str, np.ndarray],
                            x: Any, eps: Any, *, step: float = 1e-6) -> dict[str, np.ndarray]:
    """Central differences (f(p + h) - f(p - h)) / 2h of ``user_loss(x, eps)`` with respect to
    every entry of every array in ``params`` (float64, perturbed in place and restored): the
    gradients of a NumPy VAE that has no backward of its own, for ``check_gradients``. Error
    O(h^2) + O(1e-16 |f| / h), about 1e-9 relative at the default step."""
    if not callable(user_loss):
        raise TypeError(f"user_loss: expected a callable user_loss(x, eps), got {type(user_loss).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of names to float64 arrays, got {type(params).__name__}")
    for name, array in params.items():
        if not isinstance(array, np.ndarray) or array.dtype != np.float64 or not array.flags.writeable:
            raise TypeError(f"params[{name!r}]: expected a writeable float64 ndarray (perturbed in place)")

    def value() -> float:
        return _scalar("user_loss", _user_terms(_call_user("user_loss", user_loss, x, eps))["loss"])

    grads = {}
    for name, array in params.items():
        grad = np.empty_like(array)
        for index in np.ndindex(array.shape):
            original = array[index]
            array[index] = original + step
            plus = value()
            array[index] = original - step
            minus = value()
            array[index] = original
            grad[index] = (plus - minus) / (2 * step)
        grads[name] = grad
    return grads


# -- the sampler ---------------------------------------------------------------------------------
#: Default (mu, logvar) for check_sampler: 6 log-variances at which every candidate spread
#: (exp(h/2), h, exp(h)) differs from the others by at least 20%, and means of both signs.
SAMPLER_LOGVAR = np.array([-3.0, -1.5, -0.5, 0.5, 1.5, 3.0])
SAMPLER_MU = np.array([-2.0, -0.7, 0.3, 1.1, 2.5, -1.3])

# Thresholds, in standard errors of each statistic under the hypothesis tested: a correct
# sampler fails one with probability < 1e-14 per statistic (normal tails), checked on 100 seeds.
_SIGMAS = 8.0
# mean, variance, kurtosis, and n Var(sample kurtosis) = mu8 - 4 mu4 mu6 + 4 mu4^3 - mu4^2 (standardized
# moments; normal: 105 - 180 + 108 - 9 = 24; uniform: mu4 = 9/5, mu6 = 27/7, mu8 = 9)
_NOISES = {"normal": (0.0, 1.0, 3.0, 24.0), "uniform": (0.5, 1.0 / 12.0, 1.8, 9 - 4 * 1.8 * 27 / 7 + 4 * 1.8**3 - 1.8**2)}
_SPREADS = {None: lambda h: np.exp(0.5 * h), "var-as-std": lambda h: h, "logvar-as-logstd": np.exp}


@dataclass(frozen=True)
class SamplerReport:
    """What the user's sampler draws: the noise family and the spread rule that fit, if any."""

    draws: int
    noise: str | None
    spread: str | None
    no_noise: bool
    worst: dict[str, float] = field(default_factory=dict)
    conventions: tuple[str, ...] = ()  # a sampler has none; here so that every report has them

    @property
    def bugs(self) -> tuple[str, ...]:
        if self.no_noise:
            return ("no-noise",)
        found = []
        if self.noise == "uniform":
            found.append("uniform-noise")
        if self.spread:
            found.append(self.spread)
        return tuple(bug for bug in BUGS if bug in found)

    @property
    def unexplained(self) -> bool:
        return not self.no_noise and self.noise is None

    @property
    def ok(self) -> bool:
        return not self.unexplained and not self.bugs

    def __str__(self) -> str:
        lines = [f"sampler check ({self.draws} draws per (mu, logvar) entry; thresholds {_SIGMAS:g} standard errors):"]
        if self.no_noise:
            lines.append("  z == mu on every draw: no noise")
        elif self.unexplained:
            lines.append("  UNEXPLAINED: (z - mu) fits no single one of N(0, 1) or U(0, 1) noise times exp(h/2), h "
                         "or exp(h) (with your own mu and logvar, two rules may coincide: try the defaults)")
            lines += [f"    closest fit, {k}: worst |deviation| {v:.1f} standard errors" for k, v in self.worst.items()]
        else:
            rule = {None: "exp(logvar / 2)", "var-as-std": "h", "logvar-as-logstd": "exp(h)"}[self.spread]
            lines.append(f"  z = mu + {rule} * eps with eps ~ {'N(0, 1)' if self.noise == 'normal' else 'U(0, 1)'}")
            lines.append("  matches: z = mu + exp(logvar / 2) * eps, eps ~ N(0, I)" if self.ok else "")
        for bug in self.bugs:
            lines.append(f"  bug {bug}: {BUGS[bug]}")
        return "\n".join(line for line in lines if line)


def _fit(deviation: np.ndarray, spread: np.ndarray, noise: str, total: int) -> float:
    """The largest deviation, in standard errors, of eps = deviation / spread from ``noise``:
    per entry its mean and variance, pooled its kurtosis (and for U(0, 1) its range)."""
    mean0, var0, kurt0, kurt_var = _NOISES[noise]
    with np.errstate(divide="ignore", invalid="ignore"):
        e = deviation / spread
    if not np.isfinite(e).all():
        return math.inf
    n = e.shape[0]
    mean, var = e.mean(axis=0), e.var(axis=0)
    # standard errors: of a mean sigma / sqrt(n); of a variance sqrt((mu4 - sigma^4) / n)
    mu4 = kurt0 * var0**2
    worst = max(np.abs(mean - mean0).max() / math.sqrt(var0 / n),
                np.abs(var - var0).max() / math.sqrt((mu4 - var0**2) / n))
    pooled = ((e - mean) / np.sqrt(var)).ravel()
    kurtosis = float((pooled**4).mean())
    worst = max(worst, abs(kurtosis - kurt0) / math.sqrt(kurt_var / total))
    if noise == "uniform" and (e.min() < -1e-9 or e.max() > 1 + 1e-9):
        return math.inf
    return float(worst)


def check_sampler(user_sample: Callable[[np.ndarray, np.ndarray], Any], mu: Any = None, logvar: Any = None, *,
                  repeats: int = 500, calls: int = 8) -> SamplerReport:
    """Call the user's ``sample(mu, logvar) -> z`` ``calls`` times on ``repeats`` copies of each
    row, and test the noise (z - mu): its mean and spread per entry, and its shape pooled.

    The hypotheses: eps ~ N(0, 1) or U(0, 1) (``uniform-noise``), times exp(h/2) (correct), h
    (``var-as-std``) or exp(h) (``logvar-as-logstd``); z == mu is ``no-noise``. A hypothesis
    fits when every statistic lies within 8 standard errors of its value under it; the default
    mu, logvar (SAMPLER_MU, SAMPLER_LOGVAR, one row of 6 entries) are chosen so that the
    spreads differ by >= 20%. Returns a ``SamplerReport``.
    """
    if not callable(user_sample):
        raise TypeError(f"user_sample: expected a callable user_sample(mu, logvar), got {type(user_sample).__name__}")
    mu = SAMPLER_MU[None, :] if mu is None else as_array(mu, "mu").astype(np.float64)
    logvar = SAMPLER_LOGVAR[None, :] if logvar is None else as_array(logvar, "logvar").astype(np.float64)
    if mu.ndim != 2 or logvar.shape != mu.shape:
        raise ValueError(f"mu, logvar: expected two (batch, latent_dim) arrays of one shape, got {mu.shape} and {logvar.shape}")
    for name, array in (("mu", mu), ("logvar", logvar)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: expected finite values, found NaN or inf")
    repeats, calls = _checks.positive_int("repeats", repeats), _checks.positive_int("calls", calls)
    tiled_mu, tiled_logvar = np.tile(mu, (repeats, 1)), np.tile(logvar, (repeats, 1))
    draws = []
    for _ in range(calls):
        z = _call_user("user_sample", user_sample, tiled_mu.copy(), tiled_logvar.copy())
        z = as_array(z, "user_sample: returned value").astype(np.float64)
        if z.shape != tiled_mu.shape:
            raise ValueError(f"user_sample: returned shape {z.shape}, expected {tiled_mu.shape} (the shape of mu)")
        if not np.isfinite(z).all():
            raise ValueError("user_sample: returned NaN or inf")
        draws.append((z - tiled_mu).reshape(repeats, -1))
    deviation = np.concatenate(draws)  # (repeats * calls, entries)
    total = deviation.size
    if np.abs(deviation).max() <= 1e-12 * max(1.0, np.abs(mu).max()):
        return SamplerReport(deviation.shape[0], None, None, True)
    flat_logvar = logvar.ravel()
    fits = {}
    for spread_bug, spread in _SPREADS.items():
        for noise in _NOISES:
            fits[(noise, spread_bug)] = _fit(deviation, spread(flat_logvar), noise, total)
    fitting = [hypothesis for hypothesis, fit in fits.items() if fit <= _SIGMAS]
    closest = {f"{noise} x {spread or 'exp(h/2)'}": v for (noise, spread), v in sorted(fits.items(), key=lambda i: i[1])[:2]}
    # as for the loss, the hypothesis with the fewest bugs wins (a correct sampler is never blamed
    # for what a bug would also give); a tie (your mu and logvar where two rules coincide) names none
    count = {h: (h[0] == "uniform") + (h[1] is not None) for h in fitting}
    fewest = [h for h in fitting if count[h] == min(count.values())] if fitting else []
    if len(fewest) != 1:
        return SamplerReport(deviation.shape[0], None, None, False, closest)
    (noise, spread), = fewest
    return SamplerReport(deviation.shape[0], noise, spread, False, {"fit": fits[noise, spread]})


# -- all of it -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class VAEReport:
    """The reports of the checks run, their bugs together, and what was not given."""

    loss: LossReport | None
    gradients: GradientReport | None
    sampler: SamplerReport | None
    missing: tuple[str, ...]

    def _parts(self) -> list[Any]:
        return [part for part in (self.sampler, self.loss, self.gradients) if part is not None]

    def _loss_bugs(self) -> set[str]:
        """The loss check's bugs; when it found several explanations and the sampler check settled
        the sampler's rule, only the explanations that agree with that rule."""
        if self.loss is None:
            return set()
        explanations = self.loss.explanations
        if self.sampler is not None and not self.sampler.unexplained and len(explanations) > 1:
            rule = {"no-noise"} if self.sampler.no_noise else {self.sampler.spread} - {None}
            agree = [e for e in explanations if set(e.bugs) & _SAMPLER_RULES == rule]
            explanations = agree or explanations
        return {bug for e in explanations for bug in e.bugs}

    @property
    def bugs(self) -> tuple[str, ...]:
        named = self._loss_bugs() | set(self.sampler.bugs if self.sampler is not None else ())
        if self.gradients is not None:
            # once the loss names bugs, a zero gradient on the path may be theirs (no-noise with
            # kl-missing leaves logvar's head none): only a layer off every path counts then
            own = self.loss is None or not self.loss.bugs or "skipped-layer" in self.loss.bugs
            if own or any(e.skipped and e.off_path for e in self.gradients.entries):
                named.update(self.gradients.bugs)
        return tuple(bug for bug in BUGS if bug in named)

    @property
    def conventions(self) -> tuple[str, ...]:
        named = {c for part in self._parts() for c in part.conventions}
        return tuple(c for c in CONVENTIONS if c in named)

    @property
    def unexplained(self) -> bool:
        if self.loss is not None and self.loss.unexplained:
            return True
        # gradients that differ are explained by any bug the loss check named
        return (self.gradients is not None and self.gradients.unexplained
                and not (self.loss is not None and self.loss.bugs))

    @property
    def ok(self) -> bool:
        return not self.bugs and not self.unexplained and not self.missing and all(p.ok for p in self._parts())

    def __str__(self) -> str:
        verdict = "OK: matches npvae" if self.ok else "NOT OK"
        lines = [f"npvae check: {verdict}"]
        if self.bugs:
            lines.append("bugs: " + ", ".join(self.bugs))
        if self.conventions:
            lines.append("conventions: " + ", ".join(self.conventions))
        if self.missing:
            lines.append("missing: " + ", ".join(self.missing) + (
                " (no loss given: a VAE trains on the negative ELBO, recon + KL; see docs/check-your-vae.md)"
                if "loss" in self.missing else ""))
        if self.loss is not None and self._loss_bugs() != set(self.loss.bugs):
            lines.append("(of the loss check's explanations, the one with the sampler check's rule is kept)")
        for part in self._parts():
            lines += ["", str(part)]
        return "\n".join(lines)


def check_vae(model: VAE, *, x: Any = None, eps: Any = None, loss: Callable[..., Any] | None = None,
              grads: Mapping[Any, Any] | Callable[..., Mapping[Any, Any]] | None = None,
              sample: Callable[..., Any] | None = None, names: Any = None, layout: str = "torch",
              rtol: float = 1e-5, grad_rtol: float = 1e-4) -> VAEReport:
    """Run every check given: ``loss`` (check_loss), ``grads`` (check_gradients: a mapping, or a
    callable ``grads(x, eps)`` returning one; ``names`` and ``layout`` as there), ``sample``
    (check_sampler); one ``VAEReport``. ``rtol`` is the loss check's, ``grad_rtol`` the gradients'.

    A VAE needs a loss: without ``loss`` the report lists it as missing and is not ok. When
    the loss check or the sampler check names a sampler bug (var-as-std, logvar-as-logstd,
    no-noise) and ``grads`` is callable, the gradients are compared at eps = 0 as well, where
    every such rule gives z = mu: what still differs there is not the sampler's doing.
    """
    model = _check_vae(model)
    if (loss is not None or grads is not None) and (x is None or eps is None):
        raise ValueError("x, eps: expected both when loss or grads is given (the user's code must use this noise)")
    loss_report = check_loss(model, loss, x, eps, rtol=rtol) if loss is not None else None
    sampler_report = check_sampler(sample) if sample is not None else None
    gradient_report = None
    if grads is not None:
        def user_grads(at_eps: np.ndarray) -> Mapping[Any, Any]:
            if not callable(grads):
                return grads
            result = _call_user("grads", grads, np.asarray(x, dtype=np.float64).copy(), at_eps.copy())
            if not isinstance(result, Mapping):
                raise TypeError(f"grads: expected to return a mapping of parameter names to gradients, got "
                                f"{type(result).__name__}")
            return result

        eps64 = as_array(eps, "eps").astype(np.float64)
        gradient_report = check_gradients(model, user_grads(eps64), x, eps, names=names, layout=layout,
                                          rtol=grad_rtol)
        loss_bugs = set(loss_report.bugs if loss_report else ())
        named = loss_bugs | set(sampler_report.bugs if sampler_report else ())
        # at eps = 0 only the sampler's rule drops out: other bugs of the loss still change the gradients
        if callable(grads) and named & _SAMPLER_RULES and loss_bugs <= _SAMPLER_RULES and gradient_report.differing:
            zero = np.zeros_like(eps64)
            at_zero = check_gradients(model, user_grads(zero), x, zero, names=names, layout=layout, rtol=grad_rtol)
            gradient_report = GradientReport(at_zero.entries, at_zero.conventions, at_zero.rtol,
                                             eps_note=" at eps = 0, where every sampler rule gives z = mu")
    missing = () if loss is not None else ("loss",)
    return VAEReport(loss_report, gradient_report, sampler_report, missing)
