// @ctid/client: a client of ctid's T-Library protocol over WebSocket (docs/protocol.md).
//
// * One JSON object per text frame; every request carries a ReferenceID and gets exactly one
//   answer carrying it: its success event, EventACK or EventError (§3.1). `request()` returns a
//   promise settled by that answer.
// * The session outlives its connection (§6.9): the client keeps the SessionID of the first frame
//   and the last EventSequenceNumber it received; when the connection drops it reconnects with
//   backoff and sends RequestResumeSession first, so every event missed meanwhile is replayed,
//   none twice. A refused resume (EventError 1901-1905) leaves it on the new connection's own
//   session: it registers the client and its DNs again. Close code 4001 (the session was resumed
//   on another connection) is not fought over: the client stops.
// * A list of servers, the nodes of a hot-standby pair (§6.10): a node that is not primary closes
//   with 4010 "not primary; primary=<url>" and the client goes there at once; a refused connect, a
//   drop or "primary unknown" moves on to the next URL of the list after the backoff. Redirects
//   are bounded (each primary once, at most 4, after one URL taken from the list).
// * close() closes with code 1000, which ends the session on the server at once.
//
// The same code runs in browsers (the global WebSocket) and in Node (the `ws` package, imported
// when there is no global WebSocket). This file imports only types, so it compiles to one
// self-contained ES module: the web monitor loads it as /ctid-client.js.
//
// It mirrors the Rust client (crates/client: resume.rs for the session, failover.rs for the list).

import type {
  AddressInfoType,
  AgentWorkMode,
  Event,
  EventACK,
  EventAddressInfo,
  EventAgentLogin,
  EventAgentLogout,
  EventAgentNotReady,
  EventAgentReady,
  EventAttachedDataChanged,
  EventDNDOff,
  EventDNDOn,
  EventDialing,
  EventError,
  EventEstablished,
  EventForwardCancel,
  EventForwardSet,
  EventHeld,
  EventPartyAdded,
  EventPrivateInfo,
  EventRegistered,
  EventReleased,
  EventRetrieved,
  EventServerInfo,
  EventSessionResumed,
  EventUnregistered,
  ForwardMode,
  KVList,
  RegisterMode,
  Request,
} from "./messages.js";

/** Largest ReferenceID (2^31 - 1, docs/protocol.md §3.1); the counter wraps to 1 after it. */
export const REFERENCE_ID_MAX = 2147483647;
/** Close code of a node that is not the primary (docs/protocol.md §6.10). */
export const CLOSE_NOT_PRIMARY = 4010;
/** Close code ctid uses when the session was resumed on another connection (§6.9). */
export const CLOSE_RESUMED_ELSEWHERE = 4001;
/** Redirects (4010 naming a primary) followed in a row after one URL taken from the list. */
export const MAX_REDIRECTS = 4;
/** The shortest backoff, whatever the options say (no busy loop). */
const BACKOFF_FLOOR = 10;

/** A request as the caller writes it: the client gives it a ReferenceID when it has none. */
export type Outgoing<R> = R extends unknown ? Omit<R, "ReferenceID"> & { ReferenceID?: number } : never;
/** Any request, ReferenceID optional. */
export type OutgoingRequest = Outgoing<Request>;
/** The name of an event. */
export type EventName = Event["event"];
/** The name of a request. */
export type RequestName = Request["request"];
/** The answer to a request that the switch accepted but whose event did not come in time is
 * EventACK (docs/protocol.md §9.2), so each helper may resolve with it too: the attributes of the
 * expected event are then absent (`dialing.ConnID` is `string | undefined`). */
export type Answer<E> = E | (EventACK & { [K in Exclude<keyof E, keyof EventACK>]?: undefined });

/** True when `ev` is the event named `name` (narrows its type). */
export function isEvent<N extends EventName>(ev: Event, name: N): ev is Extract<Event, { event: N }> {
  return ev.event === name;
}

/** True for the EventError of a refused RequestResumeSession (1901-1905, §6.9). */
export function isResumeRefusal(ev: Event): boolean {
  return ev.event === "EventError" && typeof ev.ErrorCode === "number" && ev.ErrorCode >= 1901 && ev.ErrorCode <= 1905;
}

/** The primary a close names: `undefined` if the close is not a 4010, `null` for
 * "not primary; primary unknown", else the URL of "not primary; primary=<url>". */
export function notPrimary(code: number, reason: string): string | null | undefined {
  if (code !== CLOSE_NOT_PRIMARY) return undefined;
  const m = /primary=([^\s;,]*)/.exec(reason || "");
  return m && m[1] ? m[1] : null;
}

/** Why a request or the client failed. */
export type CtidErrorKind =
  /** ctid answered with EventError: `errorCode`, `errorMessage` and `event` say what. */
  | "error"
  /** No answer within the request's timeout. */
  | "timeout"
  /** The client stopped trying to reconnect, or the session moved to another connection. */
  | "disconnected"
  /** The session was lost (a refused resume): the answer to a request sent on it never comes. */
  | "session-lost"
  /** close() was called. */
  | "closed"
  /** No server of the list served (connect()). */
  | "connect";

/** The error of a failed request or connection. For `kind` "error" it carries the EventError. */
export class CtidError extends Error {
  readonly kind: CtidErrorKind;
  /** ErrorCode of the EventError (docs/protocol.md §8), when ctid answered with one. */
  readonly errorCode?: number;
  /** ErrorMessage of the EventError. */
  readonly errorMessage?: string;
  /** The EventError itself. */
  readonly event?: EventError;
  /** The request that failed (with its ReferenceID), if a request failed. */
  readonly request?: OutgoingRequest;

  constructor(kind: CtidErrorKind, message: string, extra: { event?: EventError; request?: OutgoingRequest } = {}) {
    super(message);
    this.name = "CtidError";
    this.kind = kind;
    this.request = extra.request;
    if (extra.event) {
      this.event = extra.event;
      this.errorCode = extra.event.ErrorCode;
      this.errorMessage = extra.event.ErrorMessage;
    }
  }
}

