"""Fixtures: a real ``ctid --demo`` (ctid with its embedded csta-sim switch) for the session.

The binary is ``$CTID_BIN``, else ``target/debug/ctid`` of this repository, else ``ctid`` on the
PATH. Its log (``$CTID_LOG_DIR``, default ``target/python`` of the repository) names the
WebSocket URL and csta-sim's control API address (docs/csta-sim.md), which the tests use to act
at the simulated phones.

Tests share one server, so each test uses its own DNs of the demo switch (README.md of this
client lists them): README example 1001, 1002, 2001; requests 1008; calls 1003, 1004; hot
desking 2003 at 1005 (and the demo's 2010 at 1010, read only); agent 2004; resume 1006, 1007;
switchover 2005, 2006; server list 2007; a refused resume 2008 (on a second server).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctid_client import Client, Options

REPO = Path(__file__).resolve().parents[3]
#: Quick reconnects for the tests (the defaults are 0.1 s doubling to 5 s, 60 s in all).
FAST = Options(min_backoff=0.05, max_backoff=0.5, give_up_after=20.0)
#: The deadline of every wait in the tests.
WAIT = 15.0

# A direct opener: no proxy from the environment for the simulator's loopback API.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Ctid:
    """A running ``ctid --demo``."""

    url: str  #: ws://127.0.0.1:PORT/ws
    sim: str  #: csta-sim's control API, http://127.0.0.1:PORT
    log: Path
    proc: subprocess.Popen[bytes]

    def sim_post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST to csta-sim's control API; the JSON answer (an error status raises)."""
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(
            self.sim + path, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(req, timeout=WAIT) as resp:
                return json.loads(resp.read() or b"{}")  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"csta-sim {path}: {e.code} {e.read().decode(errors='replace')}") from None

    async def phone(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`sim_post` off the event loop."""
        return await asyncio.to_thread(self.sim_post, path, body)


def ctid_binary() -> str:
    env = os.environ.get("CTID_BIN")
    if env:
        return env
    built = REPO / "target" / "debug" / "ctid"
    if built.exists():
        return str(built)
    found = shutil.which("ctid")
    if found:
        return found
    raise RuntimeError("no ctid binary: set CTID_BIN (cargo build --bin ctid builds target/debug/ctid)")


_started = 0


def start_ctid() -> Ctid:
    """Starts ``ctid --demo --listen 127.0.0.1:0`` and waits (30 s at most) until its log names
    the WebSocket URL and the control API and it is ready (its CSTA link up)."""
    global _started
    _started += 1
    log_dir = Path(os.environ.get("CTID_LOG_DIR", REPO / "target" / "python"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"ctid-{_started}.log"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [ctid_binary(), "--demo", "--listen", "127.0.0.1:0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    deadline = time.monotonic() + 30
    while True:
        text = log.read_text(errors="replace")
        url = re.search(r"ws://127\.0\.0\.1:\d+/ws", text)
        sim = re.search(r"control API: (http://127\.0\.0\.1:\d+)", text)
        if url and sim and _ready(url.group(0)):
            return Ctid(url=url.group(0), sim=sim.group(1), log=log, proc=proc)
        if proc.poll() is not None:
            raise RuntimeError(f"ctid --demo exited ({proc.returncode}):\n{text}")
        if time.monotonic() > deadline:
            stop_ctid(proc)
            raise RuntimeError(f"ctid --demo did not start within 30 s:\n{text}")
        time.sleep(0.05)


def _ready(ws_url: str) -> bool:
    """``GET /readyz`` answers 200: the CSTA link is up and start-up monitoring done
    (docs/operations.md)."""
    http = "http" + ws_url[len("ws") : -len("/ws")]
    try:
        with _OPENER.open(http + "/readyz", timeout=2) as resp:
            return resp.status == 200  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError):
        return False


def stop_ctid(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def ctid() -> Any:
    server = start_ctid()
    yield server
    stop_ctid(server.proc)


@pytest.fixture
def second_ctid() -> Any:
    """Another ctid, which knows none of the first one's sessions."""
    server = start_ctid()
    yield server
    stop_ctid(server.proc)


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def connect(ctid: Ctid) -> AsyncIterator[ClientFactory]:
    """``await connect(urls=None, **kwargs)``: a client of the test's server (or of ``urls``),
    closed after the test."""
    made: list[Client] = []

    async def make(urls: str | list[str] | None = None, **kwargs: Any) -> Client:
        kwargs.setdefault("options", FAST)
        kwargs.setdefault("application_name", "pytest")
        c = await Client.connect(urls if urls is not None else ctid.url, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


async def until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Waits for ``cond()`` with a deadline (polling the event loop, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
