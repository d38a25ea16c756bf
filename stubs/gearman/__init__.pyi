"""Type stubs for gearman3 0.2.1, which ships none: only the names amworker uses.

Written from the package's source; kept narrow on purpose, so a new use of
gearman3 fails type checking until its stub is written here too.
"""

from gearman.worker import GearmanWorker as GearmanWorker

__all__ = ["GearmanWorker"]
