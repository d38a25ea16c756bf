"""One log format for every amworker process: human lines, or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

#: The human format: time, level, process role, logger, message.
TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(processName)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for key in ("function", "batch", "slice"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_amworker", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._amworker = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # gearman3 logs every poll at DEBUG; it drowns everything else.
    logging.getLogger("gearman").setLevel(max(logging.INFO, root.level))
