"""gearman3 0.2.1's ``GearmanWorker``: the stock worker the bench's baselines run."""

from collections.abc import Callable

from gearman.connection import GearmanConnection
from gearman.job import GearmanJob

class GearmanWorker:
    connection_class: type[GearmanConnection]
    def __init__(self, host_list: list[str] | None = None) -> None: ...
    def register_task(
        self, task: bytes | str, callback_function: Callable[[GearmanWorker, GearmanJob], bytes | str]
    ) -> bytes | str: ...
    def work(self, poll_timeout: float = 60.0) -> None: ...
    def shutdown(self) -> None: ...
