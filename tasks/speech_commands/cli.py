"""``lstm-suite speech_commands ...``: flags -> configs -> train/evaluate/export/predict."""

from __future__ import annotations

import argparse
import dataclasses

from lstm_core.cli import Task, Verb, add_runtime_argument
from lstm_core.errors import UserError
from lstm_core.export import FLOAT_ATOL
from lstm_core.training import add_train_arguments, train_config_from_args

from tasks.speech_commands.artifacts import DEFAULT_MODEL_DIR
from tasks.speech_commands.data import DataConfig
from tasks.speech_commands.model import FAKE_QUANT_ATOL, ModelConfig

_D, _M = DataConfig(), ModelConfig()


def _bool(parser, name, default, help):
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default, help=help)


def configure_train(p: argparse.ArgumentParser) -> None:
    from tasks.speech_commands.train import DEFAULT_TRAIN

    src = p.add_argument_group("data")
    src.add_argument("--data", help="folder <word>/<speaker>_nohash_<n>.wav (optional _background_noise_/, "
                     "validation_list.txt, testing_list.txt)")
    src.add_argument("--tfds", action="store_true", help="train on tfds speech_commands instead of --data")
    src.add_argument("--tfds-data-dir", default=None, help="tfds data_dir holding a prepared speech_commands")
    src.add_argument("--out", default=DEFAULT_MODEL_DIR, help=f"model directory (default {DEFAULT_MODEL_DIR})")
    src.add_argument("--test-speaker", action="append", default=[], metavar="NAME",
                     help="hold out this speaker as the test set (repeatable): speaker-disjoint accuracy")
    src.add_argument("--validation-percentage", type=float, default=_D.validation_percentage)
    src.add_argument("--testing-percentage", type=float, default=_D.testing_percentage)
    src.add_argument("--batch-size", type=int, default=_D.batch_size)
    src.add_argument("--max-eval-clips", type=int, default=4000, help="tfds: clips of validation/test kept in memory")
    aug = p.add_argument_group("augmentation")
    aug.add_argument("--synthetic-voices", type=int, default=_D.synthetic_voices, metavar="N",
                     help="add every word spoken by N randomised espeak-ng voices to the training split "
                     "(speaker variety; validation/test stay real; 0: off)")
    aug.add_argument("--time-shift-ms", type=float, default=_D.time_shift_ms)
    aug.add_argument("--background-frequency", type=float, default=_D.background_frequency)
    aug.add_argument("--background-volume", type=float, default=_D.background_volume)
    aug.add_argument("--speed-range", type=float, default=_D.speed_range, help="speed perturbation +-")
    aug.add_argument("--gain-range", type=float, default=_D.gain_range)
    _bool(aug, "spec-augment", _M.spec_augment, "SpecAugment time/frequency masking")
    aug.add_argument("--time-stretch", type=float, default=_M.time_stretch,
                     help="tempo augmentation of the frame axis: factor in [1/(1+s), 1+s] (0: off)")
    m = p.add_argument_group("model")
    m.add_argument("--feature-rate", type=int, default=_M.feature_rate,
                   help="decimate to this rate before the DFT (16000: none)")
    m.add_argument("--frame-ms", type=float, default=_M.frame_ms)
    m.add_argument("--hop-ms", type=float, default=_M.hop_ms)
    m.add_argument("--num-mel-bins", type=int, default=_M.num_mel_bins)
    m.add_argument("--lower-edge-hertz", type=float, default=_M.lower_edge_hertz)
    m.add_argument("--upper-edge-hertz", type=float, default=_M.upper_edge_hertz)
    m.add_argument("--spectrum", choices=("magnitude", "power"), default=_M.spectrum)
    m.add_argument("--log-offset", type=float, default=_M.log_offset)
    m.add_argument("--num-mfcc", type=int, default=_M.num_mfcc, help="0: log-mel features; N: N MFCCs")
    m.add_argument("--feature-norm", choices=("causal", "global"), default=_M.feature_norm,
                   help="causal: subtract each band's running mean (streaming CMN) after the "
                   "training-set standardisation; global: standardisation only")
    m.add_argument("--norm-decay", type=float, default=_M.norm_decay,
                   help="running-mean decay per frame for --feature-norm causal")
    _bool(m, "int8-aware", _M.int8_aware, "round the front end's spectrum tensors to the int8 grid")
    m.add_argument("--lstm-units", type=int, default=_M.lstm_units)
    m.add_argument("--dropout", type=float, default=_M.dropout)
    add_train_arguments(p, DEFAULT_TRAIN)


