"""Translation quality: corpus BLEU and chrF from sacrebleu on detokenized text."""

from __future__ import annotations

from typing import Sequence


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU (13a tokenization, exp smoothing) and chrF (chrF2), rounded to 0.01.

    Args:
        hypotheses: one detokenized translation per sentence.
        references: one reference per sentence, same order.

    Example:

    ```python
    corpus_scores(["Le chat dort."], ["Le chat dort."])["bleu"]   # 100.0
    ```
    """
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    return {
        "bleu": round(float(bleu.corpus_score(hyps, refs).score), 2),
        "chrf": round(float(chrf.corpus_score(hyps, refs).score), 2),
        "bleu_signature": str(bleu.get_signature()),
    }


def identical_count(first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]) -> int:
    """How many sentences two decodings translated to exactly the same token ids."""
    return sum(list(a) == list(b) for a, b in zip(first, second))
