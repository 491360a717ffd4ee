"""History: the per-epoch record of a training run, as lists of floats.

It lives apart from the training loop so that what reads and writes it (``npvae.checkpoint``,
the CLI's CSV and figures) does not depend on ``fit``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import _checks
from ._files import write_atomically

__all__ = ["History"]

_TRAIN_FIELDS = ("loss", "recon", "kl", "seconds", "kl_weight")
_VAL_FIELDS = ("val_loss", "val_recon", "val_kl")
_CODE_FIELDS = ("perplexity", "codes_used")  # a VQ-VAE's code usage; empty for the other models
_CSV_COLUMNS = ("epoch", "loss", "recon", "kl", "val_loss", "val_recon", "val_kl", "seconds", "kl_weight")


def _float_list(name: str, values: Any) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    result = []
    for index, value in enumerate(values):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}[{index}]: expected a real number, got {type(value).__name__}")
        result.append(float(value))
    return result


@dataclass
class History:
    """Per-epoch training record: element ``i`` of each list belongs to epoch ``i + 1``.

    Attributes
    ----------
    loss, recon, kl : list of float
        Training metrics: example-weighted means, over the epoch's batches, of the values each
        batch had when it was used (so they mix parameter values from the whole epoch). ``loss``
        is ``recon + beta * kl``, the model's full objective, even while a KL warm-up weights
        the KL term less in the gradient. For an AE, ``kl`` is 0 and ``loss = recon``.
    val_loss, val_recon, val_kl : list of float
        The same on the validation set after the epoch (one z per example for a VAE); empty
        when training had no validation set.
    seconds : list of float
        Wall-clock time of each epoch, validation included.
    kl_weight : list of float
        KL weight of the epoch's last step (0 for an AE).
    perplexity, codes_used : list of float
        VQ-VAE only (empty for the other models): the perplexity of the code assignments of the
        epoch's training steps and the fraction of the codebook they used (``VQVAE.end_epoch``).
        For a VQ-VAE, ``kl`` holds its VQ terms (codebook + beta * commitment) and ``loss =
        recon + kl``.

    ``len(history)`` is the number of epochs recorded.
    """

    loss: list[float] = field(default_factory=list)
    recon: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_recon: list[float] = field(default_factory=list)
    val_kl: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    kl_weight: list[float] = field(default_factory=list)
    perplexity: list[float] = field(default_factory=list)
    codes_used: list[float] = field(default_factory=list)

    FIELDS: ClassVar[tuple[str, ...]] = ("loss", "recon", "kl", "val_loss", "val_recon", "val_kl", "seconds", "kl_weight",
                                         "perplexity", "codes_used")

    def __post_init__(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, _float_list(name, getattr(self, name)))
        self.check_lengths()

    def check_lengths(self) -> None:
        """ValueError unless every training list has one entry per epoch and the validation lists
        all have that many or none (``fit`` checks a history it is given to continue)."""
        epochs = len(self.loss)
        for name in _TRAIN_FIELDS:
            if len(getattr(self, name)) != epochs:
                raise ValueError(
                    f"{name}: expected {epochs} values (one per epoch, as loss), got {len(getattr(self, name))}"
                )
        for name in _VAL_FIELDS:
            if len(getattr(self, name)) not in (0, epochs) or len(getattr(self, name)) != len(self.val_loss):
                raise ValueError(
                    f"{name}: expected {epochs} values (one per epoch) or none, for all of "
                    f"{_VAL_FIELDS} alike; got lengths {[len(getattr(self, v)) for v in _VAL_FIELDS]}"
                )
        for name in _CODE_FIELDS:
            if len(getattr(self, name)) not in (0, epochs):
                raise ValueError(f"{name}: expected {epochs} values (one per epoch) or none, got {len(getattr(self, name))}")

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_loss)

    def as_dict(self) -> dict[str, list[float]]:
        """Every field as a fresh list, keyed by field name (JSON-ready)."""
        return {name: list(getattr(self, name)) for name in self.FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "History":
        """Build a History from ``as_dict()`` output; the validation fields may be left out.

        Raises
        ------
        ValueError
            Unknown or missing keys, or lists of inconsistent lengths.
        TypeError
            ``d`` is not a mapping, or a value is not a sequence of real numbers.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"d: expected a mapping of field name to list, got {type(d).__name__}")
        unexpected = sorted(set(d) - set(cls.FIELDS))
        missing = sorted(set(_TRAIN_FIELDS) - set(d))
        if unexpected or missing:
            raise ValueError(f"d: expected the keys {list(cls.FIELDS)}; missing {missing}, unexpected {unexpected}")
        return cls(**{name: _float_list(f"d[{name!r}]", values) for name, values in d.items()})

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per epoch, atomically, and return the path.

        Columns: ``epoch,loss,recon,kl,val_loss,val_recon,val_kl,seconds,kl_weight``, epoch
        from 1, floats written with ``repr`` (they read back exactly); validation cells are
        empty when there was no validation set. A VQ-VAE's history adds the columns
        ``perplexity,codes_used``.
        """
        path = _checks.file_path(path)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        columns = _CSV_COLUMNS + (_CODE_FIELDS if self.perplexity else ())
        writer.writerow(columns)
        for index in range(len(self)):
            row = [str(index + 1)]
            for name in columns[1:]:
                values = getattr(self, name)
                row.append(repr(values[index]) if values else "")
            writer.writerow(row)
        data = text.getvalue().encode("utf-8")
        write_atomically(path, lambda file: file.write(data))
        return path