/** What the client is doing, for a status display and logs (`onStatus`). */
export type Status =
  /** An attempt at `url` starts. */
  | { state: "connecting"; url: string }
  /** Connected to `url`, RequestResumeSession sent. */
  | { state: "resuming"; url: string }
  /** The connection carries the session: `session` says whether it is the first one ("new"), the
   * old one resumed ("resumed", with how many missed events follow), or a fresh one after a
   * refused resume ("fresh", with the refusal; the client registers again). */
  | { state: "open"; url: string; session: "new" | "resumed" | "fresh"; replayed?: number; refusal?: EventError }
  /** The connection (or an attempt) at `url` was lost or refused: `reason`; the next attempt
   * goes to `next`, at once when `redirect` (a 4010 named the primary), else after the backoff. */
  | { state: "lost"; url: string; reason: string; next?: string; redirect?: boolean }
  /** The client stopped: close() was called, or it gave up (`gaveUp`). */
  | { state: "closed"; url: string; reason: string; gaveUp: boolean };

/** How the client connects and reconnects. Times in milliseconds. */
export interface ClientOptions {
  /** ApplicationName of RequestRegisterClient, sent on every new session (default "ctid-client-ts"). */
  applicationName?: string;
  /** The client token of a server with auth = "token", sent as `?token=` (docs/protocol.md, Security). */
  token?: string;
  /** How long a request waits for its answer (default 15000). */
  requestTimeout?: number;
  /** The wait before the first attempt after a loss, doubled after each failed attempt (default 100). */
  minBackoff?: number;
  /** The longest wait between attempts (default 5000). */
  maxBackoff?: number;
  /** Stop trying this long after a loss, or after the first attempt of connect() (default 60000):
   * it bounds the whole search through the list. Keep it longer than the server's resume-window.
   * `Infinity`: never give up (the web monitor). */
  giveUpAfter?: number;
  /** How long one attempt may take: the handshake, the first frame, the resume's answer (default 5000). */
  attemptTimeout?: number;
  /** The WebSocket class to use (default: the global one, else the `ws` package). */
  WebSocket?: WebSocketClass;
}

/** Options of register(). */
export interface RegisterOptions {
  /** ModeShare (ctid's default), ModePrivate or ModeMonitor. */
  mode?: RegisterMode;
  /** Extra attributes of RequestRegisterAddress (AddressType, ControlMode, Extensions, ...). */
  attributes?: Record<string, unknown>;
}

/** Per-request options. */
export interface RequestOptions {
  /** How long to wait for the answer (default: the client's requestTimeout). */
  timeout?: number;
}

/** The part of a WebSocket the client uses (the browser's and the `ws` package's both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: { message?: string; error?: unknown }) => void) | null;
}
/** A WebSocket constructor. */
export type WebSocketClass = new (url: string) => WebSocketLike;

const OPEN = 1;

type Handler = (ev: Event) => void;
type StatusHandler = (s: Status) => void;

/** The global WebSocket when there is one (browsers, Node 22+), else the `ws` package (Node 20). */
async function webSocketClass(given?: WebSocketClass): Promise<WebSocketClass> {
  if (given) return given;
  const g = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof g === "function") return g as WebSocketClass;
  const name = "ws"; // a variable: bundlers for the browser leave it alone
  const mod = (await import(name)) as { WebSocket?: unknown; default?: unknown };
  return (mod.WebSocket ?? mod.default) as WebSocketClass;
}

/** An attribute of any event (not every event type declares every attribute). */
function attr(ev: Event, name: string): unknown {
  return (ev as unknown as Record<string, unknown>)[name];
}

function sessionOf(ev: Event): string | null {
  const id = attr(ev, "SessionID");
  return typeof id === "string" ? id : null;
}

function now(): number {
  return Date.now();
}

// ------------------------------------------------------------------ one connection

type Frame =
  | { kind: "text"; text: string }
  | { kind: "close"; code: number; reason: string; error?: string };

/** One WebSocket and the frames it received that nobody took yet. */
class Conn {
  private frames: Frame[] = [];
  private wake: (() => void) | null = null;
  private sink: ((f: Frame) => void) | null = null;
  private error?: string;
  closed = false;

  constructor(
    readonly ws: WebSocketLike,
    readonly url: string,
  ) {
    ws.onmessage = (m) => {
      if (typeof m.data === "string") this.push({ kind: "text", text: m.data });
      // binary frames are not part of the protocol (§1): nothing for the caller
    };
    ws.onerror = (e) => {
      const err = e && (e.message || (e.error instanceof Error ? e.error.message : undefined));
      if (err) this.error = err;
    };
    ws.onclose = (e) => {
      this.closed = true;
      this.push({ kind: "close", code: e.code, reason: e.reason || "", error: this.error });
    };
  }

  private push(f: Frame): void {
    if (this.sink) {
      this.sink(f);
      return;
    }
    this.frames.push(f);
    const w = this.wake;
    this.wake = null;
    if (w) w();
  }

  /** The next frame, or null at the deadline. */
  async next(deadline: number): Promise<Frame | null> {
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      const wait = deadline - now();
      if (wait <= 0) return null;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.wake = null;
          resolve();
        }, wait);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** From here on every frame goes to `sink` at once (those waiting first, in order). */
  listen(sink: (f: Frame) => void): void {
    this.sink = sink;
    for (let f = this.frames.shift(); f; f = this.frames.shift()) sink(f);
  }

  /** Drops the connection without ending the session (any close code but 1000 detaches it). */
  abandon(reason: string): void {
    this.sink = () => {};
    try {
      this.ws.close(4000, reason);
    } catch {
      // already closing
    }
  }
}

/** Why one attempt at a URL gave no connection to go on with. */
type Failure =
  | { kind: "not-primary"; primary: string | null; why: string }
  | { kind: "retry"; why: string }
  | { kind: "fatal"; why: string };

function parseEvent(text: string): Event | null {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === "object" && !Array.isArray(v) && typeof (v as { event?: unknown }).event === "string") {
      return v as Event;
    }
  } catch {
    // not JSON
  }
  return null;
}

