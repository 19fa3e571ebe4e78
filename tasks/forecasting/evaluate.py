"""``evaluate`` (rolling origin over the test part, beside the baselines) and ``predict``.

Rolling origin: every test row ``t`` whose next H rows are all in the test part is a forecast
origin (``--stride`` keeps every n-th, ``--limit`` the first N); ``examples`` in the JSON is
their number. The model sees the L rows before ``t`` (earlier test rows included: they are
history by then, never training data) and forecasts rows ``t..t+H-1``; the baselines
(:mod:`tasks.forecasting.metrics`) forecast the same rows from the same origins. Metrics
average over origins and steps; MASE divides by the in-sample seasonal naive MAE (longest
season) of the rows before the test part.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from tasks.common.artifacts import ensure_writable_dir, evaluation_result
from tasks.common.config import EvaluateConfig, PredictConfig
from tasks.common.errors import UserError
from tasks.common.io import write_bytes_atomic, write_json_atomic

from tasks.forecasting import data as series_data
from tasks.forecasting import metrics
from tasks.forecasting.artifacts import ForecastingModelDir
from tasks.forecasting.config import EvaluateOptions, PredictOptions
from tasks.forecasting.model import point_forecast, sorted_quantiles

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- shared
def data_config(directory: ForecastingModelDir, data: str | None):
    """The training data settings, with ``--data`` (same columns, another file) if given."""
    if data is None or data == directory.data.data:
        return directory.data
    time_col = None if data.startswith("statsmodels:") else directory.data.time_col
    return dataclasses.replace(directory.data, data=data, time_col=time_col, start=None, end=None, max_rows=None)


def load_for_model(directory: ForecastingModelDir, data: str | None) -> series_data.Series:
    """The series of ``data`` (None: the model's training data) checked against the model's inputs.

    Fixing the training data (missing timestamps, unsorted rows) was a warning at ``train``; reading
    the same data again for ``evaluate``/``export``/``predict`` says it at INFO only.
    """
    notes: list[str] | None = [] if data in (None, directory.data.data) else None
    series = series_data.load_series(data_config(directory, data), notes_out=notes)
    for note in notes or []:
        log.info("%s (as at training)", note)
    if len(series.features) != directory.scaler.num_covariates:
        raise UserError(
            f"{series.source}: the model was trained with covariates {list(directory.data.features)}, "
            f"this data gives {series.features}"
        )
    if directory.model.row_calendar and not series.has_dates:
        raise UserError(f"{series.source}: the model uses calendar inputs; this data has no date/time column")
    return series


def model_rows(directory: ForecastingModelDir, series) -> np.ndarray:
    return series_data.model_rows(series, directory.scaler, directory.model, directory.data.country)


def forecaster(directory: ForecastingModelDir, runtime: str):
    """``f(inputs) -> raw model outputs [N, H(, Q)]`` for the chosen runtime (inputs: a list of arrays)."""
    if runtime == "keras":
        model = directory.keras_model()
        return lambda inputs: np.asarray(model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=256,
                                                       verbose=0))
    path = directory.export_file(runtime)
    if runtime == "tflm":
        from lstm_core.tflm import TFLMModel

        runner = TFLMModel(path)
    else:
        from lstm_core.export import TFLiteModel

        runner = TFLiteModel(path)
    details = runner.input_details  # LiteRT: by signature name; TFLM: in signature order
    first = details[runner.input_names[0]] if isinstance(details, dict) else details[0]
    shape = tuple(int(d) for d in first["shape"][1:])
    expected = (directory.model.lookback, directory.model.num_features)
    if shape != expected:
        raise UserError(
            f"{path} takes windows {shape}, the model config says {expected}: "
            f"re-run `lstm-suite forecasting export --model {directory.path}`"
        )

    def run(inputs):
        outputs = [runner(*(part[i : i + 1].astype(np.float32) for part in inputs))[0] for i in range(len(inputs[0]))]
        return np.concatenate(outputs)

    return run


# ----------------------------------------------------------------------------- evaluate
def evaluate(config: EvaluateConfig, options: EvaluateOptions | None = None) -> dict:
    """Score the model (in ``config.runtime``) and the baselines on the test origins.

    Args:
        config: model directory, data (none: the training data), runtime, output folder, limit.
        options: origin stride and which statsforecast baselines to run.

    Example:

    ```python
    result = evaluate(EvaluateConfig(model="saved_models/co2"))
    result["mase"], result["mstl_mase"]
    ```
    """
    options = options or EvaluateOptions()
    started = time.time()
    directory = ForecastingModelDir.open(config.model)
    run = forecaster(directory, config.runtime)  # model files checked before the data is read
    directory.check_trained()
    if directory.is_panel:
        return _evaluate_panel(directory, run, config, options, started)
    series = load_for_model(directory, config.data)
    scored = _score_series(directory, series, directory.scaler, run, config, options)
    result = scored.result
    _warn_if_losing(result)
    out_dir = directory.evaluation_dir(config.out)
    plot = None
    if out_dir is not None:
        plot = out_dir / f"forecast_{config.runtime}.png"
        write_bytes_atomic(plot, _plot(series, scored))
    result["seconds"] = round(time.time() - started, 1)
    full = evaluation_result(task="forecasting", model=directory.path, runtime=config.runtime, data=series.source,
                             examples=len(scored.origins), plot=plot, **result)
    if out_dir is not None:
        write_json_atomic(out_dir / f"metrics_{config.runtime}.json", full)
    best = result["best_baseline"]
    log.info(
        "MASE %.3f | best baseline %s %.3f | seasonal naive %.3f over %d origins%s",
        result["mase"], best, result[f"{best}_mase"], result.get("seasonal_naive_mase", float("nan")),
        len(scored.origins), f" (plot {plot})" if plot else "",
    )
    return full


@dataclasses.dataclass
class Scored:
    """One series scored on its test origins: the metrics and what the plot draws."""

    result: dict
    split: series_data.Split
    origins: np.ndarray
    forecasts: dict  # name ("model" or a baseline) -> [N, H] in series units
    actual: np.ndarray
    quantile_forecast: np.ndarray | None


def _score_series(directory: ForecastingModelDir, series, scaler, run, config: EvaluateConfig,
                  options: EvaluateOptions) -> Scored:
    """Model and baselines on the rolling test origins of one series (scaled by ``scaler``)."""
    model = directory.model
    horizon, seasons = model.horizon, directory.seasons
    split = series_data.Split.for_data(len(series), directory.data)
    reach = series_data.history(model)
    if split.count("test", reach, horizon) < 1:
        raise UserError(
            f"{series.source}: column {series.target!r}: the test part (last {directory.data.test_fraction:.0%}, "
            f"{split.n - split.val_end} rows) has no forecast origin for horizon {horizon} after a history of {reach}"
        )
    first, last = split.origins("test", reach, horizon)
    origins = np.arange(first, last + 1)[:: options.stride]
    if config.limit is not None:
        origins = origins[: config.limit]
    rows = series_data.model_rows(series, scaler, model, directory.data.country)
    inputs, _ = series_data.window_arrays(rows, origins, model)
    inputs = series_data.as_list(inputs)
    outputs = run(inputs)
    level = scaler.level(series.y)
    forecast = scaler.forecast(point_forecast(outputs, model), level[origins - 1])
    y = series.y
    actual = y[origins[:, None] + np.arange(horizon)[None, :]]
    season = max(seasons)
    scale = metrics.mase_scale(y[: split.val_end], season)
    if not np.isfinite(scale):
        raise UserError(f"{series.source}: column {series.target!r} is constant before the test part; MASE is undefined")

    result = dict(metrics.point_metrics(forecast, actual, scale))
    forecasts, descriptions = _baseline_forecasts(directory, y, split, origins, scaler.transform, options)
    forecasts = {"model": forecast, **forecasts}
    baselines = [name for name in forecasts if name != "model"]
    for name in baselines:
        for key, value in metrics.point_metrics(forecasts[name], actual, scale).items():
            result[f"{name}_{key}"] = value
    best = min(baselines, key=lambda name: result[f"{name}_mase"])
    quantiles = sorted_quantiles(outputs, model)
    quantile_forecast = None
    if quantiles is not None:
        quantile_forecast = scaler.forecast(quantiles, level[origins - 1])
        result.update(metrics.quantile_metrics(quantile_forecast, actual, model.quantiles, scale))
        result["quantiles"] = list(model.quantiles)
    result.update(
        {
            "best_baseline": best,
            "mase_vs_best_baseline": result["mase"] / result[f"{best}_mase"],
            "baseline_models": {**{n: d for n, d in descriptions.items()},
                                "seasonal_naive": f"value one season ({season}) earlier", "last_value": "y[t-1]"},
            "mase_by_step": metrics.mase_by_step(forecast, actual, scale),
            "mase_scale": scale,
            **_facts(model, seasons, options, split, series),
        }
    )
    return Scored(result, split, origins, forecasts, actual, quantile_forecast)


def _facts(model, seasons, options: EvaluateOptions, split, series) -> dict:
    """What the JSON says about the model's window and the test part beside the metrics."""
    return {
        "seasons": list(seasons),
        "horizon": model.horizon,
        "lookback": model.lookback,
        "future_inputs": list(model.future_features),
        "stride": options.stride,
        "test_rows": split.n - split.val_end,
        "test_start": series_data.format_time(series.index[split.val_end], series.freq),
        "target": series.target,
    }


def _baseline_forecasts(directory: ForecastingModelDir, y, split, origins, transform: str,
                        options: EvaluateOptions) -> tuple[dict, dict]:
    """``({name: [N, H]}, {name: fitted form})``: the naive and the requested statsforecast baselines."""
    horizon, seasons = directory.model.horizon, directory.seasons
    forecasts = {"last_value": metrics.last_value(y, origins, horizon)}
    if "seasonal_naive" in options.baselines:
        forecasts["seasonal_naive"] = metrics.seasonal_naive(y, origins, horizon, max(seasons))
    extra, descriptions = metrics.statsforecast_baselines(
        y, split.val_end, origins, horizon, seasons, transform, options.baselines, _cache_dir(directory)
    )
    forecasts.update(extra)
    return forecasts, descriptions


# Per-series keys that the panel JSON repeats under ``per_series`` (the shared ones stay on top).
_SHARED_KEYS = ("seasons", "horizon", "lookback", "future_inputs", "stride", "target", "baseline_models")


def load_panel_for_model(directory: ForecastingModelDir, data: str | None) -> dict:
    """``{id: Series}`` of the model's ``--id-col`` file (or ``data``, same columns), only ids it was trained on."""
    panel = series_data.load_panel(data_config(directory, data))
    scalers = directory.series_scalers
    unknown = [name for name in panel if name not in scalers]
    if unknown:
        raise UserError(f"{directory.data.data if data is None else data}: series {unknown[:5]} in column "
                        f"{directory.data.id_col!r} were not in training (known: {', '.join(list(scalers)[:10])})")
    for series in panel.values():
        if len(series.features) != directory.scaler.num_covariates:
            raise UserError(f"{series.source}: the model was trained with covariates {list(directory.data.features)}, "
                            f"this data gives {series.features}")
    return panel


def _evaluate_panel(directory: ForecastingModelDir, run, config: EvaluateConfig, options: EvaluateOptions,
                    started: float) -> dict:
    """``--id-col`` models: every series scored on its own test part; MASE averaged over series,
    MAE/RMSE/sMAPE pooled over every forecast of every series, per series under ``per_series``."""
    panel = load_panel_for_model(directory, config.data)
    scalers = directory.series_scalers
    per_series, scored_all = {}, {}
    for name, series in panel.items():
        scored = _score_series(directory, series, scalers[name], run, config, options)
        scored_all[name] = scored
        per_series[name] = {k: v for k, v in scored.result.items() if k not in _SHARED_KEYS}
        per_series[name]["examples"] = len(scored.origins)
    forecasters = [name for name in next(iter(scored_all.values())).forecasts
                   if all(name in s.forecasts for s in scored_all.values())]
    result = {}
    for name in forecasters:
        prefix = "" if name == "model" else f"{name}_"
        actual = np.concatenate([s.actual for s in scored_all.values()])
        forecast = np.concatenate([s.forecasts[name] for s in scored_all.values()])
        pooled = metrics.point_metrics(forecast, actual, 1.0)
        for key in ("mae", "rmse", "smape"):
            result[f"{prefix}{key}"] = pooled[key]
        result[f"{prefix}mase"] = float(np.mean([s.result[f"{prefix}mase"] for s in scored_all.values()]))
    baselines = [name for name in forecasters if name != "model"]
    best = min(baselines, key=lambda name: result[f"{name}_mase"])
    first = next(iter(scored_all.values())).result
    result.update({
        "best_baseline": best,
        "mase_vs_best_baseline": result["mase"] / result[f"{best}_mase"],
        "aggregate": "mase: mean over series of each series' MASE; mae/rmse/smape: pooled over every forecast",
        "series": len(panel),
        "id_col": directory.data.id_col,
        "series_beaten_by_best_baseline": sorted(n for n, r in per_series.items() if r["mase"] > r[f"{best}_mase"]),
        **{k: first[k] for k in _SHARED_KEYS if k in first},
        "per_series": per_series,
    })
    _warn_if_losing(result)
    out_dir = directory.evaluation_dir(config.out)
    plot = None
    if out_dir is not None:
        shown = next(iter(panel))
        plot = out_dir / f"forecast_{config.runtime}.png"
        write_bytes_atomic(plot, _plot(panel[shown], scored_all[shown]))
        result["plot_series"] = shown
    result["seconds"] = round(time.time() - started, 1)
    examples = sum(len(s.origins) for s in scored_all.values())
    full = evaluation_result(task="forecasting", model=directory.path, runtime=config.runtime,
                             data=directory.data.data if config.data is None else config.data, examples=examples,
                             plot=plot, **result)
    if out_dir is not None:
        write_json_atomic(out_dir / f"metrics_{config.runtime}.json", full)
    log.info("%d series: mean MASE %.3f | best baseline %s %.3f | seasonal naive %.3f over %d origins%s",
             len(panel), result["mase"], best, result[f"{best}_mase"], result.get("seasonal_naive_mase", float("nan")),
             examples, f" (plot {plot}, series {result['plot_series']})" if plot else "")
    return full


def _warn_if_losing(result: dict) -> None:
    """``warning`` in the JSON (and one log line) when a baseline beat the model on the test origins."""
    from tasks.forecasting.validation import losing_warning

    names = [key[: -len("_mase")] for key in result if key.endswith("_mase") and key not in
             ("mase", "mean_mase") and not key.startswith(("val_",))]
    result["warning"] = losing_warning("test", result["mase"], {name: result[f"{name}_mase"] for name in names})
    if result["warning"]:
        log.warning(result["warning"])


def _cache_dir(directory: ForecastingModelDir) -> Path | None:
    try:
        return ensure_writable_dir(directory.baseline_cache_dir, flag=None)
    except UserError:
        return None


def _plot(series, scored: Scored) -> bytes:
    """Forecasts of the model and the best baseline over the actual series; MASE by step below."""
    from tasks.common.plots import _pyplot, figure_png

    split, origins, forecasts, actual = scored.split, scored.origins, scored.forecasts, scored.actual
    quantile_forecast, result = scored.quantile_forecast, scored.result
    best = result["best_baseline"]
    plt = _pyplot()
    horizon = result["horizon"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), dpi=100, gridspec_kw={"height_ratios": [2.2, 1]})
    idx = series.index
    context = max(0, split.val_end - max(2 * horizon, result["lookback"]))
    shown_end = min(len(idx), int(origins[-1]) + horizon) if len(origins) else len(idx)
    if shown_end - context > 6000:  # long hourly tests: show the first weeks of the test part
        shown_end = context + 6000
    ax.plot(idx[context:shown_end], series.y[context:shown_end], color="black", lw=1.0, label="actual")
    ax.axvline(idx[split.val_end], color="grey", ls=":", lw=1, label="test start")
    every = max(1, horizon)
    for n, i in enumerate(range(0, len(origins), every)):
        t = int(origins[i])
        if t + horizon > shown_end:
            break
        steps = idx[t : t + horizon]
        if quantile_forecast is not None:
            ax.fill_between(steps, quantile_forecast[i, :, 0], quantile_forecast[i, :, -1], color="tab:blue",
                            alpha=0.15, lw=0, label="LSTM quantile interval" if n == 0 else None)
        ax.plot(steps, forecasts["model"][i], color="tab:blue", lw=1.3, label="LSTM forecast" if n == 0 else None)
        ax.plot(steps, forecasts[best][i], color="tab:orange", lw=1, ls="--",
                label=f"best baseline: {best}" if n == 0 else None)
    ax.set_title(
        f"{series.source} {series.target}: H={horizon} forecasts from every {every}th origin "
        f"(MASE {result['mase']:.3f}, {best} {result[f'{best}_mase']:.3f})",
        fontsize=9,
    )
    ax.set_xlabel(series.time_col or "time")
    ax.set_ylabel(series.target)
    ax.legend(fontsize=8, loc="upper left")
    steps = np.arange(1, horizon + 1)
    scale = result["mase_scale"]
    for name, values in forecasts.items():
        ax2.plot(steps, metrics.mase_by_step(values, actual, scale), "-o" if name == "model" else "--", ms=3,
                 label="LSTM" if name == "model" else name)
    ax2.set_xlabel("forecast step h")
    ax2.set_ylabel("MASE")
    ax2.legend(fontsize=7, ncol=3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


# ----------------------------------------------------------------------------- predict
def predict(config: PredictConfig, options: PredictOptions | None = None) -> list[dict]:
    """The next H timestamps after the end of the data and their forecasts (``[{time, target, q...}]``)."""
    options = options or PredictOptions()
    directory = ForecastingModelDir.open(config.model)
    run = forecaster(directory, config.runtime)
    directory.check_trained()
    if not directory.is_panel:
        if options.id is not None:
            raise UserError(f"--id {options.id}: {directory.path} was trained on one series (no --id-col)")
        return _predict_series(directory, load_for_model(directory, options.data), directory.scaler, run)
    panel = load_panel_for_model(directory, options.data)
    if options.id is not None:
        if options.id not in panel:
            raise UserError(f"--id {options.id}: no such series in column {directory.data.id_col!r} "
                            f"(series: {', '.join(list(panel)[:10])})")
        panel = {options.id: panel[options.id]}
    scalers = directory.series_scalers
    result = []
    for name, series in panel.items():
        result.extend({directory.data.id_col: name, **row} for row in _predict_series(directory, series,
                                                                                       scalers[name], run))
    return result


def _predict_series(directory: ForecastingModelDir, series, scaler, run) -> list[dict]:
    model = directory.model
    n, horizon = len(series), model.horizon
    reach = series_data.history(model)
    if n < reach + 1:
        raise UserError(f"{series.source}: column {series.target!r} has {n} rows; the model needs the last {reach + 1}")
    times = series.future_index(horizon)
    extended = series_data.extend_for_prediction(series, times)
    rows = series_data.model_rows(extended, scaler, model, directory.data.country)
    inputs, _ = series_data.window_arrays(rows, np.array([n]), model)
    outputs = run(series_data.as_list(inputs))
    level = scaler.level(series.y)
    forecast = scaler.forecast(point_forecast(outputs, model), level[n - 1 : n])[0]
    quantiles = sorted_quantiles(outputs, model)
    quantile_forecast = scaler.forecast(quantiles, level[n - 1 : n])[0] if quantiles is not None else None
    result = []
    for i, t in enumerate(times):
        row = {series.time_col or "time": series_data.format_time(t, series.freq), series.target: float(forecast[i])}
        if quantile_forecast is not None:
            row.update({f"{series.target}_q{q:g}": float(v) for q, v in zip(model.quantiles, quantile_forecast[i])})
        result.append(row)
    return result


def predictions_csv(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(row[k] if isinstance(row[k], str) else f"{row[k]:.6g}" for k in header))
    return "\n".join(lines) + "\n"
