"""The model directory every task writes and reads: one layout, one set of errors.

```
DIR/model.keras          the trained Keras model
DIR/config.json          {"task": ..., "data": {...}, "model": {...}, "train": {...}, ...}
DIR/train_report.json    what training measured (epochs, best epoch, validation metrics, time)
DIR/logs/                TensorBoard
DIR/export/              export_report.json, model_float.tflite, model_int8.tflite, ...
DIR/eval/                evaluate's plots and per-example files (default ``--out``)
```

A task subclasses :class:`ModelDir` with its ``TASK`` name and the dataclass of each config
section; ``ModelDir.open(path)`` turns every kind of damage (missing directory, unfinished
training, foreign or corrupted ``config.json``, truncated ``model.keras``) into one
``UserError`` line. This module imports TensorFlow/Keras only inside the loaders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import ClassVar, Mapping

from tasks.common.config import settings_from_dict, settings_to_dict
from tasks.common.errors import UserError
from tasks.common.io import DirectoryLock, read_json, staged_directory, write_json_atomic
from tasks.common.samples import moved_sample

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
TRAIN_REPORT_FILE = "train_report.json"
LOGS_DIR = "logs"
EXPORT_DIR = "export"
EVAL_DIR = "eval"
EXPORT_REPORT_FILE = "export_report.json"
EXPORT_FILES = {
    "tflite": "model_float.tflite",
    "tflite-int8": "model_int8.tflite",
    "tflm": "model_int8.tflite",
    "streaming": "streaming_float.tflite",
}


def read_json_file(path: Path, what: str = "JSON file"):
    """``json.load`` with one error line for a missing, unreadable or damaged file."""
    path = Path(path)
    try:
        return read_json(path)
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: damaged {what} ({err.__class__.__name__}: {err})") from None
    except RecursionError:
        raise UserError(f"{path}: damaged {what} (nested too deeply to be a file this suite wrote)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


def _with_moved_samples(config):
    """``config`` whose ``data``/``val`` paths recorded before the samples moved into the package
    (``data/<task>/...``) point at them again (:func:`tasks.common.samples.moved_sample`)."""
    changes = {name: moved_sample(getattr(config, name)) for name in ("data", "val") if hasattr(config, name)}
    changes = {name: value for name, value in changes.items() if value != getattr(config, name)}
    return dataclasses.replace(config, **changes) if changes else config


class ModelDir:
    """A trained model directory of one task.

    Subclasses set ``TASK`` and ``SECTIONS`` (config section name → dataclass); ``open`` checks
    the directory and parses ``config.json`` into ``self.<section>`` dataclasses (validated as
    the flags would be). Extra top-level keys of ``config.json`` stay in ``self.extra``.

    Example:

    ```python
    class SentimentDir(ModelDir):
        TASK = "sentiment"
        SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

    directory = SentimentDir.open("saved_models/sentiment")
    model = directory.keras_model()
    path = directory.export_file("tflite-int8")     # "run export first" error if absent
    ```
    """

    TASK: ClassVar[str] = ""
    SECTIONS: ClassVar[Mapping[str, type]] = {}
    REQUIRED_FILES: ClassVar[tuple[str, ...]] = (CONFIG_FILE, MODEL_FILE)

    def __init__(self, path, sections: Mapping[str, object] | None = None, extra: Mapping | None = None):
        self.path = Path(path)
        self.sections = dict(sections or {})
        self.extra = dict(extra or {})
        for name, value in self.sections.items():
            setattr(self, name, value)

    # -- layout -----------------------------------------------------------------------------
    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    def train_command(self) -> str:
        return f"lstm-suite {self.TASK} train --out {self.path}"

    def export_command(self) -> str:
        return f"lstm-suite {self.TASK} export --model {self.path}"

    # -- open / save ------------------------------------------------------------------------
    @classmethod
    def open(cls, path):
        """Check ``path`` is a finished model directory of this task and read its config."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        if not path.is_dir():
            hint = (
                f" (training into it did not finish: rerun the train command to resume from {partial})"
                if partial.is_dir()
                else f"; train one with `lstm-suite {cls.TASK} train --out {path}`"
            )
            raise UserError(f"{path}: no such model directory{hint}")
        for name in cls.REQUIRED_FILES:
            if not (path / name).is_file():
                raise UserError(
                    f"{path}: not a {cls.TASK} model directory (missing {name}); "
                    f"train one with `lstm-suite {cls.TASK} train --out {path}`"
                )
        raw = read_json_file(path / CONFIG_FILE, "config.json")
        if not isinstance(raw, dict):
            raise UserError(f"{path / CONFIG_FILE}: expected a JSON object")
        task = raw.get("task")
        if task != cls.TASK:
            raise UserError(f"{path / CONFIG_FILE}: a {task!r} model directory, not {cls.TASK!r}")
        sections = {
            name: _with_moved_samples(settings_from_dict(kind, raw.get(name), source=f"{path / CONFIG_FILE}: {name}"))
            for name, kind in cls.SECTIONS.items()
        }
        extra = {k: v for k, v in raw.items() if k not in cls.SECTIONS and k != "task"}
        directory = cls(path, sections, extra)
        directory._opened_as = directory._identity()
        return directory

    def _identity(self) -> tuple:
        """Which files ``open`` read: a ``train --overwrite`` that replaced them changes this."""
        def one(path):
            try:
                info = os.stat(path)
            except OSError:
                return None
            return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns
        return one(self.config_file), one(self.model_file)

    @contextlib.contextmanager
    def staged_export(self):
        """Build ``export/`` in ``export.partial`` holding this model directory's lock.

        It is the lock ``train --out`` takes, so an export and a ``train --overwrite`` of one model
        exclude each other, and a model replaced between ``open`` and this call is refused
        instead of getting the old model's files.
        """
        with DirectoryLock(self.path, "export"):
            if getattr(self, "_opened_as", None) is not None and self._identity() != self._opened_as:
                raise UserError(f"{self.path}: the model was replaced while export read it "
                                f"(a train --overwrite finished); rerun `{self.export_command()}`")
            with staged_directory(self.export_dir, lock=False) as work:
                yield work

    def config_dict(self) -> dict:
        out = {"task": self.TASK}
        out.update({name: settings_to_dict(value) for name, value in self.sections.items()})
        out.update(self.extra)
        return out

    def save_config(self, path=None) -> Path:
        """Write ``config.json`` (into ``path``, e.g. the ``.partial`` work directory)."""
        target = Path(path) if path is not None else self.path
        return write_json_atomic(target / CONFIG_FILE, self.config_dict())

    def read_json(self, name: str):
        return read_json_file(self.path / name, name)

    # -- models -----------------------------------------------------------------------------
    def keras_model(self, custom_objects: Mapping | None = None, compile: bool = False):
        """``model.keras`` through ``keras.saving.load_model(safe_mode=True)``; damage → one line."""
        return load_keras_model(self.model_file, custom_objects=custom_objects, compile=compile)

    def export_file(self, runtime_or_name: str) -> Path:
        """An exported file (``tflite``, ``tflite-int8``, ``tflm`` or a file name) or a 'run export first' error."""
        name = EXPORT_FILES.get(runtime_or_name, runtime_or_name)
        path = self.export_dir / name
        if not path.is_file():
            raise UserError(f"{path} does not exist: run `{self.export_command()}` first")
        verify_export_file(self, path)
        return path

    def export_report(self) -> dict:
        path = self.export_dir / EXPORT_REPORT_FILE
        if not path.is_file():
            raise UserError(f"{path} does not exist: run `{self.export_command()}` first")
        return read_json_file(path, EXPORT_REPORT_FILE)

    def train_report(self) -> dict:
        path = self.path / TRAIN_REPORT_FILE
        return read_json_file(path, TRAIN_REPORT_FILE) if path.is_file() else {}

    # -- evaluate output --------------------------------------------------------------------
    def evaluation_dir(self, out: str | None) -> Path | None:
        """Where evaluate writes its files: ``out`` (must be writable), else ``DIR/eval``.

        The default falls back to no files (one warning) when the model directory is read-only
        or full, so ``evaluate`` of a read-only model still prints its metrics, and when ``eval``
        is a symlink out of the model directory (a stranger's directory never makes evaluate
        write elsewhere; an explicit ``--out`` is the user's choice and is followed).
        """
        if out is not None:
            return ensure_writable_dir(Path(out), flag="--out")
        default = self.path / EVAL_DIR
        try:
            if default.is_symlink() and not default.resolve().is_relative_to(self.path.resolve()):
                raise UserError(f"{default}: a symbolic link out of the model directory (not followed)")
            return ensure_writable_dir(default, flag=None)
        except UserError as err:
            log.warning("%s; writing no evaluation files (pass --out DIR to keep them)", err)
            return None


