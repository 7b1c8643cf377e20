"""A list of servers (docs/protocol.md section 6.10): a dead URL is skipped, a node that is not
primary sends the client to the primary it names (close 4010), also in the middle of a session
(a switchover), where the session is resumed at the primary."""

from __future__ import annotations

import pytest
from conftest import WAIT, ClientFactory, Ctid
from netutil import Relay, dead_url, not_primary_node, server_url

from ctid_client import ConnectError, Options


async def test_a_dead_first_url_then_a_node_that_names_the_primary(ctid: Ctid, connect: ClientFactory) -> None:
    node = await not_primary_node(f"not primary; primary={ctid.url}")
    try:
        client = await connect([dead_url(), server_url(node)])
        assert client.current_url == ctid.url
        assert (await client.register("2007")).get("ThisDN") == "2007"
    finally:
        node.close()
        await node.wait_closed()


async def test_primary_unknown_is_passed_over_and_a_list_that_never_serves_fails(
    ctid: Ctid, connect: ClientFactory
) -> None:
    node = await not_primary_node("not primary; primary unknown")
    try:
        client = await connect([server_url(node), ctid.url])
        assert client.current_url == ctid.url
    finally:
        node.close()
        await node.wait_closed()
    urls = [dead_url(), dead_url()]
    with pytest.raises(ConnectError) as e:
        await connect(urls, options=Options(min_backoff=0.05, max_backoff=0.1, give_up_after=0.5))
    assert e.value.urls == urls and "no server served" in e.value.reason


async def test_a_switchover_4010_sends_the_session_to_the_primary(ctid: Ctid, connect: ClientFactory) -> None:
    relay = await Relay(ctid.url).start()
    try:
        client = await connect([relay.url])
        await client.register("2005")
        await client.register("2006")
        stream = client.events()
        session = client.session_id
        await relay.switch_over(primary=ctid.url)
        resumed = await stream.wait_for("EventSessionResumed", WAIT)
        assert resumed.get("SessionID") == session
        # The 4010 was followed (the list holds only the relay) and the session kept.
        assert client.current_url == ctid.url and client.session_id == session and client.resumes == 1
        await ctid.phone("/calls", {"from": "2005", "to": "2006"})
        ringing = await stream.wait_for("EventRinging", WAIT, where=lambda e: e.get("ThisDN") == "2006")
        await ctid.phone("/phones/2005/hangup")  # while it rings: abandoned at 2006
        await stream.wait_for("EventAbandoned", WAIT, where=lambda e: e.get("ThisDN") == "2006")
        assert ringing.get("OtherDN") == "2005"
    finally:
        await relay.close()
