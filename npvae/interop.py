"""Weights in and out: another implementation's VAE as an npvae ``VAE``, and back.

A fully connected VAE is a list of affine layers, each ``y = x W^T + b`` in PyTorch's layout
(``weight`` is (out, in)) and ``y = x W + b`` in npvae's (``Dense.weight`` is (in, out)):

    encoder layers (activation after each) -> mu head, logvar head -> decoder layers
    (activation after each but the last, whose output is the logits or the Gaussian mean)

``vae_from_linear_layers`` takes those layers as (weight, bias) pairs, ``vae_from_state_dict``
finds them in a PyTorch-style state dict, ``to_state_dict`` gives them back in PyTorch's layout
and naming, and ``to_torch_module`` (the one function here that imports torch, when called)
builds a ``torch.nn.Module`` computing the same loss. Nothing here imports torch at import
time: tensors are converted through their own ``detach().cpu().numpy()``.

The npvae model keeps ``mu`` and ``logvar`` as the two halves of one ``head`` layer
(columns ``[:latent_dim]`` and ``[latent_dim:]``).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _checks
from .activations import ACTIVATIONS
from .models import VAE
from .nn import Dense

__all__ = ["vae_from_linear_layers", "vae_from_state_dict", "to_state_dict", "to_torch_module",
           "layer_names", "off_path_layers", "PYTORCH_EXAMPLES_NAMES", "SEED_NAMES"]

#: The pytorch/examples VAE (vae/main.py): fc1 -> (fc21, fc22) -> fc3 -> fc4, ReLU, sigmoid out.
PYTORCH_EXAMPLES_NAMES = ("fc1", "fc21", "fc22", "fc3", "fc4")
#: The seed sketch's layers (docs/from-the-seed.md), LeakyReLU(0.2), sigmoid out.
SEED_NAMES = ("encoder.0", "encoder.2", "mean_layer", "var_layer", "generation_layer.0", "decoder.0", "decoder.2")

# the layer names each model was built from (so that to_state_dict gives them back), and the
# layers of its state dict that lie on no forward path; weak keys: a dropped model drops its entry
_NAMES: "weakref.WeakKeyDictionary[VAE, tuple[str, ...]]" = weakref.WeakKeyDictionary()
_OFF_PATH: "weakref.WeakKeyDictionary[VAE, tuple[str, ...]]" = weakref.WeakKeyDictionary()


def as_array(value: Any, name: str) -> np.ndarray:
    """A NumPy array from an array, a nested list, or a framework's tensor (torch: through
    ``detach().cpu().numpy()``, so no torch import is needed; JAX arrays convert directly)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: expected an array or tensor, got {type(value).__name__} ({error})") from None
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    return array


