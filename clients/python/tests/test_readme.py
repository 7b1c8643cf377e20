"""The examples of README.md, run against the test server."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import WAIT, ClientFactory, Ctid

README = Path(__file__).resolve().parents[1] / "README.md"
DEFAULT_URL = "ws://127.0.0.1:7000/ws"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_example_runs(ctid: Ctid) -> None:
    example = python_blocks()[0]
    assert DEFAULT_URL in example
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    done = subprocess.run(
        [sys.executable, "-c", example.replace(DEFAULT_URL, ctid.url)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"calling 1002, ConnID [0-9a-f]{16}", lines[0]), lines
    assert lines[1:] == ["2001 at 1001", "HOST_DN 1001", "refused: 41 ThisDN 1005 not registered"]


async def test_the_readme_event_snippet_runs(ctid: Ctid, connect: ClientFactory, capsys: object) -> None:
    snippet = python_blocks()[1]
    scope: dict[str, object] = {}
    exec("async def snippet(client):\n" + textwrap.indent(snippet, "    "), scope)
    client = await connect()
    await client.register("1002")
    run = asyncio.create_task(scope["snippet"](client))  # type: ignore[operator]
    await asyncio.sleep(0)  # the snippet subscribes before the call starts
    await ctid.phone("/calls", {"from": "1002", "to": "1001"})
    await ctid.phone("/phones/1002/hangup")
    await asyncio.wait_for(run, WAIT)
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "callback: EventDialing" in out and re.search(r"^EventReleased [0-9a-f]{16}$", out, re.M), out
