"""``lstm-suite translation evaluate`` / ``predict``: sacrebleu BLEU + chrF, Keras or LiteRT."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lstm_core.errors import UserError
from tasks.translation import data as D
from tasks.translation.decode import BeamConfig, KerasBackend, LiteRTBackend, beam_decode, greedy_decode

log = logging.getLogger(__name__)

ENCODER_TFLITE, STEP_TFLITE = "encoder.tflite", "decoder_step.tflite"
ENCODER_INT8, STEP_INT8 = "encoder_int8.tflite", "decoder_step_int8.tflite"


def corpus_scores(hypotheses, references) -> dict:
    """Corpus BLEU (13a tokenization) and chrF from sacrebleu on detokenized text."""
    import sacrebleu

    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    return {
        "bleu": round(float(bleu.corpus_score(hyps, refs).score), 2),
        "chrf": round(float(chrf.corpus_score(hyps, refs).score), 2),
        "bleu_signature": str(bleu.get_signature()),
    }


def backend_for(model_dir, runtime: str, seq2seq=None):
    model_dir = Path(model_dir)
    if runtime == "keras":
        return KerasBackend(seq2seq)
    names = (ENCODER_TFLITE, STEP_TFLITE) if runtime == "tflite" else (ENCODER_INT8, STEP_INT8)
    paths = [model_dir / "export" / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(
            f"{missing[0]} not found; run 'lstm-suite translation export --model {model_dir}"
            f"{' --int8' if runtime == 'tflite-int8' else ''}' first"
        )
    return LiteRTBackend(*paths)


def translate(backend, src_tok, tgt_tok, sentences, *, beam: int = 1, length_penalty: float = 0.6, max_length: int | None = None):
    src_ids = [s + [D.EOS_ID] for s in src_tok.encode(sentences)]
    if beam > 1:
        ids = beam_decode(backend, src_ids, BeamConfig(beam, length_penalty), max_length=max_length)
    else:
        ids = greedy_decode(backend, src_ids, max_length=max_length)
    return tgt_tok.decode(ids), ids


def run_evaluate(args) -> dict:
    from tasks.translation.train import load_model

    config, seq2seq, src_tok, tgt_tok = load_model(args.model)
    backend = backend_for(args.model, args.runtime, seq2seq)
    pairs = D.load_pairs(args.data, default_split="validation", limit=args.limit,
                         source_lang=args.source_lang, target_lang=args.target_lang)
    t0 = time.time()
    hyps, _ = translate(backend, src_tok, tgt_tok, [p[0] for p in pairs], beam=args.beam, length_penalty=args.length_penalty)
    seconds = time.time() - t0
    result = corpus_scores(hyps, [p[1] for p in pairs])
    if args.output:
        from lstm_core.io import write_bytes_atomic

        write_bytes_atomic(args.output, ("\n".join(hyps) + "\n").encode("utf-8"))
    result.update(
        sentences=len(pairs),
        runtime=args.runtime,
        beam=args.beam,
        length_penalty=args.length_penalty if args.beam > 1 else None,
        decode_seconds=round(seconds, 2),
        data=str(args.data),
    )
    return result


def run_predict(args) -> None:
    from tasks.translation.train import load_model

    config, seq2seq, src_tok, tgt_tok = load_model(args.model)
    sentences = list(args.text)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise UserError(f"{path}: no such file (expected one source sentence per line)")
        try:
            sentences += [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        except UnicodeDecodeError:
            raise UserError(f"{path}: not valid UTF-8") from None
    if not sentences or not all(s.strip() for s in sentences):
        raise UserError("nothing to translate: pass non-empty sentences or --input FILE")
    backend = backend_for(args.model, args.runtime, seq2seq)
    hyps, _ = translate(backend, src_tok, tgt_tok, sentences, beam=args.beam, length_penalty=args.length_penalty)
    for h in hyps:
        print(h)
