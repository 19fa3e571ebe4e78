import sys

from tasks.common.cli import task_main

sys.exit(task_main("sentiment"))
