"""How long to wait before trying again after a failure: the one backoff.

Used by every retry in amworker: the shim's reconnections to gearmand
(``worker.batch.gearman_loop``) and to Redis's pub/sub (``worker.batch.watcher``),
and the pool's database and Redis writes (``worker.pool.bookkeeping.RetryPolicy``).

Hazard: a reconnecting loop counts its attempts for as long as the server is
away, and ``first * factor**attempt`` as a float overflows (``OverflowError``)
once the power passes about 1e308 (attempt 1024 for a factor of 2; three hours
of a gearmand down at a 10 s cap). The exponent is therefore clamped to the
first attempt that reaches the cap, so a delay is a float for any attempt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Pauses ``first * factor**attempt``, capped at ``maximum``, less up to ``jitter`` of it.

    ``jitter`` is a fraction in [0, 1]: each pause is drawn uniformly from
    ``[d * (1 - jitter), d]``, so jitter only ever shortens a pause and
    ``maximum`` stays a bound. 0 (the default) gives the exact schedule.
    """

    first: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.0
    #: The attempt from which the pause is ``maximum``: beyond it nothing is
    #: computed, so no attempt count can overflow.
    _last_growth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.maximum:
            raise ValueError(f"backoff needs 0 <= first <= maximum, got {self.first} and {self.maximum}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be within [0, 1], got {self.jitter}")
        if self.factor == 1 or self.first == 0 or self.first == self.maximum:
            last = 0
        else:
            last = math.ceil(math.log(self.maximum / self.first, self.factor))
        object.__setattr__(self, "_last_growth", max(last, 0))

    def delay(self, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
        """The pause before retry number ``attempt`` (0-based: the first retry is 0).

        ``rand`` returns a float in [0, 1); it is only called with jitter.
        """
        exponent = min(max(attempt, 0), self._last_growth)
        pause = float(min(self.first * self.factor**exponent, self.maximum))
        if self.jitter:
            pause -= pause * self.jitter * rand()
        return pause

    def schedule(self, *, rand: Callable[[], float] = random.random) -> Schedule:
        """A fresh attempt counter over these pauses, for a loop that retries."""
        return Schedule(self, rand=rand)


class Schedule:
    """One retrying loop's position in a :class:`Backoff`: next pause, or start over."""

    def __init__(self, backoff: Backoff, *, rand: Callable[[], float] = random.random) -> None:
        self.backoff = backoff
        self.attempt = 0
        self._rand = rand

    def next(self) -> float:
        """The pause before the next retry; each call moves one attempt on."""
        pause = self.backoff.delay(self.attempt, rand=self._rand)
        self.attempt += 1
        return pause

    def reset(self) -> None:
        """Start over from the first pause (call it after a success)."""
        self.attempt = 0


#: The shim's reconnections (gearmand, Redis pub/sub): 0.5 s doubling to 10 s,
#: each less up to a fifth at random, so shims that lost the same server do
#: not all come back to it in the same instant.
RECONNECT = Backoff(first=0.5, factor=2.0, maximum=10.0, jitter=0.2)
