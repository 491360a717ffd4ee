"""``report.md``: one Markdown page per run, readable on any git host.

It holds the command that made the run, its settings, the model, the final metrics (test
negative ELBO and its terms, the importance-weighted bound L_k where computed), the training
history in brief, and every figure inline (relative links, so the page renders wherever the run
directory is pushed). Written atomically like every npvae file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._files import write_atomically
from .history import History

__all__ = ["write_report"]

_HISTORY_ROWS = 10  # epochs listed in the history table: evenly spaced, the first and the last included


def write_report(
    path: str | os.PathLike,
    *,
    command: str,
    settings: Mapping[str, Any],
    model: str,
    metrics: Mapping[str, float],
    history: History,
    figures: Sequence[str | os.PathLike] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Write the run's report at ``path`` (e.g. ``run_dir / "report.md"``); return the path.

    Parameters
    ----------
    command : str
        The command line that made (or last resumed) the run.
    settings : mapping
        The run's settings (``config.json``), shown as a table.
    model : str
        ``repr(model)``.
    metrics : mapping of str to float
        Final metrics, label -> nats per example, in the order given.
    history : History
        Its last epoch's numbers and an evenly spaced table of epochs.
    figures : sequence of paths
        Images shown inline, in order (PNG or GIF), linked relative to the report's directory.
    notes : sequence of str
        Sentences added under the results (e.g. early stopping, the best epoch).
    """
    path = Path(path)
    if not isinstance(history, History):
        raise TypeError(f"history: expected a History, got {type(history).__name__}")
    lines = [f"# npvae run `{path.parent.name}`", "", "```", command, "```", "", f"Model: `{model}`", ""]
    lines += ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | `{_shown(value)}` |" for name, value in settings.items()]
    lines += ["", "## Results", "", f"Trained {len(history)} epoch{'s' * (len(history) != 1)}.", ""]
    if metrics:
        lines += ["| metric | nats per example |", "|---|---:|"]
        lines += [f"| {label} | {value:.4f} |" for label, value in metrics.items()]
        lines.append("")
    lines += [f"- {note}" for note in notes]
    if notes:
        lines.append("")
    if len(history):
        lines += ["## Training history", "", *_history_table(history), "",
                  "Every epoch: [history.csv](history.csv).", ""]
    if figures:
        lines += ["## Figures", ""]
        for figure in figures:
            relative = Path(os.path.relpath(Path(figure), path.parent)).as_posix()
            lines += [f"![{Path(figure).stem}]({relative})", ""]
    text = "\n".join(lines)
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))
    return path


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _history_table(history: History) -> list[str]:
    columns = ["loss", "recon", "kl"] + (["val_loss"] if history.has_validation else [])
    n = len(history)
    shown = sorted({round(i * (n - 1) / (_HISTORY_ROWS - 1)) for i in range(_HISTORY_ROWS)}) if n > 1 else [0]
    rows = ["| epoch | " + " | ".join(columns) + " | seconds |", "|---:|" + "---:|" * (len(columns) + 1)]
    for index in shown:
        values = " | ".join(_number(getattr(history, name)[index]) for name in columns)
        rows.append(f"| {index + 1} | {values} | {history.seconds[index]:.2f} |")
    return rows


def _number(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value)
