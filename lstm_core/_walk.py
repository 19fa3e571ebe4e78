"""Walking a Keras model's layers, nested ones included (wrappers such as ``Bidirectional``).

A leaf module (Keras only), shared by :mod:`lstm_core.export` and :mod:`lstm_core.embedding`.
"""

from __future__ import annotations

import keras

__all__ = ["all_layers"]


def all_layers(obj) -> list:
    """``obj`` and every layer inside it, each once: sub-layers of models and layers, and the
    wrapped layers of ``Bidirectional`` (``forward_layer``/``backward_layer``) and other wrappers
    (``layer``)."""
    seen, stack, out = set(), [obj], []
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out.append(layer)
        stack.extend(getattr(layer, "_layers", []) or [])
        for attr in ("forward_layer", "backward_layer", "layer"):
            child = getattr(layer, attr, None)
            if isinstance(child, keras.layers.Layer):
                stack.append(child)
    return out
