"""Rate limiting and lockout bookkeeping for the anonymous auth routes.

**Shared when Redis is configured.** The per-IP budget is a moving window kept by the
`limits` library: in `HELPDESK_REDIS_URL`'s Redis when set (every API replica counts
against one budget, and a restart forgets nothing), else in this process's memory (one
replica: the embedded default). Should Redis fail, a request is allowed and one warning is
logged: the limiter is a brake on floods, while the per-account lockout that HIPAA's login
monitoring needs is stored on the user row in the database and holds across every replica
regardless.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from helpdesk.runtime import Runtime

log = logging.getLogger("helpdesk.ratelimit")
WINDOW_SECONDS = 60
# Beyond this many tracked keys, unlocked ones are swept so memory stays bounded.
_SWEEP_ABOVE = 10_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one request: allowed, or how long to wait."""

    allowed: bool
    retry_after: int = 0
    # True for the first refusal of a key in its window, so that a flood is audited once,
    # not once per request.
    first_refusal: bool = False


def storage_for(redis_url: str | None) -> Storage:
    """Redis (shared by every replica) when configured, else this process's memory."""
    if redis_url:
        uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        return RedisStorage(uri, implementation="redispy", key_prefix="helpdesk-ratelimit")
    return MemoryStorage()


class RequestLimiter:
    """At most `limit` hits per key in any `window` seconds (a moving window)."""

    def __init__(
        self, storage: Storage, bucket: str, limit: int, window: int = WINDOW_SECONDS
    ) -> None:
        self.bucket = bucket
        per = RateLimitItemPerMinute if window == 60 else RateLimitItemPerSecond
        amount = 1 if window == 60 else window
        self.item = per(max(1, limit), amount, namespace=f"auth-{bucket}")
        # One audited refusal per key and window.
        self.refusal_item = per(1, amount, namespace=f"auth-{bucket}-refused")
        self.strategy = MovingWindowRateLimiter(storage)
        self._warned = False

    async def hit(self, key: str) -> Verdict:
        """Count one request of `key`; refuse it when the window is full."""
        try:
            if await self.strategy.hit(self.item, key):
                return Verdict(True)
            stats = await self.strategy.get_window_stats(self.item, key)
            first = await self.strategy.hit(self.refusal_item, key)
        except Exception as exc:  # the shared store is down: a brake, not a gate
            if not self._warned:
                self._warned = True
                log.warning(
                    "rate limiter store unavailable (%s); allowing requests",
                    type(exc).__name__,
                )
            return Verdict(True)
        self._warned = False
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        return Verdict(False, retry, first)


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


def limiter(
    runtime: Runtime, bucket: str, *, limit: int | None = None, window: int = WINDOW_SECONDS
) -> RequestLimiter:
    """The process's limiter for one bucket (login, register, analytics export, ...), built
    on first use; `limit` defaults to `rate_limit_per_minute`, `window` is in seconds."""
    limiters = runtime.rate_limiters
    found = limiters.get(bucket)
    if found is None:
        if runtime.rate_limit_storage is None:
            runtime.rate_limit_storage = storage_for(runtime.settings.redis_url)
        storage = runtime.rate_limit_storage
        budget = runtime.settings.rate_limit_per_minute if limit is None else limit
        found = limiters[bucket] = RequestLimiter(storage, bucket, budget, window)
    return found


def unknown_account_lockouts(runtime: Runtime) -> UnknownAccountLockouts:
    if runtime.unknown_account_lockouts is None:
        runtime.unknown_account_lockouts = UnknownAccountLockouts(
            runtime.settings.login_max_failures, runtime.settings.login_lockout_seconds
        )
    return runtime.unknown_account_lockouts
