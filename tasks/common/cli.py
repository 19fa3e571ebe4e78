"""One command line for every task: ``lstm-suite <task> <train|evaluate|export|predict> ...``.

Each task package exposes ``TASK`` (a :class:`Task`) in ``tasks/<task>/cli.py``; the registry
below imports only the task that was asked for, and a task's ``cli.py`` imports only its
``config.py`` (dataclasses), so ``--help`` and argument errors never load TensorFlow. Flags are
generated from the config dataclasses (:mod:`tasks.common.config`).

- ``evaluate`` returns a dict that is printed as one JSON object on the last stdout line, keys
  in the order the task put them (the shared keys first); ``train`` and ``export`` print a short
  summary (:data:`SUMMARIES`) and keep their JSON in ``train_report.json`` / ``export_report.json``.
- Every error a user can fix (:class:`~tasks.common.errors.UserError`, an exception of the library
  (:class:`lstm_core.errors.LstmCoreError`), a bad flag) is one
  ``lstm-suite: error: ...`` line on stderr and exit status 2, never a traceback.
- Ctrl-C exits 130 and SIGTERM 143, each with one line, after the same cleanup (a half-built
  ``export.partial`` is removed, a training keeps its checkpoint to resume from); running out of
  memory and file-system errors on a given path are one line too.
- ``-q/--quiet`` and ``-v/--verbose`` work anywhere on the line; TensorFlow's start-up noise is
  hidden unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
import threading
from typing import Callable, Mapping

from tasks.common.errors import USER_ERRORS
from tasks.common.install import suite_missing_message

VERBS = ("train", "evaluate", "export", "predict")
TASK_MODULES = {
    "sentiment": "tasks.sentiment.cli",
    "translation": "tasks.translation.cli",
    "speech_commands": "tasks.speech_commands.cli",
    "forecasting": "tasks.forecasting.cli",
}


@dataclasses.dataclass(frozen=True)
class Verb:
    """One verb of a task: ``configure`` adds its flags, ``run`` does the work.

    ``run`` is called with the parsed namespace; task code below the CLI takes configs, never
    the namespace, so ``run`` is where flags become dataclasses.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict | None]
    prepare: Callable[[argparse.Namespace], None] | None = None  # checks flags before TF loads


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    help: str
    verbs: Mapping[str, Verb]

    def __post_init__(self):
        missing = [v for v in VERBS if v not in self.verbs]
        if missing:
            raise TypeError(f"task {self.name} lacks verbs {missing}")


def settings_verb(
    help: str,
    run: Callable[..., dict | None] | str,
    sections: Mapping[str, object],
    *,
    extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    precheck: Callable[..., None] | None = None,
) -> Verb:
    """A verb whose flags are generated from config dataclasses.

    Args:
        help: the verb's one-line description.
        run: ``"package.module:function"``, imported only when the verb runs (so the CLI module
            imports no TensorFlow) and called with the configs in section order —
            ``function(*configs)``, the typed function itself, no wrapper; or a callable called as ``run(args, **configs)``, for verbs that
            also need the namespace (``extra_arguments`` such as predict's positional inputs).
        sections: section title → a dataclass instance holding this verb's defaults
            (e.g. ``{"data": DataConfig(), "model": ModelConfig(), "train": DEFAULT_TRAIN}``).
        extra_arguments: adds flags that are not settings (positional inputs).
        precheck: ``precheck(**configs)`` raises a ``UserError`` for what the task can check
            before TensorFlow loads (column names in a file's header, ...); paths, ``--out`` and
            ``--model`` are checked for every task (:mod:`tasks.common.precheck`).

    Example:

    ```python
    # calls tasks.sentiment.train.train(data, model, train, output)
    TRAIN = settings_verb("train a model", "tasks.sentiment.train:train",
                          {"data": DataConfig(), "model": ModelConfig(), "train": DEFAULT_TRAIN, "output": OUTPUT})
    ```
    """
    from tasks.common.config import add_settings, settings_from_args

    def configure(parser: argparse.ArgumentParser) -> None:
        for title, defaults in sections.items():
            add_settings(parser, type(defaults), defaults=defaults, title=title)
        if extra_arguments is not None:
            extra_arguments(parser)

    def prepare(args: argparse.Namespace) -> None:
        from tasks.common.precheck import check_before_tensorflow

        args._configs = {
            title: settings_from_args(type(defaults), args, defaults=defaults)
            for title, defaults in sections.items()
        }
        if precheck is not None:  # the task's own flag checks first: they need no file
            precheck(**args._configs)
        if getattr(args, "task", None):
            check_before_tensorflow(args.task, args._configs)

    def run_verb(args: argparse.Namespace):
        if not hasattr(args, "_configs"):
            prepare(args)
        if isinstance(run, str):
            module, _, function = run.partition(":")
            return getattr(importlib.import_module(module), function)(*args._configs.values())
        return run(args, **args._configs)

    return Verb(help, configure, run_verb, prepare)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with whole-word flags only and one-line errors that point at the verb's help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"lstm-suite: error: {message} (see `{self.prog} --help`)\n")


