import sys

from lstm_core.cli import task_main

sys.exit(task_main("forecasting"))
