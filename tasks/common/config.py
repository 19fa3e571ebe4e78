"""Settings declared once: dataclass fields carry their help, range and flag; argparse is generated.

Every task declares its settings as dataclasses whose fields are made with :func:`setting`
(default, help text, optional range/choices). From them this module builds

- the command-line flags (``--batch-size`` from ``batch_size``; every default shown in ``--help``),
- the validation (``--epochs 0`` → ``lstm-suite: error: --epochs: expected an integer >= 1, got 0``),
- the ``config.json`` round trip (unknown keys ignored, wrong types one error line naming the file).

This module imports neither TensorFlow nor Keras, so ``--help`` and argument errors stay instant.

Example:

```python
@dataclasses.dataclass
class ModelConfig:
    units: int = setting(64, "LSTM units", minimum=1)
    pooling: str = setting("last", "how the sequence is summarised", choices=("last", "mean"))

parser = argparse.ArgumentParser()
add_settings(parser, ModelConfig, title="model")
config = settings_from_args(ModelConfig, parser.parse_args(["--units", "32"]))
```
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Iterable, Mapping, Sequence

from tasks.common.errors import UserError
from tasks.common.samples import describe

_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    help: str = "",
    *,
    choices: Sequence | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    above: float | None = None,
    flag: str | None = None,
    cli: bool = True,
    metavar: str | None = None,
):
    """A dataclass field with everything its flag needs.

    Args:
        default: the default value (lists/tuples are copied per instance).
        help: one sentence for ``--help``; the default is appended automatically.
        choices: allowed values (for str fields; for list fields, each item).
        minimum / maximum: inclusive bounds for numbers.
        above / below: exclusive bounds for numbers (``dropout`` in [0, 1): ``minimum=0, below=1``).
        flag: the flag name when it is not ``--<field-name-with-dashes>``.
        cli: False keeps the setting out of the command line (measured or derived at train time,
            still saved in ``config.json``).
        metavar: argparse metavar.
    """
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices is not None else None,
        "minimum": minimum,
        "maximum": maximum,
        "below": below,
        "above": above,
        "flag": flag,
        "cli": cli,
        "metavar": metavar,
    }
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _resolved_types(cls) -> dict:
    return typing.get_type_hints(cls)


def _unwrap_optional(annotation):
    """``int | None`` → (int, True); ``int`` → (int, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else str), optional
    return annotation, False


