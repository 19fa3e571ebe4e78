"""Sentencepiece subwords with the fixed special ids every translation model uses.

Token ids (both languages): 0 = <pad>, 1 = <unk>, 2 = <s> (BOS), 3 = </s> (EOS).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from tasks.common.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    """A sentencepiece model with the special ids above.

    Args:
        model_proto: the serialised sentencepiece model.

    Example:

    ```python
    tokenizer = Tokenizer.train(["Hello there.", "Good night."], vocab_size=30)
    tokenizer.decode(tokenizer.encode(["Hello."]))
    ```
    """

    def __init__(self, model_proto: bytes, source: str = "sentencepiece model"):
        import sentencepiece

        self.model_proto = bytes(model_proto)
        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)
        except (RuntimeError, OSError) as err:
            raise UserError(f"{source}: not a sentencepiece model ({err}); retrain the model") from None
        specials = (self.processor.pad_id(), self.processor.unk_id(), self.processor.bos_id(), self.processor.eos_id())
        if specials != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise UserError(f"{source}: sentencepiece model must use pad=0, unk=1, bos=2, eos=3, got {specials}")

    @classmethod
    def train(cls, sentences: Sequence[str], vocab_size: int, *, model_type: str = "unigram") -> "Tokenizer":
        """Train on ``sentences``; the vocabulary may end up smaller than ``vocab_size`` on tiny data."""
        import sentencepiece

        buffer = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(list(sentences)),
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            hard_vocab_limit=False,
            minloglevel=2,
            num_threads=2,
        )
        return cls(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: sentencepiece model missing (is the model directory complete?)")
        return cls(path.read_bytes(), source=str(path))

    def save(self, path: str | Path) -> None:
        from tasks.common.io import write_bytes_atomic

        write_bytes_atomic(path, self.model_proto)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.processor.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Text of each id sequence, cut at the first ``</s>``; pad and ``<s>`` are dropped."""
        out = []
        for sequence in ids:
            sequence = [int(i) for i in sequence]
            if EOS_ID in sequence:
                sequence = sequence[: sequence.index(EOS_ID)]
            out.append(self.processor.decode([i for i in sequence if i > EOS_ID or i == UNK_ID]))
        return out
