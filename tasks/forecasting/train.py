"""``lstm-suite forecasting train``: series -> windows -> LSTM forecaster in a model directory."""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings

import numpy as np

from lstm_core.errors import UserError
from lstm_core.io import write_json_atomic
from lstm_core.training import TrainConfig, fit, model_directory, set_seed

from tasks.forecasting import baselines as B
from tasks.forecasting import data as D
from tasks.forecasting import metrics as MET
from tasks.forecasting.artifacts import save_config
from tasks.forecasting.model import ModelConfig, build_models, compile_model, default_ensemble, point_forecast

log = logging.getLogger(__name__)

DEFAULT_TRAIN = TrainConfig(epochs=100, learning_rate=1e-3, patience=10)
DEFAULT_BATCH_SIZE = 32


@dataclasses.dataclass
class Prepared:
    """A loaded series with everything derived from its training part."""

    series: D.Series
    data: D.DataConfig
    model: ModelConfig
    split: D.Split
    season: int
    season_source: str
    scaler: D.Scaler

    def series_info(self) -> dict:
        s, sp = self.series, self.split
        return {
            "source": s.source,
            "target": s.target,
            "features": s.features,
            "rows": len(s),
            "start": D.format_time(s.index[0], s.freq),
            "end": D.format_time(s.index[-1], s.freq),
            "freq": s.freq,
            "step": s.step,
            "time_col": s.time_col,
            "season": self.season,
            "season_source": self.season_source,
            "train_rows": sp.train_end,
            "val_rows": sp.val_end - sp.train_end,
            "test_rows": sp.n - sp.val_end,
            "train_end": D.format_time(s.index[sp.train_end - 1], s.freq),
            "test_start": D.format_time(s.index[sp.val_end], s.freq) if sp.val_end < sp.n else None,
        }


def prepare(dcfg: D.DataConfig, mcfg: ModelConfig, season: int | None = None) -> Prepared:
    """Load and clean the series, resolve the defaults (transform, season, horizon, lookback),
    check the length, fit the scaler on the training rows."""
    series = D.load_series(dcfg)
    dcfg = dataclasses.replace(
        dcfg,
        target=series.target,
        features=list(series.features),
        time_col=dcfg.time_col,
        transform=dcfg.transform or series.default_transform,
    )
    split = D.Split.of(len(series), dcfg.test_fraction, dcfg.val_fraction)
    if split.train_end < 4:
        raise UserError(f"{series.source}: column {series.target!r} has only {len(series)} rows; too short to split")
    if season is not None:
        if season < 1:
            raise UserError(f"--season must be >= 1, got {season}")
        season_source = "flag"
    else:
        season, season_source = D.detect_season(series.y[: split.train_end], series.freq)
    horizon = mcfg.horizon or D.default_horizon(series.freq)
    lookback = mcfg.lookback or D.default_lookback(season, horizon, split.train_end)
    if horizon < 1 or lookback < 1:
        raise UserError(f"--horizon and --lookback must be >= 1 (got {horizon}, {lookback})")
    D.check_length(series, split, lookback, horizon, dcfg.val_fraction)
    scaler = D.Scaler.fit(series, split.train_end, dcfg.transform)
    ensemble = mcfg.ensemble or default_ensemble(split.count("train", lookback, horizon))
    mcfg = dataclasses.replace(
        mcfg, lookback=lookback, horizon=horizon, num_features=scaler.num_features, ensemble=ensemble
    )
    log.info(
        "%s: %d rows (%s), target %r%s, season %d (%s), horizon %d, lookback %d, transform %s, "
        "ensemble %d; train %d / val %d / test %d rows",
        series.source, len(series), series.freq or f"step {series.step:g}", series.target,
        f" + features {series.features}" if series.features else "", season, season_source, horizon,
        lookback, dcfg.transform, ensemble, split.train_end, split.val_end - split.train_end, split.n - split.val_end,
    )
    return Prepared(series, dcfg, mcfg, split, season, season_source, scaler)


