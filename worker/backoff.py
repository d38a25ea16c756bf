"""How long to wait before trying again after a failure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: ``first * factor**n``, capped at ``maximum``."""

    first: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0

    def delay(self, attempt: int) -> float:
        """The pause before reconnection attempt ``attempt`` (0-based)."""
        return float(min(self.first * self.factor**attempt, self.maximum))
