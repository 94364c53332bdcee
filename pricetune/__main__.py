"""`python -m pricetune ...`: the same command line as `pricetune`."""

import sys

from .cli import main

sys.exit(main())
