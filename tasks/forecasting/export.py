"""``lstm-suite forecasting export``: SavedModel, float/int8 TFLite, a streaming TFLite, TFLM checks.

Built in ``MODEL/export.partial/`` and renamed onto ``MODEL/export/`` when complete:

* ``saved_model/`` — ``serving_default(window [B, L, F](, future [B, H, G])) -> {output_0: [B, H(, Q)]}``
  (scaled space, as the .tflite files) and, for models without calendar inputs,
  ``forecast(history [B, L+1](, covariates [B, L+1, C])) -> {forecast [B, H](, quantiles)}``
  in the series' own units (transform, differencing and scaling in the graph);
* ``model_float.tflite`` / ``model_int8.tflite`` — ``window [1, L, F](, future [1, H, G]) ->
  [1, H(, Q)]``, the LSTM as the builtin ``UNIDIRECTIONAL_SEQUENCE_LSTM``; int8 is full-integer,
  calibrated on training windows;
* ``streaming_float.tflite`` — one row per call with explicit state:
  ``(x_t [1, F](, future [1, H, G]), h [1, K*U], c [1, K*U]) -> (forecast [1, H(, Q)], h, c)``;
  start from zeros, feed the returned state back; after the L rows of a window the forecast
  equals the window model's;
* ``mcu/`` — the int8 model as a C array (``model_data.cc/.h``) and its TFLM op resolver
  (``model_ops.h``), when TFLM runs it;
* ``preprocessing.json`` — how to build the window rows and future inputs from raw values and
  turn outputs back into values (for on-device code);
* ``export_report.json`` — sizes and SHA-256 of every file, ops, LiteRT-vs-Keras differences
  (scaled outputs and series units), the streaming check and a ``tflm`` section per model
  (loads, arena bytes, ops, max |TFLM - LiteRT|).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import tensorflow as tf

from tasks.common.artifacts import write_export_report
from tasks.common.config import ExportConfig
from tasks.common.errors import UserError
from lstm_core.kernels import portable_graphs
from lstm_core.export import FLOAT_ATOL, TFLiteModel, export_saved_model, export_tflite_report
from tasks.common.io import write_json_atomic
from tasks.common.verdicts import Limit, record_verdicts, verdict_row

from tasks.forecasting import data as series_data
from tasks.forecasting import metrics
from tasks.forecasting import transforms
from tasks.forecasting.artifacts import PREPROCESSING_FILE, ForecastingModelDir
from tasks.forecasting.config import ExportChecks
from tasks.forecasting.evaluate import load_for_model, model_rows
from tasks.forecasting.model import build_streaming_model, median_index, stream_window, zero_state

log = logging.getLogger(__name__)

FILES = {"float": "model_float.tflite", "int8": "model_int8.tflite", "int16x8": "model_int16x8.tflite",
         "streaming": "streaming_float.tflite"}
# Export verdicts: a file whose forecasts on the check windows differ from Keras' by more than
# 0.02 MASE (mean |runtime - Keras| over the in-sample seasonal-naive MAE, an upper bound on how
# much its MASE can differ) is a WARNING (one line; "verdict" in export_report.json). The streaming
# model is refused outright beyond 10 x --atol of the window model (scaled outputs).
EXPORT_LIMITS = {
    "forecasts": Limit("forecasts differ from Keras by", "MASE", maximum=0.02),
}


def raw_forecast_function(model, directory: ForecastingModelDir):
    """Concrete function: raw history (L+1 values, + covariates) -> forecasts in series units."""
    cfg, sc = directory.model, directory.scaler
    L, C = cfg.lookback, len(sc.feature_mean)
    specs = [tf.TensorSpec([None, L + 1], tf.float32, name="history")]
    if C:
        specs.append(tf.TensorSpec([None, L + 1, C], tf.float32, name="covariates"))
    median = median_index(cfg)

    def forecast(history, covariates=None):
        t = transforms.forward(history, sc.transform, tf.math)
        if cfg.hybrid == "on":  # the model normalises the level path itself
            x = (t[:, 1:] / sc.target_scale)[..., None]
        else:
            x = ((t[:, 1:] - t[:, :-1]) / sc.diff_scale)[..., None]
        if C:
            cov = (covariates[:, 1:, :] - tf.constant(sc.feature_mean, tf.float32)) / tf.constant(sc.feature_std, tf.float32)
            x = tf.concat([x, cov], axis=-1)
        out = model(x, training=False)
        last = t[:, -1] / sc.target_scale
        last = tf.reshape(last, [-1] + [1] * (len(out.shape) - 1))
        values = transforms.inverse((last + out) * sc.target_scale, sc.transform, tf.math)
        if cfg.quantiles:
            q = tf.sort(values, axis=-1)
            return {"forecast": q[..., median], "quantiles": q}
        return {"forecast": values}

    if C:
        def with_covariates(history, covariates):
            return forecast(history, covariates)

        function = tf.function(with_covariates, input_signature=specs, autograph=False)
    else:
        def history_only(history):
            return forecast(history)

        function = tf.function(history_only, input_signature=specs, autograph=False)
    return function.get_concrete_function()


def preprocessing_spec(directory: ForecastingModelDir) -> dict:
    cfg, sc = directory.model, directory.scaler
    forward, inverse = transforms.formulas(sc.transform)
    spec = {
        "lookback": cfg.lookback,
        "horizon": cfg.horizon,
        "target": directory.data.target,
        "covariates": list(directory.data.features),
        "transform": sc.transform,
        "T(v)": forward,
        "T_inverse(z)": inverse,
        "target_scale": sc.target_scale,
        "diff_scale": sc.diff_scale,
        "feature_mean": sc.feature_mean,
        "feature_std": sc.feature_std,
        "quantiles": list(cfg.quantiles),
        "window_row_i": ("[T(y[t-L+i]) / target_scale" if cfg.hybrid == "on" else
                         "[(T(y[t-L+i]) - T(y[t-L+i-1])) / diff_scale")
        + ", ((x[t-L+i] - feature_mean) / feature_std)..., calendar(t-L+i)...], i = 0..L-1",
        "hybrid": cfg.hybrid == "on",
        "in_graph": ("deseasonalising and level/spread normalisation of the window, the LSTM, restoring level and "
                     "season, Theta and seasonal naive over the window and their mix (combine)"
                     if cfg.hybrid == "on" else "the LSTM and its head"),
        "row_calendar": list(cfg.row_calendar),
        "output_to_value": "y_hat[t+h] = T_inverse(T(y[t-1]) + out[h] * target_scale), h = 0..H-1"
        + (" (per quantile; sort the quantiles of each step)" if cfg.quantiles else ""),
        "seasons": list(cfg.seasons),
        "freq": directory.series.get("freq"),
        "streaming_state_size": cfg.units * cfg.ensemble,
    }
    if cfg.num_future:
        spec["future_features"] = list(cfg.future_features)
        spec["future_row_h"] = (
            "[calendar(t+h)..., (T(y[t+h-lag]) - T(y[t-1])) / target_scale for each lag], h = 0..H-1"
        )
        spec["calendar"] = {
            "hour": "2*pi*(seconds since midnight)/86400",
            "weekday": "2*pi*(dayofweek (Monday 0) + fraction of the day)/7",
            "yearday": "2*pi*(dayofyear - 1 + fraction of the day)/365.25",
            "holiday": "1 on the public holidays of --country (holidays package), else 0",
        }
    return spec


HYBRID_NO_INT8 = (
    "the hybrid model normalises each window by its own level and spread inside the graph; full-integer "
    "quantisation of the level path (values of the series' size) leaves too little resolution for that "
    "(and LiteRT's int8 DIV rejects divisors quantised to zero): the float model carries it (TFLM runs float "
    "kernels too); --hybrid off trains a model whose int8 export works"
)
HYBRID_NO_STREAMING = (
    "every row the LSTM sees is normalised by the level, spread and season of the whole window, known only "
    "after its last row, so a row-per-call model cannot carry the hybrid (--hybrid off streams)"
)


def _variants(cfg, quantization) -> tuple[list[str], dict]:
    """The TFLite variants to write, and what is skipped with why (hybrid models: float only)."""
    if cfg.hybrid != "on":
        return list(quantization), {}
    skipped = {v: HYBRID_NO_INT8 for v in quantization if v != "float"}
    skipped["streaming"] = HYBRID_NO_STREAMING
    return [v for v in quantization if v == "float"], skipped


def _even(first: int, last: int, count: int) -> np.ndarray:
    if last < first:
        return np.array([], int)
    n = last - first + 1
    return np.unique(np.linspace(first, last, min(count, n)).round().astype(int))


def _check_inputs(rows, origins, model):
    inputs, _ = series_data.window_arrays(rows, origins, model)
    return [part.astype(np.float32) for part in series_data.as_list(inputs)]


@portable_graphs()  # serving functions are traced before they are saved
def export(config: ExportConfig, checks: ExportChecks | None = None) -> dict:
    """Write ``MODEL/export/`` (see the module docstring); returns a summary with sizes and differences.

    Args:
        config: the model directory, which TFLite variants, int8 calibration windows, float tolerance.
        checks: data for calibration/checks (none: the training data) and how many windows to check.

    Example:

    ```python
    summary = export(ExportConfig(model="saved_models/co2"))
    summary["int8_bytes"], summary["tflm"]["int8"]["arena_bytes"]
    ```
    """
    checks = checks or ExportChecks()
    started = time.time()
    directory = ForecastingModelDir.open(config.model)
    model = directory.keras_model()  # before any data is read: a damaged model is one line at once
    directory.check_trained()
    if directory.is_panel:
        raise UserError(
            f"{directory.path}: export is for single-series models; this one was trained with --id-col "
            f"{directory.data.id_col} (a scaler per series, not carried by the exported files yet)"
        )
    atol = config.atol if config.atol is not None else FLOAT_ATOL
    cfg = directory.model
    windows = _CheckWindows.of(directory, model, config, checks)
    report = {"lookback": cfg.lookback, "horizon": cfg.horizon, "num_features": cfg.num_features,
              "future_features": list(cfg.future_features), "check_windows": int(len(windows.origins))}
    variants, skipped = _variants(cfg, config.quantization)
    report["skipped"] = skipped
    for variant, reason in skipped.items():
        log.warning("export: %s skipped: %s", variant, reason)
    with directory.staged_export() as work:
        _saved_model(model, directory, work)
        results, tflm_sections = {}, {}
        for variant in variants:
            results[variant], report[f"tflite_{variant}"], tflm_sections[variant] = _tflite_variant(
                model, variant, work, windows, atol)
        report["vs_keras_on_check_windows"] = results
        report["streaming"] = (_streaming(model, cfg, work, windows.check, windows.keras_out, checks, atol)
                               if "streaming" not in skipped else {"bytes": None, "tflite_max_abs_diff_vs_window_model": None})
        report["tflm"] = _with_c_array(work, tflm_sections)
        write_json_atomic(work / PREPROCESSING_FILE, preprocessing_spec(directory))
        report["seconds"] = round(time.time() - started, 1)
        record_verdicts(report, _verdicts(results, report, atol))
        write_export_report(work, report)
    log.debug("export written to %s", directory.export_dir)
    return _summary(directory, results, report)


def _verdicts(results: dict, report: dict, atol: float) -> list[dict]:
    """Per file: how far its forecasts are from Keras' on the check windows, in MASE."""
    rows = []
    for variant, result in results.items():
        name = FILES[variant] + (" (TFLM)" if result["runtime"] == "tflm" else "")
        rows.append(verdict_row(name, result["bytes"], [EXPORT_LIMITS["forecasts"].check(result["mean_abs_diff_mase"])]))
    streaming = report["streaming"]
    if streaming.get("bytes"):
        limit = Limit("max |streaming - window model| (scaled)", "", maximum=10 * atol)
        rows.append(verdict_row(FILES["streaming"], streaming["bytes"],
                                [limit.check(streaming["tflite_max_abs_diff_vs_window_model"])]))
    return rows


