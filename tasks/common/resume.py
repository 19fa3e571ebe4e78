"""What lets every interrupted ``train`` resume: the run record, the keep rule, and the test hook.

``<out>.partial/run.json`` records the settings a training started with and the time each
segment (one process, until it finished or was stopped) spent. A rerun with the same settings
resumes; with other settings it is refused with one line (``--overwrite`` discards the
interrupted run, or choose another ``--out``) rather than mixing two trainings in one model.
Times are summed over the segments, so ``train_report.json`` counts the whole training.

An interrupted work directory is kept whenever it holds finished or checkpointed work
(:func:`holds_work`): a ``backup/`` checkpoint, a finished fit or member, an epoch record. Files
that only serve resuming (:data:`RESUME_ONLY`) are removed once the model directory is complete.

:func:`interruption_point` is a test hook: ``LSTM_SUITE_INTERRUPT_AT="final_save=SIGTERM"`` makes
the process send itself that signal at the named point, so the interruption tests need no timing.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import time
from pathlib import Path

from tasks.common.errors import UserError
from tasks.common.io import read_json, remove, write_json_atomic

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
FITTED_FILE = "fitted.weights.h5"
MEMBER_FILE = "member.keras"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.json"
RESUME_ONLY = (RUN_FILE, FITTED_FILE, "writing." + FITTED_FILE, MEMBER_FILE, BACKUP_DIR)
INTERRUPT_VARIABLE = "LSTM_SUITE_INTERRUPT_AT"
_LOCAL_SETTINGS = {"progress", "cluster_timeout", "out", "overwrite", "resume"}


def comparable_settings(settings: dict | None) -> dict:
    """``{"section.name": value}`` of what changes the trained model (not the display, not ``--out``),
    as JSON would store it (tuples are lists), so a recorded and a new set compare equal."""
    import dataclasses

    flat = {}
    for section, values in (settings or {}).items():
        values = dataclasses.asdict(values) if dataclasses.is_dataclass(values) else dict(values or {})
        flat.update({f"{section}.{k}": v for k, v in values.items() if k not in _LOCAL_SETTINGS})
    return json.loads(json.dumps(flat, sort_keys=True, default=str))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def check_same_settings(work: Path, settings: dict | None, out: Path) -> str | None:
    """None if ``work`` may be resumed with ``settings``, else the first setting that differs."""
    path = Path(work) / RUN_FILE
    if settings is None or not path.is_file():
        return None  # an older run without a record, or a caller without settings: resume as before
    try:
        recorded = read_json(path).get("settings")
    except (OSError, ValueError, AttributeError):
        return None
    new = comparable_settings(settings)
    if not isinstance(recorded, dict) or recorded == new:
        return None
    name = next(k for k in sorted(set(recorded) | set(new)) if recorded.get(k) != new.get(k))
    flag = "--" + name.partition(".")[2].replace("_", "-")
    return f"{flag} {_shown(recorded.get(name))} then, {_shown(new.get(name))} now"


def _shown(value) -> str:
    return "(none)" if value is None else ",".join(map(str, value)) if isinstance(value, list) else str(value)


def refuse_or_discard(work: Path, settings: dict | None, out: Path, overwrite: bool) -> bool:
    """Check an interrupted ``work`` against ``settings``; True if it is kept to resume from.

    Other settings: refused with one line, or (``--overwrite``) discarded with a warning."""
    if not work.exists():
        return False
    if not holds_work(work):  # stopped before anything worth keeping: start over, whatever the settings
        remove(work)
        return False
    differs = check_same_settings(work, settings, out)
    if differs is None:
        return True
    if not overwrite:
        raise UserError(f"--out {out}: {work} holds an interrupted training with other settings ({differs}); "
                        "rerun with the same settings to resume it, pass --overwrite to discard it, "
                        "or choose another --out")
    log.warning("discarding the interrupted training in %s (other settings: %s)", work, differs)
    remove(work)
    return False


class RunClock:
    """The time of this segment of a training, recorded in ``run.json`` beside the earlier ones."""

    current: RunClock | None = None

    def __init__(self, work: Path, settings: dict | None):
        self.path = Path(work) / RUN_FILE
        self.wall0, self.cpu0 = time.monotonic(), _cpu_seconds()
        record = _read_record(self.path)
        self.earlier = [s for s in record.get("segments", []) if isinstance(s, dict)]
        self.settings = record.get("settings") if settings is None else comparable_settings(settings)
        self.save()

    def this_segment(self) -> dict:
        return {"wall_seconds": round(time.monotonic() - self.wall0, 2),
                "cpu_seconds": round(_cpu_seconds() - self.cpu0, 2)}

    def save(self) -> None:
        """Record this segment's time so far (after each epoch, and when stopped)."""
        try:
            write_json_atomic(self.path, {"settings": self.settings,
                                          "segments": [*self.earlier, self.this_segment()]})
        except OSError:
            pass  # a full disk is reported by what wrote the checkpoint

    def totals(self) -> dict:
        """``wall_seconds``, ``cpu_seconds`` summed over every segment, and ``training_runs`` (segments)."""
        segments = [*self.earlier, self.this_segment()]
        return {"wall_seconds": round(sum(float(s.get("wall_seconds", 0)) for s in segments), 1),
                "cpu_seconds": round(sum(float(s.get("cpu_seconds", 0)) for s in segments), 1),
                "training_runs": len(segments)}


