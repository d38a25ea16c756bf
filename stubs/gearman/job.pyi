"""gearman3 0.2.1's ``GearmanJob``, as a worker's callback receives it."""

from gearman.connection import GearmanConnection

class GearmanJob:
    connection: GearmanConnection
    handle: bytes
    task: bytes | str
    unique: bytes | None
    data: bytes
    def __init__(
        self,
        connection: GearmanConnection,
        handle: bytes,
        task: bytes | str,
        unique: bytes | None,
        data: bytes,
    ) -> None: ...
