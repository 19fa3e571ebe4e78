from tasks.common.cli import main
import sys

sys.exit(main())
