"""ctid_client/messages.py is generated from docs/asyncapi.yaml and must not drift from it."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from ctid_client import EVENTS, REQUESTS, KVList, messages
from ctid_client.base import decode_event
from ctid_client.kv import loads_frame

HERE = Path(__file__).resolve().parent
SPEC = HERE.parents[2] / "docs" / "asyncapi.yaml"


def test_the_committed_messages_module_is_a_fresh_generation() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_messages", HERE.parent / "scripts" / "gen_messages.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.generate_file(SPEC)
    committed = (HERE.parent / "ctid_client" / "messages.py").read_text(encoding="utf-8")
    assert committed == fresh, "ctid_client/messages.py is stale: run python scripts/gen_messages.py"


def test_every_message_of_the_document_has_a_class_with_its_attributes() -> None:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    schemas = doc["components"]["schemas"]
    names = list(doc["components"]["messages"])
    assert sorted(REQUESTS) == sorted(n for n in names if n.startswith("Request"))
    assert sorted(EVENTS) == sorted(n for n in names if n.startswith("Event"))
    for name in names:
        cls = REQUESTS.get(name) or EVENTS[name]
        props = [p for p in schemas[name]["properties"] if p not in ("request", "event")]
        assert list(cls.FIELDS) == props, name
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(props) <= fields, name


def test_a_request_is_written_as_on_the_wire() -> None:
    req = messages.RequestPrivateService(ThisDN="2001", PrivateMsgID=1, Extensions={"HOST_DN": "1001"}, ReferenceID=15)
    assert req.to_wire() == {
        "request": "RequestPrivateService",
        "ReferenceID": 15,
        "ThisDN": "2001",
        "PrivateMsgID": 1,
        "Extensions": {"HOST_DN": "1001"},
    }
    with pytest.raises(TypeError):
        messages.RequestMakeCall(ThisDN="1001")  # type: ignore[call-arg]  # OtherDN is required


def test_an_event_of_the_protocol_decodes_to_its_class() -> None:
    text = (
        '{"event":"EventRegistered","ReferenceID":7,"ThisDN":"2010","InfoType":"AddressInfoAddressType",'
        '"InfoStatus":"AddressTypeDN","AddressType":"AddressTypeDN","Extensions":{"status":"AddressStatusIdle",'
        '"HOST_DN":"1010"},"EventSequenceNumber":41,"time":"2026-11-24T17:40:00.123456Z","Future":1}'
    )
    ev = decode_event(loads_frame(text), text, EVENTS)
    assert isinstance(ev, messages.EventRegistered)
    assert ev.ThisDN == "2010" and ev.reference_id == 7 and ev.sequence == 41
    assert isinstance(ev.Extensions, KVList) and ev.Extensions["HOST_DN"] == "1010"
    assert ev.extra == {"Future": 1} and ev.get("Future") == 1
    unknown = decode_event(loads_frame('{"event":"EventFuture","X":1}'), "", EVENTS)
    assert unknown.name == "EventFuture" and unknown.get("X") == 1
