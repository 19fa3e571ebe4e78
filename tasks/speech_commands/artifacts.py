"""The model directory: what train writes and evaluate/export/predict read.

``DIR/model.keras``, ``DIR/config.json`` (data, model and train configs + labels + data source),
``DIR/labels.txt``, ``DIR/metrics.json``, ``DIR/logs/``, ``DIR/export/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lstm_core.errors import UserError
from lstm_core.model_dir import EXPORT_FILES, exported_tflite  # noqa: F401  (re-exported)
from lstm_core.io import read_json, write_bytes_atomic, write_json_atomic
from lstm_core.training import TrainConfig

from tasks.speech_commands.data import DataConfig
from tasks.speech_commands.model import ModelConfig

DEFAULT_MODEL_DIR = "saved_models/speech_commands"


@dataclasses.dataclass
class ModelDir:
    path: Path
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    labels: list
    source: dict  # {"data": DIR} or {"tfds": name, "tfds_data_dir": ...}

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    def keras_model(self):
        from tasks.speech_commands.model import load_model

        try:
            return load_model(self.path / "model.keras")
        except Exception as err:
            raise UserError(f"{self.path / 'model.keras'}: cannot load the Keras model ({err})") from None

    def tflite_path(self, runtime: str) -> Path:
        return exported_tflite(self.path, runtime, "speech_commands")


def _from_dict(cls, d):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (d or {}).items() if k in names})


def save_model_dir(path, data: DataConfig, model: ModelConfig, train: TrainConfig, labels, source: dict) -> None:
    path = Path(path)
    write_json_atomic(
        path / "config.json",
        {
            "task": "speech_commands",
            "data": dataclasses.asdict(data),
            "model": dataclasses.asdict(model),
            "train": dataclasses.asdict(train),
            "labels": list(labels),
            "source": source,
        },
    )
    write_bytes_atomic(path / "labels.txt", ("\n".join(labels) + "\n").encode())


def open_model_dir(path) -> ModelDir:
    path = Path(path)
    config = path / "config.json"
    if not (path / "model.keras").exists() or not config.exists():
        hint = ""
        if path.with_name(path.name + ".partial").exists():
            hint = " (training did not finish: rerun the train command to resume)"
        raise UserError(
            f"{path}: not a speech_commands model directory (needs model.keras and config.json){hint}; "
            "train one with `lstm-suite speech_commands train --data DIR --out DIR`"
        )
    try:
        raw = read_json(config)
    except ValueError as err:
        raise UserError(f"{config}: invalid JSON ({err})") from None
    if raw.get("task") != "speech_commands":
        raise UserError(f"{config}: written by task {raw.get('task')!r}, not speech_commands")
    return ModelDir(
        path=path,
        data=_from_dict(DataConfig, raw.get("data")),
        model=_from_dict(ModelConfig, raw.get("model")),
        train=_from_dict(TrainConfig, raw.get("train")),
        labels=list(raw["labels"]),
        source=raw.get("source", {}),
    )
