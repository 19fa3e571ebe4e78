"""One command line for every task: ``lstm-suite <task> <train|evaluate|export|predict> ...``.

Each task package exposes ``TASK`` (a :class:`Task`) in ``tasks/<task>/cli.py``; the registry
below imports only the task that was asked for. ``evaluate`` returns a dict that is printed as
one JSON object on the last stdout line. A :class:`~lstm_core.errors.UserError` becomes one
``lstm-suite: error: ...`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from typing import Callable, Mapping

VERBS = ("train", "evaluate", "export", "predict")
RUNTIMES = ("keras", "tflite", "tflite-int8")
TASK_MODULES = {
    "sentiment": "tasks.sentiment.cli",
    "translation": "tasks.translation.cli",
    "speech_commands": "tasks.speech_commands.cli",
    "forecasting": "tasks.forecasting.cli",
}


@dataclasses.dataclass(frozen=True)
class Verb:
    """One verb of a task: ``configure`` adds its flags, ``run`` does the work."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict | None]


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    help: str
    verbs: Mapping[str, Verb]

    def __post_init__(self):
        missing = [v for v in VERBS if v not in self.verbs]
        if missing:
            raise TypeError(f"task {self.name} lacks verbs {missing}")


def add_runtime_argument(parser: argparse.ArgumentParser, choices=RUNTIMES) -> None:
    parser.add_argument(
        "--runtime",
        choices=choices,
        default="keras",
        help="run the Keras model or its exported LiteRT (.tflite) model (default: keras)",
    )


def load_task(name: str) -> Task:
    return importlib.import_module(TASK_MODULES[name]).TASK


def _parser(task: Task | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-suite",
        description="Train, evaluate, export and run small LSTM models (lstm_core) for four tasks.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name in TASK_MODULES:
        help_text = task.help if task is not None and task.name == name else None
        sub = tasks.add_parser(name, help=help_text or f"the {name} task")
        if task is None or task.name != name:
            continue
        verbs = sub.add_subparsers(dest="verb", metavar="VERB", required=True)
        for verb_name in VERBS:
            verb = task.verbs[verb_name]
            verb_parser = verbs.add_parser(verb_name, help=verb.help, description=verb.help)
            verb.configure(verb_parser)
            verb_parser.set_defaults(_run=verb.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    task_name = next((a for a in argv if not a.startswith("-")), None)
    task = None
    if task_name in TASK_MODULES:
        task = load_task(task_name)
    args = _parser(task).parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from lstm_core.errors import UserError

    try:
        result = args._run(args)
    except UserError as err:
        print(f"lstm-suite: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lstm-suite: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        sys.stdout.flush()
        print(json.dumps(result, sort_keys=True, default=float))
    return 0


def task_main(task_name: str, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tasks.<task> ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main([task_name, *argv])


if __name__ == "__main__":
    sys.exit(main())
