"""Base classes of the generated message classes (:mod:`ctid_client.messages`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from .kv import DuplicateKeys, KVList, as_kvlist

log = logging.getLogger("ctid_client")


@dataclasses.dataclass(kw_only=True)
class Message:
    """A request or an event. Attributes are named exactly as on the wire (``ThisDN``,
    ``ConnID``, ``UserData``...); an attribute that is absent is ``None``."""

    #: The message name (``RequestMakeCall``, ``EventDialing``).
    NAME: ClassVar[str] = ""
    #: The attributes of the message (wire names), in the order ctid writes them.
    FIELDS: ClassVar[tuple[str, ...]] = ()
    #: The attributes the schema requires.
    REQUIRED: ClassVar[frozenset[str]] = frozenset()
    #: The attributes that are KV lists.
    KV_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @property
    def name(self) -> str:
        """The message name."""
        return self.NAME

    def get(self, attribute: str, default: Any = None) -> Any:
        """An attribute by its wire name, known to this class or not; ``default`` if absent."""
        if attribute in self.FIELDS:
            value = getattr(self, attribute)
            return default if value is None else value
        extra = getattr(self, "extra", None) or {}
        return extra.get(attribute, default)


@dataclasses.dataclass(kw_only=True)
class Request(Message):
    """A request (client to ctid). The client fills ``ReferenceID`` when it is left ``None``."""

    ReferenceID: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object of the request: ``request`` first, absent attributes left out."""
        out: dict[str, Any] = {"request": self.NAME}
        if self.ReferenceID is not None:
            out["ReferenceID"] = self.ReferenceID
        for f in self.FIELDS:
            if f == "ReferenceID":
                continue
            v = getattr(self, f)
            if v is None:
                continue
            if f in self.KV_FIELDS:
                kv = as_kvlist(v)
                assert kv is not None
                v = kv.to_json()
            out[f] = v
        return out


@dataclasses.dataclass(kw_only=True)
class Event(Message):
    """An event (ctid to client).

    ``extra`` holds the attributes this version of the library does not know (clients ignore
    them, docs/protocol.md section 2); ``raw`` is the text frame as received.
    """

    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    raw: str = dataclasses.field(default="", repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.NAME or str(self.extra.get("event", ""))

    @property
    def reference_id(self) -> int | None:
        """The ReferenceID (only on the requester's copy of an answer)."""
        v = self.get("ReferenceID")
        return v if isinstance(v, int) else None

    @property
    def sequence(self) -> int:
        """The EventSequenceNumber (0 when absent: a client-side event)."""
        v = self.get("EventSequenceNumber")
        return v if isinstance(v, int) else 0

    @property
    def this_dn(self) -> str | None:
        """ThisDN, if the event has one."""
        return self.get("ThisDN")


@dataclasses.dataclass(kw_only=True)
class UnknownEvent(Event):
    """An event this version of the library has no class for (its attributes are in ``extra``,
    its name in ``extra["event"]``), or an event synthesised by the client (docs/protocol.md
    section 10: EventServerDisconnected)."""


def decode_event(obj: Any, raw: str, events: Mapping[str, type[Event]]) -> Event:
    """Builds the event class named by ``obj["event"]`` from a parsed frame.

    Attributes of the class are converted (KV lists to :class:`KVList`); others go to ``extra``.
    Decoding is lenient, as a client should be: an attribute the schema requires but the frame
    lacks is ``None`` (and logged), a KV list that does not decode is kept as its JSON value.
    """
    if isinstance(obj, DuplicateKeys):
        obj = dict(obj)
    if not isinstance(obj, dict):
        raise ValueError(f"an event must be a JSON object, got {raw!r}")
    name = obj.get("event")
    cls = events.get(name) if isinstance(name, str) else None
    if cls is None:
        return UnknownEvent(extra=dict(obj), raw=raw)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in obj.items():
        if k == "event":
            continue
        if k in cls.FIELDS:
            if k in cls.KV_FIELDS and v is not None:
                try:
                    v = KVList.from_json(v, k)
                except ValueError as e:
                    log.warning("%s: %s is not a valid KV list (%s); kept as JSON", name, k, e)
            kwargs[k] = v
        else:
            extra[k] = v
    for k in cls.REQUIRED:
        if k not in kwargs:
            log.debug("%s without its required attribute %s: %s", name, k, raw)
            kwargs[k] = None
    return cls(**kwargs, extra=extra, raw=raw)


@dataclasses.dataclass(kw_only=True)
class EventServerDisconnected(Event):
    """Synthesised by the client, never sent by ctid (docs/protocol.md section 10): the client
    gave up reconnecting (``ErrorMessage`` says why). It is the last event of every
    subscription."""

    NAME: ClassVar[str] = "EventServerDisconnected"
    FIELDS: ClassVar[tuple[str, ...]] = ("ErrorMessage", "time")

    ErrorMessage: str | None = None
    time: str | None = None