def model_directory_task(path: Path) -> str | None:
    """The ``task`` a directory's ``config.json`` names (a model directory this suite wrote), else None."""
    try:
        raw = read_json(Path(path) / CONFIG_FILE)
    except (OSError, ValueError, RecursionError):
        return None
    task = raw.get("task") if isinstance(raw, dict) else None
    return task if isinstance(task, str) and task else None


def check_train_out(out: Path, *, task: str | None, overwrite: bool) -> None:
    """Refuse a ``train --out`` that exists, unless ``--overwrite`` and it is a model directory of ``task``.

    ``--overwrite`` replaces only what this suite made: an empty directory or a model directory
    whose ``config.json`` names ``task`` (any suite task when ``task`` is None). Anything else (a
    file, a symlink, a folder of the user's, another task's model) is refused with one line, and
    ``--overwrite`` is suggested only where it would be accepted.
    """
    out = Path(out)
    if out.is_symlink():
        raise UserError(f"--out {out}: is a symbolic link; pass the directory it points to, or another --out")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise UserError(f"--out {out}: already exists and is a file, not a model directory; choose another --out")
    found = model_directory_task(out)
    name = f"a {task} model directory" if task else "a model directory of this suite"
    if found is None:
        raise UserError(f"--out {out}: already exists and is not a model directory (no config.json written by "
                        "train); nothing was changed; choose another --out or an empty directory")
    if task is not None and found != task:
        raise UserError(f"--out {out}: already exists and is a {found!r} model directory, not {name}; "
                        "nothing was changed; choose another --out")
    if not overwrite:
        raise UserError(f"--out {out}: already exists ({name}); pass --overwrite to replace it once the new "
                        "training succeeds, or choose another --out")


