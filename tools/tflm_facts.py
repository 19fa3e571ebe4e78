"""TFLite Micro facts of one ``.tflite``: its ops, the op resolver it needs, the smallest tensor arena.

    python tools/tflm_facts.py export/model_int8.tflite [--c-array DIR] [--name g_model]

Prints one JSON object: ``model``, ``size_bytes``, ``ops`` and either ``tflm`` ("LiteRT-only:
...", for hybrid ops or ops TFLM has no kernel for) or ``op_resolver`` (the C++ lines),
``arena_bytes``, ``arena_recommended_bytes``, ``largest_failing_bytes``, ``subprocesses`` (see
:func:`lstm_core.tflm.measure_arena`) and, with ``--c-array``, ``c_sources`` (the files
:func:`lstm_core.tflm.write_c_array` wrote). A file that is not a ``.tflite``, or that TFLM
cannot load: ``error: ...`` on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from lstm_core.errors import InvalidModelError, TFLMError
from lstm_core.tflm import hybrid_ops, measure_arena, model_ops, op_resolver_code, write_c_array
from lstm_core.tflm.flatbuffer import model_bytes, parse
from lstm_core.tflm.sources import missing_kernels


def facts(model: str, c_array: str | None = None, name: str = "g_model") -> dict:
    """The facts this tool prints, for the ``.tflite`` at ``model``."""
    data, source = model_bytes(model)
    parse(data, source)  # a file that is not a .tflite: the error names it
    ops = model_ops(data)
    result = {"model": source, "size_bytes": len(data), "ops": sorted(set(ops))}
    hybrid = hybrid_ops(data)
    missing = missing_kernels(ops)
    if hybrid or missing:
        result["tflm"] = "LiteRT-only: " + (
            f"hybrid (weights-only int8) {', '.join(hybrid)}" if hybrid else f"no TFLM kernel for {', '.join(missing)}"
        )
        return result
    result["op_resolver"] = op_resolver_code(ops).splitlines()
    result.update(measure_arena(data))
    if c_array:
        written = write_c_array(model, c_array, name, arena_bytes=result["arena_recommended_bytes"])
        result["c_sources"] = [written[k] for k in ("model_data.cc", "model_data.h", "model_ops.h")]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/tflm_facts.py",
        description="TFLite Micro facts of a .tflite: ops, op resolver, smallest tensor arena.",
        allow_abbrev=False,
    )
    parser.add_argument("model", help=".tflite file")
    parser.add_argument("--c-array", metavar="DIR", help="also write model_data.cc/.h and model_ops.h there")
    parser.add_argument("--name", default="g_model", help="C array name (default g_model)")
    args = parser.parse_args(argv)
    try:
        result = facts(args.model, args.c_array, args.name)
    except (InvalidModelError, TFLMError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
