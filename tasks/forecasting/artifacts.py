"""The model directory: ``model.keras``, ``config.json``, ``scaler.json``, ``logs/``, ``export/``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lstm_core.errors import UserError
from lstm_core.model_dir import EXPORT_FILES, exported_tflite  # noqa: F401  (re-exported)
from lstm_core.io import read_json

from tasks.forecasting.data import DataConfig, Scaler
from tasks.forecasting.model import ModelConfig

DEFAULT_MODEL_DIR = "saved_models/forecasting"


@dataclasses.dataclass
class ModelDir:
    path: Path
    data: DataConfig
    model: ModelConfig
    scaler: Scaler
    series: dict  # season, freq, split sizes ... measured at train time
    train: dict

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    def keras_model(self):
        import keras

        import lstm_core.layer  # noqa: F401  (registers the lstm_core layer classes)
        from tasks.forecasting import model as _model  # noqa: F401  (registers the loss)

        return keras.saving.load_model(self.path / "model.keras", compile=False)

    def tflite_path(self, runtime: str) -> Path:
        return exported_tflite(self.path, runtime, "forecasting")


def save_config(work: Path, data: DataConfig, model: ModelConfig, series: dict, train: dict) -> dict:
    return {
        "task": "forecasting",
        "data": dataclasses.asdict(data),
        "model": dataclasses.asdict(model),
        "series": series,
        "train": train,
    }


def open_model_dir(path) -> ModelDir:
    path = Path(path)
    for name in ("config.json", "scaler.json", "model.keras"):
        if not (path / name).is_file():
            raise UserError(
                f"{path}: not a forecasting model directory (missing {name}); train one with "
                f"`lstm-suite forecasting train --out {path} ...`"
            )
    config = read_json(path / "config.json")
    if config.get("task") != "forecasting":
        raise UserError(f"{path}/config.json: not a forecasting model (task {config.get('task')!r})")
    return ModelDir(
        path=path,
        data=DataConfig(**config["data"]),
        model=ModelConfig(**config["model"]),
        scaler=Scaler(**read_json(path / "scaler.json")),
        series=config["series"],
        train=config["train"],
    )
