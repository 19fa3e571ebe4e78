import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests may run from a checkout that was not pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): one worker per CPU this process may use, at most 4 — each
    worker imports TensorFlow (~1 GB), and more than 4 stop paying on this suite."""
    return max(1, min(4, len(os.sched_getaffinity(0))))
