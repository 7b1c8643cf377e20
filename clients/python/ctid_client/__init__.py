"""ctid-client: an asyncio client for ctid's WebSocket/JSON protocol (docs/protocol.md).

    import asyncio, ctid_client

    async def main():
        async with await ctid_client.connect("ws://127.0.0.1:7000/ws") as client:
            await client.register("1001")
            dialing = await client.make_call("1001", "1002")
            print(dialing.ConnID)

    asyncio.run(main())

See :class:`Client` for requests, event subscriptions, session resume and server lists.
"""

from . import messages
from .base import Event, EventServerDisconnected, Request, UnknownEvent
from .client import Client, EventStream, Subscription
from .errors import ClientError, ConnectError, CtidError, Disconnected, RequestTimeout, SessionLost
from .failover import Options
from .kv import KVList
from .messages import EVENTS, REQUESTS

__version__ = "0.1.0"

#: ``await ctid_client.connect(urls, ...)`` is :meth:`Client.connect`.
connect = Client.connect

__all__ = [
    "Client",
    "ClientError",
    "ConnectError",
    "CtidError",
    "Disconnected",
    "EVENTS",
    "Event",
    "EventServerDisconnected",
    "EventStream",
    "KVList",
    "Options",
    "REQUESTS",
    "Request",
    "RequestTimeout",
    "SessionLost",
    "Subscription",
    "UnknownEvent",
    "connect",
    "messages",
]
