import argparse
import json
import sys
import types

import pytest

from lstm_core import cli
from lstm_core.errors import UserError


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


def test_runtime_argument():
    parser = argparse.ArgumentParser()
    cli.add_runtime_argument(parser)
    assert parser.parse_args([]).runtime == "keras"
    assert parser.parse_args(["--runtime", "tflite-int8"]).runtime == "tflite-int8"