def _read_record(path: Path) -> dict:
    try:
        record = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def run_times() -> dict:
    """Time of the whole training so far (every segment), for ``train_report.json``.

    Inside ``model_directory``; outside it (a bare ``fit`` in a test) only this process is counted."""
    clock = RunClock.current
    if clock is None:
        return {"wall_seconds": None, "cpu_seconds": round(_cpu_seconds(), 1), "training_runs": 1}
    return clock.totals()


def note_time() -> None:
    if RunClock.current is not None:
        RunClock.current.save()


def holds_work(work: Path) -> bool:
    """Whether an interrupted ``work`` holds trained work a rerun would reuse (a checkpoint, a finished
    fit or member, an epoch record, a saved model). What comes before the first epoch (tokenizers,
    statistics) is quick to redo, and a run that failed there (out of memory) is usually rerun
    with other flags, which a kept directory would refuse."""
    work = Path(work)
    if not work.is_dir():
        return False
    names = {BACKUP_DIR, FITTED_FILE, MEMBER_FILE, HISTORY_FILE}
    return any(p.name in names or p.suffix == ".keras" for p in work.rglob("*"))


def remove_resume_state(directory: Path) -> None:
    """Delete what only served resuming from a finished model directory."""
    for path in sorted(Path(directory).rglob("*"), reverse=True):
        if path.name in RESUME_ONLY and path.exists():
            remove(path)


def interruption_point(name: str) -> None:
    """Test hook: send this process the signal ``LSTM_SUITE_INTERRUPT_AT`` names for point ``name``.

    ``LSTM_SUITE_INTERRUPT_AT="mid_epoch:2=SIGTERM"`` (``SIGINT`` if no ``=SIGNAL``). Points:
    ``mid_epoch:E`` (after the first batch of epoch E), ``epoch:E`` (after epoch E's checkpoint),
    ``after_member:K`` (member K of an ensemble saved), ``final_save`` (the model saved, the report not).
    """
    wanted = os.environ.get(INTERRUPT_VARIABLE)
    if not wanted:
        return
    point, _, signame = wanted.partition("=")
    if point == name:
        log.debug("test hook: %s at %s", signame or "SIGINT", name)
        os.kill(os.getpid(), getattr(signal, signame or "SIGINT"))
        time.sleep(0.5)  # SIGKILL lands here; a Python handler runs at the next bytecode
