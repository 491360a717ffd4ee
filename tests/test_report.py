"""Tests for npvae.report: report.md holds the command, settings, metrics, history and inline figures."""

from __future__ import annotations

from npvae.report import write_report
from npvae.train import History


def test_report_lists_command_settings_metrics_history_and_figures(tmp_path):
    history = History(loss=[3.0, 2.0, 1.5], recon=[2.5, 1.6, 1.2], kl=[0.5, 0.4, 0.3], seconds=[0.1] * 3,
                      kl_weight=[1.0] * 3)
    (tmp_path / "snapshots").mkdir()
    path = write_report(tmp_path / "report.md", command="npvae train --epochs 3",
                        settings={"epochs": 3, "hidden": [8, 4], "lr": 0.003}, model="VAE(64 -> [8, 4] -> 2, ...)",
                        metrics={"test negative ELBO": 1.23456, "test -L_10": 1.1}, history=history,
                        figures=[tmp_path / "history.png", tmp_path / "snapshots" / "samples.gif"],
                        notes=["stopped early"])
    text = path.read_text()
    assert "```\nnpvae train --epochs 3\n```" in text
    assert "| hidden | `8 4` |" in text and "| lr | `0.003` |" in text
    assert "| test negative ELBO | 1.2346 |" in text and "| test -L_10 | 1.1000 |" in text
    assert "| 3 | 1.5000 | 1.2000 | 0.3000 | 0.10 |" in text  # the last epoch is always listed
    assert "![history](history.png)" in text and "![samples](snapshots/samples.gif)" in text
    assert "- stopped early" in text and "Trained 3 epochs." in text
