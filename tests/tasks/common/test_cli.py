import json
import sys
import types

import pytest

from tasks.common import cli
from tasks.common.errors import UserError
from helpers import last_json


def _fake_task(name="fake"):
    def configure(parser):
        parser.add_argument("--data")

    def evaluate(args):
        if args.data == "bad":
            raise UserError("bad.tsv line 3: expected 2 columns")
        print("working...")
        return {"accuracy": 0.5, "n": 2}

    verbs = {v: cli.Verb(f"{v} help", configure, lambda args: None) for v in cli.VERBS}
    verbs["evaluate"] = cli.Verb("evaluate help", configure, evaluate)
    return cli.Task(name, "a fake task", verbs)


@pytest.fixture
def fake_registry(monkeypatch):
    module = types.ModuleType("fake_task_cli")
    module.TASK = _fake_task()
    monkeypatch.setitem(sys.modules, "fake_task_cli", module)
    monkeypatch.setitem(cli.TASK_MODULES, "fake", "fake_task_cli")


def test_every_task_is_registered():
    assert set(cli.TASK_MODULES) == {"sentiment", "translation", "speech_commands", "forecasting"}


def test_evaluate_prints_json_last_line(fake_registry, capsys):
    assert cli.main(["fake", "evaluate", "--data", "ok"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == {"accuracy": 0.5, "n": 2}


def test_user_error_is_one_line_exit_2(fake_registry, capsys):
    assert cli.main(["fake", "evaluate", "--data", "bad"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lstm-suite: error: bad.tsv line 3: expected 2 columns"]


def test_task_main_prefixes_task(fake_registry, capsys):
    assert cli.task_main("fake", ["evaluate", "--data", "ok"]) == 0


def test_unknown_verb_is_usage_error(fake_registry):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fake", "dance"])
    assert exc.value.code == 2


def test_task_must_have_all_verbs():
    with pytest.raises(TypeError, match="lacks verbs"):
        cli.Task("x", "x", {"train": cli.Verb("t", lambda p: None, lambda a: None)})


def _settings_task():
    from tasks.common.config import EvaluateConfig, TrainConfig

    seen = {}

    def evaluate(args, evaluate, train):
        seen.update(evaluate=evaluate, train=train)
        return {"runtime": evaluate.runtime}

    verbs = {v: cli.Verb(f"{v} help", lambda p: None, lambda args: None) for v in cli.VERBS}
    verbs["evaluate"] = cli.settings_verb(
        "evaluate help", evaluate, {"evaluate": EvaluateConfig(model="m"), "train": TrainConfig(epochs=3)}
    )
    return cli.Task("fake", "a fake task", verbs), seen


@pytest.fixture
def settings_registry(monkeypatch):
    module = types.ModuleType("fake_settings_cli")
    module.TASK, seen = _settings_task()
    monkeypatch.setitem(sys.modules, "fake_settings_cli", module)
    monkeypatch.setitem(cli.TASK_MODULES, "fake", "fake_settings_cli")
    return seen


def test_settings_verb_builds_validated_configs(settings_registry, capsys):
    assert cli.main(["fake", "evaluate", "--runtime", "tflite", "--epochs", "5"]) == 0
    assert settings_registry["evaluate"].runtime == "tflite" and settings_registry["evaluate"].model == "m"
    assert settings_registry["train"].epochs == 5
    assert last_json(capsys.readouterr().out) == {"runtime": "tflite"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
        (["--limit", "-3"], "--limit: expected an integer >= 1, got -3"),
        (["--runtim", "tflite"], "unrecognized arguments: --runtim"),  # no abbreviations
        (["--runtime", "onnx"], "--runtime: expected one of keras, tflite, tflite-int8, tflm, got 'onnx'"),
        (["--epochs", "two"], "expected an integer, got 'two'"),
    ],
)
def test_bad_flags_are_one_line_exit_2(settings_registry, capsys, argv, message):
    try:
        code = cli.main(["fake", "evaluate", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstm-suite: error:") and message in err[0], err
    assert not settings_registry


@pytest.mark.parametrize("position", [0, 1, 2, 4])
def test_quiet_anywhere(settings_registry, position):
    argv = ["fake", "evaluate", "--runtime", "keras"]
    argv.insert(position, "-q")
    assert cli.main(argv) == 0


def test_verb_error_points_at_verb_help(settings_registry, capsys):
    with pytest.raises(SystemExit):
        cli.main(["fake", "evaluate", "--bogus"])
    assert "lstm-suite fake evaluate --help" in capsys.readouterr().err


def test_help_shows_every_default(settings_registry, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fake", "evaluate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--runtime", "--out", "--limit", "--epochs", "--learning-rate", "--progress"):
        assert flag in text
    assert text.count("(default:") >= 10


def test_quiet_silences_the_progress_display(settings_registry, monkeypatch):
    from tasks.common.config import TrainConfig

    seen = {}
    monkeypatch.setattr(cli, "_configure_logging", lambda quiet, verbose: seen.update(quiet=quiet))
    original = cli._run

    def spy(args, verbose):
        import os

        seen["env"] = os.environ.get("LSTM_SUITE_QUIET")
        seen["verbose"] = TrainConfig().keras_verbose
        return original(args, verbose)

    monkeypatch.setattr(cli, "_run", spy)
    assert cli.main(["fake", "evaluate", "-q"]) == 0
    assert seen == {"quiet": True, "env": "1", "verbose": 0}
    import os

    assert "LSTM_SUITE_QUIET" not in os.environ  # restored for the next in-process caller


def test_settings_verb_imports_a_named_function_only_when_run(monkeypatch, capsys):
    from tasks.common.config import EvaluateConfig

    module = types.ModuleType("fake_verbs")
    module.evaluate = lambda evaluate: {"runtime": evaluate.runtime, "model": evaluate.model}
    verbs = {v: cli.Verb(f"{v} help", lambda p: None, lambda args: None) for v in cli.VERBS}
    verbs["evaluate"] = cli.settings_verb("evaluate help", "fake_verbs:evaluate", {"evaluate": EvaluateConfig(model="m")})
    task_module = types.ModuleType("fake_named_cli")
    task_module.TASK = cli.Task("fake", "a fake task", verbs)
    monkeypatch.setitem(sys.modules, "fake_named_cli", task_module)
    monkeypatch.setitem(cli.TASK_MODULES, "fake", "fake_named_cli")
    assert "fake_verbs" not in sys.modules
    monkeypatch.setitem(sys.modules, "fake_verbs", module)
    assert cli.main(["fake", "evaluate", "--runtime", "tflm"]) == 0
    assert last_json(capsys.readouterr().out) == {"runtime": "tflm", "model": "m"}
