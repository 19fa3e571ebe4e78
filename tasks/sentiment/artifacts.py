"""The sentiment model directory: the shared layout plus the tokenizer and calibration texts.

```
DIR/model.keras          token ids [B, T] (pre-padded with 0) -> P(positive) [B, 1] (+ rating [B, 1])
DIR/tokenizer.model      sentencepiece model (pad 0, unk 1, no BOS/EOS)
DIR/calibration.json     training texts for int8 calibration
DIR/student.keras        the distilled single LSTM (``--distill``): what the MCU export contains
DIR/baseline_svm.npz     the TF-IDF + LinearSVC peer's terms and coefficients (arrays, no pickle),
                         cached by ``evaluate --baseline``
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tasks.common.artifacts import ModelDir, read_json_file
from tasks.common.config import TrainConfig
from tasks.common.errors import UserError
from tasks.sentiment.config import DataConfig, ModelConfig, ObjectiveConfig, StudentConfig

TOKENIZER_FILE = "tokenizer.model"
CALIBRATION_FILE = "calibration.json"
BASELINE_FILE = "baseline_svm.npz"
LABELS_FILE = "labels.txt"
STUDENT_FILE = "student.keras"  # the distilled single LSTM: the MCU export's model
MCU_FILES = {"float": "model_mcu_float.tflite", "int8": "model_mcu_int8.tflite"}
PAD_ID, UNK_ID = 0, 1


class Tokenizer:
    """The sentencepiece model of a trained sentiment model (Python side).

    Args:
        path: the ``tokenizer.model`` file.
        max_tokens: texts keep their last ``max_tokens`` ids (none: all).
    """

    def __init__(self, path, max_tokens: int | None = None):
        import sentencepiece as spm

        self.path = Path(path)
        self.proto = self.path.read_bytes()
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.proto)
        except RuntimeError:
            raise UserError(f"{self.path}: not a sentencepiece model (damaged?)") from None
        self.max_tokens = max_tokens

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Token ids (the last ``max_tokens``); a text without pieces is ``[UNK_ID]``."""
        return self._fix(self.sp.encode(text))

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._fix(ids) for ids in self.sp.encode(list(texts))]

    def _fix(self, ids: list[int]) -> list[int]:
        ids = ids[-self.max_tokens:] if self.max_tokens else ids
        return ids or [UNK_ID]


class SentimentModelDir(ModelDir):
    """``ModelDir`` of the sentiment task (see the module docstring for its extra files).

    Example:

    ```python
    directory = SentimentModelDir.open("saved_models/sentiment")
    tokenizer = directory.tokenizer()
    texts = directory.calibration_texts(200)
    ```
    """

    TASK = "sentiment"
    SECTIONS = {"data": DataConfig, "model": ModelConfig, "objective": ObjectiveConfig, "train": TrainConfig,
                "student": StudentConfig}

    @property
    def tokenizer_file(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def baseline_file(self) -> Path:
        return self.path / BASELINE_FILE

    def tokenizer(self):
        if not self.tokenizer_file.is_file():
            raise UserError(f"{self.tokenizer_file}: missing tokenizer; retrain with `{self.train_command()}`")
        return Tokenizer(self.tokenizer_file, self.data.max_tokens)

    @property
    def student_file(self) -> Path:
        return self.path / STUDENT_FILE

    def student_model(self):
        """``student.keras`` (the distilled MCU model) or None for a model trained without ``--distill``."""
        from tasks.common.artifacts import load_keras_model

        return load_keras_model(self.student_file) if self.student_file.is_file() else None

    def calibration_texts(self, limit: int) -> list[str]:
        """The training texts ``train`` kept for int8 calibration (first ``limit``)."""
        path = self.path / CALIBRATION_FILE
        texts = read_json_file(path, CALIBRATION_FILE)
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise UserError(f"{path}: expected a non-empty JSON list of texts")
        return texts[:limit]