def _global_options() -> argparse.ArgumentParser:
    """``-q`` / ``-v``, accepted at every level of the command line."""
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = parent.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings, errors and results")
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug logging and TensorFlow's own messages")
    return parent


def _did_you_mean(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """`` (did you mean --epochs?)`` for a misspelt flag (``--epoch``), else nothing."""
    import difflib

    flags = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
    hints = []
    for word in unknown:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.75)
            hints += [f"{word.split('=', 1)[0]} -> {close[0]}"] if close else []
    if len(hints) == 1:
        return f" (did you mean {hints[0].split(' -> ')[1]}?)"
    return f" (did you mean: {', '.join(hints)}?)" if hints else ""


def load_task(name: str) -> Task:
    return importlib.import_module(TASK_MODULES[name]).TASK


def build_parser(task: Task | None) -> ArgumentParser:
    """The parser of ``lstm-suite``; only ``task`` (if given) gets its verbs and flags."""
    options = _global_options()
    parser = ArgumentParser(
        prog="lstm-suite",
        description="Train, evaluate, export and run small LSTM models (lstm_core) for four tasks.",
        parents=[options],
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True, parser_class=ArgumentParser)
    for name in TASK_MODULES:
        selected = task is not None and task.name == name
        sub = tasks.add_parser(name, help=task.help if selected else f"the {name} task", parents=[options],
                               description=task.help if selected else None)
        if not selected:
            continue
        verbs = sub.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=ArgumentParser)
        for verb_name in VERBS:
            verb = task.verbs[verb_name]
            verb_parser = verbs.add_parser(verb_name, help=verb.help, description=verb.help, parents=[options])
            verb.configure(verb_parser)
            verb_parser.set_defaults(_run=verb.run, _prepare=verb.prepare, _parser=verb_parser, _verb=verb_name)
    return parser


def _configure_logging(quiet: bool, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL", "numba", "cmdstanpy"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)
    # the library's per-file notes (converter fixes, max |tflite - keras|) are in the export reports
    logging.getLogger("lstm_core").setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    library_only = suite_missing_message()
    if library_only:  # `pip install lstm-suite` is the library alone (docs/packaging.md)
        print(f"lstm-suite: error: {library_only}", file=sys.stderr)
        return 2
    task_name = next((a for a in argv if not a.startswith("-")), None)
    task = load_task(task_name) if task_name in TASK_MODULES else None
    parser = build_parser(task)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # name the verb's usage, not the top-level one
        verb_parser = getattr(args, "_parser", parser)
        verb_parser.error("unrecognized arguments: " + " ".join(unknown) + _did_you_mean(verb_parser, unknown))
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    saved_env = {name: os.environ.get(name) for name in ("LSTM_SUITE_VERBOSE", "LSTM_SUITE_QUIET")}
    if verbose:
        os.environ["LSTM_SUITE_VERBOSE"] = "1"
    if quiet:
        os.environ["LSTM_SUITE_QUIET"] = "1"
    from tasks.common.quiet import filtered_stderr

    try:
        with filtered_stderr():  # TensorFlow's and LiteRT's C++ lines (not with --verbose)
            _configure_logging(quiet, verbose)
            return _run(args, verbose)
    finally:  # in-process callers (tests, notebooks) get their environment back
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, Kubernetes, ``kill``): unwinds like Ctrl-C, so the same cleanup runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


