"""Checkpoints: a model, and optionally its optimizer, history and random generator, in one .npz.

Layout of a checkpoint (``FORMAT_VERSION`` 1). Every entry is a numeric or unicode array, so a
checkpoint is read with ``np.load(path, allow_pickle=False)`` and loading one never runs code:

    format_version      int64, 0-d                  1
    contents            str, 1-D                    the names of all the other arrays
    model_class         str, 0-d                    "AE", "VAE" or "CVAE"
    model_config        str, 0-d                    JSON of model.config() (constructor arguments)
    param/<name>        float arrays                one per model.named_parameters() entry
    optimizer_class     str, 0-d   (optional)       "Adam" or "SGD"
    optimizer_config    str, 0-d   (with it)        JSON of the constructor's keyword arguments
    optim/<key>         arrays     (with it)        optimizer.state_dict(): steps, hyperparameters, moments
    history             str, 0-d   (optional)       JSON of History.as_dict()
    rng_bit_generator   str, 0-d   (optional)       "PCG64" (default_rng's) or "PCG64DXSM"
    rng_state           str, 0-d   (with it)        JSON of rng.bit_generator.state (exact big integers)

With all four saved, ``npvae.train.fit(model, x, epochs, optimizer=..., rng=..., history=...)``
on what ``load_checkpoint`` returns continues the run exactly as if it had not stopped.

The file is written at exactly the path given (no ``.npz`` is appended, unlike ``np.savez``),
atomically: to a temp file in the same directory, fsynced, then renamed over the target, so a
crash while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .models import AE, CVAE, VAE
from .models.base import Autoencoder
from .optim import SGD, Adam, Optimizer
from ._files import write_atomically
from ._checks import file_path
from .history import History

__all__ = ["FORMAT_VERSION", "Checkpoint", "CheckpointError", "save", "load", "load_checkpoint"]

FORMAT_VERSION = 1
"""Version of the layout written by :func:`save`; :func:`load_checkpoint` reads only this one."""

_MODEL_CLASSES: dict[str, type[Autoencoder]] = {"AE": AE, "VAE": VAE, "CVAE": CVAE}
_OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {"Adam": Adam, "SGD": SGD}
_BIT_GENERATORS: dict[str, type[np.random.BitGenerator]] = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
}
_PARAM_PREFIX = "param/"
_OPTIM_PREFIX = "optim/"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_REQUIRED = ("format_version", "contents", "model_class", "model_config")
_OPTIONAL_GROUPS = (("optimizer_class", "optimizer_config"), ("history",), ("rng_bit_generator", "rng_state"))


class CheckpointError(ValueError):
    """A file is not a valid npvae checkpoint (truncated, corrupted, wrong version, inconsistent)."""


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns; the optional parts are None when not saved."""

    model: Autoencoder
    optimizer: Optimizer | None
    history: History | None
    rng: np.random.Generator | None
    format_version: int


def _optimizer_config(optimizer: Optimizer) -> dict[str, Any]:
    """The keyword arguments that rebuild ``optimizer`` (its state is saved separately)."""
    if type(optimizer) is Adam:
        return {"lr": optimizer.lr, "betas": [optimizer.beta1, optimizer.beta2], "eps": optimizer.eps,
                "weight_decay": optimizer.weight_decay}
    return {"lr": optimizer.lr, "momentum": optimizer.momentum, "dampening": optimizer.dampening,
            "weight_decay": optimizer.weight_decay, "nesterov": optimizer.nesterov}


def _text(value: str) -> np.ndarray:
    return np.array(value, dtype=np.str_)