def _summary(directory: ForecastingModelDir, results: dict, report: dict) -> dict:
    return {
        "export_dir": str(directory.export_dir),
        **{f"{variant}_bytes": result["bytes"] for variant, result in results.items()},
        **{f"{variant}_max_abs_diff_units": result["max_abs_diff_units"] for variant, result in results.items()},
        "streaming_bytes": report["streaming"]["bytes"],
        "streaming_max_abs_diff": report["streaming"]["tflite_max_abs_diff_vs_window_model"],
        "tflm": {name: {k: section.get(k) for k in ("loads", "arena_bytes", "max_abs_diff_vs_litert")}
                 for name, section in report["tflm"].items()},
        "verdict": report["verdict"],
        "verdicts": report["verdicts"],
    }


class _CheckWindows:
    """Training windows that calibrate int8, test windows that check every file against Keras."""

    @classmethod
    def of(cls, directory: ForecastingModelDir, model, config: ExportConfig, checks: ExportChecks) -> "_CheckWindows":
        cfg = directory.model
        series = load_for_model(directory, checks.data)
        split = series_data.Split.for_data(len(series), directory.data)
        rows = model_rows(directory, series)
        reach = series_data.history(cfg)
        calib_origins = _even(*split.origins("train", reach, cfg.horizon), config.calibration_examples)
        origins = _even(*split.origins("test", reach, cfg.horizon), checks.check_windows)
        if len(origins) == 0:
            origins = _even(*split.origins("val", reach, cfg.horizon), checks.check_windows)
        if len(calib_origins) == 0 or len(origins) == 0:
            raise UserError(f"{series.source}: not enough rows to calibrate and check the exported models")
        self = cls()
        self.scaler, self.origins = directory.scaler, origins
        season = max(directory.seasons) if directory.seasons else 1
        self.mase_scale = metrics.mase_scale(series.y[: split.val_end], season)
        self.last_level = directory.scaler.level(series.y)[origins - 1]
        self.calib = _check_inputs(rows, calib_origins, cfg)
        self.check = _check_inputs(rows, origins, cfg)
        self.keras_out = np.asarray(model.predict(self.check if len(self.check) > 1 else self.check[0],
                                                  batch_size=256, verbose=0))
        self.keras_values = self.to_values(self.keras_out)
        return self

    def to_values(self, outputs):
        return self.scaler.forecast(outputs, self.last_level)

    def samples(self):
        return [[part[i : i + 1] for part in self.check] for i in range(min(8, len(self.origins)))]

    def calibration(self):
        return ([part[i : i + 1] for part in self.calib] for i in range(len(self.calib[0])))


