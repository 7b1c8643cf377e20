"""Where to connect when there is more than one server (docs/protocol.md section 6.10).

With a pair of ctid nodes only the primary serves. Another node accepts the WebSocket and closes
it at once with close code 4010 (:data:`CLOSE_NOT_PRIMARY`) and the reason
``not primary; primary=<ws URL>`` or ``not primary; primary unknown``; a primary that hands over
closes its connections the same way.

:class:`Search` decides, without doing any IO, which URL to try next and when (the same plan as
the Rust client's ``failover::Search``):

* a primary named by a 4010 at once, with no backoff, even one that is not in the list;
* otherwise (a refused connect, a dropped or timed-out attempt, ``primary unknown``) the next URL
  of the list, round robin, after the backoff (doubling from ``min_backoff`` to ``max_backoff``);
* ``give_up_after`` bounds the whole search; a URL that can never work (not a WebSocket URL, an
  HTTP 4xx answer such as 401) is left out for the rest of the search, and when none is left the
  search ends at once.

Redirects are bounded so that two nodes naming each other cannot keep a client bouncing: after
one URL taken from the list, each primary is followed at most once and at most
:data:`MAX_REDIRECTS` of them; past that the search goes back to the list, with the backoff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

#: Close code of a node that is not the primary.
CLOSE_NOT_PRIMARY = 4010
#: Close code ctid uses when the session was resumed on another connection (section 6.9).
CLOSE_RESUMED_ELSEWHERE = 4001
#: Redirects followed in a row, after one URL taken from the list, before going back to it.
MAX_REDIRECTS = 4
#: The shortest backoff used, whatever the options say (no busy loop).
BACKOFF_FLOOR = 0.010
#: How long one attempt may take: TCP and WebSocket handshake, the first frame, and the answer
#: to RequestResumeSession. Also the bound on the first connection's first frame.
ATTEMPT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Options:
    """How the client looks for a server and reconnects (seconds)."""

    #: The wait before the first attempt after a loss; doubled after each failed attempt.
    min_backoff: float = 0.1
    #: The longest wait between attempts.
    max_backoff: float = 5.0
    #: Stop trying this long after a loss (or after the first attempt of a first connection).
    #: Keep it longer than the server's ``resume-window`` (30 s by default).
    give_up_after: float = 60.0


def not_primary(code: int, reason: str) -> tuple[bool, str | None]:
    """``(False, None)`` for a close that is not a 4010; ``(True, url)`` for
    ``not primary; primary=<url>``; ``(True, None)`` for ``primary unknown`` (or none named)."""
    if code != CLOSE_NOT_PRIMARY:
        return (False, None)
    at = reason.find("primary=")
    if at < 0:
        return (True, None)
    url = re.split(r"[\s;,]", reason[at + len("primary=") :], maxsplit=1)[0]
    return (True, url or None)


@dataclass(frozen=True)
class NotPrimary:
    """Closed with 4010: the node is not the primary; the primary it names, if any."""

    primary: str | None
    why: str


@dataclass(frozen=True)
class Retry:
    """Worth another try later: refused, dropped, timed out, an unexpected close."""

    why: str


@dataclass(frozen=True)
class Fatal:
    """This URL will not work however often it is tried (not a WebSocket URL, HTTP 4xx)."""

    why: str


Failure = Union[NotPrimary, Retry, Fatal]


@dataclass(frozen=True)
class Try:
    """Try this URL now."""

    url: str


@dataclass(frozen=True)
class Wait:
    """Nothing to try before this instant (``time.monotonic()`` scale)."""

    until: float


@dataclass(frozen=True)
class GiveUp:
    """The search is over. ``last``: the last failure, ``<url>: <why>``; ``exhausted``: every URL
    failed for good before ``give_up_after`` passed."""

    last: str
    exhausted: bool


Step = Union[Try, Wait, GiveUp]


class Search:
    """The plan of a search for the node that serves; the caller says what happened and when
    (``now`` in seconds, monotonic), :meth:`step` says what to do."""

    def __init__(self, urls: list[str], opts: Options) -> None:
        lo = max(opts.min_backoff, BACKOFF_FLOOR)
        self.opts = Options(min_backoff=lo, max_backoff=max(opts.max_backoff, lo), give_up_after=opts.give_up_after)
        self.urls = list(urls)
        self._next = 0
        self._dead = [False] * len(self.urls)
        self._give_up_at = 0.0
        self._backoff = lo
        self._not_before: float | None = None
        self._redirect: str | None = None
        self._followed: list[str] = []
        self._last: str | None = None
        self._over = False

    def begin(self, now: float, *, redirect: str | None = None, backoff: bool = False) -> None:
        """Starts a search at ``now``: at once (a first connection), after the backoff
        (``backoff=True``, after a lost connection) or at the primary a 4010 named."""
        self._give_up_at = now + self.opts.give_up_after
        self._backoff = self.opts.min_backoff
        self._dead = [False] * len(self.urls)
        self._redirect = None
        self._followed = []
        self._not_before = None
        self._last = None
        self._over = False
        if redirect is not None:
            self._followed.append(redirect)
            self._redirect = redirect
        elif backoff:
            self._back_off(now)

    def step(self, now: float) -> Step:
        """What to do at ``now``."""
        if self._over:
            return self._give_up(False)
        if self._redirect is not None:
            url, self._redirect = self._redirect, None
            return Try(url)
        n = len(self.urls)
        live = [(self._next + k) % n for k in range(n) if not self._dead[(self._next + k) % n]]
        if not live:
            self._over = True
            return self._give_up(True)
        i = live[0]
        if self._not_before is not None and now < self._not_before and now < self._give_up_at:
            return Wait(min(self._not_before, self._give_up_at))
        self._not_before = None
        self._next = (i + 1) % n
        self._followed = []
        return Try(self.urls[i])

    def failed(self, now: float, url: str, failure: Failure) -> None:
        """The attempt at ``url`` started by the last :meth:`step` failed at ``now``."""
        self._last = f"{url}: {failure.why}"
        if now >= self._give_up_at:
            self._over = True
            return
        if isinstance(failure, NotPrimary) and failure.primary is not None:
            p = failure.primary
            if p != url and p not in self._followed and len(self._followed) < MAX_REDIRECTS:
                self._followed.append(p)
                self._redirect = p
                return
        if isinstance(failure, Fatal):
            self._dead = [d or u == url for u, d in zip(self.urls, self._dead)]
        self._back_off(now)

    def served(self, url: str) -> None:
        """``url`` serves: a later search starts after it in the list."""
        if url in self.urls:
            self._next = (self.urls.index(url) + 1) % len(self.urls)

    def attempt_deadline(self, now: float) -> float:
        """The deadline of an attempt starting at ``now``: :data:`ATTEMPT_TIMEOUT`, cut short by
        the end of the search (but never shorter than :data:`BACKOFF_FLOOR`)."""
        return min(now + ATTEMPT_TIMEOUT, max(self._give_up_at, now + BACKOFF_FLOOR))

    def _back_off(self, now: float) -> None:
        self._not_before = now + self._backoff
        self._backoff = min(self._backoff * 2, self.opts.max_backoff)

    def _give_up(self, exhausted: bool) -> GiveUp:
        if self._last is not None:
            last = self._last
        elif not self.urls:
            last = "no server URL given"
        else:
            last = "nothing tried"
        return GiveUp(last=last, exhausted=exhausted)