function closeFailure(f: Extract<Frame, { kind: "close" }>): Failure {
  const why = f.error
    ? `cannot connect: ${f.error}`
    : `closed by the server (${f.code}${f.reason ? " " + f.reason : ""})`;
  const primary = notPrimary(f.code, f.reason);
  if (primary !== undefined) return { kind: "not-primary", primary, why };
  // The `ws` package reports an HTTP answer to the upgrade: a 4xx (401 and the like) will not
  // change however often it is tried (browsers do not say why a connect failed).
  const http = f.error ? /Unexpected server response: (\d+)/.exec(f.error) : null;
  if (http) {
    const status = Number(http[1]);
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) return { kind: "fatal", why };
  }
  return { kind: "retry", why };
}

/** Reads frames until one is an event. */
async function readEvent(conn: Conn, deadline: number): Promise<Event> {
  for (;;) {
    const f = await conn.next(deadline);
    if (f === null) throw { kind: "retry", why: "no event from the server in time" } as Failure;
    if (f.kind === "close") throw closeFailure(f);
    const ev = parseEvent(f.text);
    if (!ev) throw { kind: "retry", why: `undecodable frame from the server: ${f.text.slice(0, 200)}` } as Failure;
    return ev;
  }
}

/** One attempt: opens a WebSocket to `url` and reads its first frame (a serving node names the
 * session in it; a node that is not primary closes with 4010 instead). */
async function open(cls: WebSocketClass, url: string, wsUrl: string, deadline: number): Promise<{ conn: Conn; first: Event }> {
  let ws: WebSocketLike;
  try {
    ws = new cls(wsUrl);
  } catch (e) {
    throw { kind: "fatal", why: `cannot connect: ${e instanceof Error ? e.message : String(e)}` } as Failure;
  }
  const conn = new Conn(ws, url);
  try {
    return { conn, first: await readEvent(conn, deadline) };
  } catch (e) {
    if (!conn.closed) conn.abandon("attempt failed");
    throw e;
  }
}

// ------------------------------------------------------------------ where to connect (§6.10)

type Step = { kind: "try"; url: string } | { kind: "wait"; until: number } | { kind: "give-up"; last: string; exhausted: boolean };

/** The plan of a search for the node that serves: which URL to try next, and when (a port of
 * the Rust client's failover::Search). */
class Search {
  private next = 0;
  private dead: boolean[];
  private giveUpAt = 0;
  private backoff: number;
  private notBefore: number | null = null;
  private redirect: string | null = null;
  private followed: string[] = [];
  private last: string | null = null;
  private over = false;

  constructor(
    readonly urls: string[],
    readonly min: number,
    readonly max: number,
    readonly giveUpAfter: number,
  ) {
    this.dead = urls.map(() => false);
    this.backoff = min;
  }

  add(url: string): void {
    if (!this.urls.includes(url)) {
      this.urls.push(url);
      this.dead.push(false);
    }
  }

  begin(at: number, how: "now" | "after-backoff" | { redirect: string }): void {
    this.giveUpAt = at + this.giveUpAfter;
    this.backoff = this.min;
    this.dead = this.urls.map(() => false);
    this.redirect = null;
    this.followed = [];
    this.notBefore = null;
    this.last = null;
    this.over = false;
    if (how === "after-backoff") this.backOff(at);
    else if (how !== "now") {
      this.followed.push(how.redirect);
      this.redirect = how.redirect;
    }
  }

  step(at: number): Step {
    if (this.over) return this.giveUp(false);
    if (this.redirect !== null) {
      const url = this.redirect;
      this.redirect = null;
      return { kind: "try", url };
    }
    const n = this.urls.length;
    let i = -1;
    for (let k = 0; k < n; k++) {
      const j = (this.next + k) % n;
      if (!this.dead[j]) {
        i = j;
        break;
      }
    }
    if (i < 0) {
      this.over = true;
      return this.giveUp(true);
    }
    if (this.notBefore !== null && at < this.notBefore && at < this.giveUpAt) {
      return { kind: "wait", until: Math.min(this.notBefore, this.giveUpAt) };
    }
    this.notBefore = null;
    this.next = (i + 1) % n;
    this.followed = [];
    return { kind: "try", url: this.urls[i] };
  }

  /** The URL the next step from the list would take (for status messages). */
  peek(): string | undefined {
    if (this.redirect !== null) return this.redirect;
    const n = this.urls.length;
    for (let k = 0; k < n; k++) {
      const j = (this.next + k) % n;
      if (!this.dead[j]) return this.urls[j];
    }
    return undefined;
  }

  failed(at: number, url: string, f: Failure): void {
    this.last = `${url}: ${f.why}`;
    if (at >= this.giveUpAt) {
      this.over = true;
      return;
    }
    if (
      f.kind === "not-primary" &&
      f.primary !== null &&
      f.primary !== url &&
      !this.followed.includes(f.primary) &&
      this.followed.length < MAX_REDIRECTS
    ) {
      this.followed.push(f.primary);
      this.redirect = f.primary;
      return;
    }
    if (f.kind === "fatal") this.urls.forEach((u, i) => u === url && (this.dead[i] = true));
    this.backOff(at);
  }

  served(url: string): void {
    const i = this.urls.indexOf(url);
    if (i >= 0) this.next = (i + 1) % this.urls.length;
  }

  attemptDeadline(at: number, attempt: number): number {
    return Math.min(at + attempt, Math.max(this.giveUpAt, at + BACKOFF_FLOOR));
  }

  private backOff(at: number): void {
    this.notBefore = at + this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.max);
  }

  private giveUp(exhausted: boolean): Step {
    const last = this.last ?? (this.urls.length === 0 ? "no server URL given" : "nothing tried");
    return { kind: "give-up", last, exhausted };
  }
}

// ------------------------------------------------------------------ the client