def _pair(value: Any, name: str, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """One layer's (weight, bias) as (W in npvae's (in, out) layout, b)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name}: expected a (weight, bias) pair, got {type(value).__name__}")
    weight, bias = as_array(value[0], f"{name}[0] (weight)"), as_array(value[1], f"{name}[1] (bias)")
    if weight.ndim != 2:
        raise ValueError(f"{name}[0] (weight): expected a 2-D array, got shape {weight.shape}")
    if layout == "torch":
        weight = weight.T
    out_features = weight.shape[1]
    if bias.shape != (out_features,):
        raise ValueError(f"{name}[1] (bias): expected shape ({out_features},), got {bias.shape}")
    return weight, bias


def vae_from_linear_layers(
    encoder: Sequence[Any],
    mu: Any,
    logvar: Any,
    decoder: Sequence[Any],
    *,
    activation: str,
    negative_slope: float = 0.2,
    output: str = "bernoulli",
    layout: str = "torch",
    dtype: Any = np.float64,
) -> VAE:
    """An npvae ``VAE`` computing exactly the network given by its layers.

    Parameters
    ----------
    encoder, decoder : sequences of (weight, bias) pairs
        The encoder's layers (``activation`` after each, the last included) and the decoder's
        (``activation`` after each but the last, which gives the logits, or the mean for
        ``output="gaussian"``; a final sigmoid in the other code is the Bernoulli likelihood's).
        Arrays, nested lists, or tensors.
    mu, logvar : (weight, bias) pairs
        The two heads. ``logvar=None`` when ``mu`` is one fused head of 2 * latent_dim outputs,
        mu first.
    activation : {"leaky_relu", "relu", "tanh", "sigmoid", "identity"}
    layout : {"torch", "npvae"}
        "torch": weight (out_features, in_features), as ``nn.Linear``; "npvae": (in, out).
    dtype : float32 or float64

    Raises ValueError / TypeError naming the layer whose shape or type does not fit.
    """
    if layout not in ("torch", "npvae"):
        raise ValueError(f"layout: expected 'torch' or 'npvae', got {layout!r}")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    dtype = _checks.float_dtype(dtype)
    for name, layers in (("encoder", encoder), ("decoder", decoder)):
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(f"{name}: expected a sequence of (weight, bias) pairs, got {type(layers).__name__}")
    if not decoder:
        raise ValueError("decoder: expected at least one layer (the one that gives the logits)")
    enc = [_pair(layer, f"encoder[{i}]", layout) for i, layer in enumerate(encoder)]
    dec = [_pair(layer, f"decoder[{i}]", layout) for i, layer in enumerate(decoder)]
    mu_w, mu_b = _pair(mu, "mu", layout)
    if logvar is None:
        if mu_w.shape[1] % 2:
            raise ValueError(f"mu: a fused head needs an even number of outputs (mu, logvar), got {mu_w.shape[1]}")
        head_w, head_b = mu_w, mu_b
    else:
        lv_w, lv_b = _pair(logvar, "logvar", layout)
        if lv_w.shape != mu_w.shape:
            raise ValueError(f"logvar: expected the shape of mu's weight {mu_w.shape} ({layout} layout "
                             f"transposed to (in, out)), got {lv_w.shape}")
        head_w, head_b = np.concatenate([mu_w, lv_w], axis=1), np.concatenate([mu_b, lv_b])
    latent_dim = head_w.shape[1] // 2
    input_dim = enc[0][0].shape[0] if enc else head_w.shape[0]
    path = [*(("encoder", i, w) for i, (w, _) in enumerate(enc)), ("head", 0, head_w)]
    width = input_dim
    for part, index, weight in path:
        if weight.shape[0] != width:
            where = "mu" if part == "head" else f"{part}[{index}]"
            raise ValueError(f"{where}: expects {weight.shape[0]} inputs but the layer before gives {width}")
        width = weight.shape[1]
    width = latent_dim
    for index, (weight, _) in enumerate(dec):
        if weight.shape[0] != width:
            raise ValueError(f"decoder[{index}]: expects {weight.shape[0]} inputs but the layer before gives {width}")
        width = weight.shape[1]
    if width != input_dim:
        raise ValueError(f"decoder[{len(dec) - 1}]: gives {width} outputs, expected the input size {input_dim}")
    hidden_dims = [w.shape[1] for w, _ in enc]
    decoder_dims = [w.shape[1] for w, _ in dec[:-1]]
    model = VAE(input_dim, hidden_dims, latent_dim, activation=activation, output=output,
                negative_slope=negative_slope, dtype=dtype,
                decoder_dims=None if decoder_dims == hidden_dims[::-1] else decoder_dims)
    state = {}
    for (name, _), (weight, bias) in zip(_dense_layers(model), [*enc, (head_w, head_b), *dec]):
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
    model.load_state_dict(state)
    return model


def _dense_layers(model: VAE) -> list[tuple[str, Dense]]:
    """The model's affine layers in forward order, with their npvae names (``head`` is fused)."""
    layers = [(f"encoder.{i}", m) for i, m in enumerate(model.encoder.layers) if isinstance(m, Dense)]
    layers.append(("head", model.head))
    layers += [(f"decoder.{i}", m) for i, m in enumerate(model.decoder.layers) if isinstance(m, Dense)]
    return layers


def default_names(model: VAE) -> tuple[str, ...]:
    """npvae's own names in torch layout: encoder.0, ..., mu, logvar, decoder.0, ... (the keys of
    ``to_torch_module(model).state_dict()``)."""
    names = [name for name, _ in _dense_layers(model)]
    at = names.index("head")
    return (*names[:at], "mu", "logvar", *names[at + 1:])


def layer_names(model: VAE) -> tuple[str, ...]:
    """The layer names ``to_state_dict`` uses by default, one per torch-layout layer in forward
    order (mu and logvar separate): those the model was built from by ``vae_from_state_dict``,
    else ``default_names``."""
    _check_model(model)
    return _NAMES.get(model, default_names(model))


def off_path_layers(model: VAE) -> tuple[str, ...]:
    """Layers of the state dict the model was built from that lie on no forward path their shapes
    allow (the seed sketch's ``generation_layer``): ``npvae.check`` reports them."""
    _check_model(model)
    return _OFF_PATH.get(model, ())


def _check_model(model: Any) -> None:
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected an npvae VAE, got {type(model).__name__}")


def torch_layout_layers(model: VAE) -> list[tuple[np.ndarray, np.ndarray]]:
    """Copies of the model's (weight (out, in), bias) per torch-layout layer, in forward order."""
    _check_model(model)
    layers = []
    for name, dense in _dense_layers(model):
        weight, bias = dense.weight.value, dense.bias.value
        if name == "head":
            k = model.latent_dim
            layers += [(weight[:, :k].T.copy(), bias[:k].copy()), (weight[:, k:].T.copy(), bias[k:].copy())]
        else:
            layers.append((weight.T.copy(), bias.copy()))
    return layers


def _names_for(model: VAE, names: Any) -> tuple[str, ...]:
    count = len(default_names(model))
    if names is None:
        return layer_names(model)
    if names == "pytorch/examples":
        names = PYTORCH_EXAMPLES_NAMES
    elif names == "seed":
        names = SEED_NAMES
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) \
            or not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"names: expected a sequence of layer names, 'pytorch/examples' or 'seed', got {names!r}")
    if len(names) != count or len(set(names)) != count:
        raise ValueError(f"names: expected {count} distinct layer names (encoder layers, mu, logvar, decoder "
                         f"layers; npvae's are {list(default_names(model))}), got {list(names)}")
    return tuple(names)


