"""The client against a real ``ctid --demo``: requests and answers, errors, DN subscriptions,
calls driven through csta-sim's phones, hot desking and agents."""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import WAIT, ClientFactory, Ctid, until

from ctid_client import REQUESTS, CtidError, Event, KVList, RequestTimeout, messages
from ctid_client.base import UnknownEvent

CONN_ID = re.compile(r"^[0-9a-f]{16}$")


async def test_connect_names_the_session_and_the_server_serves_every_request_class(connect: ClientFactory) -> None:
    client = await connect(application_name="pytest-query")
    first = client.first_event
    assert isinstance(first, messages.EventLinkConnected)
    assert re.fullmatch(r"[0-9a-f]{32}", client.session_id) and first.SessionID == client.session_id
    info = await client.query_server()
    assert isinstance(info, messages.EventServerInfo)
    assert info.Extensions is not None and info.Extensions["LinkStatus"] == "LinkConnected"
    supported = str(info.Extensions["SupportedRequests"]).split(",")
    missing = [r for r in supported if r not in REQUESTS]
    assert not missing, f"requests ctid serves without a class: {missing}"


async def test_each_request_is_answered_by_the_event_with_its_reference_id(connect: ClientFactory) -> None:
    client = await connect()
    reg = await client.register("1008")
    assert isinstance(reg, messages.EventRegistered)
    assert reg.ThisDN == "1008" and reg.AddressType == "AddressTypeDN" and reg.reference_id is not None
    assert reg.Extensions is not None and reg.Extensions["status"] == "AddressStatusIdle"
    # Several at once: each gets its own answer.
    dns = ["1008", "1003", "1004", "2004", "3001"]
    answers = await asyncio.gather(*(client.query_address(dn) for dn in dns))
    assert [a.ThisDN for a in answers] == dns
    assert len({a.reference_id for a in answers}) == len(dns)
    assert all(isinstance(a, messages.EventAddressInfo) and isinstance(a.InfoStatus, int) for a in answers)
    # A request object, and a name with attributes.
    by_obj = await client.request(messages.RequestQueryAddress(ThisDN="1008", InfoType="AddressInfoAddressType"))
    assert by_obj.get("InfoStatus") == "AddressTypeDN"
    by_name = await client.request("RequestQueryAddress", ThisDN="3001", InfoType="AddressInfoAddressType")
    assert by_name.get("InfoStatus") == "AddressTypeQueue"
    with pytest.raises(TypeError):
        await client.request("RequestQueryAddress", ThisDN="1008", Nonsense=1)
    with pytest.raises(ValueError):
        await client.request("RequestFoo")


async def test_event_error_raises_ctid_error_and_the_session_goes_on(connect: ClientFactory) -> None:
    client = await connect()
    with pytest.raises(CtidError) as e:
        await client.make_call("1099", "1002")  # not registered by this client
    assert e.value.code == 41 and e.value.message == "ThisDN 1099 not registered"
    assert e.value.request == "RequestMakeCall"
    assert isinstance(e.value.event, messages.EventError) and e.value.event.ThisDN == "1099"
    with pytest.raises(CtidError) as e:
        await client.register("1008", mode="Share")  # not a RegisterMode
    assert e.value.code == 53 and "RegisterMode" in e.value.message
    await client.register("1008")
    with pytest.raises(CtidError) as e:
        await client.request("RequestPrivateService", ThisDN="1008", PrivateMsgID=7)
    assert e.value.code == 51
    with pytest.raises(CtidError) as e:
        await client.make_call("1008", "1008")  # the switch refuses: calling oneself
    assert e.value.code == 1140 and e.value.csta_error == "operation/notDifferentDevices"
    assert (await client.query_address("1008")).ThisDN == "1008"