def train(args, dcfg: D.DataConfig, mcfg: ModelConfig, tcfg: TrainConfig, *, season=None, batch_size=DEFAULT_BATCH_SIZE) -> dict:
    started = time.time()
    p = prepare(dcfg, mcfg, season)
    mcfg, split = p.model, p.split
    L, H = mcfg.lookback, mcfg.horizon
    feats = p.scaler.features(p.series.values)
    level = p.scaler.level(p.series.y)
    tr = split.origins("train", L, H)
    va = split.origins("val", L, H)
    has_val = split.count("val", L, H) > 0
    set_seed(tcfg.seed)
    train_ds = D.window_dataset(feats, level, *tr, L, H, batch_size=batch_size, shuffle=True, seed=tcfg.seed)
    val_ds = D.window_dataset(feats, level, *va, L, H, batch_size=256) if has_val else None
    if not has_val:
        tcfg = dataclasses.replace(tcfg, monitor="loss")
    log.info("windows: %d train, %d val", split.count("train", L, H), split.count("val", L, H))

    with model_directory(args.out) as work:
        train_info = {**dataclasses.asdict(tcfg), "batch_size": batch_size}
        write_json_atomic(work / "config.json", save_config(work, p.data, mcfg, p.series_info(), train_info))
        write_json_atomic(work / "scaler.json", p.scaler.as_dict())
        model, training_model = build_models(mcfg)
        compile_model(training_model, mcfg, tcfg.learning_rate, ensemble_outputs=training_model is not model)
        hparams = {**{f"model.{k}": v for k, v in dataclasses.asdict(mcfg).items()},
                   "data.source": p.series.source, "data.transform": p.data.transform, "season": p.season}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")  # tf.data is shuffled
            history = fit(training_model, train_ds, val_ds, workdir=work, config=tcfg, hparams=hparams)
        model.save(work / "model.keras")
        summary = {
            "model_dir": str(args.out),
            "epochs_run": len(history.history.get("loss", [])),
            "best_val_loss": float(min(history.history["val_loss"])) if has_val else None,
            "season": p.season,
            "season_source": p.season_source,
            "horizon": H,
            "lookback": L,
            "transform": p.data.transform,
            "ensemble": mcfg.ensemble,
            "train_windows": split.count("train", L, H),
            "val_windows": split.count("val", L, H),
            "parameters": int(model.count_params()),
        }
        if has_val:
            summary.update(_val_mase(model, p, feats, level))
        summary["seconds"] = round(time.time() - started, 1)
        write_json_atomic(work / "train_summary.json", summary)
    log.info("trained in %.0fs; evaluate with: lstm-suite forecasting evaluate --model %s", summary["seconds"], args.out)
    return summary


def _val_mase(model, p: Prepared, feats, level) -> dict:
    """MASE of the model and of the seasonal naive forecast on the validation windows."""
    L, H = p.model.lookback, p.model.horizon
    first, last = p.split.origins("val", L, H)
    x, _ = D.window_arrays(feats, level, first, last, L, H)
    origins = np.arange(first, last + 1)
    out = point_forecast(model.predict(x, batch_size=256, verbose=0), p.model)
    forecast = p.scaler.forecast(out, level[origins - 1])
    y = p.series.y
    actual = y[origins[:, None] + np.arange(H)[None, :]]
    scale = MET.mase_scale(y[: p.split.train_end], p.season)
    snaive = B.seasonal_naive(y, origins, H, p.season)
    val = {
        "val_mase": MET.point_metrics(forecast, actual, scale)["mase"],
        "val_seasonal_naive_mase": MET.point_metrics(snaive, actual, scale)["mase"],
    }
    log.info("validation MASE %.3f (seasonal naive %.3f)", val["val_mase"], val["val_seasonal_naive_mase"])
    return val
