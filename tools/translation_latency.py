"""CPU time per encoder call and per decoder step of a translation export, per runtime (batch 1).

```sh
python tools/translation_latency.py --model saved_models/translation --data tasks/samples/translation/eng-fra.dev.tsv
```

Prints one JSON object: for each runtime (``tflite``, ``tflite-int8``, ``tflm``) the mean CPU
milliseconds (``time.process_time``) of one encoder call and of one decoder step, measured along
greedy decoding of the first ``--sentences`` sentences.
"""

from __future__ import annotations

import argparse
import json
import time


def measure(backend, source_ids) -> dict:
    """Mean CPU ms of ``encode`` and ``step`` while greedy-decoding ``source_ids`` one by one."""
    import numpy as np

    from tasks.translation.data import BOS_ID, EOS_ID
    from tasks.translation.decode import default_max_length

    encode_time = step_time = 0.0
    steps = 0
    for ids in source_ids:
        source = np.asarray([ids], np.int32)
        started = time.process_time()
        memory, keys, h, c = backend.encode(source)
        encode_time += time.process_time() - started
        mask = np.ones_like(source, np.float32)
        token = np.asarray([BOS_ID], np.int32)
        for _ in range(default_max_length(len(ids))):
            started = time.process_time()
            logits, h, c = backend.step(token, h, c, memory, keys, mask)
            step_time += time.process_time() - started
            steps += 1
            token = np.argmax(logits, axis=-1).astype(np.int32)
            if token[0] == EOS_ID:
                break
    return {
        "encoder_ms": round(1000 * encode_time / len(source_ids), 3),
        "decoder_step_ms": round(1000 * step_time / max(steps, 1), 3),
        "sentences": len(source_ids),
        "steps": steps,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", default="saved_models/translation")
    parser.add_argument("--data", default="tasks/samples/translation/eng-fra.dev.tsv")
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--runtimes", default="tflite,tflite-int8,tflm")
    args = parser.parse_args(argv)

    from tasks.common.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from tasks.translation.artifacts import TranslationModelDir
    from tasks.translation.data import read_pairs, source_ids
    from tasks.translation.decode import LiteRTBackend, TFLMBackend

    directory = TranslationModelDir.open(args.model)
    source_tokenizer, _ = directory.tokenizers()
    ids = source_ids(source_tokenizer, [p[0] for p in read_pairs(args.data)[: args.sentences]])
    result = {}
    for runtime in args.runtimes.split(","):
        parts = directory.export_parts(runtime)
        backend = TFLMBackend(*parts) if runtime == "tflm" else LiteRTBackend(*parts)
        result[runtime] = measure(backend, ids)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
