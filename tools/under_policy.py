"""Run one ``lstm-suite`` command under a Keras dtype policy (the suite has no policy flag).

Why: to check that a task trains under ``mixed_bfloat16`` as well as in float32 (issue 25) without
adding a setting to every task. The policy is set before the task code is imported, so every layer
the task builds computes in it (weights stay float32).

    python tools/under_policy.py mixed_bfloat16 forecasting train --data statsmodels:co2 --out /tmp/co2_bf16
    LSTM_CORE_BF16_GEMM=on python tools/under_policy.py mixed_bfloat16 forecasting evaluate --model /tmp/co2_bf16
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: under_policy.py POLICY <lstm-suite arguments>", file=sys.stderr)
        return 2
    import keras

    keras.mixed_precision.set_global_policy(argv[0])
    from tasks.common.cli import main as suite_main

    return suite_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
