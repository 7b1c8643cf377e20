"""Session resume (docs/protocol.md section 6.9) against a real ctid: a dropped connection is
resumed without losing or repeating an event; a refused resume gives a fresh session on which
the client registers again; a session taken over elsewhere (4001) ends the client."""

from __future__ import annotations

import asyncio
import json

import websockets
from conftest import WAIT, ClientFactory, Ctid, until
from netutil import TcpProxy

from ctid_client import Disconnected, Event, EventServerDisconnected, EventStream, messages

CALL_DNS = {"1006", "1007"}


async def collect(stream: EventStream, done: int, *, name: str = "EventReleased") -> list[Event]:
    """Events of ``stream`` until ``done`` of them are ``name`` on the call's DNs."""
    out: list[Event] = []
    async with asyncio.timeout(WAIT):
        while sum(1 for e in out if e.name == name and e.get("ThisDN") in CALL_DNS) < done:
            out.append(await stream.next())
    return out


def call_events(events: list[Event], after: int) -> list[tuple[int, str, str]]:
    return [
        (e.sequence, e.name, e.get("ThisDN"))
        for e in events
        if e.get("ThisDN") in CALL_DNS and e.reference_id is None and e.sequence > after
    ]


async def test_a_dropped_connection_is_resumed_none_lost_none_twice(ctid: Ctid, connect: ClientFactory) -> None:
    proxy = await TcpProxy(ctid.url).start()
    try:
        witness = await connect()  # a second client, straight to ctid, sees the same events
        client = await connect(proxy.url)
        for c in (witness, client):
            await c.register("1006")
            await c.register("1007")
        seen_by_witness = witness.events()
        seen = client.events()
        session, before = client.session_id, client.last_sequence

        proxy.refuse = True
        proxy.drop()  # the network goes: no close frame, ctid keeps the session
        # While the client is away: a call at the phones, answered and hung up.
        await ctid.phone("/calls", {"from": "1006", "to": "1007"})
        await ctid.phone("/phones/1007/answer")
        await ctid.phone("/phones/1006/hangup")
        # A request made meanwhile waits for the resumed connection.
        query = asyncio.create_task(client.query_address("1007"))
        witnessed = await collect(seen_by_witness, 2)
        assert not query.done()

        proxy.refuse = False
        got = await collect(seen, 2)
        answer = await asyncio.wait_for(query, WAIT)
        assert isinstance(answer, messages.EventAddressInfo) and answer.ThisDN == "1007"

        assert client.session_id == session and client.resumes == 1
        resumed = [e for e in got if e.name == "EventSessionResumed"]
        assert len(resumed) == 1 and resumed[0].get("SessionID") == session
        expected = call_events(witnessed, before)
        assert [n for _, n, _ in expected].count("EventReleased") == 2
        assert call_events(got, before) == expected, "the resumed stream differs from the witness's"
        numbers = [e.sequence for e in got if e.name != "EventSessionResumed"]
        assert numbers == sorted(set(numbers)), f"an event lost its order or came twice: {numbers}"
        assert proxy.accepted >= 2
    finally:
        await proxy.close()


async def test_an_answer_lost_in_transit_comes_from_the_replay(ctid: Ctid, connect: ClientFactory) -> None:
    proxy = await TcpProxy(ctid.url).start()
    try:
        client = await connect(proxy.url)
        await client.register("1006")
        stream = client.events()
        proxy.hold = True  # ctid's frames stop reaching the client
        query = asyncio.create_task(client.query_address("1006"))
        await until(lambda: proxy.held > 0, "ctid's answer, held back by the proxy")
        proxy.hold = False
        proxy.drop()  # the answer is lost with the connection
        answer = await asyncio.wait_for(query, WAIT)
        assert isinstance(answer, messages.EventAddressInfo) and answer.ThisDN == "1006"
        assert client.resumes == 1
        resumed = await stream.wait_for("EventSessionResumed", WAIT)
        assert resumed.get("Extensions")["Replayed"] >= 1  # the answer was among the replayed
        assert (await stream.next(WAIT)).reference_id == answer.reference_id
    finally:
        await proxy.close()


async def test_a_refused_resume_gives_a_fresh_session_registered_again(
    ctid: Ctid, second_ctid: Ctid, connect: ClientFactory
) -> None:
    proxy = await TcpProxy(ctid.url).start()
    try:
        client = await connect(proxy.url)
        await client.register("2008")
        stream = client.events()
        old = client.session_id
        proxy.target = second_ctid.url  # "ctid restarted": the new one knows no session
        proxy.drop()
        names: list[str] = []
        async with asyncio.timeout(WAIT):
            while True:
                ev = await stream.next()
                names.append(ev.name)
                if ev.name == "EventError":
                    assert ev.get("ErrorCode") == 1901, ev.raw
                if ev.name == "EventRegistered" and ev.get("ThisDN") == "2008":
                    break
        assert names[0] in ("EventLinkConnected", "EventLinkDisconnected"), names
        assert names.index("EventError") < names.index("EventRegistered")
        assert client.session_id != old and client.resumes == 0
        assert client.registered == ["2008"]
        # Registered on the new server: requests that need it work.
        assert (await client.set_dnd("2008", True)).name == "EventDNDOn"
        assert (await client.set_dnd("2008", False)).name == "EventDNDOff"
    finally:
        await proxy.close()


async def test_a_session_taken_over_by_another_connection_ends_the_client(ctid: Ctid, connect: ClientFactory) -> None:
    client = await connect()
    stream = client.events()
    async with websockets.connect(ctid.url, proxy=None) as other:
        json.loads(await other.recv())
        await other.send(json.dumps({"request": "RequestResumeSession", "ReferenceID": 1,
                                     "SessionID": client.session_id, "EventSequenceNumber": client.last_sequence}))
        answer = json.loads(await asyncio.wait_for(other.recv(), WAIT))
        assert answer["event"] == "EventSessionResumed", answer
        last = await stream.wait_for("EventServerDisconnected", WAIT)
        assert isinstance(last, EventServerDisconnected) and "4001" in (last.ErrorMessage or "")
        async with asyncio.timeout(WAIT):
            assert [e async for e in stream] == []  # the stream has ended
        assert client.closed
        try:
            await client.query_server()
        except Disconnected:
            pass
        else:
            raise AssertionError("a request after the end was accepted")