interface Pending {
  request: OutgoingRequest;
  resolve: (ev: Event) => void;
  reject: (e: CtidError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Written to a connection of the current session (its answer comes, or is replayed). */
  sent: boolean;
}

/** Why the serving of one connection stopped. */
type End = { kind: "lost"; why: string } | { kind: "not-primary"; why: string; primary: string | null } | { kind: "taken-over"; why: string };

/**
 * A client of ctid. Create it, subscribe (`onEvent`, `on(dn, ...)`, `onStatus`), then
 * `await connect(url or [urls])`; it sends RequestRegisterClient on every new session.
 *
 * ```ts
 * const client = new CtidClient({ applicationName: "desk-42" });
 * client.on("1001", (ev) => console.log(ev.event));
 * await client.connect(["ws://a:7000/ws", "ws://b:7000/ws"]);
 * await client.register("1001");
 * const dialing = await client.makeCall("1001", "1002");
 * ```
 */
export class CtidClient {
  private readonly opts: Required<Omit<ClientOptions, "token" | "WebSocket">> & Pick<ClientOptions, "token" | "WebSocket">;
  private cls: WebSocketClass | null = null;
  private search: Search | null = null;
  private conn: Conn | null = null;
  /** The connection carries the session: requests may go. */
  private ready = false;
  private currentUrl = "";
  private session: string | null = null;
  private lastSeq = 0;
  private nextRef = 1;
  private pending = new Map<number, Pending>();
  /** Requests waiting for a connection, in order. */
  private queue: number[] = [];
  /** Replayed events still to come after EventSessionResumed, and the N it was asked for. */
  private replayLeft = 0;
  private resumedAt = 0;
  private resumeCount = 0;
  private dns = new Map<string, RegisterOptions>();
  private handlers = new Set<Handler>();
  private dnHandlers = new Map<string, Set<Handler>>();
  private statusHandlers = new Set<StatusHandler>();
  private stopped: string | null = null;
  private closing = false;
  private cancelWait: (() => void) | null = null;
  private closedWaiters: Array<() => void> = [];
  /** Servers added before connect(). */
  private extra: string[] = [];

  constructor(options: ClientOptions = {}) {
    this.opts = {
      applicationName: options.applicationName ?? "ctid-client-ts",
      requestTimeout: options.requestTimeout ?? 15000,
      minBackoff: Math.max(options.minBackoff ?? 100, BACKOFF_FLOOR),
      maxBackoff: Math.max(options.maxBackoff ?? 5000, options.minBackoff ?? 100, BACKOFF_FLOOR),
      giveUpAfter: options.giveUpAfter ?? 60000,
      attemptTimeout: options.attemptTimeout ?? 5000,
      token: options.token,
      WebSocket: options.WebSocket,
    };
  }

  /** Creates a client and connects it. */
  static async connect(urls: string | string[], options: ClientOptions = {}): Promise<CtidClient> {
    const c = new CtidClient(options);
    await c.connect(urls);
    return c;
  }

  // -------------------------------------------------------------- what it knows

  /** The URL of the server in use (or, while reconnecting, the one last used). */
  get url(): string {
    return this.currentUrl;
  }
  /** The URLs of the list (the ones given, plus those added). */
  get servers(): string[] {
    return this.search ? [...this.search.urls] : [];
  }
  /** The current session's SessionID (a refused resume replaces it with the new connection's). */
  get sessionId(): string | null {
    return this.session;
  }
  /** The last EventSequenceNumber of the session received (what a resume gives back). */
  get lastSequence(): number {
    return this.lastSeq;
  }
  /** How many resumes succeeded. */
  get resumes(): number {
    return this.resumeCount;
  }
  /** True while a connection carries the session. */
  get connected(): boolean {
    return this.ready;
  }
  /** The DNs this client registered (registered again on a new session). */
  get registeredDns(): string[] {
    return [...this.dns.keys()];
  }

  // -------------------------------------------------------------- subscriptions

