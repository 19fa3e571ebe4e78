from lstm_core.cli import main
import sys

sys.exit(main())