def to_state_dict(model: VAE, names: Sequence[str] | str | None = None) -> dict[str, np.ndarray]:
    """The model's weights as a PyTorch state dict: ``{name}.weight`` (out, in) and ``{name}.bias``.

    ``names``: one name per layer in forward order (encoder layers, mu, logvar, decoder layers),
    or ``"pytorch/examples"`` (fc1, fc21, fc22, fc3, fc4) or ``"seed"``; default
    ``layer_names(model)``. Load the result with ``torch_model.load_state_dict({k:
    torch.from_numpy(v) for k, v in state.items()})``.
    """
    _check_model(model)
    names = _names_for(model, names)
    state = {}
    for name, (weight, bias) in zip(names, torch_layout_layers(model)):
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
    return state


# -- reading a state dict ------------------------------------------------------------------------
def _layers_of(state: Mapping[str, Any]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, weight, bias) per affine layer, in key order; ValueError listing the keys otherwise."""
    keys = list(state)
    if not all(isinstance(k, str) for k in keys):
        raise TypeError(f"state_dict: expected string keys, got {keys!r}")
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        prefix, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias") or not prefix:
            raise ValueError(f"state_dict: cannot read key {key!r} as a linear layer's weight or bias; "
                             f"keys: {_key_list(state)}")
        grouped.setdefault(prefix, {})[leaf] = as_array(state[key], f"state_dict[{key!r}]")
    layers = []
    for prefix, arrays in grouped.items():
        if "weight" not in arrays or arrays["weight"].ndim != 2:
            raise ValueError(f"state_dict: {prefix!r} is not a linear layer (a 2-D weight); keys: {_key_list(state)}")
        weight = arrays["weight"]
        bias = arrays.get("bias", np.zeros(weight.shape[0], dtype=weight.dtype))  # bias=False layers
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"state_dict[{prefix + '.bias'!r}]: expected shape ({weight.shape[0]},), got {bias.shape}")
        layers.append((prefix, weight, bias))
    return layers


def _key_list(state: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {tuple(getattr(v, 'shape', ()))}" for k, v in state.items())


_MU = re.compile(r"(^|[._])(mu|mean|means|loc|fc21|z_mean)($|[._])", re.IGNORECASE)
_LOGVAR = re.compile(r"(^|[._])(logvar|log_var|var|logvariance|log_sigma|fc22|z_log_var)($|[._])", re.IGNORECASE)


def _find_heads(layers: list[tuple[str, np.ndarray, np.ndarray]]) -> list[int]:
    """Index i of each candidate (mu, logvar) pair: layers i, i+1 of equal shape, where the
    layers before chain into them and the layers after chain from z to the input size.
    Preferred when their names say mu / logvar."""
    shapes = [w.shape for _, w, _ in layers]
    input_dim = shapes[0][1]
    found = []
    for i in range(len(layers) - 1):
        if shapes[i] != shapes[i + 1]:
            continue
        width, ok = input_dim, True
        for out, inp in shapes[:i]:
            ok, width = ok and inp == width, out
        ok = ok and shapes[i][1] == width
        width = shapes[i][0]
        for out, inp in shapes[i + 2:]:
            ok, width = ok and inp == width, out
        if ok and width == input_dim and i + 2 < len(layers):
            found.append(i)
    named = [i for i in found if _MU.search(layers[i][0]) and _LOGVAR.search(layers[i + 1][0])]
    return named or found


def vae_from_state_dict(
    state_dict: Mapping[str, Any],
    *,
    activation: str | None = None,
    negative_slope: float = 0.2,
    output: str = "bernoulli",
    dtype: Any = np.float64,
) -> VAE:
    """An npvae ``VAE`` from a PyTorch-style state dict of a fully connected VAE.

    The layers are the ``<name>.weight`` (out, in) / ``<name>.bias`` pairs, in key order
    (``state_dict()`` lists them in the order the modules were assigned). Recognised by name:
    the pytorch/examples VAE (fc1, fc21, fc22, fc3, fc4; ReLU by default) and the seed sketch
    (encoder.*, mean_layer, var_layer, generation_layer.*, decoder.*; LeakyReLU(0.2) by default).
    Otherwise the mu and logvar heads are the one pair of consecutive layers of equal shape
    around which the shapes chain from the input back to the input; names containing mu/mean
    and logvar/var break a tie. A state dict gives no activation: pass ``activation`` unless
    the names were recognised.

    The seed's ``generation_layer`` is on the path when its shapes chain (z -> it -> decoder);
    when the decoder takes z directly (the sketch as written), it is left out, and
    ``off_path_layers(model)`` names it. ``layer_names(model)`` keeps the names, so that
    ``to_state_dict(model)`` gives the same keys back.

    Values may be arrays or tensors (converted without importing torch). Raises ValueError
    listing the keys and shapes when the layers cannot be inferred.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    if not state_dict:
        raise ValueError("state_dict: expected the weights of a VAE, got an empty mapping")
    layers = _layers_of(state_dict)
    names = [name for name, _, _ in layers]
    off_path: list[str] = []
    if set(names) == set(PYTORCH_EXAMPLES_NAMES):
        order = [names.index(n) for n in PYTORCH_EXAMPLES_NAMES]
        layers = [layers[i] for i in order]
        heads = 1
        activation = "relu" if activation is None else activation
    elif set(names) == set(SEED_NAMES):
        by_name = {name: (name, w, b) for name, w, b in layers}
        generation = by_name["generation_layer.0"]
        if by_name["decoder.0"][1].shape[1] == generation[1].shape[0]:  # z -> generation -> decoder
            layers = [by_name[n] for n in SEED_NAMES]
        else:  # the decoder reads z itself: nothing on the path feeds generation_layer
            layers = [by_name[n] for n in SEED_NAMES if n != "generation_layer.0"]
            off_path.append("generation_layer.0")
        heads = 2
        activation = "leaky_relu" if activation is None else activation
    else:
        found = _find_heads(layers)
        if len(found) != 1:
            reason = "no" if not found else f"{len(found)} possible ({', '.join(names[i] for i in found)})"
            raise ValueError(
                f"state_dict: cannot infer the layer order: {reason} pair of mu/logvar heads (two consecutive "
                f"layers of equal shape with the shapes chaining from the input back to the input); keys: "
                f"{_key_list(state_dict)}. Use vae_from_linear_layers to give the layers explicitly."
            )
        heads = found[0]
        if activation is None:
            raise ValueError(f"activation: a state dict does not record activations; expected one of "
                             f"{ACTIVATIONS} for the layers {names}")
    pairs = [(w, b) for _, w, b in layers]
    model = vae_from_linear_layers(pairs[:heads], pairs[heads], pairs[heads + 1], pairs[heads + 2:],
                                   activation=activation, negative_slope=negative_slope, output=output,
                                   layout="torch", dtype=dtype)
    _NAMES[model] = tuple(name for name, _, _ in layers)
    _OFF_PATH[model] = tuple(off_path)
    return model