async def test_a_request_without_an_answer_in_time_raises_request_timeout(connect: ClientFactory) -> None:
    client = await connect()
    with pytest.raises(RequestTimeout) as e:
        await client.request("RequestQueryAddress", ThisDN="1008", InfoType="AddressInfoDNStatus", timeout=1e-6)
    assert isinstance(e.value, TimeoutError) and e.value.request == "RequestQueryAddress"
    # A late answer of a request given up on is dropped; the next request gets its own.
    again = await client.query_address("1003")
    assert again.ThisDN == "1003"


async def test_dn_subscriptions_and_a_call_answered_at_the_phone(ctid: Ctid, connect: ClientFactory) -> None:
    client = await connect()
    await client.register("1003")
    await client.register("1004")
    on_1004: list[Event] = []
    sub = client.subscribe("1004", on_1004.append)
    stream = client.events("1003")
    everything = client.events()

    dialing = await client.make_call("1003", "1004", user_data={"CaseID": "C-1"})
    assert isinstance(dialing, messages.EventDialing)
    conn = dialing.ConnID
    assert conn is not None and CONN_ID.match(conn)
    assert dialing.UserData == {"CaseID": "C-1"}
    first = await stream.next(WAIT)
    assert first.name == "EventDialing" and first.reference_id == dialing.reference_id
    await until(lambda: any(e.name == "EventRinging" for e in on_1004), "EventRinging on 1004")
    ringing = next(e for e in on_1004 if e.name == "EventRinging")
    assert isinstance(ringing, messages.EventRinging)
    assert ringing.ConnID == conn and ringing.OtherDN == "1003", ringing.raw
    assert ringing.reference_id is None and ringing.UserData == {"CaseID": "C-1"}

    await ctid.phone("/phones/1004/answer")  # the person at 1004 picks up
    established = await stream.wait_for("EventEstablished", WAIT)
    assert established.get("ConnID") == conn and established.reference_id is None
    await until(lambda: any(e.name == "EventEstablished" for e in on_1004), "EventEstablished on 1004")

    held = await client.hold_call("1003", conn)
    assert isinstance(held, messages.EventHeld)
    assert (await client.retrieve_call("1003", conn)).name == "EventRetrieved"
    changed = await client.attach_user_data("1003", conn, KVList([("Tag", "vip"), ("Tag", "fr")]))
    assert isinstance(changed, messages.EventAttachedDataChanged)
    assert changed.UserData is not None and changed.UserData.get_all("Tag") == ["vip", "fr"]
    assert changed.UserData["CaseID"] == "C-1"

    released = await client.release_call("1003", conn)
    assert isinstance(released, messages.EventReleased) and released.CallState == "CallStateOk"
    await until(lambda: any(e.name == "EventReleased" for e in on_1004), "EventReleased on 1004")

    sub.cancel()
    stream.close()
    assert all(e.get("ThisDN") == "1004" for e in on_1004)
    names_1004 = [e.name for e in on_1004]
    assert names_1004.index("EventRinging") < names_1004.index("EventEstablished") < names_1004.index("EventReleased")
    # The session-wide stream saw both DNs, in order of EventSequenceNumber.
    seen: list[Event] = []
    while len([e for e in seen if e.name == "EventReleased"]) < 2:
        seen.append(await everything.next(WAIT))
    assert {e.get("ThisDN") for e in seen if e.name.startswith("EventRe")} >= {"1003", "1004"}
    numbers = [e.sequence for e in seen]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


