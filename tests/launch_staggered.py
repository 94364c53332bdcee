"""`python -m pricetune` for tests/test_distributed.py, with rank r starting 1.5 x r seconds late
(ranks that named a run from their own clocks would disagree)."""

import os
import sys
import time

time.sleep(1.5 * int(os.environ.get("RANK", "0")))

from pricetune.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
