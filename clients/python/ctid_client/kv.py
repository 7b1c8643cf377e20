"""T-Library KV lists (``UserData``, ``Extensions``, ``Reasons``), docs/protocol.md section 4.

A KV list is an **ordered** list of key/value pairs whose keys may repeat. A value is a string,
an integer, binary data (``bytes``) or a nested :class:`KVList`. On the wire a level is written in
the object form ``{"k": "v"}`` when its keys are unique, else in the pair form
``[["k", "a"], ["k", "b"]]`` (also for a level that is exactly one pair with the key ``$binary``);
binary data is ``{"$binary": "<base64>"}``. Readers accept both forms at every level.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union

KVValue = Union[str, int, bytes, "KVList"]
"""A value of a KV list."""

#: What a request accepts where a KV list goes: a KVList, a mapping, or (key, value) pairs.
KVLike = Union["KVList", Mapping[str, Any], Iterable[tuple[str, Any]]]


class KVDecodeError(ValueError):
    """A JSON value that is not a valid KV list; the message names the key path."""


class DuplicateKeys(list):  # type: ignore[type-arg]
    """A JSON object read with a key that repeats, kept as its ``(key, value)`` pairs in order.

    :func:`loads_frame` returns it instead of a ``dict`` so that a KV list in the object form with
    a repeated key keeps every pair (docs/protocol.md section 4).
    """


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any] | DuplicateKeys:
    keys = [k for k, _ in pairs]
    if len(set(keys)) == len(keys):
        return dict(pairs)
    return DuplicateKeys(pairs)


def loads_frame(text: str) -> Any:
    """Parses a JSON text frame, keeping repeated object keys (see :class:`DuplicateKeys`)."""
    import json

    return json.loads(text, object_pairs_hook=_object_pairs)


class KVList:
    """An ordered list of key/value pairs; keys may repeat.

    ``kv["k"]`` and :meth:`get` give the first value of a key, :meth:`get_all` every one.
    ``KVList({"a": 1})``, ``KVList([("k", "a"), ("k", "b")])`` and ``KVList(a=1)`` build one;
    nested mappings become nested lists.
    """

    __slots__ = ("_pairs",)

    def __init__(self, pairs: KVLike | None = None, /, **kwargs: Any) -> None:
        self._pairs: list[tuple[str, KVValue]] = []
        if pairs is not None:
            items: Iterable[tuple[str, Any]]
            if isinstance(pairs, KVList):
                items = pairs.items()
            elif isinstance(pairs, Mapping):
                items = pairs.items()
            else:
                items = pairs
            for k, v in items:
                self.append(k, v)
        for k, v in kwargs.items():
            self.append(k, v)

    # -- reading -----------------------------------------------------------------------------
    def items(self) -> list[tuple[str, KVValue]]:
        """The pairs, in order."""
        return list(self._pairs)

    def keys(self) -> list[str]:
        """The keys, in order (repeated keys repeated)."""
        return [k for k, _ in self._pairs]

    def get(self, key: str, default: Any = None) -> Any:
        """The first value of ``key``, or ``default``."""
        for k, v in self._pairs:
            if k == key:
                return v
        return default

    def get_all(self, key: str) -> list[KVValue]:
        """Every value of ``key``, in order."""
        return [v for k, v in self._pairs if k == key]

    def __getitem__(self, key: str) -> KVValue:
        for k, v in self._pairs:
            if k == key:
                return v
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self._pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KVList):
            return self._pairs == other._pairs
        if isinstance(other, Mapping):
            return self == KVList(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"KVList({self._pairs!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (nested lists too; a repeated key keeps its last value)."""
        return {k: (v.to_dict() if isinstance(v, KVList) else v) for k, v in self._pairs}

    # -- changing ----------------------------------------------------------------------------
    def append(self, key: str, value: Any) -> None:
        """Appends a pair, even when the key is already present."""
        if not isinstance(key, str):
            raise TypeError(f"KV list keys are strings, got {type(key).__name__}")
        self._pairs.append((key, _value(value, key)))

    def __setitem__(self, key: str, value: Any) -> None:
        """Replaces every pair of ``key`` by one (in the place of the first), or appends it."""
        v = _value(value, key)
        for i, (k, _) in enumerate(self._pairs):
            if k == key:
                self._pairs[i] = (key, v)
                self._pairs[i + 1 :] = [p for p in self._pairs[i + 1 :] if p[0] != key]
                return
        self._pairs.append((key, v))

    def remove(self, key: str) -> int:
        """Removes every pair of ``key``; how many were removed."""
        before = len(self._pairs)
        self._pairs = [p for p in self._pairs if p[0] != key]
        return before - len(self._pairs)

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any] | list[list[Any]]:
        """The JSON value: object form when the keys are unique, else the pair form."""
        keys = self.keys()
        pair_form = len(set(keys)) != len(keys) or keys == ["$binary"]
        if pair_form:
            return [[k, _value_json(v)] for k, v in self._pairs]
        return {k: _value_json(v) for k, v in self._pairs}

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> KVList:
        """Reads a JSON value in the object or the pair form (also :class:`DuplicateKeys`)."""
        out = cls()
        if isinstance(value, DuplicateKeys):
            for k, v in value:
                out._pairs.append((k, _value_from_json(v, _join(path, k))))
        elif isinstance(value, dict):
            for k, v in value.items():
                out._pairs.append((k, _value_from_json(v, _join(path, k))))
        elif isinstance(value, list):
            for i, pair in enumerate(value):
                where = f" (key {path!r})" if path else ""
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise KVDecodeError(f"pair {i}{where}: expected a [key, value] array, got {pair!r}")
                k, v = pair
                if not isinstance(k, str):
                    raise KVDecodeError(f"pair {i}{where}: key must be a string, got {k!r}")
                out._pairs.append((k, _value_from_json(v, _join(path, k))))
        else:
            at = f"key {path!r}: " if path else ""
            raise KVDecodeError(
                f"{at}expected a KV list (object or array of [key, value] pairs), got {value!r}"
            )
        return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _value(value: Any, key: str) -> KVValue:
    """Checks and converts a value given by the caller."""
    if isinstance(value, bool):
        raise TypeError(f"KV list key {key!r}: booleans are not KV values")
    if isinstance(value, (str, int, bytes, KVList)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Mapping) or isinstance(value, list):
        return KVList(value)
    raise TypeError(
        f"KV list key {key!r}: expected str, int, bytes or a nested list, got {type(value).__name__}"
    )


def _value_json(v: KVValue) -> Any:
    if isinstance(v, KVList):
        return v.to_json()
    if isinstance(v, bytes):
        return {"$binary": base64.b64encode(v).decode("ascii")}
    return v


def _value_from_json(v: Any, path: str) -> KVValue:
    if isinstance(v, bool) or v is None or isinstance(v, float):
        raise KVDecodeError(
            f'key {path!r}: expected a string, integer, {{"$binary":...}} or nested list, got {v!r}'
        )
    if isinstance(v, (str, int)):
        return v
    if isinstance(v, dict) and len(v) == 1 and "$binary" in v:
        b = v["$binary"]
        if not isinstance(b, str):
            raise KVDecodeError(f"key {path!r}: $binary must be a base64 string, got {b!r}")
        try:
            return base64.b64decode(b, validate=True)
        except (binascii.Error, ValueError) as e:
            raise KVDecodeError(f"key {path!r}: $binary is not valid base64") from e
    return KVList.from_json(v, path)


def as_kvlist(value: KVLike | None) -> KVList | None:
    """A KVList from what a caller gave (None stays None)."""
    if value is None or isinstance(value, KVList):
        return value
    return KVList(value)
