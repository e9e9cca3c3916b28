"""In-process rate limiting and lockout bookkeeping for the anonymous auth routes.

**Per process.** Counters live in this process's memory: with N api replicas an address
gets N times the configured budget, and a restart forgets them. That is acceptable for the
per-IP limit, which is a brake on floods, not the account protection; the per-account
lockout that HIPAA's login monitoring needs is stored on the user row in the database and
holds across every replica. A shared limiter (Redis) can replace this class behind the same
`hit` call.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from helpdesk.runtime import Runtime

WINDOW_SECONDS = 60.0
# Beyond this many tracked keys, idle ones are swept so memory stays bounded under a flood.
_SWEEP_ABOVE = 10_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one request: allowed, or how long to wait."""

    allowed: bool
    retry_after: int = 0
    # True for the first refusal of a key in its window, so that a flood is audited once,
    # not once per request.
    first_refusal: bool = False


class SlidingWindowLimiter:
    """At most `limit` hits per key in any `window` seconds (a sliding log per key)."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS) -> None:
        self.limit = max(1, limit)
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._refused: dict[str, float] = {}
        # Requests run on one event loop, but a thread pool may call in too.
        self._lock = threading.Lock()

    def hit(self, key: str, *, now: float | None = None) -> Verdict:
        """Count one request of `key`; refuse it when the window is full."""
        at = time.monotonic() if now is None else now
        with self._lock:
            log = self._hits.setdefault(key, deque())
            while log and log[0] <= at - self.window:
                log.popleft()
            if len(log) >= self.limit:
                retry = max(1, math.ceil(log[0] + self.window - at))
                first = self._refused.get(key, -math.inf) <= at - self.window
                if first:
                    self._refused[key] = at
                return Verdict(False, retry, first)
            log.append(at)
            if len(self._hits) > _SWEEP_ABOVE:
                self._sweep(at)
            return Verdict(True)

    def _sweep(self, at: float) -> None:
        stale = [k for k, log in self._hits.items() if not log or log[-1] <= at - self.window]
        for key in stale:
            self._hits.pop(key, None)
            self._refused.pop(key, None)


@dataclass
class _Lock:
    failures: int = 0
    lockouts: int = 0
    locked_until: float = 0.0


class UnknownAccountLockouts:
    """Lockout bookkeeping for emails that have no account, so that a guesser sees the
    same 401…401, 429 sequence whether or not the account exists (per process, keyed by
    the email's blind index: no address is held in memory)."""

    def __init__(self, max_failures: int, lockout_seconds: int) -> None:
        self.max_failures = max(1, max_failures)
        self.lockout_seconds = lockout_seconds
        self._state: dict[str, _Lock] = {}
        self._lock = threading.Lock()

    def locked_for(self, key: str, *, now: float | None = None) -> int:
        """Seconds the key stays locked (0 when it is not)."""
        at = time.monotonic() if now is None else now
        with self._lock:
            state = self._state.get(key)
            if state is None or state.locked_until <= at:
                return 0
            return max(1, math.ceil(state.locked_until - at))

    def fail(self, key: str, *, now: float | None = None) -> None:
        """Count a failure; lock with doubling backoff at the threshold."""
        at = time.monotonic() if now is None else now
        with self._lock:
            if len(self._state) > _SWEEP_ABOVE:
                self._state = {k: s for k, s in self._state.items() if s.locked_until > at}
            state = self._state.setdefault(key, _Lock())
            state.failures += 1
            if state.failures >= self.max_failures:
                state.locked_until = at + lockout_duration(self.lockout_seconds, state.lockouts)
                state.lockouts += 1
                state.failures = 0


MAX_LOCKOUT_SECONDS = 24 * 3600


def lockout_duration(base_seconds: int, previous_lockouts: int) -> int:
    """Backoff: the first lockout lasts `base_seconds`, each further one twice as long,
    capped at a day."""
    return int(min(MAX_LOCKOUT_SECONDS, base_seconds * 2 ** min(previous_lockouts, 16)))


def limiter(runtime: Runtime, bucket: str) -> SlidingWindowLimiter:
    """The process's limiter for one bucket (login, register, ...), built on first use."""
    limiters: dict[str, SlidingWindowLimiter] = runtime.extras.setdefault("rate_limiters", {})
    found = limiters.get(bucket)
    if found is None:
        found = limiters[bucket] = SlidingWindowLimiter(runtime.settings.rate_limit_per_minute)
    return found


def unknown_account_lockouts(runtime: Runtime) -> UnknownAccountLockouts:
    tracker: UnknownAccountLockouts = runtime.extras.setdefault(
        "unknown_account_lockouts",
        UnknownAccountLockouts(
            runtime.settings.login_max_failures, runtime.settings.login_lockout_seconds
        ),
    )
    return tracker
