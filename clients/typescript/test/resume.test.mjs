// Session resume (docs/protocol.md §6.9) against ctid --demo: the connection is dropped under the
// client (a TCP proxy resets it, no close frame) and the client resumes its session, with every
// event made meanwhile replayed once; a refused resume starts a fresh session and registers again;
// a session taken over by another connection (close 4001) stops the client.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { client, collect, connected, ctid, spawnDemo, strictlyIncreasing, tcpProxy, until, waitEvent } from "./helpers.mjs";

const { url } = await ctid();

test("a dropped connection is resumed: events made meanwhile are replayed once, a request waiting across the drop gets its answer", async (t) => {
  const proxy = await tcpProxy(url);
  t.after(() => proxy.close());
  const c = client({ applicationName: "ts-test-resume", minBackoff: 50 });
  const events = collect(c);
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  await c.connect(proxy.url);
  const session = c.sessionId;
  await c.register("2003", { mode: "ModeMonitor" });
  await c.register("1009", { mode: "ModeMonitor" });
  const actor = await connected(url, { applicationName: "ts-test-resume-actor" });
  await actor.register("2003");
  await actor.hotDeskInitiate("2003", "1009");
  await waitEvent(events, (e) => e.event === "EventPrivateInfo" && e.PrivateMsgID === 1, "EventPrivateInfo 1 before the drop");
  const before = c.lastSequence;

  proxy.block(true);
  proxy.cut();
  await until(() => statuses.some((s) => s.state === "lost"), "the client to notice the drop");
  assert.equal(c.connected, false);
  // Made while the client is away: kept by ctid for the detached session.
  await actor.hotDeskCancel("2003");
  // A request made while down waits and goes out on the resumed connection.
  const waiting = c.queryAddress("2003");
  proxy.block(false);

  const info = await waiting;
  assert.equal(info.event, "EventAddressInfo");
  assert.equal(info.Extensions.HOST_DN, undefined);
  const resumed = await waitEvent(events, (e) => e.event === "EventSessionResumed", "EventSessionResumed");
  assert.equal(resumed.SessionID, session);
  assert.ok(resumed.Extensions.Replayed >= 1, `Replayed ${resumed.Extensions.Replayed}`);
  assert.equal(c.sessionId, session);
  assert.equal(c.resumes, 1);
  const open = statuses.find((s) => s.state === "open" && s.session === "resumed");
  assert.equal(open.replayed, resumed.Extensions.Replayed);
  // the cancellation made while away arrives, once, after the resume
  const cancels = events.filter((e) => e.event === "EventPrivateInfo" && e.PrivateMsgID === 2);
  assert.equal(cancels.length, 1, "once per client, though it is registered on guest and host");
  strictlyIncreasing(events);
  assert.ok(events.indexOf(cancels[0]) > events.indexOf(resumed));
  assert.ok(cancels[0].EventSequenceNumber > before);
  // the session is whole: still registered, requests answered
  assert.deepEqual(c.registeredDns.sort(), ["1009", "2003"]);
  assert.equal((await c.queryServer()).event, "EventServerInfo");
  assert.ok(proxy.accepted >= 2);
});

test("a refused resume (ctid restarted: session unknown, 1901) goes on with a fresh session and registers again", async (t) => {
  // A ctid of this test's own, restarted under the client: the proxy points at the new one.
  const first = await spawnDemo();
  t.after(() => first.kill());
  const proxy = await tcpProxy(first.url);
  t.after(() => proxy.close());
  const c = client({ applicationName: "ts-test-refused", minBackoff: 50 });
  const events = collect(c);
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  await c.connect(proxy.url);
  const old = c.sessionId;
  await c.register("1001");
  await c.register("2001", { mode: "ModeMonitor" });
  proxy.block(true);
  first.kill();
  await until(() => statuses.some((s) => s.state === "lost"), "the client to notice the drop");
  // made while down: it waits, and goes out on the fresh session after the registrations
  const waiting = c.queryServer();
  const second = await spawnDemo();
  t.after(() => second.kill());
  proxy.retarget(second.url);
  proxy.block(false);
  const open = await until(() => statuses.find((s) => s.state === "open" && s.session === "fresh"), "a fresh session");
  assert.equal(open.refusal.ErrorCode, 1901);
  assert.notEqual(c.sessionId, old);
  // the caller is handed the new connection's first frame and the EventError, then the answers
  // to the registrations made again
  const refusal = await waitEvent(events, (e) => e.event === "EventError" && e.ErrorCode === 1901, "the refusal");
  const i = events.indexOf(refusal);
  assert.match(events[i - 1].event, /^EventLink(Connected|Disconnected)$/);
  assert.equal(events[i - 1].SessionID, c.sessionId);
  // the new ctid's link to its switch may come up just after
  await waitEvent(events, (e, k) => k >= i - 1 && e.event === "EventLinkConnected", "the new ctid's link up");
  await waitEvent(events, (e, k) => k > i && e.event === "EventRegistered" && e.ThisDN === "1001", "1001 registered again");
  await waitEvent(events, (e, k) => k > i && e.event === "EventRegistered" && e.ThisDN === "2001", "2001 registered again");
  assert.equal((await waiting).event, "EventServerInfo");
  // registered on the new server: requests on the DN work
  const dialing = await c.makeCall("1001", "1002");
  assert.equal(dialing.event, "EventDialing");
  await c.releaseCall("1001", dialing.ConnID);
  assert.equal(c.resumes, 0);
});

test("a session resumed on another connection (close 4001) stops the client: it does not fight back", async () => {
  const c = client({ applicationName: "ts-test-4001" });
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  await c.connect(url);
  await c.register("1010", { mode: "ModeMonitor" });
  // another connection takes the session over with its SessionID
  const thief = new WebSocket(url);
  const frames = [];
  thief.on("message", (d) => frames.push(JSON.parse(String(d))));
  await until(() => frames.length >= 1, "the other connection's first frame");
  thief.send(JSON.stringify({ request: "RequestResumeSession", ReferenceID: 1, SessionID: c.sessionId, EventSequenceNumber: c.lastSequence }));
  await until(() => frames.find((f) => f.event === "EventSessionResumed"), "the other connection's EventSessionResumed");
  const closed = await until(() => statuses.find((s) => s.state === "closed"), "the client to stop");
  assert.equal(closed.gaveUp, true);
  assert.match(closed.reason, /4001/);
  await assert.rejects(c.queryServer(), (e) => e.kind === "disconnected");
  thief.close(1000);
});