def ensure_writable_dir(path: Path, flag: str | None) -> Path:
    where = f"{flag} {path}" if flag else str(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(f"{where}: cannot write there ({err.strerror or err})") from None
    return path


def load_keras_model(path, custom_objects: Mapping | None = None, compile: bool = False):
    """Load a ``.keras`` file with ``safe_mode=True``; a damaged or foreign file → one UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing Keras model file")
    import zipfile

    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a Keras model file (damaged or truncated; retrain or restore it)")
    import keras

    import lstm_core.layer  # noqa: F401  (registers the lstm_core layer classes)
    import lstm_core.embedding  # noqa: F401  (registers lstm_core.embedding.Embedding)

    try:
        return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - any failure inside Keras' loader is a damaged file here
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise UserError(f"{path}: cannot load the Keras model ({first[:200]})") from None


def file_sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_export_file(model_dir: ModelDir, path: Path) -> None:
    """Refuse an exported file whose SHA-256 differs from the one export recorded, or has none recorded.

    A file without a recorded hash (no ``export_report.json``, no ``sha256`` key, a name not in
    it) is refused too: it cannot be told from a damaged or planted one.
    """
    report_path = model_dir.export_dir / EXPORT_REPORT_FILE
    rerun = f"re-run `{model_dir.export_command()}`"
    if not report_path.is_file():
        raise UserError(f"{path}: no {EXPORT_REPORT_FILE} beside it to check it against; {rerun}")
    report = read_json_file(report_path, EXPORT_REPORT_FILE)
    try:
        name = Path(path).resolve().relative_to(model_dir.export_dir.resolve()).as_posix()
    except ValueError:
        name = Path(path).name
    hashes = report.get("sha256") if isinstance(report, dict) else None
    expected = hashes.get(name) if isinstance(hashes, dict) else None
    if not isinstance(expected, str):
        raise UserError(f"{path}: no SHA-256 recorded for it in {report_path}; {rerun}")
    if file_sha256(path) != expected:
        raise UserError(f"{path}: file changed since export (sha256 mismatch); {rerun}")



def evaluation_result(
    *, task: str, model, runtime: str, data, examples: int, plot, **metrics
) -> dict:
    """The JSON object every ``evaluate`` prints: the shared keys, then the task's metrics.

    Args:
        task: the task name.
        model: the model directory.
        runtime: ``keras``, ``tflite``, ``tflite-int8`` or ``tflm``.
        data: what was scored (file, folder or ``tfds:`` name).
        examples: how many examples (sentences, clips, forecast origins) were scored.
        plot: the PNG written (confusion matrix, forecast plot), or None.
        **metrics: the task's figures (``accuracy``, ``bleu``, ``mase``, ...).
    """
    result = {
        "task": task,
        "model": str(model),
        "runtime": runtime,
        "data": str(data),
        "examples": int(examples),
        "plot": str(plot) if plot is not None else None,
    }
    clash = set(result) & set(metrics)
    if clash:
        raise ValueError(f"metrics may not reuse the shared keys {sorted(clash)}")
    result.update(metrics)
    return result


def file_inventory(directory: Path) -> dict:
    """``{"sizes": {name: bytes}, "sha256": {name: hex}}`` for every file under ``directory``."""
    directory = Path(directory)
    sizes, digests = {}, {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name == EXPORT_REPORT_FILE:
            continue
        sizes[name] = path.stat().st_size
        digests[name] = file_sha256(path)
    return {"sizes": sizes, "sha256": digests}


def write_export_report(export_work_dir: Path, report: dict) -> Path:
    """``export_report.json`` with the task's report plus sizes and SHA-256 of every exported file.

    Runtimes call :func:`verify_export_file` before loading, so a file damaged after export is
    refused instead of silently giving other answers.
    """
    full = dict(report)
    full.update(file_inventory(export_work_dir))
    return write_json_atomic(Path(export_work_dir) / EXPORT_REPORT_FILE, full)