def _tflite_variant(model, variant: str, work, windows: _CheckWindows, atol: float):
    """Write one ``.tflite`` variant and compare it with Keras on the check windows.

    Returns ``(comparison, converter report, tflm section)``."""
    quantization = None if variant == "float" else variant
    tflite = export_tflite_report(
        model, work / FILES[variant], quantization=quantization,
        representative_dataset=windows.calibration if quantization else None, sample_inputs=windows.samples(),
        atol=atol, tflm=True,
    )
    if variant == "int16x8":  # TFLM-only: LiteRT's LSTM has no int16x8 kernel
        from lstm_core.tflm import TFLMModel

        runner = TFLMModel(work / FILES[variant])
    else:
        runner = TFLiteModel(work / FILES[variant])
    check = windows.check
    got = np.concatenate([runner(*(part[i : i + 1] for part in check))[0] for i in range(len(windows.origins))])
    values = windows.to_values(got)
    comparison = {
        "runtime": "tflm" if variant == "int16x8" else "litert",
        "bytes": tflite.size_bytes,
        "max_abs_diff_scaled": float(np.max(np.abs(got - windows.keras_out))),
        "max_abs_diff_units": float(np.max(np.abs(values - windows.keras_values))),
        "mean_abs_diff_units": float(np.mean(np.abs(values - windows.keras_values))),
    }
    scale = windows.mase_scale
    comparison["mean_abs_diff_mase"] = comparison["mean_abs_diff_units"] / scale if np.isfinite(scale) else None
    return comparison, {k: v for k, v in tflite.as_dict().items() if k != "tflm"}, tflite.tflm


