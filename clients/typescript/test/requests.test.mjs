// Requests answered by ReferenceID, the EventError path, DN subscriptions, against ctid --demo.
import assert from "node:assert/strict";
import { test } from "node:test";
import { client as newClient, connected, ctid, collect, CtidError, sim, waitEvent } from "./helpers.mjs";

const { url, sim: simUrl } = await ctid();

test("connect: the first frame names the session, RequestRegisterClient is answered", async () => {
  const client = newClient({ applicationName: "ts-test-requests" });
  const events = collect(client);
  const statuses = [];
  client.onStatus((s) => statuses.push(s.state));
  await client.connect(url);
  assert.equal(events[0].event, "EventLinkConnected");
  assert.match(client.sessionId, /^[0-9a-f]{32}$/);
  assert.equal(client.sessionId, events[0].SessionID);
  assert.equal(client.url, url);
  // the answer to RequestRegisterClient (ReferenceID 1) came before connect() resolved
  const ack = events.find((e) => e.ReferenceID === 1);
  assert.equal(ack.event, "EventACK");
  assert.deepEqual(statuses, ["connecting", "open"]);
  await client.close();
  assert.deepEqual(statuses.slice(-1), ["closed"]);
});

test("request() resolves with the event that carries its ReferenceID, others arriving meanwhile", async () => {
  const client = await connected(url, { applicationName: "ts-test-requests" });
  const events = collect(client);
  // Several at once: each promise gets its own answer.
  const [server, reg1, reg2, info] = await Promise.all([
    client.queryServer(),
    client.register("1001"),
    client.register("1009", { mode: "ModeMonitor" }),
    client.queryAddress("1001", "AddressInfoAddressType"),
  ]);
  assert.equal(server.event, "EventServerInfo");
  assert.match(server.Extensions.ServerName, /^ctid/);
  assert.match(server.Extensions.SupportedRequests, /RequestMakeCall/);
  assert.equal(reg1.event, "EventRegistered");
  assert.equal(reg1.ThisDN, "1001");
  assert.equal(reg2.ThisDN, "1009");
  assert.equal(info.event, "EventAddressInfo");
  assert.equal(info.InfoStatus, "AddressTypeDN");
  const ids = [server, reg1, reg2, info].map((e) => e.ReferenceID);
  assert.equal(new Set(ids).size, 4);
  assert.deepEqual(client.registeredDns.sort(), ["1001", "1009"]);
  // A ReferenceID given by the caller is kept.
  const own = await client.request({ request: "RequestQueryServer", ReferenceID: 777 });
  assert.equal(own.ReferenceID, 777);
  assert.ok(events.some((e) => e.ReferenceID === 777));
  const unreg = await client.unregister("1009");
  assert.equal(unreg.event, "EventUnregistered");
  assert.deepEqual(client.registeredDns, ["1001"]);
  await client.close();
});

test("EventError rejects with a CtidError carrying ErrorCode and ErrorMessage", async () => {
  const client = await connected(url, { applicationName: "ts-test-errors" });
  // 41: a DN this client did not register
  await assert.rejects(client.makeCall("1008", "1002"), (e) => {
    assert.ok(e instanceof CtidError);
    assert.equal(e.kind, "error");
    assert.equal(e.errorCode, 41);
    assert.match(e.errorMessage, /1008 not registered/);
    assert.equal(e.event.event, "EventError");
    assert.equal(e.request.request, "RequestMakeCall");
    return true;
  });
  // 53: not a DN
  await assert.rejects(client.register("10 01"), (e) => e instanceof CtidError && e.errorCode === 53);
  // 56: unknown ConnID on a registered DN
  await client.register("1008");
  await assert.rejects(client.holdCall("1008", "00000000000000ff"), (e) => e.errorCode === 56 && /not known/.test(e.errorMessage));
  // 51: unknown request name (typed requests cannot say it; an untyped caller can)
  await assert.rejects(client.request({ request: "RequestFoo" }), (e) => e.errorCode === 51);
  // 1161: cancelling hot desking that was never initiated
  await client.register("2008");
  await assert.rejects(client.hotDeskCancel("2008"), (e) => e.errorCode === 1161 && e.event.Extensions.CSTAError.includes("/"));
  // the session is still fine
  assert.equal((await client.queryServer()).event, "EventServerInfo");
  await client.close();
});

test("a request without an answer in time rejects with kind timeout; its late answer is dropped", async () => {
  const client = await connected(url, { applicationName: "ts-test-timeout" });
  const events = collect(client);
  await client.register("1008");
  // csta-sim swallows every request for a moment (its control API): ctid's answer to this one
  // comes only at its request-timeout (5 s), long after our 300 ms
  await sim(simUrl, "/faults/stall", { on: true });
  let sent;
  try {
    const t0 = Date.now();
    await assert.rejects(client.request({ request: "RequestSetDNDOn", ThisDN: "1008" }, { timeout: 300 }), (e) => {
      assert.ok(e instanceof CtidError);
      assert.equal(e.kind, "timeout");
      assert.equal(e.request.request, "RequestSetDNDOn");
      sent = e.request.ReferenceID;
      return true;
    });
    assert.ok(Date.now() - t0 < 4000, "rejected at the timeout, not at the answer");
  } finally {
    await sim(simUrl, "/faults/stall", { on: false });
  }
  // the late answer reaches the handlers, and nothing else happens
  const late = await waitEvent(events, (e) => e.ReferenceID === sent, "the late answer", 15000);
  assert.equal(late.event, "EventError");
  assert.equal(late.ErrorCode, 57);
  assert.equal((await client.setDND("1008", false)).event, "EventDNDOff");
  await client.close();
  await assert.rejects(client.queryServer(), (e) => e.kind === "closed");
});

test("on(dn): the events of one DN; onEvent: all of them", async () => {
  const a = await connected(url, { applicationName: "ts-test-dn-a" });
  const b = await connected(url, { applicationName: "ts-test-dn-b" });
  const on1007 = [];
  const on2007 = [];
  const off = a.on("1007", (ev) => on1007.push(ev));
  a.on("2007", (ev) => on2007.push(ev));
  await a.register("1007", { mode: "ModeMonitor" });
  await a.register("2007", { mode: "ModeMonitor" });
  await b.register("2007");
  await b.hotDeskInitiate("2007", "1007");
  // a registered on guest and host gets EventPrivateInfo once (no ReferenceID: b asked)
  const host = await waitEvent(on1007, (e) => e.event === "EventPrivateInfo", "EventPrivateInfo on the host");
  const guest = await waitEvent(on2007, (e) => e.event === "EventPrivateInfo", "EventPrivateInfo on the guest");
  assert.equal(host, guest);
  assert.equal(host.ThisDN, "2007");
  assert.equal(host.OtherDN, "1007");
  assert.equal(host.PrivateMsgID, 1);
  assert.equal(host.ReferenceID, undefined);
  assert.equal(on1007.filter((e) => e.event === "EventRegistered").length, 1);
  assert.ok(on1007.every((e) => e.ThisDN === "1007" || e.OtherDN === "1007"));
  off();
  await b.hotDeskCancel("2007");
  await waitEvent(on2007, (e) => e.event === "EventPrivateInfo" && e.PrivateMsgID === 2, "EventPrivateInfo 2 on the guest");
  assert.equal(on1007.filter((e) => e.event === "EventPrivateInfo").length, 1, "unsubscribed: no more events");
  await a.close();
  await b.close();
});
