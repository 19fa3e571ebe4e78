"""The forecasting model directory: ``config.json``, ``scaler.json``, ``model.keras``, ``export/``, ``eval/``.

``config.json`` holds the ``data``/``model``/``train`` sections (:mod:`tasks.forecasting.config`)
and a ``series`` section measured at train time (frequency, seasons and where they came from,
split sizes). ``scaler.json`` holds the :class:`Scaler` fit on the training rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tasks.common.artifacts import ModelDir
from tasks.common.config import TrainConfig
from tasks.common.errors import UserError
from tasks.common.io import write_json_atomic

from tasks.forecasting.config import TRANSFORMS, DataConfig, ModelConfig
from tasks.forecasting.transforms import forward, inverse

SCALER_FILE = "scaler.json"
SERIES_SCALERS_FILE = "series_scalers.json"  # --id-col models: {series id: Scaler}
BASELINE_CACHE_DIR = "baselines"
PREPROCESSING_FILE = "preprocessing.json"


def apply_transform(y, transform: str):
    """``T(y)`` on NumPy arrays (:func:`tasks.forecasting.transforms.forward`)."""
    return forward(y, transform)


def invert_transform(z, transform: str):
    """``T^-1(z)`` on NumPy arrays (:func:`tasks.forecasting.transforms.inverse`)."""
    return inverse(z, transform)


@dataclasses.dataclass
class Scaler:
    """Transform + scaling of the target and covariates, fit on the training rows only.

    ``level(y) = T(y) / target_scale``; the encoder input for the target is
    ``diff(T(y)) / diff_scale``; covariates are ``(x - mean) / std``. The model predicts
    ``level[t+h] - level[t-1]``.

    Args:
        transform: ``none``, ``sqrt`` or ``log``.
        target_scale: train standard deviation of ``T(y)``.
        diff_scale: train standard deviation of ``diff(T(y))``.
        feature_mean / feature_std: train mean and standard deviation of each covariate.
    """

    transform: str
    target_scale: float
    diff_scale: float
    feature_mean: list[float]
    feature_std: list[float]

    @property
    def num_covariates(self) -> int:
        return len(self.feature_mean)

    def level(self, y) -> np.ndarray:
        return apply_transform(np.asarray(y, np.float64), self.transform) / self.target_scale

    def inverse_level(self, level) -> np.ndarray:
        return invert_transform(np.asarray(level, np.float64) * self.target_scale, self.transform)

    def forecast(self, deltas: np.ndarray, last_level: np.ndarray) -> np.ndarray:
        """Model outputs (changes of the level, ``[N, H]`` or ``[N, H, Q]``) -> values."""
        deltas = np.asarray(deltas, np.float64)
        last = np.asarray(last_level, np.float64).reshape((-1,) + (1,) * (deltas.ndim - 1))
        return self.inverse_level(last + deltas)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, source: str) -> "Scaler":
        try:
            scaler = cls(**values)
            scaler.target_scale, scaler.diff_scale = float(scaler.target_scale), float(scaler.diff_scale)
            scaler.feature_mean = [float(v) for v in scaler.feature_mean]
            scaler.feature_std = [float(v) for v in scaler.feature_std]
        except (TypeError, ValueError):
            raise UserError(f"{source}: damaged scaler file (expected the fields {[f.name for f in dataclasses.fields(cls)]})") from None
        if scaler.transform not in TRANSFORMS or len(scaler.feature_mean) != len(scaler.feature_std):
            raise UserError(f"{source}: damaged scaler file")
        return scaler


class ForecastingModelDir(ModelDir):
    """A trained forecasting model directory.

    Example:

    ```python
    directory = ForecastingModelDir.open("saved_models/forecasting")
    model = directory.keras_model()       # damage -> one line
    directory.check_trained()             # series section, resolved horizon/lookback/seasons, scaler.json
    directory.model.horizon, directory.seasons, directory.scaler.transform
    ```
    """

    TASK = "forecasting"
    SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

    data: DataConfig
    model: ModelConfig
    train: TrainConfig

    def check_trained(self) -> "ForecastingModelDir":
        """Everything train writes beside the base files (called once ``model.keras`` loaded)."""
        if not isinstance(self.extra.get("series"), dict):
            raise UserError(f"{self.config_file}: missing the 'series' section written by train")
        model = self.model
        if model.horizon is None or model.lookback is None or not model.seasons:
            raise UserError(f"{self.config_file}: model: horizon, lookback and seasons must be set (written by train)")
        self.scaler  # noqa: B018 - reads and checks scaler.json
        return self

    @property
    def scaler(self) -> Scaler:
        if getattr(self, "_scaler", None) is None:
            if not (self.path / SCALER_FILE).is_file():
                raise UserError(f"{self.path}: not a forecasting model directory (missing {SCALER_FILE})")
            self._scaler = Scaler.from_dict(self.read_json(SCALER_FILE), str(self.path / SCALER_FILE))
        return self._scaler

    @scaler.setter
    def scaler(self, value: Scaler) -> None:
        self._scaler = value

    @classmethod
    def create(cls, work: Path, data: DataConfig, model: ModelConfig, train: TrainConfig, series: dict,
               scaler: Scaler) -> "ForecastingModelDir":
        """Write ``config.json`` and ``scaler.json`` into ``work`` (the ``.partial`` directory)."""
        directory = cls(work, {"data": data, "model": model, "train": train}, {"series": series})
        directory.save_config(work)
        write_json_atomic(Path(work) / SCALER_FILE, scaler.as_dict())
        directory.scaler = scaler
        return directory

    @property
    def is_panel(self) -> bool:
        """Trained with ``--id-col`` (one model over several series, a scaler per series)."""
        return self.data.id_col is not None

    @property
    def series_scalers(self) -> dict[str, Scaler]:
        """``--id-col`` models: the scaler of every series, by id."""
        if getattr(self, "_series_scalers", None) is None:
            path = self.path / SERIES_SCALERS_FILE
            if not path.is_file():
                raise UserError(f"{self.path}: an --id-col model directory needs {SERIES_SCALERS_FILE} (written by train)")
            values = self.read_json(SERIES_SCALERS_FILE)
            if not isinstance(values, dict) or not values:
                raise UserError(f"{path}: damaged scaler file (expected {{series id: scaler}})")
            self._series_scalers = {str(k): Scaler.from_dict(v, f"{path} [{k}]") for k, v in values.items()}
        return self._series_scalers

    @property
    def series(self) -> dict:
        return self.extra["series"]

    @property
    def seasons(self) -> tuple[int, ...]:
        return tuple(self.model.seasons)

    @property
    def baseline_cache_dir(self) -> Path:
        return self.path / BASELINE_CACHE_DIR