async def test_hot_desking(connect: ClientFactory) -> None:
    guest = await connect(application_name="guest-desk")
    host = await connect(application_name="host-desk")
    await guest.register("2003")
    await host.register("1005")
    at_host = host.events("1005")

    # The demo switch starts with guest 2010 associated with host 1010.
    assert (await guest.register("2010")).Extensions["HOST_DN"] == "1010"  # type: ignore[index]

    info = await guest.hot_desk_initiate(guest="2003", host="1005")
    assert isinstance(info, messages.EventPrivateInfo)
    assert (info.ThisDN, info.OtherDN, info.PrivateMsgID) == ("2003", "1005", 1)
    assert info.reference_id is not None
    # The host's client gets the private event too, without ReferenceID.
    told = await at_host.wait_for("EventPrivateInfo", WAIT)
    assert (told.get("ThisDN"), told.get("OtherDN"), told.get("PrivateMsgID")) == ("2003", "1005", 1)
    assert told.reference_id is None

    status = await guest.query_address("2003")
    assert isinstance(status, messages.EventAddressInfo)
    assert status.Extensions is not None and status.Extensions["HOST_DN"] == "1005"
    again = await guest.register("2003")
    assert again.Extensions is not None and again.Extensions["HOST_DN"] == "1005"

    with pytest.raises(CtidError) as e:
        await guest.hot_desk_initiate(guest="2003", host="1006")
    assert e.value.code == 1161 and "already associated" in e.value.message
    with pytest.raises(CtidError) as e:
        await guest.request("RequestPrivateService", ThisDN="2003", PrivateMsgID=1)
    assert e.value.code == 53 and "HOST_DN" in e.value.message

    cancelled = await guest.hot_desk_cancel("2003")
    assert (cancelled.get("PrivateMsgID"), cancelled.get("OtherDN")) == (2, "1005")
    told = await at_host.wait_for("EventPrivateInfo", WAIT, where=lambda ev: ev.get("PrivateMsgID") == 2)
    assert told.get("ThisDN") == "2003"
    status = await guest.query_address("2003")
    assert status.Extensions is None or "HOST_DN" not in status.Extensions


async def test_agent_states(connect: ClientFactory) -> None:
    client = await connect()
    await client.register("2004")
    stream = client.events("2004")
    login = await client.agent_login("2004", "2004", queue="3001")
    assert isinstance(login, messages.EventAgentLogin)
    assert (login.AgentID, login.ThisQueue) == ("2004", "3001")
    not_ready = await stream.wait_for("EventAgentNotReady", WAIT)  # the switch leaves it not ready
    assert not_ready.get("AgentWorkMode") == "AgentAuxWork" and not_ready.reference_id is None
    try:
        ready = await client.agent_ready("2004")
        assert isinstance(ready, messages.EventAgentReady) and ready.AgentWorkMode == "AgentManualIn"
        acw = await client.agent_not_ready("2004", after_call_work=True)
        assert acw.get("AgentWorkMode") == "AgentAfterCallWork"
        reason = await client.agent_not_ready("2004", reason_code=12)
        assert reason.get("AgentWorkMode") == "AgentAuxWork"
        assert reason.get("Reasons") == {"ReasonCode": 12}
        status = await client.query_address("2004")
        assert status.Extensions is not None and status.Extensions["AgentStatus"] == "AgentAuxWork"
    finally:
        logout = await client.agent_logout("2004")
    assert isinstance(logout, messages.EventAgentLogout)
    with pytest.raises(CtidError) as e:
        await client.agent_ready("2004")
    assert e.value.code == 1161


async def test_close_ends_the_session_with_code_1000(ctid: Ctid, connect: ClientFactory) -> None:
    import json

    import websockets

    client = await connect()
    await client.register("1008")
    session, last = client.session_id, client.last_sequence
    await client.close()
    assert client.closed
    with pytest.raises(Exception):
        await client.query_address("1008")
    # ctid ended the session at once: it cannot be resumed.
    async with websockets.connect(ctid.url, proxy=None) as ws:
        json.loads(await ws.recv())
        await ws.send(json.dumps({"request": "RequestResumeSession", "ReferenceID": 1, "SessionID": session,
                                  "EventSequenceNumber": last}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert answer["event"] == "EventError" and answer["ErrorCode"] in (1901, 1902), answer


def test_unknown_events_keep_their_attributes() -> None:
    ev = UnknownEvent(extra={"event": "EventFuture", "ThisDN": "1"})
    assert ev.name == "EventFuture" and ev.this_dn == "1"