def _saved_model(model, directory: ForecastingModelDir, work) -> None:
    """``serving_default`` on scaled windows; ``forecast`` on raw values (models without calendar inputs)."""
    cfg = directory.model
    specs = [tf.TensorSpec([None, cfg.lookback, cfg.num_features], tf.float32, name="window")]
    if cfg.num_future:
        specs.append(tf.TensorSpec([None, cfg.horizon, cfg.num_future], tf.float32, name="future"))

        def serve(window, future):
            return {"output_0": model([window, future], training=False)}
    else:
        def serve(window):
            return {"output_0": model(window, training=False)}

    signatures = {"serving_default": tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()}
    if not cfg.num_future:
        signatures["forecast"] = raw_forecast_function(model, directory)
    export_saved_model(model, work / "saved_model", signatures=signatures)


def _streaming(model, cfg, work, check, keras_out, checks: ExportChecks, atol: float) -> dict:
    """Streaming TFLite: stepping it over a window must give the window model's forecast."""
    stream = build_streaming_model(model, cfg)

    def keras_step(*inputs):
        return stream(list(inputs), training=False)

    lookback = cfg.lookback
    windows, futures = check[0], (check[1] if len(check) > 1 else [None] * len(check[0]))
    future0 = [futures[0:1]] if cfg.num_future else []
    _, mid = stream_window(keras_step, windows[0][: lookback // 2], cfg, future=futures[0] if cfg.num_future else None)
    stream_samples = [[windows[0][lookback // 2][None], *future0, *mid], [windows[0][0][None], *future0, *zero_state(cfg)]]
    tflite = export_tflite_report(stream, work / FILES["streaming"], sample_inputs=stream_samples, atol=atol,
                                  require_fused=False)
    count = min(checks.stream_check_windows, len(windows))
    runner = TFLiteModel(work / FILES["streaming"])

    def future_of(i):
        return futures[i] if cfg.num_future else None

    streamed_tflite = np.concatenate([stream_window(runner, windows[i], cfg, future=future_of(i))[0] for i in range(count)])
    streamed_keras = np.concatenate([stream_window(keras_step, windows[i], cfg, future=future_of(i))[0] for i in range(count)])
    result = {
        **tflite.as_dict(),
        "bytes": tflite.size_bytes,
        "state": {"h": [1, cfg.units * cfg.ensemble], "c": [1, cfg.units * cfg.ensemble]},
        "windows": int(count),
        "tflite_max_abs_diff_vs_window_model": float(np.max(np.abs(streamed_tflite - keras_out[:count]))),
        "keras_max_abs_diff_vs_window_model": float(np.max(np.abs(streamed_keras - keras_out[:count]))),
    }
    if result["tflite_max_abs_diff_vs_window_model"] > atol * 10:
        raise UserError(
            f"streaming model disagrees with the window model by {result['tflite_max_abs_diff_vs_window_model']:.3g}; "
            "nothing was written"
        )
    return result


def _with_c_array(work, sections: dict) -> dict:
    """The int8 model, when TFLM runs it, also as a C array with its op resolver (``mcu/``)."""
    from lstm_core.tflm import write_c_array

    section = sections.get("int8")
    if section and section.get("loads"):
        write_c_array(work / FILES["int8"], work / "mcu", name="g_forecaster_int8",
                      arena_bytes=section.get("arena_recommended_bytes"))
        section["c_array"] = sorted(p.relative_to(work).as_posix() for p in (work / "mcu").iterdir())
    return sections
