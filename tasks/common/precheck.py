"""What can be checked before TensorFlow loads is checked first: a wrong path, column or ``--out`` is one line at once.

TensorFlow takes seconds to import; a typo in a path should not. :func:`check_before_tensorflow`
runs after the flags are parsed and before the import (``tasks.common.cli``): the files named by
``--data``/``--val`` exist (a relative path's error names the directory it was resolved against),
``train --out`` may be written (:func:`~tasks.common.artifacts.check_train_out`), ``--model`` is a
model directory of the task (its ``config.json`` read as ``evaluate``/``export`` would), and a
task's column flags name columns of the file's header (:func:`check_columns`, called from a task's
``precheck``). Everything here reads at most a header line: no TensorFlow, Keras or NumPy.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Mapping

from tasks.common.config import EvaluateConfig, ExportConfig, PredictConfig
from tasks.common.errors import UserError

# tfds:NAME, statsmodels:co2, hf:..., not a Windows drive (C:\...)
_SCHEME = re.compile(r"^[A-Za-z][\w.+-]+:")
PATH_FIELDS = ("data", "val")


def relative_note(value: str) -> str:
    """`` (relative to /where/you/are)`` for a relative path, else nothing."""
    return "" if Path(value).is_absolute() else f" (relative to the current directory {os.getcwd()})"


def is_local_path(value) -> bool:
    return isinstance(value, str) and bool(value) and value.lower() != "none" and not _SCHEME.match(value)


def check_path(flag: str, value) -> None:
    """``flag value`` names something that exists (a ``tfds:``/``statsmodels:`` source is not checked here)."""
    if is_local_path(value) and not Path(value).exists():
        raise UserError(f"{flag} {value}: no such file or directory{relative_note(value)}")


def header_columns(path: str | os.PathLike) -> list[str] | None:
    """The column names on the first non-blank line of a ``.tsv``/``.csv`` file (None for other files)."""
    from tasks.common.tables import CSV_SUFFIXES, TSV_SUFFIXES, delimiter_for

    path = Path(path)
    if path.suffix.lower() not in TSV_SUFFIXES + CSV_SUFFIXES or not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            first = next((line for line in handle if line.strip()), "")
    except OSError:
        return None  # the loader reports it, with its own message
    if not first:
        return None
    import csv

    delimiter = delimiter_for(path, first)
    fields = first.rstrip("\r\n").split("\t") if delimiter == "\t" else next(csv.reader([first], delimiter=delimiter))
    return [field.strip() for field in fields]


def check_columns(path, wanted: Mapping[str, str | tuple | None], advice: str = "pass {flag} NAME") -> None:
    """Each ``flag -> column name(s)`` of ``wanted`` names a column of ``path``'s header (case-insensitive).

    The error names the flag to use and the columns found:
    ``train.tsv: no 'review' column (--text-column); the header has: text, label``.
    """
    columns = header_columns(path) if is_local_path(str(path)) else None
    if not columns:
        return
    lowered = {column.lower() for column in columns}
    for flag, names in wanted.items():
        for name in [names] if isinstance(names, str) or names is None else names:
            if name and name.lower() not in lowered:
                raise UserError(f"{path}: no '{name}' column ({flag}); the header has: {', '.join(columns)}; "
                                + advice.format(flag=flag, name=name))


def check_before_tensorflow(task: str, configs: Mapping[str, object]) -> None:
    """The checks of the module doc for one verb's parsed ``configs`` (section title -> dataclass)."""
    for config in configs.values():
        fields = {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()
        for name in PATH_FIELDS:
            if name in fields:
                check_path("--" + name, getattr(config, name))
        if {"out", "overwrite", "resume"} <= fields:  # train's OutputConfig
            from tasks.common.artifacts import check_train_out

            check_train_out(Path(config.out), task=task, overwrite=config.overwrite)
        elif isinstance(config, (EvaluateConfig, ExportConfig, PredictConfig)) and model_dir_class(task) is not None:
            model_dir_class(task).open(config.model)


def model_dir_class(task: str):
    """The task's ``ModelDir`` subclass (``tasks/<task>/artifacts.py``; imports no TensorFlow), or None."""
    import importlib.util

    from tasks.common.artifacts import ModelDir

    try:
        found = importlib.util.find_spec(f"tasks.{task}.artifacts")
    except ModuleNotFoundError:
        found = None
    if found is None:  # a task outside this package (tests' fake tasks): its own run checks
        return None
    module = importlib.import_module(f"tasks.{task}.artifacts")
    return next((value for value in vars(module).values()
                 if isinstance(value, type) and issubclass(value, ModelDir) and value.TASK == task), None)
