"""``lstm-suite forecasting export``: SavedModel, float/int8 TFLite and a streaming TFLite.

Written to ``MODEL/export/``:

* ``saved_model/`` — ``serving_default(window [B, L, F]) -> {output_0: [B, H(, Q)]}`` (scaled
  space, as the .tflite files) and ``forecast(history [B, L+1](, covariates [B, L+1, C]))
  -> {forecast [B, H](, quantiles [B, H, Q])}`` in the series' own units (the
  transform/differencing/scaling of ``preprocessing.json`` done in the graph);
* ``model_float.tflite`` / ``model_int8.tflite`` — ``window [1, L, F] -> [1, H(, Q)]``, the
  LSTM as the builtin ``UNIDIRECTIONAL_SEQUENCE_LSTM``; int8 is full-integer, calibrated on
  training windows (LiteRT's runner (de)quantises with the scales stored in the file);
* ``streaming_float.tflite`` — one row per call with explicit state:
  ``(x_t [1, F], h [1, K*U], c [1, K*U]) -> (forecast [1, H(, Q)], h, c)``; start from zeros,
  feed the returned state back; after the L rows of a window the forecast equals the window
  model's;
* ``preprocessing.json`` — how to build the window rows from raw values and turn outputs back
  into values (for on-device code);
* ``export_report.json`` — sizes, ops, LiteRT-vs-Keras differences (scaled outputs and series
  units) for every file and the streaming-vs-window check.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from lstm_core.errors import UserError
from lstm_core.export import TFLiteModel, export_saved_model, export_tflite_report
from lstm_core.io import write_json_atomic

from tasks.forecasting import data as D
from tasks.forecasting.artifacts import EXPORT_FILES, open_model_dir
from tasks.forecasting.evaluate import load_for_model
from tasks.forecasting.model import build_streaming_model, stream_window, zero_state

log = logging.getLogger(__name__)


def _tf_transform(x, transform):
    if transform == "sqrt":
        return tf.sqrt(tf.maximum(x, 0.0))
    if transform == "log":
        return tf.math.log(x)
    return x


def _tf_inverse(z, transform):
    if transform == "sqrt":
        return tf.square(tf.maximum(z, 0.0))
    if transform == "log":
        return tf.exp(z)
    return z


def raw_forecast_function(model, md):
    """Concrete function: raw history (L+1 values, + covariates) -> forecasts in series units."""
    cfg, sc = md.model, md.scaler
    L, C = cfg.lookback, len(sc.feature_mean)
    specs = [tf.TensorSpec([None, L + 1], tf.float32, name="history")]
    if C:
        specs.append(tf.TensorSpec([None, L + 1, C], tf.float32, name="covariates"))
    median = cfg.median_index

    def forecast(history, covariates=None):
        t = _tf_transform(history, sc.transform)
        x = ((t[:, 1:] - t[:, :-1]) / sc.diff_scale)[..., None]
        if C:
            cov = (covariates[:, 1:, :] - tf.constant(sc.feature_mean, tf.float32)) / tf.constant(sc.feature_std, tf.float32)
            x = tf.concat([x, cov], axis=-1)
        out = model(x, training=False)
        last = t[:, -1] / sc.target_scale
        last = tf.reshape(last, [-1] + [1] * (len(out.shape) - 1))
        values = _tf_inverse((last + out) * sc.target_scale, sc.transform)
        if cfg.quantiles:
            q = tf.sort(values, axis=-1)
            return {"forecast": q[..., median], "quantiles": q}
        return {"forecast": values}

    if C:
        fn = tf.function(lambda history, covariates: forecast(history, covariates), input_signature=specs, autograph=False)
    else:
        fn = tf.function(lambda history: forecast(history), input_signature=specs, autograph=False)
    return fn.get_concrete_function()


def preprocessing_spec(md) -> dict:
    cfg, sc = md.model, md.scaler
    T = {"none": "v", "sqrt": "sqrt(max(v, 0))", "log": "log(v)"}[sc.transform]
    Tinv = {"none": "z", "sqrt": "max(z, 0)^2", "log": "exp(z)"}[sc.transform]
    return {
        "lookback": cfg.lookback,
        "horizon": cfg.horizon,
        "target": md.data.target,
        "covariates": md.data.features,
        "transform": sc.transform,
        "T(v)": T,
        "T_inverse(z)": Tinv,
        "target_scale": sc.target_scale,
        "diff_scale": sc.diff_scale,
        "feature_mean": sc.feature_mean,
        "feature_std": sc.feature_std,
        "quantiles": cfg.quantiles,
        "window_row_i": "[(T(y[t-L+i]) - T(y[t-L+i-1])) / diff_scale, ((x[t-L+i] - feature_mean) / feature_std)...], i = 0..L-1",
        "output_to_value": "y_hat[t+h] = T_inverse(T(y[t-1]) + out[h] * target_scale), h = 0..H-1"
        + (" (per quantile; sort the quantiles of each step)" if cfg.quantiles else ""),
        "season": md.series["season"],
        "freq": md.series.get("freq"),
        "streaming_state_size": cfg.units * cfg.ensemble,
    }


def _even(first: int, last: int, count: int) -> np.ndarray:
    if last < first:
        return np.array([], int)
    n = last - first + 1
    return np.unique(np.linspace(first, last, min(count, n)).round().astype(int))


def export(args) -> dict:
    started = time.time()
    md = open_model_dir(args.model)
    cfg = md.model
    L, H = cfg.lookback, cfg.horizon
    model = md.keras_model()
    out = md.export_dir
    series = load_for_model(md, SimpleNamespace(data=args.data, target=None, time_col=None, on_missing=None))
    split = D.Split.of(len(series), md.data.test_fraction, md.data.val_fraction)
    feats = md.scaler.features(series.values)
    level = md.scaler.level(series.y)

    def windows(origins):
        return np.stack([feats[t - L : t] for t in origins]).astype(np.float32)

    calib_origins = _even(*split.origins("train", L, H), args.calibration_windows)
    check_origins = _even(*split.origins("test", L, H), args.check_windows)
    if len(check_origins) == 0:
        check_origins = _even(*split.origins("val", L, H), args.check_windows)
    if len(calib_origins) == 0 or len(check_origins) == 0:
        raise UserError(f"{series.source}: not enough rows to calibrate and check the exported models")
    calib, check = windows(calib_origins), windows(check_origins)
    keras_out = np.asarray(model.predict(check, batch_size=256, verbose=0))
    to_values = lambda o: md.scaler.forecast(o, level[check_origins - 1])
    keras_values = to_values(keras_out)
    report = {"lookback": L, "horizon": H, "num_features": cfg.num_features, "check_windows": int(len(check))}

    # SavedModel: scaled windows (serving_default) and raw history (forecast)
    serve_window = tf.function(
        lambda window: {"output_0": model(window, training=False)},
        input_signature=[tf.TensorSpec([None, L, cfg.num_features], tf.float32, name="window")],
        autograph=False,
    ).get_concrete_function()
    export_saved_model(
        model, out / "saved_model",
        signatures={"serving_default": serve_window, "forecast": raw_forecast_function(model, md)},
    )
    log.info("SavedModel written to %s", out / "saved_model")

    samples = [[w[None]] for w in check[:8]]
    float_report = export_tflite_report(model, out / EXPORT_FILES["tflite"], sample_inputs=samples, atol=args.atol)
    int8_report = export_tflite_report(
        model, out / EXPORT_FILES["tflite-int8"], quantization="int8",
        representative_dataset=lambda: ([w[None]] for w in calib), sample_inputs=samples,
    )
    report["tflite_float"] = float_report.as_dict()
    report["tflite_int8"] = int8_report.as_dict()
    runtimes = {}
    for runtime in ("tflite", "tflite-int8"):
        runner = TFLiteModel(out / EXPORT_FILES[runtime])
        got = np.concatenate([runner(w[None])[0] for w in check])
        values = to_values(got)
        runtimes[runtime] = {
            "max_abs_diff_scaled": float(np.max(np.abs(got - keras_out))),
            "max_abs_diff_units": float(np.max(np.abs(values - keras_values))),
            "mean_abs_diff_units": float(np.mean(np.abs(values - keras_values))),
        }
    report["vs_keras_on_check_windows"] = runtimes

    # streaming: one row per call, explicit (h, c)
    stream = build_streaming_model(model, cfg)
    keras_step = lambda x, h, c: stream([x, h, c], training=False)
    _, mid = stream_window(keras_step, check[0][: L // 2], cfg)
    stream_samples = [[check[0][L // 2][None], *mid], [check[0][0][None], *zero_state(cfg)]]
    stream_report = export_tflite_report(
        stream, out / EXPORT_FILES["streaming"], sample_inputs=stream_samples, atol=args.atol, require_fused=False
    )
    report["streaming_tflite"] = stream_report.as_dict()
    n_stream = min(args.stream_check_windows, len(check))
    runner = TFLiteModel(out / EXPORT_FILES["streaming"])
    streamed_tfl = np.concatenate([stream_window(runner, w, cfg)[0] for w in check[:n_stream]])
    streamed_keras = np.concatenate([stream_window(keras_step, w, cfg)[0] for w in check[:n_stream]])
    report["streaming"] = {
        "state": {"h": [1, cfg.units * cfg.ensemble], "c": [1, cfg.units * cfg.ensemble]},
        "windows": int(n_stream),
        "tflite_max_abs_diff_vs_window_model": float(np.max(np.abs(streamed_tfl - keras_out[:n_stream]))),
        "keras_max_abs_diff_vs_window_model": float(np.max(np.abs(streamed_keras - keras_out[:n_stream]))),
    }
    if report["streaming"]["tflite_max_abs_diff_vs_window_model"] > args.atol * 10:
        raise UserError(
            f"streaming model disagrees with the window model by "
            f"{report['streaming']['tflite_max_abs_diff_vs_window_model']:.3g}"
        )
    write_json_atomic(out / "preprocessing.json", preprocessing_spec(md))
    report["seconds"] = round(time.time() - started, 1)
    write_json_atomic(out / "export_report.json", report)
    log.info("export report: %s", out / "export_report.json")
    return {
        "export_dir": str(out),
        "float_bytes": float_report.size_bytes,
        "int8_bytes": int8_report.size_bytes,
        "streaming_bytes": stream_report.size_bytes,
        "float_max_abs_diff": float_report.max_abs_diff,
        "int8_max_abs_diff_units": runtimes["tflite-int8"]["max_abs_diff_units"],
        "int8_mean_abs_diff_units": runtimes["tflite-int8"]["mean_abs_diff_units"],
        "streaming_max_abs_diff": report["streaming"]["tflite_max_abs_diff_vs_window_model"],
        "ops": float_report.ops,
    }
