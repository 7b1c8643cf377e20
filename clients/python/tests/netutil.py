"""Network helpers of the tests: a TCP proxy that can drop its connections and refuse new ones,
a WebSocket node that is "not primary" (close 4010), and a relay that hands its clients over with
a 4010 (a switchover, docs/protocol.md section 6.10)."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.server import Server, ServerConnection


def host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    assert u.hostname is not None and u.port is not None
    return u.hostname, u.port


def dead_url() -> str:
    """A ws URL where nothing listens (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target`` (a ws URL). :meth:`drop` cuts every connection
    without a close frame (a lost network); while ``refuse`` is set new connections are closed at
    once; ``target`` may be changed (e.g. to a server that restarted). While ``hold`` is set,
    what the server sends is kept back (``held`` counts the bytes) and lost on a drop: frames
    ctid wrote that never reached the client."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.refuse = False
        self.hold = False
        self.held = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    def drop(self) -> None:
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        self.accepted += 1
        host, port = host_port(self.target)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.hold and dst is writer:
                        self.held += len(data)
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()
                src_w = writer if dst is up_writer else up_writer
                src_w.transport.abort()

        for t in (asyncio.create_task(pump(reader, up_writer)), asyncio.create_task(pump(up_reader, writer))):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)


async def not_primary_node(reason: str) -> Server:
    """A node that accepts the WebSocket and closes it at once with 4010 ``reason``."""

    async def handler(ws: ServerConnection) -> None:
        await ws.close(4010, reason)

    return await websockets.serve(handler, "127.0.0.1", 0)


def server_url(server: Server) -> str:
    port = next(iter(server.sockets)).getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


class Relay:
    """A WebSocket node in front of ctid: relays frames both ways until :meth:`switch_over`,
    which drops the connections to ctid (the session stays resumable) and closes its clients with
    4010 naming ``primary``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.clients: set[ServerConnection] = set()
        self._ups: set[websockets.ClientConnection] = set()
        self.server: Server | None = None
        self._switching = False

    async def start(self) -> Relay:
        self.server = await websockets.serve(self._handler, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return server_url(self.server)

    async def _handler(self, ws: ServerConnection) -> None:
        up = await websockets.connect(self.upstream, proxy=None)
        self.clients.add(ws)
        self._ups.add(up)

        async def pump(src: websockets.ClientConnection | ServerConnection, dst: websockets.ClientConnection | ServerConnection) -> None:
            try:
                async for msg in src:
                    await dst.send(msg)
            except websockets.ConnectionClosed:
                pass

        await asyncio.wait(
            {asyncio.create_task(pump(ws, up)), asyncio.create_task(pump(up, ws))},
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._switching:
            await ws.wait_closed()  # closed by switch_over with 4010, not by returning

    async def switch_over(self, primary: str) -> None:
        self._switching = True
        for up in list(self._ups):
            up.transport.abort()  # no close frame: ctid keeps the session for a resume
        for ws in list(self.clients):
            await ws.close(4010, f"not primary; primary={primary}")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
