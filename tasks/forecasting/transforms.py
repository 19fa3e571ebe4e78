"""The target transform (``none``, ``sqrt``, ``log``), written once for NumPy, TensorFlow and text.

Every user of the transform — the scaler on NumPy arrays, the SavedModel ``forecast``
signature in the TensorFlow graph, ``preprocessing.json`` for on-device code — goes through
:func:`forward` / :func:`inverse` (with ``xp=numpy`` or ``xp=tf.math``, which name the same
functions) and :func:`formulas`, so the three cannot drift apart.

Example:

```python
forward(np.array([4.0]), "sqrt")            # array([2.])
inverse(tf.constant([2.0]), "sqrt", tf.math)  # tf.Tensor([4.])
formulas("log")                             # ("log(v)", "exp(z)")
```
"""

from __future__ import annotations

import numpy as np

from tasks.common.errors import UserError

# name -> (forward(v, xp), inverse(z, xp), forward text, inverse text)
_FORMS = {
    "none": (lambda v, xp: v, lambda z, xp: z, "v", "z"),
    "sqrt": (lambda v, xp: xp.sqrt(xp.maximum(v, 0.0)), lambda z, xp: xp.square(xp.maximum(z, 0.0)),
             "sqrt(max(v, 0))", "max(z, 0)^2"),
    "log": (lambda v, xp: xp.log(v), lambda z, xp: xp.exp(z), "log(v)", "exp(z)"),
}
NAMES = tuple(_FORMS)


def forward(v, transform: str, xp=np):
    """``T(v)``; ``xp`` is ``numpy`` or ``tf.math``."""
    return _FORMS[transform][0](v, xp)


def inverse(z, transform: str, xp=np):
    """``T^-1(z)``; ``xp`` is ``numpy`` or ``tf.math``."""
    return _FORMS[transform][1](z, xp)


def formulas(transform: str) -> tuple[str, str]:
    """``(T(v), T_inverse(z))`` as text, for ``preprocessing.json``."""
    return _FORMS[transform][2], _FORMS[transform][3]


def domain_error(values: np.ndarray, transform: str) -> tuple[int, str] | None:
    """``(first bad row, what is needed)`` when ``values`` cannot take ``transform``, else None."""
    bad = np.flatnonzero(values < 0) if transform == "sqrt" else np.flatnonzero(values <= 0) if transform == "log" else []
    if len(bad):
        return int(bad[0]), ">= 0" if transform == "sqrt" else "> 0"
    return None


def check_transform(series, transform: str) -> None:
    """One error line naming the first value of ``series`` that ``transform`` cannot take."""
    found = domain_error(series.y, transform)
    if found:
        i, need = found
        raise UserError(
            f"{series.source}: column {series.target!r}, {series.where(i)}: value {series.y[i]:g} cannot take "
            f"--transform {transform} (needs {need})"
        )