  /** Every event of the session, in order, once each (including EventSessionResumed and, after a
   * refused resume, the new connection's first frame and the EventError). Returns an unsubscribe. */
  onEvent(handler: Handler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** The events about `dn`: ThisDN = dn, and EventPrivateInfo naming it as the host (OtherDN).
   * Subscribing does not register the DN: see register(). Returns an unsubscribe. */
  on(dn: string, handler: Handler): () => void {
    let set = this.dnHandlers.get(dn);
    if (!set) this.dnHandlers.set(dn, (set = new Set()));
    set.add(handler);
    return () => {
      set.delete(handler);
      if (set.size === 0) this.dnHandlers.delete(dn);
    };
  }

  /** Connection changes (connecting, resuming, open, lost, closed). Returns an unsubscribe. */
  onStatus(handler: StatusHandler): () => void {
    this.statusHandlers.add(handler);
    return () => this.statusHandlers.delete(handler);
  }

  /** Adds a server to the list (e.g. a node learnt from /api/ha); before connect() too. */
  addServer(url: string): void {
    if (this.search) this.search.add(url);
    else if (!this.extra.includes(url)) this.extra.push(url);
  }

  // -------------------------------------------------------------- connecting

  /** Connects to whichever server of `urls` serves (docs/protocol.md §6.10), reads the first frame
   * (it names the session) and sends RequestRegisterClient. Rejects with a CtidError of kind
   * "connect" when no server served within giveUpAfter (or none of them can work). */
  async connect(urls: string | string[]): Promise<void> {
    const list = (Array.isArray(urls) ? urls : [urls]).filter((u) => u);
    if (this.search) throw new CtidError("connect", "connect() was already called");
    this.cls = await webSocketClass(this.opts.WebSocket);
    this.search = new Search(list, this.opts.minBackoff, this.opts.maxBackoff, this.opts.giveUpAfter);
    this.extra.forEach((u) => this.search!.add(u));
    this.search.begin(now(), "now");
    for (;;) {
      if (this.stopped) throw new CtidError("closed", this.stopped);
      const step = this.search.step(now());
      if (step.kind === "wait") {
        await this.sleep(step.until - now());
        continue;
      }
      if (step.kind === "give-up") {
        const reason = step.exhausted
          ? `none of them can work; last: ${step.last}`
          : `no server served within ${this.opts.giveUpAfter} ms; last: ${step.last}`;
        this.stopped = reason;
        throw new CtidError("connect", `cannot connect to ${list.join(", ")}: ${reason}`);
      }
      this.status({ state: "connecting", url: step.url });
      try {
        const { conn, first } = await open(this.cls, step.url, this.withToken(step.url), this.search.attemptDeadline(now(), this.opts.attemptTimeout));
        if (this.closing) {
          conn.ws.close(1000);
          throw new CtidError("closed", "closed");
        }
        this.search.served(step.url);
        this.currentUrl = step.url;
        this.session = sessionOf(first);
        this.lastSeq = first.EventSequenceNumber ?? 0;
        this.status({ state: "open", url: step.url, session: "new" });
        this.dispatch(first);
        this.attach(conn);
        // RequestRegisterClient goes first, before requests made while connecting.
        const waiting = this.queue;
        this.queue = [];
        const registered = this.registerClient();
        this.queue.push(...waiting);
        this.flush();
        await registered;
        return;
      } catch (e) {
        if (e instanceof CtidError) throw e;
        const f = e as Failure;
        this.search.failed(now(), step.url, f);
        this.status({ state: "lost", url: step.url, reason: f.why, next: this.search.peek(), redirect: f.kind === "not-primary" && f.primary !== null });
      }
    }
  }

  /** Closes the connection with close code 1000: the session ends on the server at once. Requests
   * still waiting are rejected ("closed"). If the connection is down, one attempt is made to
   * resume the session and close it cleanly; failing that it is left to expire on the server. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const conn = this.conn;
    // Synchronously first, so that a page being left (pagehide) still sends the close frame.
    if (conn && !conn.closed) conn.ws.close(1000);
    this.cancelWait?.();
    this.failAll("closed", "the client was closed");
    if (conn && !conn.closed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.opts.attemptTimeout);
        this.closedWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    } else if (!conn && this.session && this.cls && !this.stopped) {
      await this.closeWhileDown();
    }
    this.stop("closed by the client", false);
  }

  // -------------------------------------------------------------- requests

  /** Sends `msg` (given the next ReferenceID if it has none) and resolves with the event that
   * carries its ReferenceID: its success event or EventACK. Rejects with a CtidError: "error"
   * for EventError, "timeout", "session-lost" (a refused resume), "disconnected", "closed".
   * While the connection is down the request waits and goes out on the resumed one; a request
   * waiting across a lost connection gets its answer from the replay. */
  request(msg: OutgoingRequest, options: RequestOptions = {}): Promise<Event> {
    const req = { ...msg } as OutgoingRequest;
    if (req.ReferenceID === undefined) req.ReferenceID = this.allocate();
    const id = req.ReferenceID;
    return new Promise<Event>((resolve, reject) => {
      if (this.stopped || this.closing) {
        reject(new CtidError(this.closing ? "closed" : "disconnected", this.stopped ?? "the client was closed", { request: req }));
        return;
      }
      const timeout = options.timeout ?? this.opts.requestTimeout;
      const timer = setTimeout(() => {
        if (this.pending.get(id)?.request !== req) return;
        this.pending.delete(id);
        this.queue = this.queue.filter((q) => q !== id); // not sent yet: withdrawn
        reject(new CtidError("timeout", `${req.request} (ReferenceID ${id}): no answer within ${timeout} ms`, { request: req }));
      }, timeout);
      this.pending.set(id, { request: req, resolve, reject, timer, sent: false });
      this.queue.push(id);
      this.flush();
    });
  }

  /** RequestRegisterAddress → EventRegistered. The DN is registered again on a new session. */
  async register(dn: string, options: RegisterOptions = {}): Promise<EventRegistered> {
    const ev = await this.request(this.registerRequest(dn, options));
    this.dns.set(dn, options);
    return ev as EventRegistered;
  }

  /** RequestUnregisterAddress → EventUnregistered. */
  async unregister(dn: string): Promise<EventUnregistered> {
    this.dns.delete(dn);
    return (await this.request({ request: "RequestUnregisterAddress", ThisDN: dn })) as EventUnregistered;
  }

  /** RequestQueryAddress → EventAddressInfo (DN status by default). */
  async queryAddress(dn: string, infoType: AddressInfoType = "AddressInfoDNStatus"): Promise<EventAddressInfo> {
    return (await this.request({ request: "RequestQueryAddress", ThisDN: dn, InfoType: infoType })) as EventAddressInfo;
  }

  /** RequestQueryServer → EventServerInfo. */
  async queryServer(): Promise<EventServerInfo> {
    return (await this.request({ request: "RequestQueryServer" })) as EventServerInfo;
  }

  /** Hot desking: guest `guest` works at host `host`'s phone (RequestPrivateService 1 with
   * Extensions.HOST_DN, docs/protocol.md §6.7) → EventPrivateInfo. The guest must be registered. */
  async hotDeskInitiate(guest: string, host: string): Promise<EventPrivateInfo> {
    return (await this.request({ request: "RequestPrivateService", ThisDN: guest, PrivateMsgID: 1, Extensions: { HOST_DN: host } })) as EventPrivateInfo;
  }

  /** Hot desking ends for `guest` (RequestPrivateService 2, §6.8) → EventPrivateInfo (OtherDN = the former host). */
  async hotDeskCancel(guest: string): Promise<EventPrivateInfo> {
    return (await this.request({ request: "RequestPrivateService", ThisDN: guest, PrivateMsgID: 2 })) as EventPrivateInfo;
  }

  /** RequestMakeCall: `dn` calls `to` → EventDialing (§9.5.1). */
  async makeCall(dn: string, to: string, userData?: KVList): Promise<Answer<EventDialing>> {
    return (await this.request({ request: "RequestMakeCall", ThisDN: dn, OtherDN: to, ...(userData ? { UserData: userData } : {}) })) as Answer<EventDialing>;
  }

  /** RequestAnswerCall → EventEstablished. */
  async answerCall(dn: string, connId: string): Promise<Answer<EventEstablished>> {
    return (await this.request({ request: "RequestAnswerCall", ThisDN: dn, ConnID: connId })) as Answer<EventEstablished>;
  }

  /** RequestReleaseCall (hang up) → EventReleased. */
  async releaseCall(dn: string, connId: string): Promise<Answer<EventReleased>> {
    return (await this.request({ request: "RequestReleaseCall", ThisDN: dn, ConnID: connId })) as Answer<EventReleased>;
  }

  /** RequestClearCall (end the call for every party) → EventReleased. */
  async clearCall(dn: string, connId: string): Promise<Answer<EventReleased>> {
    return (await this.request({ request: "RequestClearCall", ThisDN: dn, ConnID: connId })) as Answer<EventReleased>;
  }

  /** RequestHoldCall → EventHeld. */
  async holdCall(dn: string, connId: string): Promise<Answer<EventHeld>> {
    return (await this.request({ request: "RequestHoldCall", ThisDN: dn, ConnID: connId })) as Answer<EventHeld>;
  }

  /** RequestRetrieveCall → EventRetrieved. */
  async retrieveCall(dn: string, connId: string): Promise<Answer<EventRetrieved>> {
    return (await this.request({ request: "RequestRetrieveCall", ThisDN: dn, ConnID: connId })) as Answer<EventRetrieved>;
  }

  /** RequestInitiateTransfer: a consultation call to `to` → EventDialing. */
  async initiateTransfer(dn: string, connId: string, to: string): Promise<Answer<EventDialing>> {
    return (await this.request({ request: "RequestInitiateTransfer", ThisDN: dn, ConnID: connId, OtherDN: to })) as Answer<EventDialing>;
  }

  /** RequestCompleteTransfer: `consultConnId` joins the held `originalConnId` → EventReleased. */
  async completeTransfer(dn: string, consultConnId: string, originalConnId: string): Promise<Answer<EventReleased>> {
    return (await this.request({ request: "RequestCompleteTransfer", ThisDN: dn, ConnID: consultConnId, TransferConnID: originalConnId })) as Answer<EventReleased>;
  }

  /** RequestSingleStepTransfer → EventReleased. */
  async singleStepTransfer(dn: string, connId: string, to: string): Promise<Answer<EventReleased>> {
    return (await this.request({ request: "RequestSingleStepTransfer", ThisDN: dn, ConnID: connId, OtherDN: to })) as Answer<EventReleased>;
  }

  /** RequestInitiateConference → EventDialing (the consultation). */
  async initiateConference(dn: string, connId: string, to: string): Promise<Answer<EventDialing>> {
    return (await this.request({ request: "RequestInitiateConference", ThisDN: dn, ConnID: connId, OtherDN: to })) as Answer<EventDialing>;
  }

  /** RequestCompleteConference → EventPartyAdded. */
  async completeConference(dn: string, consultConnId: string, originalConnId: string): Promise<Answer<EventPartyAdded>> {
    return (await this.request({ request: "RequestCompleteConference", ThisDN: dn, ConnID: consultConnId, ConferenceConnID: originalConnId })) as Answer<EventPartyAdded>;
  }

  /** RequestAttachUserData (append pairs) → EventAttachedDataChanged with the call's whole user data. */
  async attachUserData(dn: string, connId: string, userData: KVList): Promise<EventAttachedDataChanged> {
    return (await this.request({ request: "RequestAttachUserData", ThisDN: dn, ConnID: connId, UserData: userData })) as EventAttachedDataChanged;
  }

  /** RequestUpdateUserData (replace the keys given) → EventAttachedDataChanged. */
  async updateUserData(dn: string, connId: string, userData: KVList): Promise<EventAttachedDataChanged> {
    return (await this.request({ request: "RequestUpdateUserData", ThisDN: dn, ConnID: connId, UserData: userData })) as EventAttachedDataChanged;
  }

  /** RequestDeleteUserData (remove everything) → EventAttachedDataChanged. */
  async deleteUserData(dn: string, connId: string): Promise<EventAttachedDataChanged> {
    return (await this.request({ request: "RequestDeleteUserData", ThisDN: dn, ConnID: connId })) as EventAttachedDataChanged;
  }

  /** RequestAgentLogin (§9.5.20) → EventAgentLogin. With `dn` a hot-desking host and `agentId`
   * a guest, the login also associates the guest with the host. */
  async agentLogin(dn: string, agentId: string, options: { queue?: string; password?: string } = {}): Promise<Answer<EventAgentLogin>> {
    return (await this.request({
      request: "RequestAgentLogin",
      ThisDN: dn,
      AgentID: agentId,
      ...(options.queue ? { ThisQueue: options.queue } : {}),
      ...(options.password ? { Password: options.password } : {}),
    })) as Answer<EventAgentLogin>;
  }

  /** RequestAgentReady → EventAgentReady. */
  async agentReady(dn: string): Promise<Answer<EventAgentReady>> {
    return (await this.request({ request: "RequestAgentReady", ThisDN: dn })) as Answer<EventAgentReady>;
  }

  /** RequestAgentNotReady → EventAgentNotReady (AgentAfterCallWork for after-call work). */
  async agentNotReady(dn: string, workMode?: AgentWorkMode): Promise<Answer<EventAgentNotReady>> {
    return (await this.request({ request: "RequestAgentNotReady", ThisDN: dn, ...(workMode ? { AgentWorkMode: workMode } : {}) })) as Answer<EventAgentNotReady>;
  }

  /** RequestAgentLogout → EventAgentLogout. */
  async agentLogout(dn: string): Promise<Answer<EventAgentLogout>> {
    return (await this.request({ request: "RequestAgentLogout", ThisDN: dn })) as Answer<EventAgentLogout>;
  }

  /** RequestSetDNDOn / RequestSetDNDOff → EventDNDOn / EventDNDOff. */
  async setDND(dn: string, on: boolean): Promise<Answer<EventDNDOn | EventDNDOff>> {
    return (await this.request({ request: on ? "RequestSetDNDOn" : "RequestSetDNDOff", ThisDN: dn })) as Answer<EventDNDOn | EventDNDOff>;
  }

  /** RequestCallForwardSet → EventForwardSet. */
  async forwardSet(dn: string, to: string, mode?: ForwardMode): Promise<Answer<EventForwardSet>> {
    return (await this.request({ request: "RequestCallForwardSet", ThisDN: dn, OtherDN: to, ...(mode ? { ForwardMode: mode } : {}) })) as Answer<EventForwardSet>;
  }

  /** RequestCallForwardCancel → EventForwardCancel. */
  async forwardCancel(dn: string, mode?: ForwardMode): Promise<Answer<EventForwardCancel>> {
    return (await this.request({ request: "RequestCallForwardCancel", ThisDN: dn, ...(mode ? { ForwardMode: mode } : {}) })) as Answer<EventForwardCancel>;
  }

  // -------------------------------------------------------------- inside

  private registerRequest(dn: string, options: RegisterOptions): OutgoingRequest {
    return {
      ...(options.attributes ?? {}),
      request: "RequestRegisterAddress",
      ThisDN: dn,
      ...(options.mode ? { RegisterMode: options.mode } : {}),
    } as OutgoingRequest;
  }

  private async registerClient(): Promise<void> {
    await this.request({ request: "RequestRegisterClient", ApplicationName: this.opts.applicationName });
  }

  private allocate(): number {
    const id = this.nextRef;
    this.nextRef = id >= REFERENCE_ID_MAX ? 1 : id + 1;
    return id;
  }

  private withToken(url: string): string {
    const t = this.opts.token;
    return t ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(t) : url;
  }

  private status(s: Status): void {
    for (const h of [...this.statusHandlers]) this.call(h, s);
  }

  private call<T>(h: (x: T) => void, x: T): void {
    try {
      h(x);
    } catch (e) {
      // A handler's bug must not stop the stream; report it the way the platform does.
      const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
      if (report) report(e);
      else console.error(e);
    }
  }

  /** Writes the queued requests while a connection carries the session. */
  private flush(): void {
    while (this.ready && this.conn && this.conn.ws.readyState === OPEN && this.queue.length > 0) {
      const id = this.queue[0];
      const p = this.pending.get(id);
      if (!p) {
        this.queue.shift();
        continue;
      }
      try {
        this.conn.ws.send(JSON.stringify(p.request));
      } catch {
        return; // the socket is going: the request stays queued for the next connection
      }
      this.queue.shift();
      p.sent = true;
    }
  }

  /** An event of the session: settles its request, goes to the handlers. */
  private dispatch(ev: Event): void {
    for (const h of [...this.handlers]) this.call(h, ev);
    const dn = attr(ev, "ThisDN");
    const seen = new Set<Handler>();
    const forDn = (d: unknown) => {
      if (typeof d !== "string") return;
      for (const h of [...(this.dnHandlers.get(d) ?? [])]) {
        if (!seen.has(h)) {
          seen.add(h);
          this.call(h, ev);
        }
      }
    };
    forDn(dn);
    if (ev.event === "EventPrivateInfo") forDn(attr(ev, "OtherDN"));
    const id = ev.ReferenceID;
    if (typeof id === "number") {
      const p = this.pending.get(id);
      if (p) {
        this.pending.delete(id);
        clearTimeout(p.timer);
        if (ev.event === "EventError") {
          p.reject(new CtidError("error", `${p.request.request}: ${ev.ErrorCode} ${ev.ErrorMessage}`, { event: ev, request: p.request }));
        } else p.resolve(ev);
      }
    }
  }

  /** The connection carries the session from here on: its frames are served. */
  private attach(conn: Conn): void {
    this.conn = conn;
    this.ready = true;
    conn.listen((f) => this.onFrame(conn, f));
  }

  private onFrame(conn: Conn, f: Frame): void {
    if (this.conn !== conn) return;
    if (f.kind === "text") {
      const ev = parseEvent(f.text);
      if (!ev) return; // not an event: nothing for the caller
      const n = typeof ev.EventSequenceNumber === "number" ? ev.EventSequenceNumber : 0;
      if (this.replayLeft > 0) {
        this.replayLeft--;
        if (n <= this.resumedAt) return; // already handed out before the loss
      }
      if (n > this.lastSeq) this.lastSeq = n;
      this.dispatch(ev);
      return;
    }
    // The connection ended.
    this.conn = null;
    this.ready = false;
    const waiters = this.closedWaiters;
    this.closedWaiters = [];
    waiters.forEach((w) => w());
    if (this.closing) return;
    const why = f.error ? `connection lost: ${f.error}` : `closed by the server (${f.code}${f.reason ? " " + f.reason : ""})`;
    let end: End;
    if (f.code === CLOSE_RESUMED_ELSEWHERE) end = { kind: "taken-over", why };
    else {
      const primary = notPrimary(f.code, f.reason);
      end = primary !== undefined ? { kind: "not-primary", why, primary } : { kind: "lost", why };
    }
    if (end.kind === "taken-over") {
      this.stop(`the session was resumed on another connection: ${why}`, true);
      return;
    }
    void this.reconnect(end.why, end.kind === "not-primary" ? end.primary : null);
  }

  /** Looks for the node that serves until a resume (or a refusal) gives a connection to go on with. */
  private async reconnect(lost: string, primary: string | null): Promise<void> {
    const search = this.search!;
    search.begin(now(), primary ? { redirect: primary } : "after-backoff");
    this.status({ state: "lost", url: this.currentUrl, reason: lost, next: search.peek(), redirect: primary !== null });
    for (;;) {
      if (this.closing || this.stopped) return;
      const step = search.step(now());
      if (step.kind === "wait") {
        await this.sleep(step.until - now());
        continue;
      }
      if (step.kind === "give-up") {
        const within = step.exhausted ? "(no URL can work)" : `within ${this.opts.giveUpAfter} ms`;
        this.stop(`session ${this.session} not resumed ${within} (connection lost: ${lost}; last attempt: ${step.last})`, true);
        return;
      }
      this.status({ state: "connecting", url: step.url });
      try {
        await this.attempt(step.url, search.attemptDeadline(now(), this.opts.attemptTimeout));
        search.served(step.url);
        return;
      } catch (e) {
        const f = e as Failure;
        search.failed(now(), step.url, f);
        this.status({ state: "lost", url: step.url, reason: f.why, next: search.peek(), redirect: f.kind === "not-primary" && f.primary !== null });
      }
    }
  }

  /** One attempt: connect, the first frame, RequestResumeSession, its answer. */
  private async attempt(url: string, deadline: number): Promise<void> {
    const { conn, first } = await open(this.cls!, url, this.withToken(url), deadline);
    if (this.closing) {
      conn.abandon("closing");
      return;
    }
    const fresh = sessionOf(first);
    if (!fresh) {
      conn.abandon("no SessionID");
      throw { kind: "retry", why: "the first frame carries no SessionID" } as Failure;
    }
    const prelude: Event[] = [first];
    const id = this.allocate();
    try {
      conn.ws.send(JSON.stringify({ request: "RequestResumeSession", ReferenceID: id, SessionID: this.session, EventSequenceNumber: this.lastSeq }));
    } catch (e) {
      conn.abandon("write failed");
      throw { kind: "retry", why: `writing RequestResumeSession: ${String(e)}` } as Failure;
    }
    this.status({ state: "resuming", url });
    for (;;) {
      let ev: Event;
      try {
        ev = await readEvent(conn, deadline);
      } catch (e) {
        // Not with 1000, which would end the session if the resume got through.
        if (!conn.closed) conn.abandon("resume timed out");
        throw e;
      }
      if (ev.ReferenceID !== id) {
        prelude.push(ev); // of the connection's own fresh session
        continue;
      }
      this.currentUrl = url;
      if (ev.event === "EventSessionResumed") {
        const replayed = Number((ev as EventSessionResumed).Extensions?.Replayed) || 0;
        this.replayLeft = replayed;
        this.resumedAt = this.lastSeq;
        this.resumeCount++;
        this.status({ state: "open", url, session: "resumed", replayed });
        this.dispatch(ev); // not an event of the session's stream: lastSeq stays
        this.attach(conn); // the replayed events follow
        this.flush();
        return;
      }
      if (ev.event === "EventError") {
        // Refused: go on with this connection's fresh session and register again.
        this.session = fresh;
        this.lastSeq = 0;
        this.replayLeft = 0;
        for (const [rid, p] of [...this.pending]) {
          if (!p.sent) continue;
          this.pending.delete(rid);
          clearTimeout(p.timer);
          p.reject(new CtidError("session-lost", `${p.request.request} (ReferenceID ${rid}): the session was lost (${ev.ErrorCode} ${ev.ErrorMessage}); its answer will not come`, { request: p.request }));
        }
        // The re-registrations go first, before what waited in the queue.
        this.status({ state: "open", url, session: "fresh", refusal: ev as EventError });
        for (const p of [...prelude, ev]) {
          if (typeof p.EventSequenceNumber === "number" && p.EventSequenceNumber > this.lastSeq) this.lastSeq = p.EventSequenceNumber;
          this.dispatch(p);
        }
        const waiting = this.queue;
        this.queue = [];
        this.attach(conn);
        const again: Array<Promise<unknown>> = [this.registerClient()];
        for (const [dn, opts] of this.dns) again.push(this.request(this.registerRequest(dn, opts)));
        this.queue.push(...waiting);
        this.flush();
        // Their answers (or errors) reach the handlers like every event.
        again.forEach((p) => p.catch(() => {}));
        return;
      }
      conn.abandon("unexpected answer");
      throw { kind: "retry", why: `unexpected answer to RequestResumeSession: ${JSON.stringify(ev).slice(0, 200)}` } as Failure;
    }
  }

  /** close() while the connection is down: one attempt to resume the session and close it cleanly. */
  private async closeWhileDown(): Promise<void> {
    const deadline = now() + this.opts.attemptTimeout;
    const tryUrl = async (url: string): Promise<Conn | null> => {
      try {
        const { conn } = await open(this.cls!, url, this.withToken(url), deadline);
        conn.ws.send(JSON.stringify({ request: "RequestResumeSession", ReferenceID: this.allocate(), SessionID: this.session, EventSequenceNumber: this.lastSeq }));
        return conn;
      } catch (e) {
        const f = e as Failure;
        if (f.kind === "not-primary" && f.primary && url !== f.primary) return tryUrl(f.primary);
        return null;
      }
    };
    const conn = await tryUrl(this.currentUrl);
    if (!conn) return;
    // Wait for the resume's answer, so that the close ends the resumed session.
    for (;;) {
      const f = await conn.next(deadline);
      if (f === null || f.kind === "close") break;
      const ev = parseEvent(f.text);
      if (ev && ev.event === "EventSessionResumed") break;
      if (ev && ev.event === "EventError" && isResumeRefusal(ev)) break;
    }
    if (!conn.closed) conn.ws.close(1000);
  }

  /** Waits `ms`, or less if close() comes first. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.cancelWait = null;
        resolve();
      }, Math.max(0, ms));
      this.cancelWait = () => {
        clearTimeout(t);
        this.cancelWait = null;
        resolve();
      };
    });
  }

  private failAll(kind: CtidErrorKind, why: string): void {
    for (const [id, p] of [...this.pending]) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new CtidError(kind, `${p.request.request} (ReferenceID ${id}): ${why}`, { request: p.request }));
    }
    this.queue = [];
  }

  /** Stops for good: waiting requests fail, the status handlers are told. */
  private stop(reason: string, gaveUp: boolean): void {
    if (this.stopped) return;
    this.stopped = reason;
    this.ready = false;
    this.cancelWait?.();
    this.failAll(gaveUp ? "disconnected" : "closed", reason);
    this.status({ state: "closed", url: this.currentUrl, reason, gaveUp });
  }
}