def _sequence_item(annotation):
    """``tuple[float, ...]`` / ``list[str]`` → item type, else None."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return args[0] if args else str
    return None


def _number(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _describe(field: dataclasses.Field, kind) -> str:
    meta = field.metadata
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(kind, "a value")
    bounds = []
    if meta.get("minimum") is not None:
        bounds.append(f">= {_number(meta['minimum'])}")
    if meta.get("above") is not None:
        bounds.append(f"> {_number(meta['above'])}")
    if meta.get("below") is not None:
        bounds.append(f"< {_number(meta['below'])}")
    if meta.get("maximum") is not None:
        bounds.append(f"<= {_number(meta['maximum'])}")
    if meta.get("choices"):
        return "one of " + ", ".join(map(str, meta["choices"]))
    return name + (" " + " and ".join(bounds) if bounds else "")


def _check_value(field: dataclasses.Field, kind, value, where: str) -> None:
    meta = field.metadata
    choices = meta.get("choices")
    if choices and value not in choices:
        raise UserError(f"{where}: expected {_describe(field, kind)}, got {value!r}")
    if kind in (int, float) and not isinstance(value, bool):
        number = value if isinstance(value, int) else float(value)  # ints of any size compare exactly
        if isinstance(number, float) and not math.isfinite(number):
            raise UserError(f"{where}: expected {_describe(field, kind)}, got {value!r} (not a finite number)")
        bad = (
            (meta.get("minimum") is not None and number < meta["minimum"])
            or (meta.get("maximum") is not None and number > meta["maximum"])
            or (meta.get("below") is not None and number >= meta["below"])
            or (meta.get("above") is not None and number <= meta["above"])
        )
        if bad:
            raise UserError(f"{where}: expected {_describe(field, kind)}, got {value!r}")


def validate_settings(obj, *, source: str | None = None) -> None:
    """Check every field of dataclass ``obj`` against its declared range/choices.

    The error names the flag (or ``source:key`` for a config file) and what was expected.
    """
    hints = _resolved_types(type(obj))
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if value is None:
            continue
        kind, _ = _unwrap_optional(hints.get(field.name, str))
        where = f"{source}: {field.name}" if source else flag_name(field)
        item = _sequence_item(kind)
        if item is not None:
            for element in value:
                _check_value(field, item, element, where)
        else:
            _check_value(field, kind, value, where)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _scalar_parser(kind):
    if kind is bool:
        return _parse_bool
    if kind in (int, float, str):

        def parse(text: str, kind=kind):
            try:
                return kind(text)
            except ValueError:
                name = {int: "an integer", float: "a number"}[kind]
                raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None

        parse.__name__ = kind.__name__
        return parse
    return str


def _none_or(parse):
    """For ``X | None`` settings: ``none`` on the command line is None (what --help shows)."""

    def parse_optional(text: str):
        return None if text.strip().lower() == "none" else parse(text)

    parse_optional.__name__ = getattr(parse, "__name__", "value")
    return parse_optional


def _list_parser(item, container):
    parse_item = _scalar_parser(item)

    def parse(text: str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return container(parse_item(p) for p in parts)

    parse.__name__ = "list"
    return parse


def _format_default(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) if value else "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return describe(str(value))


def add_settings(
    parser: argparse.ArgumentParser,
    cls,
    *,
    defaults=None,
    title: str | None = None,
    exclude: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> argparse._ArgumentGroup:
    """Add one flag per field of dataclass ``cls`` (``defaults``: an instance with other defaults).

    The parsed value lands in ``args.<field name>``; read the dataclass back with
    :func:`settings_from_args`. Every flag's help ends with its default.
    """
    defaults = defaults if defaults is not None else cls()
    group = parser.add_argument_group(title) if title else parser
    hints = _resolved_types(cls)
    exclude, only = set(exclude), set(only) if only is not None else None
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True) or field.name in exclude or (only is not None and field.name not in only):
            continue
        default = getattr(defaults, field.name)
        kind, optional = _unwrap_optional(hints.get(field.name, str))
        help_text = field.metadata.get("help", "")
        if field.metadata.get("choices") and _sequence_item(kind) is None:
            help_text += f" ({'|'.join(map(str, field.metadata['choices']))})"
        help_text = (help_text + f" (default: {_format_default(default)})").replace("%", "%%")
        kwargs: dict[str, Any] = dict(dest=field.name, default=default, help=help_text)
        if field.metadata.get("metavar"):
            kwargs["metavar"] = field.metadata["metavar"]
        item = _sequence_item(kind)
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif item is not None:
            container = tuple if typing.get_origin(kind) is tuple else list
            kwargs["type"] = _list_parser(item, container)
            kwargs.setdefault("metavar", "A,B,...")
        else:
            kwargs["type"] = _scalar_parser(kind)
            kwargs.setdefault("metavar", {int: "N", float: "X"}.get(kind, "TEXT"))
        if optional and "type" in kwargs:
            kwargs["type"] = _none_or(kwargs["type"])
        group.add_argument(flag_name(field), **kwargs)
    return group


def settings_from_args(cls, args: argparse.Namespace, *, defaults=None):
    """The dataclass ``cls`` from parsed flags (fields without a flag keep ``defaults``), validated."""
    defaults = defaults if defaults is not None else cls()
    values = {}
    for field in dataclasses.fields(cls):
        values[field.name] = getattr(args, field.name, getattr(defaults, field.name))
    obj = cls(**values)
    validate_settings(obj)
    return obj


def settings_to_dict(obj) -> dict:
    """``dataclasses.asdict`` with tuples as lists (what JSON gives back)."""
    return json_ready(dataclasses.asdict(obj))


def json_ready(value):
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _coerce(kind, value, where: str):
    kind, optional = _unwrap_optional(kind)
    if value is None:
        return None
    item = _sequence_item(kind)
    if item is not None:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        container = tuple if typing.get_origin(kind) is tuple else list
        return container(_coerce(item, v, where) for v in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def settings_from_dict(cls, values: Mapping | None, *, source: str):
    """Rebuild dataclass ``cls`` from a ``config.json`` section; bad values → one UserError line.

    Unknown keys are ignored (older/newer model directories still load); missing keys keep the
    field default.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected an object, got {type(values).__name__}")
    hints = _resolved_types(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in values:
            kwargs[field.name] = _coerce(hints.get(field.name, Any), values[field.name], f"{source}: {field.name}")
    obj = cls(**kwargs)
    validate_settings(obj, source=source)
    return obj


# ---------------------------------------------------------------------------------------------
# Settings every task shares (same names, same flags, in every task).
# ---------------------------------------------------------------------------------------------

PROGRESS_MODES = ("auto", "bar", "epoch", "none")
DISTRIBUTE_MODES = ("none", "mirrored", "multi-worker")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings shared by all tasks (each task owns its data/model config)."""

    epochs: int = setting(20, "maximum number of training epochs", minimum=1)
    learning_rate: float = setting(1e-3, "peak learning rate (Adam)", above=0)
    patience: int = setting(4, "early stopping: epochs without improvement of the monitored metric", minimum=0)
    seed: int = setting(1234, "random seed (weights, shuffling, augmentation)", minimum=0, maximum=2**31 - 1)
    steps_per_epoch: int | None = setting(None, "cap on batches per epoch, for quick runs (none: the whole data)", minimum=1)
    progress: str = setting(
        "auto", "progress display: auto = a bar with ETA on a terminal, one line per epoch otherwise",
        choices=PROGRESS_MODES,
    )
    distribute: str = setting(
        "none", "tf.distribute strategy: mirrored = all devices of this machine (GPUs, else the CPU); "
        "multi-worker is refused until Keras 3 supports it (keras#20585)", choices=DISTRIBUTE_MODES
    )
    monitor: str = setting("val_loss", "metric watched by early stopping and best-epoch restore", cli=False)
    monitor_mode: str = setting("auto", "min, max or auto for --monitor", cli=False)
    histogram_freq: int = setting(1, "TensorBoard weight histograms every N epochs (0: none)", minimum=0, cli=False)
    validation_steps: int | None = setting(None, "cap on validation batches", minimum=1, cli=False)

    @property
    def keras_verbose(self) -> int:
        """Keras ``fit(verbose=...)``: 1 = progress bar with ETA, 2 = one line per epoch, 0 = silent."""
        import os
        import sys

        if os.environ.get("LSTM_SUITE_QUIET", "") not in ("", "0") and self.progress == "auto":
            return 0  # -q: warnings and results only
        if self.progress == "bar":
            return 1
        if self.progress == "epoch":
            return 2
        if self.progress == "none":
            return 0
        return 1 if sys.stdout.isatty() else 2


@dataclasses.dataclass
class OutputConfig:
    """Where ``train`` writes, and what it may do with what is already there."""

    out: str = setting("saved_models/model", "model directory to create", metavar="DIR")
    overwrite: bool = setting(
        False, "replace an existing model directory (only after the new training succeeded)"
    )
    resume: bool = setting(False, "continue an interrupted training of --out (from OUT.partial)")


RUNTIMES = ("keras", "tflite", "tflite-int8", "tflm")
QUANTIZATIONS = ("float", "int8", "int16x8")


@dataclasses.dataclass
class ExportConfig:
    """What ``export`` writes: every task exports float and int8 by default."""

    model: str = setting("saved_models/model", "model directory (written by train)", metavar="DIR")
    quantization: tuple[str, ...] = setting(
        ("float", "int8"), "TFLite variants to write", choices=QUANTIZATIONS
    )
    calibration_examples: int = setting(200, "examples used to calibrate int8 quantization", minimum=1)
    atol: float | None = setting(
        None, "max |LiteRT - Keras| a float export may have before it is refused (none: the task's default)",
        above=0,
    )


@dataclasses.dataclass
class EvaluateConfig:
    """``evaluate``: which model, on what data, in which runtime, and where its files go."""

    model: str = setting("saved_models/model", "model directory (written by train)", metavar="DIR")
    data: str | None = setting(None, "data to score (none: the task's held-out data, see the task README)")
    runtime: str = setting(
        "keras", "keras = the trained model; tflite/tflite-int8 = the exported LiteRT models; "
        "tflm = the int8 export in TensorFlow Lite Micro", choices=RUNTIMES,
    )
    out: str | None = setting(
        None, "folder for plots and per-example files (none: MODEL/eval, or no files if that is not writable)",
        metavar="DIR",
    )
    limit: int | None = setting(None, "score only the first N examples", minimum=1)


@dataclasses.dataclass
class PredictConfig:
    """``predict``: which model in which runtime."""

    model: str = setting("saved_models/model", "model directory (written by train)", metavar="DIR")
    runtime: str = setting("keras", "keras, tflite, tflite-int8 or tflm (see evaluate --runtime)", choices=RUNTIMES)


# The keys every task's ``evaluate`` JSON carries (the task's metrics come beside them).
EVALUATE_KEYS = ("task", "model", "runtime", "data", "examples", "plot")
