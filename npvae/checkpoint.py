"""Checkpoints: a model, and optionally its optimizer, history and random generator, in one .npz.

Layout of a checkpoint (``FORMAT_VERSION`` 1). Every entry is a numeric or unicode array, so a
checkpoint is read with ``np.load(path, allow_pickle=False)`` and loading one never runs code:

    format_version      int64, 0-d                  1
    contents            str, 1-D                    the names of all the other arrays
    model_class         str, 0-d                    "AE", "VAE", "VQVAE", "MADEPrior" or "CategoricalPrior"
    model_config        str, 0-d                    JSON of model.config() (constructor arguments)
    param/<name>        float arrays                one per model.state_dict() entry (the parameters;
                                                    a VQVAE's EMA codebook and its averages too)
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

from ._memory import available_memory, format_bytes
from .models import AE, VAE, VQVAE
from .models.base import Autoencoder
from .optim import SGD, Adam, Optimizer
from .priors import CategoricalPrior, MADEPrior
from ._files import write_atomically
from ._checks import file_path
from .history import History

__all__ = ["FORMAT_VERSION", "Checkpoint", "CheckpointError", "save", "load", "load_checkpoint"]

FORMAT_VERSION = 1
"""Version of the layout written by :func:`save`; :func:`load_checkpoint` reads only this one."""

# the priors over a VQ-VAE's codes are saved and loaded like models (config + parameters)
_MODEL_CLASSES: dict[str, type] = {"AE": AE, "VAE": VAE, "VQVAE": VQVAE, "MADEPrior": MADEPrior,
                                   "CategoricalPrior": CategoricalPrior}
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
_INDEX_MEMBERS = ("format_version", "contents")
# Limits checked before anything large is read or built. A checkpoint npvae writes holds a few
# dozen members; its texts (configs, generator state) are a few hundred characters, its history
# about 150 characters per epoch.
MAX_MEMBERS = 10_000
MAX_INDEX_BYTES = 1 << 20  # format_version and contents, as stored (contents: 4 bytes per character)
MAX_JSON_CHARS = 1 << 24
MAX_CONFIG_CHARS = 1 << 16  # model_config: a 1,000-layer config is about 7,000 characters
MAX_LAYERS = 1000
MAX_MESSAGE_CHARS = 300


def _shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text``, cut in the middle to ``limit`` characters, so that an error message stays short."""
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def _parameter_count(class_name: str, input_dim: int, hidden_dims: list[int], latent_dim: int) -> int:
    """Number of parameter entries of ``AE`` or ``VAE`` with these sizes (Dense(a, b): a * b + b),
    computed without building the model.

    AE: encoder input -> hidden... -> latent, decoder latent -> reversed hidden... -> input.
    VAE: encoder input -> hidden..., head -> 2 * latent (mu and logvar), the same decoder.
    """
    def chain(sizes: list[int]) -> int:
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    decoder = chain([latent_dim, *reversed(hidden_dims), input_dim])
    if class_name == "VAE":
        return chain([input_dim, *hidden_dims, 2 * latent_dim]) + decoder
    return chain([input_dim, *hidden_dims, latent_dim]) + decoder


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
    model : AE or VAE
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
        raise TypeError(f"model: expected an npvae {', '.join(_MODEL_CLASSES)}, got {type(model).__name__}")
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
    if not path.is_file():  # a FIFO would block the open below; a device could be endless
        raise CheckpointError(f"{path}: not a regular file")
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic not in _ZIP_MAGICS:
        raise CheckpointError(f"{path}: not an npz checkpoint (no zip header; starts with {magic!r})")
    try:
        # numpy reads each member only as far as its header says, so a damaged header length
        # can shift the data without reaching the end where zipfile checks the CRC: check
        # every member's CRC over its full length first.
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive)
            damaged = archive.testzip()
        if damaged is None:
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
    except (PermissionError, IsADirectoryError, CheckpointError):
        raise
    except Exception as error:
        # A damaged archive fails in many places (zipfile: BadZipFile, NotImplementedError for
        # a garbled compression method, RuntimeError for a garbled encryption flag; numpy's
        # header parser: ValueError, tokenize.TokenError; EOFError, OSError, ...): all mean
        # "not a readable checkpoint", and nothing else runs inside this block.
        raise CheckpointError(f"{path}: not a readable npz checkpoint (truncated or corrupted?): {error!r}") from error
    raise CheckpointError(f"{path}: not a readable npz checkpoint: member {damaged!r} is corrupted (CRC mismatch)")


