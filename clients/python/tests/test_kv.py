"""KV lists (docs/protocol.md section 4): both JSON forms, binary values, repeated keys."""

import json

import pytest

from ctid_client.kv import KVDecodeError, KVList, loads_frame


def test_object_form_when_keys_are_unique_pair_form_when_one_repeats() -> None:
    kv = KVList({"HOST_DN": "1010", "n": 5})
    assert kv.to_json() == {"HOST_DN": "1010", "n": 5}
    kv.append("n", 6)
    assert kv.to_json() == [["HOST_DN", "1010"], ["n", 5], ["n", 6]]
    assert kv["n"] == 5 and kv.get_all("n") == [5, 6]
    kv["n"] = 7  # replaces every pair of the key, in the place of the first
    assert kv.items() == [("HOST_DN", "1010"), ("n", 7)]
    assert kv.remove("HOST_DN") == 1 and kv.keys() == ["n"]


def test_the_example_of_the_protocol_round_trips() -> None:
    text = '{"UserData":{"Case":[["Tag","vip"],["Tag","fr"]],"Blob":{"$binary":"AAE="},"Score":42}}'
    kv = KVList.from_json(loads_frame(text)["UserData"])
    case = kv["Case"]
    assert isinstance(case, KVList) and case.get_all("Tag") == ["vip", "fr"]
    assert kv["Blob"] == b"\x00\x01" and kv["Score"] == 42
    assert json.dumps({"UserData": kv.to_json()}, separators=(",", ":")) == text


def test_repeated_keys_in_the_object_form_are_all_kept() -> None:
    kv = KVList.from_json(loads_frame('{"k":"a","k":"b","x":{"y":1,"y":2}}'))
    assert kv.get_all("k") == ["a", "b"]
    assert kv["x"].get_all("y") == [1, 2]  # type: ignore[union-attr]


def test_a_lone_binary_key_is_written_in_the_pair_form() -> None:
    kv = KVList([("$binary", "not binary")])
    assert kv.to_json() == [["$binary", "not binary"]]
    assert KVList.from_json(kv.to_json()) == kv


def test_invalid_values_are_refused_with_the_key_path() -> None:
    with pytest.raises(KVDecodeError, match="a.b"):
        KVList.from_json({"a": {"b": True}})
    with pytest.raises(KVDecodeError, match="expected a \\[key, value\\] array"):
        KVList.from_json([["k"]])
    with pytest.raises(TypeError):
        KVList({"flag": True})
    with pytest.raises(TypeError):
        KVList({"x": 1.5})


def test_mappings_compare_equal_and_convert() -> None:
    kv = KVList(CaseID="C-1", Nested={"a": 1})
    assert kv == {"CaseID": "C-1", "Nested": {"a": 1}}
    assert kv.to_dict() == {"CaseID": "C-1", "Nested": {"a": 1}}
    assert "CaseID" in kv and "x" not in kv and len(kv) == 2
