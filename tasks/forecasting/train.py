"""``lstm-suite forecasting train``: series -> windows -> LSTM forecaster in a model directory."""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np

from tasks.common.config import OutputConfig, TrainConfig
from tasks.common.errors import UserError
from tasks.common.io import write_json_atomic
from tasks.common.progress import step
from tasks.common.training import (
    distribution_scope,
    epoch_summary,
    fit,
    interruption_point,
    join_for_training,
    model_directory,
    run_times,
    set_seed,
)

from tasks.forecasting import data as series_data
from tasks.forecasting.artifacts import SERIES_SCALERS_FILE, ForecastingModelDir, Scaler
from tasks.forecasting.config import DataConfig, ModelConfig
from tasks.forecasting.model import (
    build_models,
    compile_model,
    default_ensemble,
    with_median,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Prepared:
    """A loaded series with every default resolved from its training part."""

    series: series_data.Series
    data: DataConfig
    model: ModelConfig
    split: series_data.Split
    season_source: str
    scaler: Scaler

    def series_info(self) -> dict:
        s, sp = self.series, self.split
        return {
            "source": s.source,
            "target": s.target,
            "features": s.features,
            "rows": len(s),
            "start": series_data.format_time(s.index[0], s.freq),
            "end": series_data.format_time(s.index[-1], s.freq),
            "freq": s.freq,
            "step": s.step,
            "time_col": s.time_col,
            "seasons": list(self.model.seasons),
            "season_source": self.season_source,
            "train_rows": sp.train_end,
            "val_rows": sp.val_end - sp.train_end,
            "test_rows": sp.n - sp.val_end,
            "train_end": series_data.format_time(s.index[sp.train_end - 1], s.freq),
            "test_start": series_data.format_time(s.index[sp.val_end], s.freq) if sp.val_end < sp.n else None,
        }


def _wants_calendar(switch: str, series: series_data.Series) -> bool:
    """``auto``: calendar and seasonal-lag inputs for daily and finer data (several calendar seasons)."""
    if switch != "auto":
        return switch == "on"
    return len(series_data.calendar_seasons(series.freq)) >= 2


SHORT_SERIES_ROWS = 200
SHORT_SERIES_SEASONS = 16


def _wants_hybrid(data: DataConfig, seasons, split) -> bool:
    """``--hybrid auto``: on for ``--id-col`` panels and for short series — a training part under
    max(200 rows, 16 seasons) — where a model of differences sees each seasonal phase too few
    times; off for long single series (co2, sunspots: measured better without it)."""
    return data.id_col is not None or split.train_end < max(SHORT_SERIES_ROWS, SHORT_SERIES_SEASONS * max(seasons))


def _window(model: ModelConfig, seasons, horizon: int, train_rows: int, hybrid: str) -> tuple[int, int | None]:
    """``(lookback, encoder_steps)``: with the hybrid, the statistics see twice the rows the LSTM reads."""
    lookback = model.lookback or series_data.default_lookback(seasons, horizon, train_rows, hybrid == "on")
    if hybrid != "on":
        return lookback, None
    return model.lookback or min(2 * lookback, 512), min(model.encoder_steps or lookback, lookback)


def _warn_if_constant(series, train_rows: int) -> None:
    if np.std(series.y[:train_rows]) == 0:
        log.warning(
            "%s: column %r is constant over the %d training rows: the model can only learn that constant "
            "and MASE (scale: the in-sample seasonal naive error, 0 here) is undefined (NaN)",
            series.source, series.target, train_rows,
        )


def prepare(data: DataConfig, model: ModelConfig, series: series_data.Series | None = None) -> Prepared:
    """Load and clean the series, resolve the defaults (transform, seasons, horizon, lookback,
    calendar and lag inputs), check the length, fit the scaler on the training rows.

    ``series``: already loaded (one series of an ``--id-col`` file)."""
    series = series if series is not None else series_data.load_series(data)
    data = dataclasses.replace(
        data, target=series.target, features=tuple(series.features),
        transform=data.transform or series.default_transform,
    )
    split = series_data.Split.for_data(len(series), data)
    if split.train_end < 4:
        raise UserError(f"{series.source}: column {series.target!r} has only {len(series)} rows; too short to split")
    if model.seasons:
        seasons, season_source = tuple(sorted(set(model.seasons))), "flag"
    else:
        seasons, season_source = series_data.detect_seasons(series.y[: split.train_end], series.freq)
    horizon = model.horizon or series_data.default_horizon(series.freq)
    if data.val_rows is None and data.val_fraction > 0 and split.val_end - split.train_end < horizon:
        data = dataclasses.replace(data, val_rows=horizon)  # short series: one validation window at least
        split = series_data.Split.for_data(len(series), data)
    calendar = _wants_calendar(model.calendar, series)
    if calendar and not series.has_dates:
        if model.calendar == "on":
            raise UserError(f"--calendar on: {series.source} has no date/time column (pass --time-col)")
        calendar = False
    if data.country and not calendar:
        raise UserError("--country: holiday inputs need the calendar inputs (daily or finer data, --calendar on)")
    hybrid = "on" if model.hybrid == "on" or (model.hybrid == "auto" and _wants_hybrid(data, seasons, split)
                                                and not calendar) else "off"
    lookback, encoder_steps = _window(model, seasons, horizon, split.train_end, hybrid)
    covers_a_year = series.has_dates and (series.index[split.train_end - 1] - series.index[0]).days >= 365
    row_calendar = series_data.calendar_names(series.freq, data.country, yearly=covers_a_year) if calendar else ()
    lags = series_data.seasonal_lags(seasons, horizon, split.train_end) if calendar else ()
    future_features = (*row_calendar, *(f"lag_{lag}" for lag in lags))
    min_history = series_data.default_min_history(seasons, lookback) if hybrid == "on" and not lags else None
    model = dataclasses.replace(
        model, seasons=seasons, horizon=horizon, lookback=lookback, quantiles=with_median(model.quantiles),
        row_calendar=row_calendar, lags=lags, future_features=future_features,
        num_features=1 + len(series.features) + len(row_calendar), hybrid=hybrid, min_history=min_history,
        encoder_steps=encoder_steps,
    )
    series_data.check_length(series, split, series_data.history(model), horizon, data.val_fraction)
    scale = data.scale if data.scale != "auto" else "mase" if hybrid == "on" else "std"
    data = dataclasses.replace(data, scale=scale)
    scaler = series_data.fit_scaler(series, split.train_end, data.transform, scale, max(seasons))
    _warn_if_constant(series, split.train_end)
    ensemble = model.ensemble or default_ensemble(split.count("train", series_data.history(model), horizon))
    model = dataclasses.replace(model, ensemble=ensemble)
    log.info(
        "%s: %d rows (%s), target %r%s, seasons %s (%s), horizon %d, lookback %d, transform %s, ensemble %d%s; "
        "train %d / val %d / test %d rows",
        series.source, len(series), series.freq or f"step {series.step:g}", series.target,
        f" + features {series.features}" if series.features else "", list(seasons), season_source, horizon,
        lookback, data.transform, ensemble,
        f", future inputs {list(future_features)}" if future_features else "",
        split.train_end, split.val_end - split.train_end, split.n - split.val_end,
    )
    return Prepared(series, data, model, split, season_source, scaler)


@dataclasses.dataclass
class PreparedPanel:
    """The series of an ``--id-col`` file: one resolved model config, a split and a scaler per series."""

    reference: Prepared  # the longest series: its training part resolved the defaults
    members: dict[str, Prepared]

    @property
    def model(self) -> ModelConfig:
        return self.reference.model

    @property
    def data(self) -> DataConfig:
        return self.reference.data

    def series_info(self) -> dict:
        info = self.reference.series_info()
        info["source"] = self.data.data
        info["id_col"] = self.data.id_col
        info["reference_id"] = next(k for k, p in self.members.items() if p is self.reference)
        info["ids"] = {name: {k: p.series_info()[k] for k in ("rows", "start", "end", "train_rows", "val_rows",
                                                              "test_rows", "test_start")}
                       for name, p in self.members.items()}
        return info


def prepare_panel(data: DataConfig, model: ModelConfig) -> PreparedPanel:
    """Every series of an ``--id-col`` file with the defaults resolved once, on the longest series.

    Seasons, horizon, lookback and the calendar/lag inputs are shared (one model); the split
    (last ``--test-fraction`` of each series), the length check and the scaler are per series.
    """
    panel = series_data.load_panel(data)
    frequencies = {s.freq for s in panel.values()}
    if len(frequencies) > 1:
        raise UserError(f"{data.data}: --id-col {data.id_col}: the series have different frequencies "
                        f"{sorted(map(str, frequencies))}; one model needs one frequency")
    reference_id = max(panel, key=lambda name: len(panel[name]))
    reference = prepare(data, model, panel[reference_id])
    resolved = reference.model
    reach = series_data.history(resolved)
    members = {}
    for name, series in panel.items():
        if name == reference_id:
            members[name] = reference
            continue
        split = series_data.Split.for_data(len(series), data)
        series_data.check_length(series, split, reach, resolved.horizon, data.val_fraction, panel=True)
        scaler = series_data.fit_scaler(series, split.train_end, reference.data.transform, reference.data.scale,
                                        max(resolved.seasons))
        members[name] = Prepared(series, reference.data, resolved, split, reference.season_source, scaler)
    if model.ensemble is None:
        windows = sum(p.split.count("train", reach, resolved.horizon) for p in members.values())
        ensemble = default_ensemble(windows)
        for p in members.values():
            p.model = dataclasses.replace(resolved, ensemble=ensemble)
    log.info("%s: %d series in column %r (defaults resolved on the longest, %r), ensemble %d", data.data,
             len(members), data.id_col, reference_id, next(iter(members.values())).model.ensemble)
    test_only = [name for name, p in members.items()
                 if not p.split.count("train", reach, resolved.horizon) and not p.split.count("val", reach, resolved.horizon)]
    if test_only:
        log.info("%d series too short to give training or validation windows (e.g. %r): forecast and evaluated "
                 "by the model the others train", len(test_only), test_only[0])
    return PreparedPanel(reference, members)


def _panel_datasets(panel: PreparedPanel, batch_size: int, seed: int):
    """Training windows of every series shuffled together (so each series is drawn in proportion
    to its windows); validation windows of every series in order. The windows are cut into
    arrays once (short series, many of them: one ``tf.data`` pipeline per series would be slow)."""
    import tensorflow as tf

    model = panel.model
    reach = series_data.history(model)
    parts = {"train": [], "val": []}
    for p in panel.members.values():
        rows = series_data.model_rows(p.series, p.scaler, model, p.data.country)
        for part in parts:
            first, last = p.split.origins(part, reach, model.horizon)
            if last >= first:
                parts[part].append(series_data.window_arrays(rows, np.arange(first, last + 1), model))
    counts = {part: int(sum(len(y) for _, y in windows)) for part, windows in parts.items()}
    datasets = {}
    for part, windows in parts.items():
        if not windows:
            datasets[part] = None
            continue
        inputs = [np.concatenate([series_data.as_list(x)[i] for x, _ in windows]) for i in range(len(series_data.as_list(windows[0][0])))]
        features = tuple(inputs) if len(inputs) > 1 else inputs[0]
        ds = tf.data.Dataset.from_tensor_slices((features, np.concatenate([y for _, y in windows]).astype(np.float32)))
        if part == "train":
            ds = ds.shuffle(counts[part], seed=seed, reshuffle_each_iteration=True)
        datasets[part] = ds.batch(batch_size if part == "train" else 256).prefetch(tf.data.AUTOTUNE)
    return datasets["train"], datasets["val"], counts


def train(data: DataConfig, model: ModelConfig, train: TrainConfig, output: OutputConfig) -> dict:
    """Train a forecaster into ``output.out``; returns the train report.

    Args:
        data: the series and how it is cleaned, split and batched (``data.data`` is required).
        model: the forecaster; ``None`` fields are resolved from the data and saved resolved.
        train: epochs, learning rate, early stopping, seed ...
        output: the model directory and whether an existing one may be replaced / resumed.

    Example:

    ```python
    report = train(DataConfig(data="statsmodels:co2"), ModelConfig(), DEFAULT_TRAIN,
                   OutputConfig(out="saved_models/co2"))
    ```
    """
    if data.data is None:
        raise UserError("--data: required (a CSV file or statsmodels:NAME, see --help)")
    settings = {"data": data, "model": model, "train": train}
    output = join_for_training(train, output, settings)
    if data.id_col is not None:
        return _train_panel(data, model, train, output, settings)
    with model_directory(output.out, overwrite=output.overwrite, resume=output.resume, task="forecasting",
                         settings=settings) as work:
        keep_cached_baselines(output.out, work)
        p = prepare(data, model)
        model, split = p.model, p.split
        rows = series_data.model_rows(p.series, p.scaler, model, p.data.country)
        reach = series_data.history(model)
        train_origins = split.origins("train", reach, model.horizon)
        val_origins = split.origins("val", reach, model.horizon)
        has_val = split.count("val", reach, model.horizon) > 0
        set_seed(train.seed)
        train_ds = series_data.window_dataset(rows, *train_origins, model, batch_size=p.data.batch_size,
                                              shuffle=True, seed=train.seed)
        val_ds = series_data.window_dataset(rows, *val_origins, model, batch_size=256) if has_val else None
        if not has_val:
            train = dataclasses.replace(train, monitor="loss")
        log.info("windows: %d train, %d val", split.count("train", reach, model.horizon),
                 split.count("val", reach, model.horizon))
        ForecastingModelDir.create(work, p.data, model, train, p.series_info(), p.scaler)
        keras_model, training_model, report = _fit_and_save(
            work, model, train, output, train_ds, val_ds,
            {"data.source": p.series.source, "data.transform": p.data.transform},
        )
        report.update({
            "season_source": p.season_source,
            "transform": p.data.transform,
            "train_windows": split.count("train", reach, model.horizon),
            "val_windows": split.count("val", reach, model.horizon),
        })
        if has_val:
            report.update(_check_and_combine(keras_model, {p.series.source: p}, model, work))
            report.update(_refit(keras_model, training_model, train_ds, val_ds, p.data.refit_epochs, work, {0: p}))
        interruption_point("final_save")
        report.update(run_times())
        write_json_atomic(work / "train_report.json", report)
    log.info("trained in %.0fs; evaluate with: lstm-suite forecasting evaluate --model %s",
             report["wall_seconds"], output.out)
    return report


def _train_panel(data: DataConfig, model: ModelConfig, train: TrainConfig, output: OutputConfig,
                 settings: dict) -> dict:
    """``--id-col``: one model over the windows of every series, each series scaled by its own
    training rows (``series_scalers.json``; ``scaler.json`` holds the reference series')."""
    with model_directory(output.out, overwrite=output.overwrite, resume=output.resume, task="forecasting",
                         settings=settings) as work:
        keep_cached_baselines(output.out, work)
        panel = prepare_panel(data, model)
        model = panel.model
        set_seed(train.seed)
        train_ds, val_ds, counts = _panel_datasets(panel, panel.data.batch_size, train.seed)
        if val_ds is None:
            train = dataclasses.replace(train, monitor="loss")
        log.info("windows: %d train, %d val over %d series", counts["train"], counts["val"], len(panel.members))
        ForecastingModelDir.create(work, panel.data, model, train, panel.series_info(), panel.reference.scaler)
        write_json_atomic(work / SERIES_SCALERS_FILE, {name: p.scaler.as_dict() for name, p in panel.members.items()})
        keras_model, training_model, report = _fit_and_save(
            work, model, train, output, train_ds, val_ds,
            {"data.source": panel.data.data, "data.transform": panel.data.transform, "data.id_col": panel.data.id_col},
        )
        report.update({
            "series": len(panel.members),
            "id_col": panel.data.id_col,
            "season_source": panel.reference.season_source,
            "transform": panel.data.transform,
            "train_windows": counts["train"],
            "val_windows": counts["val"],
        })
        if val_ds is not None:
            report.update(_check_and_combine(keras_model, panel.members, model, work))
            report.update(_refit(keras_model, training_model, train_ds, val_ds, panel.data.refit_epochs, work,
                                  panel.members))
        interruption_point("final_save")
        report.update(run_times())
        write_json_atomic(work / "train_report.json", report)
    log.info("trained in %.0fs; evaluate with: lstm-suite forecasting evaluate --model %s",
             report["wall_seconds"], output.out)
    return report


def _fit_and_save(work, model: ModelConfig, train: TrainConfig, output: OutputConfig, train_ds, val_ds,
                  data_hparams: dict):
    """Build and compile the forecaster (inside ``--distribute``'s scope), fit it, save ``model.keras``.

    Returns the Keras model and the report entries every training shares (single series or panel).
    """
    with distribution_scope(train):
        keras_model, training_model = build_models(model)
        compile_model(training_model, model, train.learning_rate, ensemble_outputs=training_model is not keras_model)
    hparams = {**{f"model.{k}": v for k, v in dataclasses.asdict(model).items()}, **data_hparams}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")  # tf.data is shuffled
        history = fit(training_model, train_ds, val_ds, workdir=work, config=train, hparams=hparams)
    with step("saving the model"):
        keras_model.save(work / "model.keras")
    val_losses = history.history.get("val_loss") if val_ds is not None else None
    return keras_model, training_model, {
        "model_dir": str(output.out),
        **epoch_summary(work, train),
        "best_val_loss": float(min(val_losses)) if val_losses else None,
        "seasons": list(model.seasons),
        "horizon": model.horizon,
        "lookback": model.lookback,
        "future_inputs": list(model.future_features),
        "ensemble": model.ensemble,
        "parameters": int(keras_model.count_params()),
    }


def keep_cached_baselines(out, work) -> int:
    """``--overwrite``: carry the replaced model's fitted baselines (``baselines/*.npz``) into the new one.

    Each cached forecast is named by a hash of the series, split, origins and seasons it was fitted
    on, so one is only ever used again for exactly the same data; returns how many were kept.
    """
    import shutil
    from pathlib import Path

    from tasks.common.artifacts import model_directory_task
    from tasks.forecasting.artifacts import BASELINE_CACHE_DIR

    old, new = Path(out) / BASELINE_CACHE_DIR, Path(work) / BASELINE_CACHE_DIR
    if not old.is_dir() or old.is_symlink() or model_directory_task(Path(out)) != "forecasting":
        return 0
    kept = 0
    for cached in old.glob("*.npz"):
        if cached.is_file() and not cached.is_symlink() and not (new / cached.name).exists():
            new.mkdir(exist_ok=True)
            shutil.copy2(cached, new / cached.name)
            kept += 1
    if kept:
        log.info("kept %d cached baseline forecast(s) of %s (used again only for the same data)", kept, out)
    return kept


def _check_and_combine(keras_model, members: dict, model: ModelConfig, work) -> dict:
    """Validation scores of the model and the baselines, the ``--combine`` mix (model re-saved with it)."""
    from tasks.forecasting.artifacts import BASELINE_CACHE_DIR
    from tasks.forecasting.validation import check_and_combine

    with step("validation: the model against the statistical baselines"):
        report = check_and_combine(keras_model, members, model.combine, work / BASELINE_CACHE_DIR)
    if report.get("member", "lstm") != "lstm":
        keras_model.save(work / "model.keras")
    return report


PANEL_REFIT_EPOCHS = 3


def _refit(keras_model, training_model, train_ds, val_ds, epochs: int | None, work, members: dict) -> dict:
    """``--refit-epochs``: more epochs over the training and validation windows shuffled together,
    after early stopping and the validation check (their figures stay held-out ones)."""
    if epochs is None:
        epochs = PANEL_REFIT_EPOCHS if len(members) > 1 else 0
    if not epochs or val_ds is None:
        return {}
    both = train_ds.unbatch().concatenate(val_ds.unbatch()).shuffle(20000, seed=0)
    batch = next(iter(train_ds))[1].shape[0]
    with step(f"refit: {epochs} more epochs on the training + validation windows"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
        training_model.fit(both.batch(batch), epochs=epochs, verbose=0)
    keras_model.save(work / "model.keras")
    return {"refit_epochs": epochs}