def save(
    model: Autoencoder,
    path: str | os.PathLike,
    optimizer: Optimizer | None = None,
    history: History | None = None,
    rng: np.random.Generator | None = None,
) -> Path:
    """Write a checkpoint (layout in the module docstring) atomically at ``path``; return it.

    Parameters
    ----------
    model : AE, VAE or CVAE
    path : str or os.PathLike
        Written exactly there (no suffix is added), atomically; its directory must exist.
    optimizer : Adam, SGD or None
        Must be built over ``model.parameters()``.
    history : History or None
    rng : numpy.random.Generator or None
        Its bit generator must be PCG64 (``np.random.default_rng``'s) or PCG64DXSM.

    Raises
    ------
    TypeError, ValueError
        An argument of the wrong kind, an optimizer over other parameters, another bit generator,
        a parameter or optimizer state holding NaN or inf (nothing is written then).
    """
    if type(model) not in _MODEL_CLASSES.values():
        raise TypeError(f"model: expected an npvae AE, VAE or CVAE, got {type(model).__name__}")
    path = file_path(path)
    arrays: dict[str, np.ndarray] = {
        "model_class": _text(type(model).__name__),
        "model_config": _text(json.dumps(model.config())),
    }
    for name, value in model.state_dict().items():
        arrays[_PARAM_PREFIX + name] = value
    if optimizer is not None:
        if type(optimizer) not in _OPTIMIZER_CLASSES.values():
            raise TypeError(f"optimizer: expected an npvae Adam or SGD, got {type(optimizer).__name__}")
        parameters = model.parameters()
        if len(optimizer.params) != len(parameters) or any(a is not b for a, b in zip(optimizer.params, parameters)):
            raise ValueError("optimizer: expected an optimizer over this model's parameters, got one over others")
        arrays["optimizer_class"] = _text(type(optimizer).__name__)
        arrays["optimizer_config"] = _text(json.dumps(_optimizer_config(optimizer)))
        for key, value in optimizer.state_dict().items():
            arrays[_OPTIM_PREFIX + key] = np.asarray(value)
    if history is not None:
        if not isinstance(history, History):
            raise TypeError(f"history: expected a History or None, got {type(history).__name__}")
        arrays["history"] = _text(json.dumps(history.as_dict()))
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator or None, got {type(rng).__name__}")
        bit_generator = type(rng.bit_generator).__name__
        if bit_generator not in _BIT_GENERATORS:
            raise ValueError(
                f"rng: expected a generator over {sorted(_BIT_GENERATORS)} (np.random.default_rng "
                f"makes PCG64), got one over {bit_generator}"
            )
        arrays["rng_bit_generator"] = _text(bit_generator)
        arrays["rng_state"] = _text(json.dumps(rng.bit_generator.state))
    # contents goes first, after the version: a damaged zip directory can hide the members
    # listed after a garbled entry, and contents is what shows that some are missing.
    arrays = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
              "contents": np.array(list(arrays), dtype=np.str_), **arrays}
    for name, array in arrays.items():
        if array.dtype.kind not in "biufU":
            raise TypeError(f"{name}: cannot store dtype {array.dtype} without pickle")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            owner = "model" if name.startswith(_PARAM_PREFIX) else "optimizer"
            raise ValueError(
                f"{owner}: {name} holds NaN or inf; refusing to save what cannot be used or resumed "
                f"(any file at {str(path)!r} is left as it was)"
            )
    write_atomically(path, lambda file: np.savez(file, **arrays))
    return path


