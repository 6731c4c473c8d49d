"""A requests-per-minute and tokens-per-minute limiter over a sliding 60-second window, shared by the threads
that call a vendor's API (`eval.api_model`).

    limiter = RateLimiter(requests_per_minute=500, tokens_per_minute=30_000)
    ticket = limiter.acquire(estimated_tokens)     # blocks until both budgets allow the request
    ...send...
    limiter.settle(ticket, reply_tokens)           # the window counts what the request really used

Hand-rolled because the token count of a request is known only after its reply: the window holds an estimate
until then and the real count after, which the request-only limiters on PyPI (e.g. `limits`, `ratelimit`)
do not model.  A request larger than the whole token budget waits for an empty window, then goes alone.
`clock` and `sleep` are injectable so tests can run the window on a fake clock.
"""

from __future__ import annotations

import threading
import time

WINDOW = 60.0   # seconds


class RateLimiter:
    def __init__(self, requests_per_minute: int = 0, tokens_per_minute: int = 0, clock=time.monotonic,
                 sleep=time.sleep):
        """0 means no limit for that budget."""
        self.rpm, self.tpm = int(requests_per_minute), int(tokens_per_minute)
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._window: list[list[float]] = []   # [start time, tokens] of each request in the last WINDOW seconds

    def _wait(self, now: float, tokens: float) -> float:
        """Seconds until a request of `tokens` fits (0: now).  Called with the lock held."""
        self._window = [entry for entry in self._window if entry[0] > now - WINDOW]
        waits = [0.0]
        if self.rpm and len(self._window) >= self.rpm:
            waits.append(self._window[len(self._window) - self.rpm][0] + WINDOW - now)
        if self.tpm and self._window:
            excess = sum(e[1] for e in self._window) + tokens - self.tpm
            for start, used in self._window:      # oldest first: when enough of the window has expired
                if excess <= 0:
                    break
                excess -= used
                waits.append(start + WINDOW - now)
        return max(waits)

    def acquire(self, tokens: float = 0.0) -> list[float]:
        """Blocks until a request of about `tokens` fits both budgets; returns its ticket for `settle`."""
        while True:
            with self._lock:
                now = self.clock()
                wait = self._wait(now, tokens)
                if wait <= 0:
                    ticket = [now, float(tokens)]
                    self._window.append(ticket)
                    return ticket
            self.sleep(wait)

    def settle(self, ticket: list[float], tokens: float) -> None:
        """Replaces a request's estimate by the tokens it really used."""
        with self._lock:
            ticket[1] = float(tokens)
