"""``python -m worker.cli``: the ``amworker`` command without its console script."""

import sys

from worker.cli.command import main

sys.exit(main())
