"""CPU time per inference (batch 1) of a speech_commands export in LiteRT and TFLM, with sizes.

Why: the task README's size/arena/latency table. Each runtime classifies the same held-out
clips (the model's test split) one at a time; the streaming model is fed hop by hop. Times are
process CPU seconds (``time.process_time``) per clip or per hop, the median of ``--repeats``
passes, single-threaded LiteRT.

    python tools/speech_benchmark.py --model saved_models/xval_tflm/nicolas --clips 50

The last stdout line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from lstm_core.export import TFLiteModel
from lstm_core.tflm import TFLMModel
from tasks.speech_commands import data as speech_data
from tasks.speech_commands import model as speech_model
from tasks.speech_commands import streaming as speech_streaming
from tasks.speech_commands.artifacts import STREAMING_FILES, SpeechModelDir


def cpu_seconds(function, repeats: int) -> float:
    """Median CPU seconds of ``function()`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported speech_commands model directory")
    parser.add_argument("--clips", type=int, default=50, help="held-out clips per runtime")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    directory = SpeechModelDir.open(args.model)
    split = directory.split()
    names = split["testing"][:: max(1, len(split["testing"]) // args.clips)][: args.clips]
    clips = speech_data.load_clips([Path(split["data"]) / n for n in names], directory.data)
    report = directory.export_report()
    results = {"clips": len(clips), "model": str(directory.path)}
    for runtime, name, section in (("tflite", "model_float.tflite", "tflite_float"),
                                   ("tflite-int8", "model_int8.tflite", "tflite_int8")):
        path = directory.export_file(name)
        for engine, runner in (("litert", TFLiteModel(path, num_threads=1)), ("tflm", TFLMModel(path))):
            seconds = cpu_seconds(lambda: [runner(c[None]) for c in clips], args.repeats)
            results[f"{runtime}/{engine}_ms_per_clip"] = round(1000 * seconds / len(clips), 3)
        results[f"{runtime}/bytes"] = report["sizes"][name]
        results[f"{runtime}/tflm_arena_bytes"] = report[section]["tflm"]["arena_bytes"]
    stream_path = directory.export_file(STREAMING_FILES["float"])
    model = speech_model.load_trained_model(directory)
    initial = speech_streaming.initial_streaming_state(model)
    hop = directory.model.hop_samples
    hops = len(clips) * directory.model.num_frames
    for engine, runner in (("litert", TFLiteModel(stream_path, num_threads=1)), ("tflm", TFLMModel(stream_path))):
        seconds = cpu_seconds(
            lambda: [speech_streaming.stream_clip(runner, c, list(initial), hop) for c in clips], args.repeats)
        results[f"streaming/{engine}_ms_per_hop"] = round(1000 * seconds / hops, 4)
    results["streaming/bytes"] = report["sizes"][STREAMING_FILES["float"]]
    results["streaming/tflm_arena_bytes"] = report["streaming"]["tflite"]["tflm"]["arena_bytes"]
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
