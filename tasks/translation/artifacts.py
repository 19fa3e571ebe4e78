"""The translation model directory: the shared layout plus the two sentencepiece models.

```
DIR/model.keras, config.json, train_report.json, logs/, eval/     (tasks.common.artifacts.ModelDir)
DIR/source.spm.model, DIR/target.spm.model                        sentencepiece, ids 0-3 = pad unk <s> </s>
DIR/export/encoder_{float,int8}.tflite, decoder_step_{float,int8}.tflite   LiteRT (dynamic source length)
DIR/export/tflm/encoder_int8.tflite, decoder_step_int8.tflite     TFLite Micro (fixed source length)
DIR/export/saved_model/                                           strings in, strings out
```
"""

from __future__ import annotations

from pathlib import Path

from tasks.common.artifacts import ModelDir
from tasks.common.config import TrainConfig
from tasks.translation.config import DataConfig, ModelConfig, MonitorConfig, ScheduleConfig, TASK_NAME
from tasks.translation.tokenizer import Tokenizer

SOURCE_SPM = "source.spm.model"
TARGET_SPM = "target.spm.model"
SAVED_MODEL = "saved_model"
TFLM_DIR = "tflm"
PARTS = ("encoder", "decoder_step")
# runtime -> the file-name suffix of its two parts under export/
RUNTIME_SUFFIX = {"tflite": "float", "tflite-int8": "int8", "tflm": "int8"}


class TranslationModelDir(ModelDir):
    """A trained translation model directory (see the module docstring for its files).

    Example:

    ```python
    directory = TranslationModelDir.open("saved_models/translation")
    source, target = directory.tokenizers()
    encoder, step = directory.export_parts("tflite-int8")
    ```
    """

    TASK = TASK_NAME
    SECTIONS = {
        "data": DataConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "schedule": ScheduleConfig,
        "monitor": MonitorConfig,
    }

    def tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        """The (source, target) sentencepiece models the model was trained with."""
        return Tokenizer.load(self.path / SOURCE_SPM), Tokenizer.load(self.path / TARGET_SPM)

    @staticmethod
    def part_name(part: str, runtime: str) -> str:
        """``encoder_int8.tflite`` etc.; TFLM's parts live in ``export/tflm/``."""
        name = f"{part}_{RUNTIME_SUFFIX[runtime]}.tflite"
        return f"{TFLM_DIR}/{name}" if runtime == "tflm" else name

    def export_parts(self, runtime: str) -> tuple[Path, Path]:
        """The (encoder, decoder step) files of ``runtime``, checked against the export's SHA-256."""
        return tuple(self.export_file(self.part_name(part, runtime)) for part in PARTS)
