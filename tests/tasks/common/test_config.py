"""tasks.common.config: flags generated from dataclasses, ranges, config.json round trip."""

import argparse
import dataclasses
import subprocess
import sys

import pytest

from tasks.common.config import (
    EVALUATE_KEYS,
    TrainConfig,
    add_settings,
    setting,
    settings_from_args,
    settings_from_dict,
    settings_to_dict,
    validate_settings,
)
from tasks.common.errors import UserError


@dataclasses.dataclass
class Example:
    units: int = setting(64, "LSTM units", minimum=1)
    dropout: float = setting(0.1, "dropout rate", minimum=0, below=1)
    pooling: str = setting("last", "summary of the sequence", choices=("last", "mean"))
    bidirectional: bool = setting(True, "run the LSTM both ways")
    quantiles: tuple[float, ...] = setting((), "extra quantile outputs", above=0, below=1)
    horizon: int | None = setting(None, "steps to forecast (none: from the frequency)", minimum=1)
    measured: int = setting(0, "set by training", cli=False)


def parse(argv, defaults=None):
    parser = argparse.ArgumentParser()
    add_settings(parser, Example, defaults=defaults)
    return parser, settings_from_args(Example, parser.parse_args(argv), defaults=defaults)


def test_flags_are_generated_with_types_and_defaults():
    _, config = parse(["--units", "8", "--no-bidirectional", "--quantiles", "0.1,0.9", "--horizon", "12"])
    assert config == Example(units=8, bidirectional=False, quantiles=(0.1, 0.9), horizon=12)
    _, config = parse([], defaults=Example(units=3))
    assert config.units == 3


def test_help_shows_every_default_and_skips_cli_false():
    parser, _ = parse([])
    text = parser.format_help()
    assert "--measured" not in text
    for flag in ("--units", "--dropout", "--pooling", "--bidirectional", "--quantiles", "--horizon"):
        assert flag in text
    assert text.count("(default:") == 6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--units", "0"], "--units: expected an integer >= 1, got 0"),
        (["--dropout", "1"], "--dropout: expected a number >= 0 and < 1, got 1.0"),
        (["--dropout", "nan"], "--dropout: expected a number"),
        (["--pooling", "max"], "--pooling: expected one of last, mean, got 'max'"),
        (["--quantiles", "0.5,1.5"], "--quantiles: expected a number > 0 and < 1, got 1.5"),
    ],
)
def test_out_of_range_values_name_the_flag(argv, message):
    with pytest.raises(UserError) as err:
        parse(argv)
    assert message in str(err.value)


def test_config_round_trip_and_bad_config_files():
    config = Example(units=5, quantiles=(0.25,), measured=7)
    values = settings_to_dict(config)
    assert values["quantiles"] == [0.25]
    assert settings_from_dict(Example, values, source="config.json: model") == config
    assert settings_from_dict(Example, {"units": 2, "from_the_future": 1}, source="c").units == 2
    with pytest.raises(UserError, match=r"config.json: model: units: expected an integer, got '5'"):
        settings_from_dict(Example, {"units": "5"}, source="config.json: model")
    with pytest.raises(UserError, match=r"c: units: expected an integer >= 1, got -1"):
        settings_from_dict(Example, {"units": -1}, source="c")
    with pytest.raises(UserError, match="expected an object"):
        settings_from_dict(Example, [1, 2], source="c")


def test_train_config_ranges():
    validate_settings(TrainConfig())
    for bad in (dict(epochs=0), dict(epochs=-1), dict(learning_rate=0.0), dict(steps_per_epoch=0),
                dict(validation_steps=0)):
        with pytest.raises(UserError):
            validate_settings(TrainConfig(**bad))
    parser = argparse.ArgumentParser()
    add_settings(parser, TrainConfig)
    assert settings_from_args(TrainConfig, parser.parse_args(["--validation-steps", "3"])).validation_steps == 3
    assert settings_from_args(TrainConfig, parser.parse_args([])).validation_steps is None
    assert TrainConfig(progress="bar").keras_verbose == 1
    assert TrainConfig(progress="epoch").keras_verbose == 2


def test_plumbing_imports_no_tensorflow():
    code = (
        "import sys, lstm_core, tasks.common.config, tasks.common.cli, tasks.common.artifacts, tasks.common.errors;"
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_evaluate_keys_are_the_shared_vocabulary():
    assert EVALUATE_KEYS == ("task", "model", "runtime", "data", "examples", "plot")


def test_none_on_the_command_line_is_none_for_optional_settings():
    _, config = parse(["--horizon", "none"], defaults=Example(horizon=5))
    assert config.horizon is None
    _, config = parse(["--horizon", "7"])
    assert config.horizon == 7
