"""Export verdicts and the short summaries ``export`` and ``train`` print instead of their JSON.

Every task checks each exported runtime against Keras on held-out examples and compares the
figure with a limit from its own table (``EXPORT_LIMITS`` in ``tasks/<task>/export.py``). A
runtime past its limit is a ``WARNING``: one log line naming the file and the figure, and
``"verdict": "WARNING"`` in ``export_report.json`` (its ``verdicts`` list has every row). The
command still succeeds: the files are valid, only less faithful than the limit.

No TensorFlow here: the summaries print from the reports.

Example:

```python
LIMITS = {"label_agreement": Limit("labels equal to Keras", "%", minimum=0.99)}
row = verdict_row("model_int8.tflite", 6_790_000, [LIMITS["label_agreement"].check(0.97)])
row["verdict"]   # "WARNING"
```
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

OK, WARNING = "ok", "WARNING"


@dataclasses.dataclass(frozen=True)
class Limit:
    """The limit one figure of an exported runtime must keep (a row of a task's ``EXPORT_LIMITS``).

    Args:
        figure: what is measured, as the summary says it ("labels equal to Keras").
        unit: ``"%"`` (a fraction shown as a percentage), ``"BLEU"``, ``"MASE"``, ...
        minimum: the figure must be at least this (agreements).
        maximum: the figure must be at most this (differences).
    """

    figure: str
    unit: str
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: float, detail: str = "") -> dict:
        """One check: the figure, its value, the limit and whether it holds (None counts as held: not measured)."""
        holds = value is None or (
            (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum))
        return {"figure": self.figure, "value": value, "unit": self.unit, "limit": self.describe(),
                "ok": bool(holds), "detail": detail}

    def describe(self) -> str:
        if self.minimum is not None:
            return f">= {format_value(self.minimum, self.unit)}"
        return f"<= {format_value(self.maximum, self.unit)}"


def format_value(value, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "%":
        return f"{100 * value:.1f}%"
    if unit == "BLEU":
        return f"{value:.2f} BLEU"
    return f"{value:.3g} {unit}".strip()


def verdict_row(file: str, size_bytes: int | None, checks: Sequence[dict]) -> dict:
    """A row of ``export_report.json``'s ``verdicts``: the file(s), size, checks and ok/WARNING."""
    return {"file": file, "size_bytes": size_bytes, "checks": list(checks),
            "verdict": OK if all(c["ok"] for c in checks) else WARNING}


def describe_checks(checks: Sequence[dict]) -> str:
    parts = []
    for check in checks:
        text = f"{check['figure']} {format_value(check['value'], check['unit'])}"
        if check.get("detail"):
            text += f" ({check['detail']})"
        parts.append(text)
    return "; ".join(parts)


def record_verdicts(report: dict, rows: Sequence[dict]) -> dict:
    """Put ``rows`` into ``report`` (``verdicts``, ``verdict``) and log one warning per row past a limit."""
    report["verdicts"] = list(rows)
    report["verdict"] = OK if all(row["verdict"] == OK for row in rows) else WARNING
    for row in rows:
        if row["verdict"] != OK:
            failed = [c for c in row["checks"] if not c["ok"]]
            limits = ", ".join(f"{c['figure']} {c['limit']}" for c in failed)
            log.warning("%s disagrees with Keras: %s (limit: %s); see export_report.json", row["file"],
                        describe_checks(failed), limits)
    return report


def _size(size_bytes) -> str:
    if size_bytes is None:
        return "-"
    return f"{size_bytes / 1024:,.1f} KB"


def export_summary_lines(report: dict, export_dir: str | Path | None = None) -> list[str]:
    """The lines ``export`` prints: where the files are, then per file size, agreement and verdict."""
    rows = report.get("verdicts") or []
    where = export_dir or report.get("export_dir") or "export/"
    lines = [f"exported to {where} (full report: export_report.json)"]
    width = max([len(row["file"]) for row in rows] + [4])
    for row in rows:
        lines.append(f"  {row['file']:<{width}}  {_size(row.get('size_bytes')):>10}  "
                     f"{row['verdict']:<7}  {describe_checks(row['checks'])}")
    return lines


def print_export_summary(report: dict, args=None) -> None:
    """``export``'s output: :func:`export_summary_lines` on stdout (the JSON stays in the report file)."""
    model = getattr(args, "model", None)
    where = report.get("export_dir") or (Path(model) / "export" if model else None)
    sys.stdout.write("\n".join(export_summary_lines(report, where)) + "\n")


def train_summary_lines(report: dict, out: str | None = None) -> list[str]:
    """The lines ``train`` prints: where the model is, epochs, time and the validation figures."""
    where = out or report.get("model") or "the model directory"
    lines = [f"model written to {where} (full report: train_report.json)"]
    parts = []
    if "epochs_run" in report:
        best = report.get("best_epoch")
        parts.append(f"{report['epochs_run']} epochs" + (f" (best {best})" if best is not None else ""))
    if isinstance(report.get("wall_seconds"), (int, float)):
        parts.append(f"{report['wall_seconds']:.0f} s")
    figures = [f"{key} {_number(value)}" for key, value in report.items()
               if key.startswith(("val_", "validation_", "test_")) and _is_number(value)]
    if parts:
        lines.append("  " + ", ".join(parts))
    if figures:
        lines.append("  " + ", ".join(figures[:8]))
    return lines


def print_train_summary(report: dict, args=None) -> None:
    """``train``'s output: :func:`train_summary_lines` on stdout (the JSON is ``train_report.json``)."""
    sys.stdout.write("\n".join(train_summary_lines(report, getattr(args, "out", None))) + "\n")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"