# -- to PyTorch ----------------------------------------------------------------------------------
def to_torch_module(model: VAE) -> Any:
    """A ``torch.nn.Module`` with the model's layers and weights (float64 for a float64 model).

    Its ``forward(x, eps)`` returns (decoder output, mu, logvar) and ``loss(x, eps)`` the batch
    mean of recon + beta * kl (the model's beta), the value of ``model.loss_and_grads(x, eps=eps)``
    to rounding. Its ``state_dict()`` keys are ``default_names(model)`` with ``.weight``/``.bias``
    (``encoder.0``, ..., ``mu``, ``logvar``, ``decoder.0``, ...). Needs torch (imported here only).
    """
    _check_model(model)
    import torch
    from torch import nn

    torch_dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    activations = {
        "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(model.negative_slope), "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid, "identity": nn.Identity,
    }
    make_activation = activations[model.activation]

    def sequential(part: Any, last_activated: bool) -> nn.Sequential:
        denses = [m for m in part.layers if isinstance(m, Dense)]
        modules: list[nn.Module] = []
        for index, dense in enumerate(denses):
            modules.append(nn.Linear(dense.in_features, dense.out_features, dtype=torch_dtype))
            if last_activated or index < len(denses) - 1:
                modules.append(make_activation())
        return nn.Sequential(*modules)

    beta, bernoulli = model.beta, model.output == "bernoulli"
    log_2pi = float(np.log(2 * np.pi))

    class TorchVAE(nn.Module):
        """The npvae VAE's network in PyTorch: encoder -> (mu, logvar) -> z -> decoder."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = sequential(model.encoder, last_activated=True)
            self.mu = nn.Linear(model.head.in_features, model.latent_dim, dtype=torch_dtype)
            self.logvar = nn.Linear(model.head.in_features, model.latent_dim, dtype=torch_dtype)
            self.decoder = sequential(model.decoder, last_activated=False)

        def forward(self, x: Any, eps: Any) -> tuple[Any, Any, Any]:
            hidden = self.encoder(x)
            mu, logvar = self.mu(hidden), self.logvar(hidden)
            z = mu + torch.exp(0.5 * logvar) * eps
            return self.decoder(z), mu, logvar

        def loss(self, x: Any, eps: Any) -> Any:
            decoded, mu, logvar = self(x, eps)
            if bernoulli:
                recon = nn.functional.binary_cross_entropy_with_logits(decoded, x, reduction="none").sum(1)
            else:
                recon = 0.5 * ((decoded - x) ** 2).sum(1) + 0.5 * log_2pi * x.shape[1]
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)
            return (recon + beta * kl).mean()

    module = TorchVAE()
    state = to_state_dict(model, names=default_names(model))
    module.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    return module
