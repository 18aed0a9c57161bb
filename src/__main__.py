"""`python -m record_deleter`: the same command as `record-deleter`."""

import sys

from .entrypoints.cli import main

sys.exit(main())
