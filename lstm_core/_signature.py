"""Positional order of serving-signature names, shared by the LiteRT and TFLM runners.

Exports name their signature tensors ``input_0``, ``input_1`` ... and ``output_0`` ... (see
:func:`lstm_core.export.output_names`); signature maps are unordered, so runners sort by the
numeric suffix. A leaf module: it imports nothing.
"""

from __future__ import annotations

__all__ = ["positional"]


def positional(names) -> list[str]:
    """``names`` sorted by their numeric suffix (``output_10`` after ``output_2``); names
    without one sort first."""
    return sorted(names, key=lambda n: int(n.rsplit("_", 1)[1]) if n.rsplit("_", 1)[-1].isdigit() else 0)
