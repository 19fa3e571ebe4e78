"""``evaluate`` (accuracy + confusion matrix over every WAV under DIR) and ``predict`` (top-k)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lstm_core import plots
from lstm_core.errors import UserError
from lstm_core.io import write_json_atomic

from tasks.speech_commands import data as D
from tasks.speech_commands import model as M
from tasks.speech_commands.artifacts import ModelDir, open_model_dir

log = logging.getLogger(__name__)


class Classifier:
    """``clips [N, samples] -> probabilities [N, classes]`` with the Keras or a LiteRT model."""

    def __init__(self, mdir: ModelDir, runtime: str = "keras"):
        self.runtime = runtime
        if runtime == "keras":
            self.model = mdir.keras_model()
            self.runner = None
        else:
            from lstm_core.export import TFLiteModel

            path = mdir.tflite_path(runtime)
            try:
                self.runner = TFLiteModel(path)
            except Exception as err:
                raise UserError(f"{path}: cannot load the TFLite model ({err})") from None

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        if self.runner is None:
            return M.predict_proba(self.model, clips)
        out = [self.runner(clip[None].astype(np.float32))[0][0] for clip in clips]
        return np.stack(out) if out else np.zeros((0, 0), np.float32)


def evaluate(args) -> dict:
    mdir = open_model_dir(args.model)
    classify = Classifier(mdir, args.runtime)
    examples = D.scan_folder(args.data, require_classes=1)
    if args.speaker:
        examples = [e for e in examples if e.speaker in set(args.speaker)]
        if not examples:
            raise UserError(f"{args.data}: no WAV files of speaker(s) {', '.join(args.speaker)}")
    unknown = sorted({e.word for e in examples} - set(mdir.labels))
    if unknown:
        raise UserError(
            f"{args.data}: folder(s) {', '.join(unknown)} are not words this model knows "
            f"({', '.join(mdir.labels)})"
        )
    log.info("evaluating %d files with %s", len(examples), args.runtime)
    clips = D.load_clips([e.path for e in examples], mdir.data)
    y = np.array([mdir.labels.index(e.word) for e in examples])
    probs = classify(clips)
    pred = probs.argmax(-1)
    cm = plots.confusion_matrix(y, pred, len(mdir.labels))
    out_dir = Path(args.out) if args.out else mdir.path / "evaluation"
    png = out_dir / f"confusion_{args.runtime}.png"
    title = f"{Path(args.data).name} ({args.runtime}), accuracy {np.mean(pred == y):.3f}"
    plots.save_png(png, plots.confusion_matrix_png(cm, mdir.labels, title=title))
    per_class = {
        w: float(cm[i, i] / cm[i].sum()) for i, w in enumerate(mdir.labels) if cm[i].sum()
    }
    speakers = sorted({e.speaker for e in examples})
    per_speaker = {}
    if len(speakers) <= 50:
        for s in speakers:
            idx = [i for i, e in enumerate(examples) if e.speaker == s]
            per_speaker[s] = float(np.mean(pred[idx] == y[idx]))
    result = {
        "accuracy": float(np.mean(pred == y)),
        "examples": int(len(y)),
        "runtime": args.runtime,
        "per_class_accuracy": per_class,
        "per_speaker_accuracy": per_speaker,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_png": str(png),
        "labels": mdir.labels,
        "data": str(args.data),
        "speaker_filter": list(args.speaker),
    }
    write_json_atomic(out_dir / f"metrics_{args.runtime}.json", result)
    return result


def predict(args) -> None:
    mdir = open_model_dir(args.model)
    clips = np.stack([D.load_clip(path, mdir.data) for path in args.files])  # errors name the file
    probs = Classifier(mdir, args.runtime)(clips)
    k = min(args.top_k, len(mdir.labels))
    for path, p in zip(args.files, probs):
        top = np.argsort(-p)[:k]
        words = "  ".join(f"{mdir.labels[i]} {p[i]:.3f}" for i in top)
        print(f"{path}\t{words}")
    return None
