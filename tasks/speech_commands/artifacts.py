"""The speech_commands model directory: the shared layout plus the labels and the split.

```
DIR/model.keras  DIR/config.json  DIR/train_report.json  DIR/logs/  DIR/export/  DIR/eval/
DIR/labels.txt   the words, one per line, in output order
DIR/split.json   which files (and speakers) trained, validated and were held out for testing
```

``split.json`` is what lets ``evaluate`` default to the held-out test clips and warn when it is
given clips the model was trained (or early-stopped) on.
"""

from __future__ import annotations

from pathlib import Path

from tasks.common.artifacts import ModelDir, read_json_file
from tasks.common.config import TrainConfig
from tasks.common.errors import UserError
from tasks.common.io import write_bytes_atomic, write_json_atomic
from tasks.common.samples import moved_sample

from tasks.speech_commands.config import TASK_NAME, DataConfig, ModelConfig

LABELS_FILE = "labels.txt"
SPLIT_FILE = "split.json"
STREAMING_FILES = {"float": "streaming_float.tflite", "int8": "streaming_int8.tflite"}


class SpeechModelDir(ModelDir):
    """A trained keyword spotter (see the module docstring for the files).

    Example:

    ```python
    directory = SpeechModelDir.open("saved_models/speech_commands")
    directory.labels                      # ["eight", "five", ...]
    directory.split()["testing"]          # held-out files, relative to directory.split()["data"]
    ```
    """

    TASK = TASK_NAME
    SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

    @property
    def labels(self) -> list[str]:
        path = self.path / LABELS_FILE
        try:
            labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: cannot read the labels ({err})") from None
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise UserError(f"{path}: expected two or more distinct words, one per line")
        return labels

    def split(self) -> dict:
        """``split.json`` (``{}`` for a model directory written before it existed)."""
        path = self.path / SPLIT_FILE
        if not path.is_file():
            return {}
        split = read_json_file(path, SPLIT_FILE)
        if not isinstance(split, dict):
            raise UserError(f"{path}: expected a JSON object")
        if "data" in split:  # recorded before the samples moved from data/ into the package
            split["data"] = moved_sample(split["data"])
        return split

    @staticmethod
    def save_assets(work: Path, labels, split: dict) -> None:
        """Write ``labels.txt`` and ``split.json`` into the work directory."""
        write_bytes_atomic(Path(work) / LABELS_FILE, ("\n".join(labels) + "\n").encode())
        write_json_atomic(Path(work) / SPLIT_FILE, split)