def _check_members(path: Path, archive: zipfile.ZipFile) -> None:
    """From the zip directory, before any large member is decompressed: the members are uniquely
    named npy files and not too many, the index members are small, no member is missing from
    ``contents``, and the declared sizes fit in memory."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{path}: {len(infos):,} members, more than the {MAX_MEMBERS:,} a checkpoint can hold")
    names = [info.filename[:-4] for info in infos if info.filename.endswith(".npy")]
    if len(names) != len(infos) or len(set(names)) != len(names):
        raise CheckpointError(f"{path}: not an npz checkpoint (its members are not uniquely named .npy arrays)")
    sizes = {name: info.file_size for name, info in zip(names, infos)}
    for name in _INDEX_MEMBERS:
        if sizes.get(name, 0) > MAX_INDEX_BYTES:
            raise CheckpointError(f"{path}: {name} declares {format_bytes(sizes[name])}, more than the "
                                  f"{format_bytes(MAX_INDEX_BYTES)} the index of a checkpoint takes")
    if "contents" in sizes:
        with archive.open("contents.npy") as member:
            contents = np.lib.format.read_array(member, allow_pickle=False)
        if contents.dtype.kind == "U" and contents.ndim == 1:
            unlisted = sorted(set(names) - {*_INDEX_MEMBERS, *contents.tolist()})
            if unlisted:
                raise CheckpointError(f"{path}: unlisted arrays {_shorten(str(unlisted))} (the file is "
                                      "damaged or was edited); none of them was read")
    declared = sum(sizes.values())
    available = available_memory()
    if available is not None and declared > available:
        raise CheckpointError(f"{path}: its arrays declare {format_bytes(declared)} in all, more than the "
                              f"{format_bytes(available)} of memory available")


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

    def json(self, name: str, max_chars: int = MAX_JSON_CHARS) -> Any:
        text = self.text(name)
        if len(text) > max_chars:
            raise self.error(f"{name}: {len(text):,} characters of JSON, more than the {max_chars:,} it may hold")
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise self.error(f"{name}: not valid JSON: {error}") from None
        except RecursionError:
            raise self.error(f"{name}: JSON nested too deeply to read") from None

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
    config = reader.json("model_config", MAX_CONFIG_CHARS)
    if not isinstance(config, dict):
        raise reader.error(f"model_config: expected a JSON object, got {type(config).__name__}")
    _check_model_size(reader, class_name, config)
    try:
        model = _MODEL_CLASSES[class_name](**config)
    except (TypeError, ValueError) as error:
        raise reader.error(_shorten(f"model_config: cannot build {class_name}({config}): {error}")) from None
    state = reader.group(_PARAM_PREFIX)
    for name, array in state.items():
        if array.dtype != model.dtype:
            raise reader.error(f"{_PARAM_PREFIX}{name}: expected dtype {model.dtype} (the model's), got {array.dtype}")
        if not np.isfinite(array).all():
            raise reader.error(f"{_PARAM_PREFIX}{name}: expected finite values, found NaN or inf")
    try:
        model.load_state_dict(state)
    except (TypeError, ValueError) as error:
        raise reader.error(_shorten(f"parameters do not fit {class_name}({config}): {error}")) from None
    return model


def _check_model_size(reader: _Reader, class_name: str, config: dict[str, Any]) -> None:
    """Before the model is built: at most MAX_LAYERS hidden layers, and not more than twice the
    parameter entries the file stores (plus 10,000), so that a config claiming ``input_dim: 1e9``
    allocates nothing; load_state_dict then names any array that does not fit. Sizes that are
    not positive integers are left to the constructor's checks."""
    hidden = config.get("hidden_dims")
    if isinstance(hidden, list) and len(hidden) > MAX_LAYERS:
        raise reader.error(f"model_config: {len(hidden):,} hidden layers, more than {MAX_LAYERS:,}")
    sizes = [config.get("input_dim"), config.get("latent_dim"), *(hidden if isinstance(hidden, list) else [None])]
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in sizes):
        return
    expected = _parameter_count(class_name, config["input_dim"], hidden, config["latent_dim"])
    stored = sum(array.size for array in reader.group(_PARAM_PREFIX).values())
    if expected > 2 * stored + 10_000:
        raise reader.error(
            f"model_config: input_dim {config['input_dim']}, hidden_dims {_shorten(str(hidden), 80)} and "
            f"latent_dim {config['latent_dim']} make {expected:,} parameter entries, but the file stores only {stored:,}: "
            "refusing to build a model the file cannot fill"
        )


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
    inner = state.get("state")
    fields = (inner.get("state"), inner.get("inc"), state.get("uinteger")) if isinstance(inner, dict) else (None,)
    if (not all(isinstance(value, int) and not isinstance(value, bool) for value in fields)
            or not (0 <= fields[0] < 2**128 and 0 <= fields[1] < 2**128 and 0 <= fields[2] < 2**32)
            or state.get("has_uint32") not in (0, 1)):
        raise reader.error(f"rng_state: not a valid {name} state: expected state and inc in [0, 2**128), has_uint32 "
                           f"0 or 1 and uinteger "
                           f"in [0, 2**32), got {_shorten(json.dumps(state), 200)}")
    bit_generator = _BIT_GENERATORS[name]()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise reader.error(f"rng_state: not a valid {name} state: {_shorten(repr(error))}") from None
    return np.random.Generator(bit_generator)


def load_checkpoint(path: str | os.PathLike, *, training_state: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    With ``training_state=False`` the optimizer and the generator are not read (both are None):
    evaluating or sampling a model neither needs them nor fails on them. The layout, the model
    and the history are checked as always.

    Returns
    -------
    Checkpoint
        ``model`` (AE or VAE rebuilt from its config, parameters loaded: its outputs equal the
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
    if not isinstance(training_state, (bool, np.bool_)):
        raise TypeError(f"training_state: expected True or False, got {training_state!r}")
    reader = _Reader(path, _read_arrays(path))
    version = _check_layout(reader)
    model = _read_model(reader)
    if not training_state:
        return Checkpoint(model, None, _read_history(reader), None, version)
    return Checkpoint(model, _read_optimizer(reader, model), _read_history(reader), _read_rng(reader), version)


def load(path: str | os.PathLike) -> Autoencoder:
    """The model of the checkpoint at ``path`` (see :func:`load_checkpoint`; the optimizer and the
    generator are not read)."""
    return load_checkpoint(path, training_state=False).model