# -- loading -------------------------------------------------------------------------------------
def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every member of the npz at ``path``, read in full (so that CRC checks run) without pickle."""
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic not in _ZIP_MAGICS:
        raise CheckpointError(f"{path}: not an npz checkpoint (no zip header; starts with {magic!r})")
    try:
        # numpy reads each member only as far as its header says, so a damaged header length
        # can shift the data without reaching the end where zipfile checks the CRC: check
        # every member's CRC over its full length first.
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is None:
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
    except (PermissionError, IsADirectoryError):
        raise
    except Exception as error:
        # A damaged archive fails in many places (zipfile: BadZipFile, NotImplementedError for
        # a garbled compression method, RuntimeError for a garbled encryption flag; numpy's
        # header parser: ValueError, tokenize.TokenError; EOFError, OSError, ...): all mean
        # "not a readable checkpoint", and nothing else runs inside this block.
        raise CheckpointError(f"{path}: not a readable npz checkpoint (truncated or corrupted?): {error!r}") from error
    raise CheckpointError(f"{path}: not a readable npz checkpoint: member {damaged!r} is corrupted (CRC mismatch)")


class _Reader:
    """Typed access to the arrays of one checkpoint; every failure is a CheckpointError naming the file."""

    def __init__(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.arrays = arrays

    def error(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {message}")

    def text(self, name: str) -> str:
        array = self.arrays[name]
        if array.dtype.kind != "U" or array.shape != ():
            raise self.error(f"{name}: expected a 0-d string array, got dtype {array.dtype} shape {array.shape}")
        return str(array[()])

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.text(name))
        except json.JSONDecodeError as error:
            raise self.error(f"{name}: not valid JSON: {error}") from None

    def group(self, prefix: str) -> dict[str, np.ndarray]:
        return {name[len(prefix):]: array for name, array in self.arrays.items() if name.startswith(prefix)}


def _check_layout(reader: _Reader) -> int:
    """Check the format version, then that the arrays present are exactly those ``contents``
    lists and make a complete layout; return the version."""
    names = set(reader.arrays)
    if "format_version" not in names:
        raise reader.error(f"missing arrays ['format_version'] (found {sorted(names)})")
    version_array = reader.arrays["format_version"]
    if version_array.dtype.kind not in "iu" or version_array.shape != ():
        raise reader.error(f"format_version: expected a 0-d integer array, got dtype {version_array.dtype} "
                           f"shape {version_array.shape}")
    version = int(version_array)
    if version != FORMAT_VERSION:
        raise reader.error(f"format version {version} found; this npvae reads version {FORMAT_VERSION} only")
    if "contents" not in names:
        raise reader.error(f"missing arrays ['contents'] (found {sorted(names)})")
    contents = reader.arrays["contents"]
    if contents.dtype.kind != "U" or contents.ndim != 1:
        raise reader.error(f"contents: expected a 1-D string array, got dtype {contents.dtype} shape {contents.shape}")
    listed = {"format_version", "contents", *contents.tolist()}
    if listed != names:
        raise reader.error(f"missing arrays {sorted(listed - names)} listed in contents, unlisted arrays "
                           f"{sorted(names - listed)} (the file is damaged or was edited)")
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise reader.error(f"missing arrays {missing} (found {sorted(names)})")
    for group in _OPTIONAL_GROUPS:
        present = [name for name in group if name in names]
        if present and len(present) != len(group):
            raise reader.error(f"missing arrays {sorted(set(group) - set(present))} (saved with {present})")
    known = set(_REQUIRED).union(*_OPTIONAL_GROUPS)
    unexpected = sorted(
        name for name in names
        if name not in known and not name.startswith(_PARAM_PREFIX)
        and not (name.startswith(_OPTIM_PREFIX) and "optimizer_class" in names)
    )
    if unexpected:
        raise reader.error(f"unexpected arrays {unexpected}")
    return version


def _read_model(reader: _Reader) -> Autoencoder:
    class_name = reader.text("model_class")
    if class_name not in _MODEL_CLASSES:
        raise reader.error(f"model_class: expected one of {sorted(_MODEL_CLASSES)}, got {class_name!r}")
    config = reader.json("model_config")
    if not isinstance(config, dict):
        raise reader.error(f"model_config: expected a JSON object, got {type(config).__name__}")
    try:
        model = _MODEL_CLASSES[class_name](**config)
    except (TypeError, ValueError) as error:
        raise reader.error(f"model_config: cannot build {class_name}({config}): {error}") from None
    state = reader.group(_PARAM_PREFIX)
    for name, array in state.items():
        if array.dtype != model.dtype:
            raise reader.error(f"{_PARAM_PREFIX}{name}: expected dtype {model.dtype} (the model's), got {array.dtype}")
        if not np.isfinite(array).all():
            raise reader.error(f"{_PARAM_PREFIX}{name}: expected finite values, found NaN or inf")
    try:
        model.load_state_dict(state)
    except (TypeError, ValueError) as error:
        raise reader.error(f"parameters do not fit {class_name}({config}): {error}") from None
    return model


def _read_optimizer(reader: _Reader, model: Autoencoder) -> Optimizer | None:
    if "optimizer_class" not in reader.arrays:
        return None
    class_name = reader.text("optimizer_class")
    if class_name not in _OPTIMIZER_CLASSES:
        raise reader.error(f"optimizer_class: expected one of {sorted(_OPTIMIZER_CLASSES)}, got {class_name!r}")
    config = reader.json("optimizer_config")
    if not isinstance(config, dict):
        raise reader.error(f"optimizer_config: expected a JSON object, got {type(config).__name__}")
    state = reader.group(_OPTIM_PREFIX)
    for name, array in state.items():
        if array.dtype.kind not in "iuf":
            raise reader.error(f"{_OPTIM_PREFIX}{name}: expected a numeric array, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise reader.error(f"{_OPTIM_PREFIX}{name}: expected finite values, found NaN or inf")
    try:
        optimizer = _OPTIMIZER_CLASSES[class_name](model.parameters(), **config)
        optimizer.load_state_dict(state)
    except (TypeError, ValueError) as error:
        raise reader.error(f"optimizer state does not fit {class_name} over this model: {error}") from None
    return optimizer


def _read_history(reader: _Reader) -> History | None:
    if "history" not in reader.arrays:
        return None
    try:
        return History.from_dict(reader.json("history"))
    except (TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise reader.error(f"history: {error}") from None


def _read_rng(reader: _Reader) -> np.random.Generator | None:
    if "rng_bit_generator" not in reader.arrays:
        return None
    name = reader.text("rng_bit_generator")
    if name not in _BIT_GENERATORS:
        raise reader.error(f"rng_bit_generator: expected one of {sorted(_BIT_GENERATORS)}, got {name!r}")
    state = reader.json("rng_state")
    if not isinstance(state, dict) or state.get("bit_generator") != name:
        raise reader.error(f"rng_state: expected the state of a {name} bit generator")
    bit_generator = _BIT_GENERATORS[name]()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError) as error:
        raise reader.error(f"rng_state: not a valid {name} state: {error!r}") from None
    return np.random.Generator(bit_generator)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    Returns
    -------
    Checkpoint
        ``model`` (AE, VAE or CVAE rebuilt from its config, parameters loaded: its outputs equal the
        saved model's), ``optimizer`` (the same class and hyperparameters over
        ``model.parameters()``, state loaded, so its next step is the one the saved optimizer
        would have taken), ``history``, ``rng`` (a Generator in the saved state), each None if
        not saved, and ``format_version``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        The file (named in the message) is not a zip/npz archive, is truncated or corrupted
        (every member's CRC is checked), holds an object array (refused, never unpickled),
        lacks required arrays, has another format version, an unknown model or optimizer
        class, invalid JSON, or parameters or optimizer state that do not fit the model or hold
        NaN or inf.
    """
    path = file_path(path)
    reader = _Reader(path, _read_arrays(path))
    version = _check_layout(reader)
    model = _read_model(reader)
    return Checkpoint(model, _read_optimizer(reader, model), _read_history(reader), _read_rng(reader), version)


def load(path: str | os.PathLike) -> Autoencoder:
    """The model of the checkpoint at ``path`` (see :func:`load_checkpoint`, which checks the whole file)."""
    return load_checkpoint(path).model