SIGTERM_GRACE_SECONDS = 8.0


def _watchdog(read_fd: int, grace: float, done: threading.Event) -> None:
    """Exit 143 if the verb has not stopped ``grace`` seconds after a SIGTERM.

    Python runs its signal handler only between bytecodes of the main thread; one blocked inside
    TensorFlow (a tf.data pipeline waiting for input) would otherwise ignore SIGTERM forever.
    """
    try:
        while not done.is_set():
            data = os.read(read_fd, 64)
            if not data:
                return
            if signal.SIGTERM in data and not done.wait(grace):
                print(f"lstm-suite: terminated (SIGTERM; still busy after {grace:g} s, stopped without cleanup)",
                      file=sys.stderr, flush=True)
                os._exit(143)
    except OSError:
        return
    finally:
        os.close(read_fd)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into :class:`Terminated` while a verb runs (main thread only; restored after).

    A watchdog thread (woken through ``signal.set_wakeup_fd``) ends the process if the handler
    cannot run within :data:`SIGTERM_GRACE_SECONDS`, so SIGTERM always stops it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    done = threading.Event()
    threading.Thread(target=_watchdog, args=(read_fd, SIGTERM_GRACE_SECONDS, done), daemon=True,
                     name="sigterm-watchdog").start()
    try:
        yield
    finally:
        done.set()
        signal.signal(signal.SIGTERM, previous)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watchdog's read returns b"" and it ends


OOM_HINT = "lower --units, --batch-size or the other size flags of this task (see --help)"
_PATH_ERRNOS = {"EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR", "ENAMETOOLONG", "ELOOP", "EDQUOT", "ENOSPC"}


def _os_error_line(err: OSError) -> str | None:
    """One line for a file-system error on a path the user gave (full disk, read-only, /proc, ...)."""
    import errno

    if err.errno == errno.ENOSPC:
        return f"no space left on {err.filename or 'the device'}"
    if err.filename is None or errno.errorcode.get(err.errno) not in _PATH_ERRNOS:
        return None
    return f"{err.filename}: {err.strerror or err}"


def _is_out_of_memory(err: BaseException) -> bool:
    """``MemoryError`` or TensorFlow's ``ResourceExhaustedError`` (an allocation that failed)."""
    return isinstance(err, MemoryError) or any(
        kind.__name__ == "ResourceExhaustedError" for kind in type(err).__mro__)


def _run(args: argparse.Namespace, verbose: bool) -> int:
    with _sigterm_as_interrupt():
        return _run_verb(args, verbose)


def _run_verb(args: argparse.Namespace, verbose: bool) -> int:
    try:
        if getattr(args, "_prepare", None) is not None:
            args._prepare(args)  # flag ranges and choices: checked before TensorFlow loads
        from tasks.common.quiet import import_tensorflow_quietly

        import_tensorflow_quietly(first_op=getattr(args, "distribute", None) != "multi-worker")
        if not verbose:
            import warnings

            warnings.filterwarnings("ignore", module=r"(keras|tensorflow|tf_keras|absl)")
        result = args._run(args)
    except USER_ERRORS as err:
        message = " ".join(str(err).split("\n"))
        print(f"lstm-suite: error: {message}", file=sys.stderr)
        return 2
    except Terminated:
        print("lstm-suite: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("lstm-suite: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        line = _os_error_line(err)
        if line is None:
            raise
        print(f"lstm-suite: error: {line}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - only out-of-memory is mapped; anything else is re-raised
        if not _is_out_of_memory(err):
            raise
        print(f"lstm-suite: error: out of memory ({type(err).__name__}); {OOM_HINT}", file=sys.stderr)
        return 2
    if result is not None:
        sys.stdout.flush()
        show = SUMMARIES.get(getattr(args, "_verb", None))
        if show is not None:
            importlib.import_module("tasks.common.verdicts").__dict__[show](result, args)
        else:
            print(json.dumps(result, default=float))
    return 0


# Verbs whose result is a report file's content: a few lines for a person instead of the JSON.
SUMMARIES = {"train": "print_train_summary", "export": "print_export_summary"}


def task_main(task_name: str, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tasks.<task> ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main([task_name, *argv])


if __name__ == "__main__":
    sys.exit(main())
