"""``evaluate`` (rolling origin over the test part, beside the baselines) and ``predict``.

Rolling origin: every test row ``t`` whose next H rows are all in the test part is a forecast
origin (``--stride`` skips some). The model sees the L rows before ``t`` (earlier test rows
included: they are history by then, never training data) and forecasts rows ``t..t+H-1``;
the baselines forecast the same rows from the same origins. Metrics average over origins
and steps; MASE divides by the in-sample seasonal naive MAE of the rows before the test part.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np

from lstm_core.errors import UserError
from lstm_core.io import write_bytes_atomic, write_json_atomic

from tasks.forecasting import baselines as B
from tasks.forecasting import data as D
from tasks.forecasting import metrics as MET
from tasks.forecasting.artifacts import ModelDir, open_model_dir
from tasks.forecasting.model import point_forecast, sorted_quantiles

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- shared
def data_config(md: ModelDir, args) -> D.DataConfig:
    """The training data settings, with any of --data/--target/--time-col/--on-missing overridden."""
    changes = {}
    for name in ("data", "target", "time_col", "on_missing"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "data", None) and args.data != md.data.data and getattr(args, "time_col", None) is None:
        changes["time_col"] = None if args.data.startswith("statsmodels:") else md.data.time_col
    return dataclasses.replace(md.data, **changes)


def load_for_model(md: ModelDir, args) -> D.Series:
    dcfg = data_config(md, args)
    series = D.load_series(dcfg)
    if len(series.features) != len(md.scaler.feature_mean):
        raise UserError(
            f"{series.source}: the model was trained with covariates {md.data.features}, "
            f"this data gives {series.features}"
        )
    return series


def forecaster(md: ModelDir, runtime: str):
    """``f(x [N, L, F]) -> raw model outputs [N, H(, Q)]`` for the chosen runtime."""
    if runtime == "keras":
        model = md.keras_model()
        return lambda x: np.asarray(model.predict(x, batch_size=256, verbose=0))
    from lstm_core.export import TFLiteModel

    runner = TFLiteModel(md.tflite_path(runtime))
    shape = tuple(runner.input_details[runner.input_names[0]]["shape"][1:])
    expected = (md.model.lookback, md.model.num_features)
    if shape != expected:
        raise UserError(
            f"{md.tflite_path(runtime)} takes windows {shape}, the model config says {expected}: "
            f"re-run `lstm-suite forecasting export --model {md.path}`"
        )
    return lambda x: np.concatenate([runner(w[None].astype(np.float32))[0] for w in x])


# ----------------------------------------------------------------------------- evaluate
def evaluate(args) -> dict:
    started = time.time()
    md = open_model_dir(args.model)
    cfg = md.model
    L, H, season = cfg.lookback, cfg.horizon, int(md.series["season"])
    series = load_for_model(md, args)
    dcfg = data_config(md, args)
    split = D.Split.of(len(series), dcfg.test_fraction, dcfg.val_fraction)
    if split.count("test", L, H) < 1:
        raise UserError(
            f"{series.source}: column {series.target!r}: the test part (last {dcfg.test_fraction:.0%}, "
            f"{split.n - split.val_end} rows) is shorter than the horizon {H}"
        )
    if split.val_end <= L:
        raise UserError(f"{series.source}: column {series.target!r}: {split.val_end} rows before the test part; the lookback needs {L + 1}")
    first, last = split.origins("test", L, H)
    stride = max(1, int(args.stride))
    feats = md.scaler.features(series.values)
    level = md.scaler.level(series.y)
    x, _ = D.window_arrays(feats, level, first, last, L, H)
    origins = np.arange(first, last + 1)
    x, origins = x[::stride], origins[::stride]

    outputs = forecaster(md, args.runtime)(x)
    forecast = md.scaler.forecast(point_forecast(outputs, cfg), level[origins - 1])
    y = series.y
    actual = y[origins[:, None] + np.arange(H)[None, :]]
    scale = MET.mase_scale(y[: split.val_end], season)
    if not np.isfinite(scale):
        raise UserError(f"{series.source}: column {series.target!r} is constant before the test part; MASE is undefined")

    result = {"runtime": args.runtime, **MET.point_metrics(forecast, actual, scale)}
    forecasts = {"model": forecast}
    forecasts["last_value"] = B.last_value(y, origins, H)
    forecasts["seasonal_naive"] = B.seasonal_naive(y, origins, H, season)
    for name in ("last_value", "seasonal_naive"):
        for k, v in MET.point_metrics(forecasts[name], actual, scale).items():
            result[f"{name}_{k}"] = v
    ets_fit = None
    if not args.no_ets:
        ets, ets_fit = B.ets_baseline(y, split.val_end, origins, H, season, md.scaler.transform)
        if ets is not None:
            forecasts["ets"] = ets
            for k, v in MET.point_metrics(ets, actual, scale).items():
                result[f"ets_{k}"] = v
            result["ets_model"] = ets_fit.name
            result["mase_vs_ets"] = result["mase"] / result["ets_mase"]
    quantiles = sorted_quantiles(outputs, cfg)
    qforecast = None
    if quantiles is not None:
        qforecast = md.scaler.forecast(quantiles, level[origins - 1])
        result.update(MET.quantile_metrics(qforecast, actual, cfg.quantiles, scale))
        result["quantiles"] = cfg.quantiles
    result["mase_by_step"] = MET.mase_by_step(forecast, actual, scale)
    result.update(
        {
            "mase_scale": scale,
            "season": season,
            "horizon": H,
            "lookback": L,
            "origins": int(len(origins)),
            "stride": stride,
            "test_rows": split.n - split.val_end,
            "test_start": D.format_time(series.index[split.val_end], series.freq),
            "target": series.target,
            "data": series.source,
        }
    )
    out_dir = Path(args.out) if args.out else md.path / "evaluation"
    png = _plot(series, split, origins, forecasts, actual, qforecast, result, H)
    plot_path = out_dir / f"forecast_{args.runtime}.png"
    write_bytes_atomic(plot_path, png)
    result["plot"] = str(plot_path)
    result["seconds"] = round(time.time() - started, 1)
    write_json_atomic(out_dir / f"metrics_{args.runtime}.json", result)
    log.info(
        "MASE %.3f | last value %.3f | seasonal naive %.3f | ETS %s over %d origins (plot %s)",
        result["mase"], result["last_value_mase"], result["seasonal_naive_mase"],
        f"{result['ets_mase']:.3f}" if "ets_mase" in result else "-", len(origins), plot_path,
    )
    return result


def _plot(series, split, origins, forecasts, actual, qforecast, result, H) -> bytes:
    from lstm_core.plots import _pyplot, figure_png

    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), dpi=100, gridspec_kw={"height_ratios": [2.2, 1]})
    idx = series.index
    context = max(0, split.val_end - max(2 * H, result["lookback"]))
    ax.plot(idx[context:], series.y[context:], color="black", lw=1.0, label="actual")
    ax.axvline(idx[split.val_end], color="grey", ls=":", lw=1)
    every = max(1, H // max(1, result["stride"]))
    shown = range(0, len(origins), every)
    for n, i in enumerate(shown):
        t = origins[i]
        steps = idx[t : t + H]
        if qforecast is not None:
            ax.fill_between(steps, qforecast[i, :, 0], qforecast[i, :, -1], color="tab:blue", alpha=0.15, lw=0,
                            label=f"model {result['interval'][0]:g}-{result['interval'][1]:g} quantiles" if n == 0 else None)
        ax.plot(steps, forecasts["model"][i], color="tab:blue", lw=1.3, label="LSTM forecast" if n == 0 else None)
        if "ets" in forecasts:
            ax.plot(steps, forecasts["ets"][i], color="tab:orange", lw=1, ls="--", label="ETS" if n == 0 else None)
    ax.set_title(
        f"{series.source} {series.target}: H={H}-step forecasts from every {every * result['stride']}th test origin "
        f"(MASE {result['mase']:.3f}, seasonal naive {result['seasonal_naive_mase']:.3f}"
        + (f", ETS {result['ets_mase']:.3f}" if "ets_mase" in result else "") + ")",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    steps = np.arange(1, H + 1)
    scale = result["mase_scale"]
    for name, style in (("model", "-o"), ("last_value", ":"), ("seasonal_naive", "--"), ("ets", "-.")):
        if name in forecasts:
            ax2.plot(steps, MET.mase_by_step(forecasts[name], actual, scale), style, ms=3,
                     label={"model": "LSTM", "ets": "ETS"}.get(name, name.replace("_", " ")))
    ax2.set_xlabel("forecast step h")
    ax2.set_ylabel("MASE")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


# ----------------------------------------------------------------------------- predict
def predict(args) -> None:
    md = open_model_dir(args.model)
    cfg = md.model
    series = load_for_model(md, args)
    L, H = cfg.lookback, cfg.horizon
    n = len(series)
    if n < L + 1:
        raise UserError(f"{series.source}: column {series.target!r} has {n} rows; the model needs the last {L + 1}")
    feats = md.scaler.features(series.values)
    level = md.scaler.level(series.y)
    outputs = forecaster(md, args.runtime)(feats[n - L : n][None])
    forecast = md.scaler.forecast(point_forecast(outputs, cfg), level[n - 1 : n])[0]
    quantiles = sorted_quantiles(outputs, cfg)
    qforecast = md.scaler.forecast(quantiles, level[n - 1 : n])[0] if quantiles is not None else None
    times = series.future_index(H)
    header = [series.time_col or "time", series.target]
    if qforecast is not None:
        header += [f"{series.target}_q{q:g}" for q in cfg.quantiles]
    rows = [",".join(header)]
    for i, t in enumerate(times):
        cells = [D.format_time(t, series.freq), f"{forecast[i]:.6g}"]
        if qforecast is not None:
            cells += [f"{v:.6g}" for v in qforecast[i]]
        rows.append(",".join(cells))
    text = "\n".join(rows) + "\n"
    if args.output:
        write_bytes_atomic(args.output, text.encode())
        log.info("wrote %d forecasts to %s", H, args.output)
    sys.stdout.write(text)
    sys.stdout.flush()
    return None