def run_train(args) -> dict:
    from tasks.speech_commands.train import DEFAULT_TRAIN, train

    dcfg = dataclasses.replace(
        _D,
        test_speakers=list(args.test_speaker),
        validation_percentage=args.validation_percentage,
        testing_percentage=args.testing_percentage,
        batch_size=args.batch_size,
        time_shift_ms=args.time_shift_ms,
        background_frequency=args.background_frequency,
        background_volume=args.background_volume,
        speed_range=args.speed_range,
        gain_range=args.gain_range,
        spec_augment=args.spec_augment,
        synthetic_voices=args.synthetic_voices,
    )
    mcfg = dataclasses.replace(
        _M,
        feature_rate=args.feature_rate,
        frame_ms=args.frame_ms,
        hop_ms=args.hop_ms,
        num_mel_bins=args.num_mel_bins,
        lower_edge_hertz=args.lower_edge_hertz,
        upper_edge_hertz=args.upper_edge_hertz,
        spectrum=args.spectrum,
        log_offset=args.log_offset,
        lstm_units=args.lstm_units,
        dropout=args.dropout,
        spec_augment=args.spec_augment,
        time_stretch=args.time_stretch,
        num_mfcc=args.num_mfcc,
        int8_aware=args.int8_aware,
        feature_norm=args.feature_norm,
        norm_decay=args.norm_decay,
    )
    if args.synthetic_voices < 0:
        raise UserError(f"--synthetic-voices must be >= 0, got {args.synthetic_voices}")
    if not 0.0 <= args.norm_decay < 1.0:
        raise UserError(f"--norm-decay must be in [0, 1), got {args.norm_decay}")
    try:
        mcfg.decimation
        from tasks.speech_commands.model import _frontend_constants

        _frontend_constants(mcfg)
    except ValueError as err:
        raise UserError(f"invalid feature settings: {err}") from None
    return train(args, dcfg, mcfg, train_config_from_args(args, DEFAULT_TRAIN))


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, help="model directory written by train")
    p.add_argument("--data", required=True, help="folder: every WAV under it, label = its folder name")
    p.add_argument("--speaker", action="append", default=[], metavar="NAME",
                   help="only files of this speaker (repeatable), e.g. the held-out --test-speaker")
    p.add_argument("--out", default=None, help="where the confusion-matrix PNG goes (default MODEL/evaluation)")
    add_runtime_argument(p)


def run_evaluate(args) -> dict:
    from tasks.speech_commands.evaluate import evaluate

    return evaluate(args)


def configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, help="model directory written by train")
    p.add_argument("--data", default=None, help="data folder for int8 calibration (default: the training data)")
    p.add_argument("--calibration-clips", type=int, default=300)
    p.add_argument("--check-clips", type=int, default=200, help="held-out clips to compare runtimes on")
    p.add_argument("--stream-check-clips", type=int, default=20, help="clips streamed hop by hop")
    p.add_argument("--atol", type=float, default=None,
                   help=f"max |LiteRT - Keras| for float exports (default: {FLOAT_ATOL:g}, or "
                        f"{FAKE_QUANT_ATOL:g} for an int8-aware front end, see model.float_export_atol)")


def run_export(args) -> dict:
    from tasks.speech_commands.export import export

    return export(args)


def configure_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, help="model directory written by train")
    p.add_argument("files", nargs="+", metavar="FILE.wav")
    p.add_argument("--top-k", type=int, default=3)
    add_runtime_argument(p)


def run_predict(args) -> None:
    from tasks.speech_commands.evaluate import predict

    return predict(args)


TASK = Task(
    name="speech_commands",
    help="keyword spotting from raw 16 kHz audio (log-mel in the model, LSTM, TFLite/streaming)",
    verbs={
        "train": Verb("train on a Speech Commands style folder (or tfds)", configure_train, run_train),
        "evaluate": Verb("accuracy + confusion matrix over every WAV under --data", configure_evaluate, run_evaluate),
        "export": Verb("SavedModel, float/int8 TFLite and a streaming TFLite", configure_export, run_export),
        "predict": Verb("top-k words with probabilities for WAV files", configure_predict, run_predict),
    },
)
