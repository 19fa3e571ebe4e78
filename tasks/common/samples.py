"""The data shipped inside the ``tasks`` package (``tasks/samples/``), found from wherever it is installed.

Every default that points at shipped data (each task's sample, sentiment's dev and negation sets) is
``sample_path("<task>/<file>")``: a path read with :mod:`importlib.resources` from the installed package,
so the suite works from any current directory and from a wheel, not only from the repository root.
Paths a user gives on the command line stay relative to the current directory.

``--help`` shows such a default as ``built-in sample <task>/<file>`` (:func:`describe`), not as the long
site-packages path. No TensorFlow here: ``--help`` stays instant.

Example:

```python
>>> sample_path("sentiment/dev.tsv")
'/.../site-packages/tasks/samples/sentiment/dev.tsv'
>>> describe(sample_path("sentiment/dev.tsv"))
'built-in sample sentiment/dev.tsv'
```
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SAMPLES_FOLDER = "samples"


def samples_root() -> Path:
    """The folder of the shipped samples in the installed ``tasks`` package.

    pip installs wheels unpacked, so ``importlib.resources`` hands back a real folder; a zipped
    install (no folder to read clips or TSVs from) is refused with a clear message.
    """
    root = resources.files("tasks").joinpath(SAMPLES_FOLDER)
    if not isinstance(root, Path):
        raise RuntimeError(f"tasks is installed zipped ({root}); the shipped samples need an unpacked install")
    return root


def sample_path(name: str) -> str:
    """The file-system path of the shipped sample ``name`` (``"<task>/<file or folder>"``), as a string."""
    return str(samples_root().joinpath(*name.split("/")))


def moved_sample(value):
    """A path a model directory recorded before the samples moved from ``data/`` into the package.

    ``data/<task>/...`` (the old relative defaults) and ``<repo>/data/<task>/...`` (speech_commands
    records absolute folders) become the same sample in ``tasks/samples/`` when the recorded path is
    gone; anything else (a user's files, ``../shared/data/...``, ``tfds:``) is returned unchanged.
    """
    if not isinstance(value, str) or not value or Path(value).exists():
        return value
    parts = Path(value).parts
    if "data" not in parts:
        return value
    at = len(parts) - 1 - parts[::-1].index("data")
    prefix, rest = Path(*parts[:at]) if at else None, parts[at + 1:]
    if prefix is not None and not (prefix / "tasks" / SAMPLES_FOLDER).is_dir():
        return value  # not a checkout of this repository: a data/ folder of the user's
    root = prefix / "tasks" / SAMPLES_FOLDER if prefix is not None else samples_root()
    candidate = root.joinpath(*rest) if rest else root
    return str(candidate) if rest and candidate.exists() else value


def describe(value: str) -> str:
    """``value`` for ``--help``: a shipped sample as ``built-in sample <task>/<file>``, anything else unchanged."""
    prefix = str(samples_root()) + os.sep
    if isinstance(value, str) and value.startswith(prefix):
        return "built-in sample " + value[len(prefix):].replace(os.sep, "/")
    return value
