"""The asyncio client: one session with ctid, kept across lost connections.

:class:`Client` connects to whichever server of its list serves (docs/protocol.md section 6.10),
names the application (RequestRegisterClient), sends requests and resolves each by the event that
carries its ReferenceID (section 3.1), and hands every event to the subscriptions of its DN
(callbacks, or async iterators from :meth:`Client.events`).

When the connection drops (anything but a clean close by this client) it reconnects with backoff
and resumes the session with RequestResumeSession, the session's ``SessionID`` and the last
``EventSequenceNumber`` it received (section 6.9): the events of the gap are replayed, none twice
and none skipped, and a request waiting across the drop gets its answer from the replay. A close
4010 sends it to the primary the node names at once. If ctid refuses the resume (EventError
1901-1905: unknown, expired, events lost) the client goes on with the new connection's fresh
session and registers its DNs again. This is the behaviour of the Rust ``ResumingClient``
(crates/client/src/resume.rs), whose search through the list (crates/client/src/failover.rs) is
:mod:`ctid_client.failover`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Union

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from . import failover
from .base import Event, EventServerDisconnected, Request, decode_event
from .errors import ConnectError, CtidError, Disconnected, RequestTimeout, SessionLost
from .failover import Fatal, GiveUp, NotPrimary, Options, Retry, Search, Try, Wait
from .kv import KVLike, KVList, loads_frame
from .messages import EVENTS, REQUESTS

log = logging.getLogger("ctid_client")

#: The largest ReferenceID (2^31 - 1); the client counts 1, 2, 3, ... and wraps to 1.
REFERENCE_ID_MAX = 2**31 - 1
#: How long writing one frame may take before the connection counts as lost.
WRITE_TIMEOUT = 10.0
#: The first PrivateMsgID of hot desking: initiate (docs/protocol.md section 6.7).
HOT_DESK_INITIATE = 1
#: The second: cancel (section 6.8).
HOT_DESK_CANCEL = 2

Callback = Callable[[Event], Union[None, Awaitable[None]]]


class _Failed(Exception):
    """One attempt at a URL failed (see :mod:`ctid_client.failover`)."""

    def __init__(self, failure: failover.Failure) -> None:
        super().__init__(failure.why)
        self.failure = failure


@dataclasses.dataclass
class _Pending:
    name: str
    future: asyncio.Future[Event]


@dataclasses.dataclass
class _Out:
    reference_id: int
    text: str
    #: The caller's future; once it is done (timed out, cancelled) the request is withdrawn.
    future: asyncio.Future[Event] | None


@dataclasses.dataclass
class _End:
    """Why serving one connection stopped."""

    kind: str  # "lost", "close", "taken-over"
    why: str = ""
    primary: str | None = None


_END = object()  # ends an EventStream


class EventStream:
    """The events of one DN (or of the whole session), as an async iterator.

    It receives from the moment :meth:`Client.events` returned it, until :meth:`close` or the
    client's end (after a given-up reconnect the last event is EventServerDisconnected).
    """

    def __init__(self, client: Client, dn: str | None) -> None:
        self.dn = dn
        self._client = client
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._ended = False

    def _put(self, item: Any) -> None:
        self._queue.put_nowait(item)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._ended = True
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    async def next(self, timeout: float | None = None) -> Event:
        """The next event; ``TimeoutError`` after ``timeout`` seconds without one,
        :class:`Disconnected` when the stream has ended."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except StopAsyncIteration:
            raise Disconnected("the event stream has ended") from None

    async def wait_for(
        self,
        name: str | Iterable[str],
        timeout: float | None = None,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """Skips events until one named ``name`` (or one of the names) for which ``where`` holds;
        ``TimeoutError`` when none came within ``timeout`` seconds."""
        names = {name} if isinstance(name, str) else set(name)
        async with asyncio.timeout(timeout):
            while True:
                ev = await self.next()
                if ev.name in names and (where is None or where(ev)):
                    return ev

    def close(self) -> None:
        """Stops receiving."""
        self._client._unsubscribe(self)
        self._ended = True

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Subscription:
    """A callback subscription (:meth:`Client.subscribe`); :meth:`cancel` ends it."""

    def __init__(self, client: Client, dn: str | None, callback: Callback) -> None:
        self.dn = dn
        self.callback = callback
        self._client = client

    def cancel(self) -> None:
        """Stops calling the callback."""
        self._client._unsubscribe(self)


def _matches(dn: str | None, ev: Event) -> bool:
    """An event belongs to the DN it is about (ThisDN); EventPrivateInfo also to the host it
    names (OtherDN), since ctid sends it to the clients of the guest and of the host (section
    6.7)."""
    if dn is None:
        return True
    if ev.get("ThisDN") == dn:
        return True
    return ev.name == "EventPrivateInfo" and ev.get("OtherDN") == dn


class Client:
    """A session with ctid. Create it with :meth:`Client.connect`; end it with :meth:`close`
    (close code 1000: ctid ends the session at once and releases its registrations)."""

    def __init__(
        self,
        urls: list[str],
        *,
        application_name: str | None,
        token: str | None,
        request_timeout: float,
        options: Options,
    ) -> None:
        self._urls = urls
        self._application_name = application_name
        self._token = token
        self.request_timeout = request_timeout
        self._search = Search(urls, options)
        self._url = ""
        self._session_id = ""
        self._last_sequence = 0
        self._replay_left = 0
        self._resumed_at = 0
        self._resumes = 0
        self._next_reference_id = 1
        self._pending: dict[int, _Pending] = {}
        self._outbox: collections.deque[_Out] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._subs: list[EventStream | Subscription] = []
        self._registered: dict[str, Request] = {}
        self._close_requested = asyncio.Event()
        self._ended: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.first_event: Event | None = None
        """The first frame of the first connection (EventLinkConnected or EventLinkDisconnected)."""

    # ------------------------------------------------------------------------------------------
    # Connecting and closing
    # ------------------------------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        urls: str | Sequence[str],
        *,
        application_name: str | None = "ctid-client",
        token: str | None = None,
        request_timeout: float = 10.0,
        options: Options | None = None,
    ) -> Client:
        """Connects to whichever server of ``urls`` serves (one URL, or the nodes of a pair:
        ``["ws://a:7000/ws", "ws://b:7000/ws"]``), reads its first frame (which names the
        session) and, unless ``application_name`` is None, sends RequestRegisterClient.

        ``token`` is the client token of a server with ``auth = "token"`` (sent as
        ``Authorization: Bearer``). ``options`` set the backoff and how long a search for a
        server may last (also for this first connection): :class:`ConnectError` after it.
        """
        url_list = [urls] if isinstance(urls, str) else list(urls)
        client = cls(
            url_list,
            application_name=application_name,
            token=token,
            request_timeout=request_timeout,
            options=options or Options(),
        )
        ws = await client._find_first()
        client._task = asyncio.create_task(client._run(ws), name="ctid-client")
        if application_name is not None:
            try:
                await client.request("RequestRegisterClient", ApplicationName=application_name)
            except BaseException:
                await client.close()
                raise
        return client

    async def close(self) -> None:
        """Closes the connection with code 1000: ctid ends the session at once (section 6.9).
        Requests still waiting fail with :class:`Disconnected`; event streams end."""
        if self._task is None:
            return
        self._close_requested.set()
        try:
            await asyncio.shield(self._task)
        except Exception:  # the task logged it
            pass

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session_id(self) -> str:
        """The session's SessionID (a refused resume replaces it with the new connection's)."""
        return self._session_id

    @property
    def last_sequence(self) -> int:
        """The last EventSequenceNumber of the session received (what a resume gives back)."""
        return self._last_sequence

    @property
    def resumes(self) -> int:
        """How many resumes succeeded so far."""
        return self._resumes

    @property
    def current_url(self) -> str:
        """The URL of the server in use (while reconnecting, the one last used)."""
        return self._url

    @property
    def registered(self) -> list[str]:
        """The DNs this client registered (and registers again on a fresh session)."""
        return list(self._registered)

    @property
    def closed(self) -> bool:
        """True once the client has ended (closed, or gave up reconnecting)."""
        return self._ended is not None

    # ------------------------------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------------------------------
    def _allocate(self) -> int:
        ref = self._next_reference_id
        self._next_reference_id = 1 if ref >= REFERENCE_ID_MAX else ref + 1
        return ref

    def _build(self, req: Request | str, attrs: dict[str, Any]) -> Request:
        if isinstance(req, str):
            cls = REQUESTS.get(req)
            if cls is None:
                raise ValueError(f"unknown request {req!r}")
            return cls(**attrs)
        return dataclasses.replace(req, **attrs) if attrs else req

    def _enqueue(self, req: Request, future: asyncio.Future[Event] | None, *, front: bool = False) -> int:
        if self._ended is not None:
            raise Disconnected(self._ended)
        ref = req.ReferenceID if req.ReferenceID is not None else self._allocate()
        body = req.to_wire()
        body.pop("request", None)
        body.pop("ReferenceID", None)
        wire = {"request": req.NAME, "ReferenceID": ref, **body}
        text = json.dumps(wire, separators=(",", ":"), ensure_ascii=False)
        if future is not None:
            self._pending[ref] = _Pending(req.NAME, future)
        out = _Out(ref, text, future)
        if front:
            self._outbox.appendleft(out)
        else:
            self._outbox.append(out)
        self._outbox_ready.set()
        return ref

    async def send(self, req: Request | str, /, **attrs: Any) -> int:
        """Sends a request without waiting for its answer (it reaches the subscriptions like
        any event); returns its ReferenceID."""
        return self._enqueue(self._build(req, attrs), None)

    async def request(self, req: Request | str, /, *, timeout: float | None = None, **attrs: Any) -> Event:
        """Sends a request and returns the event that answers it (the one carrying its
        ReferenceID: its success event, or EventACK).

        ``req`` is a request object (``RequestMakeCall(ThisDN="1001", OtherDN="1002")``) or a
        request name with its attributes as keywords (``"RequestMakeCall", ThisDN="1001",
        OtherDN="1002"``). Raises :class:`CtidError` when the answer is EventError,
        :class:`RequestTimeout` after ``timeout`` (default ``request_timeout``) seconds,
        :class:`Disconnected` when the client ends first, :class:`SessionLost` when a resume was
        refused while the answer was outstanding. A request waiting across a lost connection
        gets its answer from the resumed session.
        """
        r = self._build(req, attrs)
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        ref = self._enqueue(r, fut)
        wait = self.request_timeout if timeout is None else timeout
        try:
            ev = await asyncio.wait_for(fut, wait)
        except TimeoutError:
            raise RequestTimeout(r.NAME, ref, wait) from None
        finally:
            p = self._pending.get(ref)
            if p is not None and p.future is fut:
                del self._pending[ref]
        self._track(r, ev)
        return ev

    def _track(self, req: Request, ev: Event) -> None:
        """Remembers the DNs registered, to register them again on a fresh session."""
        dn = req.get("ThisDN")
        if not isinstance(dn, str):
            return
        if req.NAME == "RequestRegisterAddress" and ev.name == "EventRegistered":
            self._registered[dn] = dataclasses.replace(req, ReferenceID=None)
        elif req.NAME == "RequestUnregisterAddress" and ev.name == "EventUnregistered":
            self._registered.pop(dn, None)

    # ------------------------------------------------------------------------------------------
    # Typed helpers (docs/protocol.md sections 6 and 9)
    # ------------------------------------------------------------------------------------------
    async def register_client(self, application_name: str) -> Event:
        """RequestRegisterClient → EventACK: names the application (section 6.2)."""
        self._application_name = application_name
        return await self.request("RequestRegisterClient", ApplicationName=application_name)

    async def register(self, dn: str, *, mode: str | None = None, address_type: str | None = None) -> Event:
        """RequestRegisterAddress → EventRegistered (section 6.3). ``mode``: ``ModeShare``
        (ctid's default), ``ModePrivate`` or ``ModeMonitor``. Its Extensions are the DN status;
        ``HOST_DN`` names the host of a hot-desking guest."""
        return await self.request("RequestRegisterAddress", ThisDN=dn, RegisterMode=mode, AddressType=address_type)

    async def unregister(self, dn: str) -> Event:
        """RequestUnregisterAddress → EventUnregistered (section 6.4)."""
        return await self.request("RequestUnregisterAddress", ThisDN=dn)

    async def query_address(self, dn: str, info_type: str = "AddressInfoDNStatus") -> Event:
        """RequestQueryAddress → EventAddressInfo (section 6.5)."""
        return await self.request("RequestQueryAddress", ThisDN=dn, InfoType=info_type)

    async def query_server(self) -> Event:
        """RequestQueryServer → EventServerInfo (section 6.6)."""
        return await self.request("RequestQueryServer")

    async def hot_desk_initiate(self, guest: str, host: str) -> Event:
        """RequestPrivateService 1 → EventPrivateInfo: the guest works at the host's phone
        (section 6.7). The guest must be registered by this client."""
        return await self.request(
            "RequestPrivateService",
            ThisDN=guest,
            PrivateMsgID=HOT_DESK_INITIATE,
            Extensions=KVList(HOST_DN=host),
        )

    async def hot_desk_cancel(self, guest: str) -> Event:
        """RequestPrivateService 2 → EventPrivateInfo (OtherDN = the former host), section 6.8."""
        return await self.request("RequestPrivateService", ThisDN=guest, PrivateMsgID=HOT_DESK_CANCEL)

    async def make_call(self, dn: str, destination: str, *, user_data: KVLike | None = None) -> Event:
        """RequestMakeCall → EventDialing (its ConnID is the new call's), section 9.5.1."""
        return await self.request("RequestMakeCall", ThisDN=dn, OtherDN=destination, UserData=_kv(user_data))

    async def answer_call(self, dn: str, conn_id: str) -> Event:
        """RequestAnswerCall → EventEstablished (section 9.5.2)."""
        return await self.request("RequestAnswerCall", ThisDN=dn, ConnID=conn_id)

    async def release_call(self, dn: str, conn_id: str) -> Event:
        """RequestReleaseCall → EventReleased (section 9.5.3)."""
        return await self.request("RequestReleaseCall", ThisDN=dn, ConnID=conn_id)

    async def clear_call(self, dn: str, conn_id: str) -> Event:
        """RequestClearCall → EventReleased: ends the call for every party (section 9.5.4)."""
        return await self.request("RequestClearCall", ThisDN=dn, ConnID=conn_id)

    async def hold_call(self, dn: str, conn_id: str) -> Event:
        """RequestHoldCall → EventHeld (section 9.5.5)."""
        return await self.request("RequestHoldCall", ThisDN=dn, ConnID=conn_id)

    async def retrieve_call(self, dn: str, conn_id: str) -> Event:
        """RequestRetrieveCall → EventRetrieved (section 9.5.5)."""
        return await self.request("RequestRetrieveCall", ThisDN=dn, ConnID=conn_id)

    async def initiate_transfer(self, dn: str, conn_id: str, destination: str) -> Event:
        """RequestInitiateTransfer → EventDialing of the consultation (section 9.5.6)."""
        return await self.request("RequestInitiateTransfer", ThisDN=dn, ConnID=conn_id, OtherDN=destination)

    async def complete_transfer(self, dn: str, consult_conn_id: str, original_conn_id: str) -> Event:
        """RequestCompleteTransfer → EventReleased (section 9.5.7)."""
        return await self.request(
            "RequestCompleteTransfer", ThisDN=dn, ConnID=consult_conn_id, TransferConnID=original_conn_id
        )

    async def single_step_transfer(self, dn: str, conn_id: str, destination: str) -> Event:
        """RequestSingleStepTransfer → EventReleased (section 9.4)."""
        return await self.request("RequestSingleStepTransfer", ThisDN=dn, ConnID=conn_id, OtherDN=destination)

    async def attach_user_data(self, dn: str, conn_id: str, user_data: KVLike) -> Event:
        """RequestAttachUserData → EventAttachedDataChanged with the call's whole user data
        (section 9.5.21)."""
        return await self.request("RequestAttachUserData", ThisDN=dn, ConnID=conn_id, UserData=_kv(user_data))

    async def update_user_data(self, dn: str, conn_id: str, user_data: KVLike) -> Event:
        """RequestUpdateUserData → EventAttachedDataChanged (section 9.5.21)."""
        return await self.request("RequestUpdateUserData", ThisDN=dn, ConnID=conn_id, UserData=_kv(user_data))

    async def delete_pair(self, dn: str, conn_id: str, key: str) -> Event:
        """RequestDeletePair → EventAttachedDataChanged (section 9.5.21)."""
        return await self.request("RequestDeletePair", ThisDN=dn, ConnID=conn_id, DataKey=key)

    async def delete_user_data(self, dn: str, conn_id: str) -> Event:
        """RequestDeleteUserData → EventAttachedDataChanged (section 9.5.21)."""
        return await self.request("RequestDeleteUserData", ThisDN=dn, ConnID=conn_id)

    async def set_dnd(self, dn: str, on: bool) -> Event:
        """RequestSetDNDOn / RequestSetDNDOff → EventDNDOn / EventDNDOff."""
        return await self.request("RequestSetDNDOn" if on else "RequestSetDNDOff", ThisDN=dn)

    async def agent_login(
        self, dn: str, agent_id: str, *, queue: str | None = None, password: str | None = None
    ) -> Event:
        """RequestAgentLogin → EventAgentLogin (section 9.5.20)."""
        return await self.request(
            "RequestAgentLogin", ThisDN=dn, AgentID=agent_id, ThisQueue=queue, Password=password
        )

    async def agent_ready(self, dn: str) -> Event:
        """RequestAgentReady → EventAgentReady."""
        return await self.request("RequestAgentReady", ThisDN=dn)

    async def agent_not_ready(
        self, dn: str, *, after_call_work: bool = False, reason_code: int | str | None = None
    ) -> Event:
        """RequestAgentNotReady → EventAgentNotReady (AgentAuxWork, or AgentAfterCallWork);
        ``reason_code`` goes as ``Extensions.ReasonCode``."""
        return await self.request(
            "RequestAgentNotReady",
            ThisDN=dn,
            AgentWorkMode="AgentAfterCallWork" if after_call_work else None,
            Extensions=KVList(ReasonCode=reason_code) if reason_code is not None else None,
        )

    async def agent_logout(self, dn: str) -> Event:
        """RequestAgentLogout → EventAgentLogout."""
        return await self.request("RequestAgentLogout", ThisDN=dn)

    # ------------------------------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------------------------------
    def events(self, dn: str | None = None) -> EventStream:
        """An async iterator over the events of ``dn`` (ThisDN; EventPrivateInfo also by the host
        it names), or of the whole session when ``dn`` is None, from now on: answers to requests
        included, and, on the session-wide stream, EventSessionResumed after a resume."""
        stream = EventStream(self, dn)
        if self._ended is not None:
            stream._put(_END)
        else:
            self._subs.append(stream)
        return stream

    def subscribe(self, dn: str | None, callback: Callback) -> Subscription:
        """Calls ``callback(event)`` for every event of ``dn`` (as :meth:`events`); a coroutine
        function is run as a task. Returns the subscription (``.cancel()``)."""
        sub = Subscription(self, dn, callback)
        self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: EventStream | Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def _dispatch(self, ev: Event) -> None:
        """Resolves the request the event answers, then hands it to the subscriptions."""
        ref = ev.reference_id
        if ref is not None:
            p = self._pending.pop(ref, None)
            if p is not None and not p.future.done():
                if ev.name == "EventError":
                    p.future.set_exception(
                        CtidError(ev.get("ErrorCode", 0), ev.get("ErrorMessage", ""), ev, p.name)
                    )
                else:
                    p.future.set_result(ev)
        for sub in list(self._subs):
            if not _matches(sub.dn, ev):
                continue
            if isinstance(sub, EventStream):
                sub._put(ev)
                continue
            try:
                result = sub.callback(ev)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                log.exception("event callback failed on %s", ev.name)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await aw
            except Exception:
                log.exception("event callback failed")

        t = asyncio.create_task(run())
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    def _on_frame(self, text: str) -> None:
        """One text frame of the current session."""
        try:
            ev = decode_event(loads_frame(text), text, EVENTS)
        except ValueError as e:
            log.warning("undecodable frame from the server (%s): %s", e, text)
            return
        n = ev.sequence
        if self._replay_left > 0:
            self._replay_left -= 1
            if n <= self._resumed_at:
                return  # already handed out before the loss
        self._last_sequence = max(self._last_sequence, n)
        self._dispatch(ev)

    # ------------------------------------------------------------------------------------------
    # The connection
    # ------------------------------------------------------------------------------------------
    async def _open(self, url: str, deadline: float) -> tuple[ClientConnection, Event]:
        """One attempt: opens a WebSocket to ``url`` and reads its first frame."""
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                ws = await websockets.connect(
                    url,
                    additional_headers=headers,
                    proxy=None,
                    open_timeout=None,
                    max_size=2**24,
                    close_timeout=2,
                )
        except TimeoutError:
            raise _Failed(Retry("cannot connect: timed out")) from None
        except InvalidURI as e:
            raise _Failed(Fatal(f"cannot connect: {e}")) from None
        except InvalidStatus as e:
            status = e.response.status_code
            if 400 <= status < 500 and status not in (408, 429):
                raise _Failed(Fatal(f"cannot connect: {e}")) from None
            raise _Failed(Retry(f"cannot connect: {e}")) from None
        except (OSError, InvalidHandshake, ConnectionClosed) as e:
            raise _Failed(Retry(f"cannot connect: {e}")) from None
        try:
            first = await self._read_event(ws, deadline)
        except BaseException:
            _drop(ws)
            raise
        return ws, first

    async def _read_event(self, ws: ClientConnection, deadline: float) -> Event:
        """Reads frames until one is an event; a close 4010 is a NotPrimary failure."""
        while True:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    msg = await ws.recv()
            except TimeoutError:
                raise _Failed(Retry("no event from the server in time")) from None
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd is not None else 1006
                reason = e.rcvd.reason if e.rcvd is not None else ""
                why = f"closed by the server ({code} {reason})"
                is_np, primary = failover.not_primary(code, reason)
                raise _Failed(NotPrimary(primary, why) if is_np else Retry(why)) from None
            if isinstance(msg, bytes):
                continue
            try:
                return decode_event(loads_frame(msg), msg, EVENTS)
            except ValueError as e:
                raise _Failed(Retry(f"undecodable frame from the server ({e}): {msg}")) from None

    async def _find_first(self) -> ClientConnection:
        """The first search: the URL that serves, its connection; the session it names."""
        s = self._search
        s.begin(time.monotonic())
        fatal: str | None = None
        while True:
            step = s.step(time.monotonic())
            if isinstance(step, Wait):
                await asyncio.sleep(max(step.until - time.monotonic(), 0.0))
            elif isinstance(step, Try):
                try:
                    ws, first = await self._open(step.url, s.attempt_deadline(time.monotonic()))
                except _Failed as f:
                    s.failed(time.monotonic(), step.url, f.failure)
                    if isinstance(f.failure, Fatal):
                        fatal = f"{step.url}: {f.failure.why}"
                    continue
                sid = first.get("SessionID")
                if not isinstance(sid, str):
                    _drop(ws)
                    raise ConnectError(self._urls, f"{step.url}: the first frame names no session: {first.raw}")
                s.served(step.url)
                self._url = step.url
                self._session_id = sid
                self._last_sequence = first.sequence
                self.first_event = first
                return ws
            else:
                assert isinstance(step, GiveUp)
                if fatal is not None and len(self._urls) == 1:
                    raise ConnectError(self._urls, fatal)
                if step.exhausted:
                    reason = f"none of them can work; last: {step.last}"
                else:
                    reason = f"no server served within {s.opts.give_up_after:g} s; last: {step.last}"
                raise ConnectError(self._urls, reason)

    async def _run(self, ws: ClientConnection) -> None:
        """Owns the connection: serves it, reconnects and resumes, until closed or given up."""
        current: ClientConnection | None = ws
        try:
            while current is not None:
                end = await self._serve(current)
                if end.kind == "close":
                    try:
                        await asyncio.wait_for(current.close(1000), WRITE_TIMEOUT)
                    except Exception as e:  # the connection was going anyway
                        log.debug("close: %s", e)
                    self._finish("the client was closed", report=False)
                    return
                if end.kind == "taken-over":
                    self._finish(f"session {self._session_id} moved to another connection: {end.why}")
                    return
                log.info("ctid connection to %s lost: %s; resuming session", self._url, end.why)
                current = await self._reconnect(end.why, end.primary)
        except Exception as e:
            log.exception("ctid client task failed")
            self._finish(f"internal error of the client: {e!r}")
        except asyncio.CancelledError:
            self._finish("the client task was cancelled", report=False)
            raise

    async def _serve(self, ws: ClientConnection) -> _End:
        """Serves one connection until it ends: queued requests first, then frames and requests
        as they come."""
        reader = asyncio.create_task(self._read_loop(ws))
        writer = asyncio.create_task(self._write_loop(ws))
        closer = asyncio.create_task(self._close_requested.wait())
        done, pending = await asyncio.wait({reader, writer, closer}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if closer in done:
            return _End("close")
        rcvd = ws.protocol.close_rcvd  # the close frame from the server, if one came
        if rcvd is not None:
            code, reason = rcvd.code, rcvd.reason
            why = f"closed by the server ({code} {reason})"
        else:
            failed = writer if writer in done else reader
            code, reason = 1006, ""
            why = "connection lost" if failed is reader else f"connection lost: {failed.exception()}"
        _drop(ws)
        if code == failover.CLOSE_RESUMED_ELSEWHERE:
            return _End("taken-over", why)
        is_np, primary = failover.not_primary(code, reason)
        return _End("lost", why, primary if is_np else None)

    async def _read_loop(self, ws: ClientConnection) -> ConnectionClosed:
        """Reads until the connection ends; how it ended."""
        while True:
            try:
                msg = await ws.recv()
            except ConnectionClosed as e:
                return e
            if isinstance(msg, str):
                self._on_frame(msg)

    async def _write_loop(self, ws: ClientConnection) -> None:
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            out = self._outbox.popleft()
            if out.future is not None and out.future.done():
                continue  # the caller stopped waiting before it went out: withdrawn
            try:
                await asyncio.wait_for(ws.send(out.text), WRITE_TIMEOUT)
            except (ConnectionClosed, TimeoutError, OSError) as e:
                # Not written (or not whole): it goes out again on the next connection.
                self._outbox.appendleft(out)
                raise _WriteFailed(str(e) or type(e).__name__) from None

    async def _reconnect(self, lost: str, primary: str | None) -> ClientConnection | None:
        """Looks for the node that serves (the primary a 4010 named at once, else the list with
        backoff) until a resume, or a refusal, gives a connection to go on with."""
        s = self._search
        s.begin(time.monotonic(), redirect=primary, backoff=primary is None)
        while True:
            step = s.step(time.monotonic())
            if isinstance(step, Wait):
                try:
                    async with asyncio.timeout(max(step.until - time.monotonic(), 0.0)):
                        await self._close_requested.wait()
                except TimeoutError:
                    continue
                await self._close_while_down()
                self._finish("the client was closed", report=False)
                return None
            if isinstance(step, Try):
                try:
                    ws = await self._attempt(step.url, s.attempt_deadline(time.monotonic()))
                except _Failed as f:
                    log.debug("resume attempt at %s failed: %s", step.url, f.failure.why)
                    s.failed(time.monotonic(), step.url, f.failure)
                    continue
                s.served(step.url)
                self._url = step.url
                return ws
            assert isinstance(step, GiveUp)
            within = "(no URL can work)" if step.exhausted else f"within {s.opts.give_up_after:g} s"
            self._finish(
                f"session {self._session_id} not resumed {within} "
                f"(connection lost: {lost}; last attempt: {step.last})"
            )
            return None

    async def _close_while_down(self) -> None:
        """A close asked for while the connection is down: one attempt to resume the session and
        close it cleanly; failing that the session is left to expire on the server."""
        deadline = time.monotonic() + failover.ATTEMPT_TIMEOUT
        try:
            ws = await self._attempt(self._url, deadline, quiet=True)
        except _Failed as f:
            if not (isinstance(f.failure, NotPrimary) and f.failure.primary):
                return
            try:
                ws = await self._attempt(f.failure.primary, deadline, quiet=True)
            except _Failed:
                return
        try:
            await asyncio.wait_for(ws.close(1000), WRITE_TIMEOUT)
        except Exception:
            pass

    async def _attempt(self, url: str, deadline: float, *, quiet: bool = False) -> ClientConnection:
        """Connect, read the first frame, RequestResumeSession, its answer. Nothing reaches the
        caller unless it gives a connection to go on with."""
        ws, first = await self._open(url, deadline)
        try:
            fresh = first.get("SessionID")
            if not isinstance(fresh, str):
                raise _Failed(Retry(f"the first frame names no session: {first.raw}"))
            prelude = [first]
            ref = self._allocate()
            req = REQUESTS["RequestResumeSession"](SessionID=self._session_id, EventSequenceNumber=self._last_sequence)
            body = {k: v for k, v in req.to_wire().items() if k not in ("request", "ReferenceID")}
            text = json.dumps({"request": req.NAME, "ReferenceID": ref, **body}, separators=(",", ":"))
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    await ws.send(text)
            except (TimeoutError, ConnectionClosed, OSError) as e:
                raise _Failed(Retry(f"writing RequestResumeSession: {e or 'timed out'}")) from None
            while True:
                ev = await self._read_event(ws, deadline)
                if ev.reference_id != ref:
                    prelude.append(ev)  # of the fresh session
                    continue
                if ev.name == "EventSessionResumed":
                    if quiet:
                        return ws
                    replayed = ev.get("Extensions")
                    n = replayed.get("Replayed") if isinstance(replayed, KVList) else None
                    self._replay_left = n if isinstance(n, int) and n > 0 else 0
                    self._resumed_at = self._last_sequence
                    self._resumes += 1
                    log.info("session %s resumed at %s (%s events replayed)", self._session_id, url, self._replay_left)
                    self._dispatch(ev)  # not an event of the session's stream: no sequence kept
                    return ws
                if ev.name == "EventError":
                    if quiet:
                        return ws
                    self._fresh_session(fresh, prelude, ev)
                    return ws
                raise _Failed(Retry(f"unexpected answer to RequestResumeSession: {ev.raw}"))
        except BaseException:
            _drop(ws)
            raise

    def _fresh_session(self, fresh: str, prelude: list[Event], refusal: Event) -> None:
        """A refused resume: go on with the new connection's own session and register again."""
        why = f"EventError {refusal.get('ErrorCode')}: {refusal.get('ErrorMessage')}"
        log.warning("session %s not resumed (%s); going on with session %s", self._session_id, why, fresh)
        self._session_id = fresh
        self._last_sequence = 0
        self._replay_left = 0
        # Requests already written went to the old session: their answers are gone. Those still
        # queued go out on the new one.
        queued = {o.reference_id for o in self._outbox}
        for ref, p in list(self._pending.items()):
            if ref not in queued:
                del self._pending[ref]
                if not p.future.done():
                    p.future.set_exception(SessionLost(p.name, why))
        for ev in [*prelude, refusal]:
            self._last_sequence = max(self._last_sequence, ev.sequence)
            self._dispatch(ev)
        # Register again, ahead of anything queued meanwhile.
        again: list[Request] = []
        if self._application_name is not None:
            again.append(REQUESTS["RequestRegisterClient"](ApplicationName=self._application_name))
        again.extend(self._registered.values())
        futures = []
        for req in reversed(again):
            fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
            self._enqueue(dataclasses.replace(req, ReferenceID=None), fut, front=True)
            futures.append((req, fut))
        self._spawn(self._await_reregistration(list(reversed(futures))))

    async def _await_reregistration(self, futures: list[tuple[Request, asyncio.Future[Event]]]) -> None:
        for req, fut in futures:
            try:
                await asyncio.wait_for(fut, self.request_timeout)
            except Exception as e:
                log.warning("registering again on the fresh session: %s %s failed: %s", req.NAME, req.get("ThisDN", ""), e)

    def _finish(self, reason: str, *, report: bool = True) -> None:
        """The end: waiting requests fail, subscriptions get EventServerDisconnected (when the
        client gave up, not when it was closed) and the streams end."""
        if self._ended is not None:
            return
        self._ended = reason
        if report:
            log.warning("ctid client stopped: %s", reason)
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(Disconnected(reason))
        self._pending.clear()
        self._outbox.clear()
        if report:
            self._dispatch(_server_disconnected(reason))
        for sub in self._subs:
            if isinstance(sub, EventStream):
                sub._put(_END)
        self._subs.clear()


class _WriteFailed(Exception):
    pass


def _kv(value: KVLike | None) -> KVList | None:
    if value is None or isinstance(value, KVList):
        return value
    return KVList(value)


def _drop(ws: ClientConnection) -> None:
    """Drops a connection without a close frame: ctid keeps its session for a resume."""
    transport = ws.transport
    if transport is not None:
        transport.abort()


def _server_disconnected(reason: str) -> Event:
    """The client-side EventServerDisconnected (docs/protocol.md section 10)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    return EventServerDisconnected(ErrorMessage=reason, time=stamp)
