// Hot desking, calls and agents through the client, against ctid --demo; the simulated phones are
// driven through csta-sim's control API.
import assert from "node:assert/strict";
import { test } from "node:test";
import { collect, connected, ctid, isEvent, sim, waitEvent } from "./helpers.mjs";

const { url, sim: simUrl } = await ctid();

test("hot desking: HOST_DN in EventRegistered and EventAddressInfo, EventPrivateInfo 1 and 2", async () => {
  const desk = await connected(url, { applicationName: "ts-test-hotdesk" });
  const watcher = await connected(url, { applicationName: "ts-test-hotdesk-watch" });
  const seen = collect(watcher);
  await watcher.register("1002", { mode: "ModeMonitor" });
  const before = await desk.register("2002");
  assert.equal(before.Extensions.HOST_DN, undefined);
  const est = await desk.hotDeskInitiate("2002", "1002");
  assert.equal(est.event, "EventPrivateInfo");
  assert.equal(est.PrivateMsgID, 1);
  assert.equal(est.ThisDN, "2002");
  assert.equal(est.OtherDN, "1002");
  // the client registered on the host gets it too, without ReferenceID
  const other = await waitEvent(seen, (e) => e.event === "EventPrivateInfo" && e.PrivateMsgID === 1, "EventPrivateInfo on the host's client");
  assert.equal(other.ReferenceID, undefined);
  assert.equal(other.EventSequenceNumber, est.EventSequenceNumber);
  // the guest's status names its host
  const info = await desk.queryAddress("2002");
  assert.equal(info.InfoType, "AddressInfoDNStatus");
  assert.equal(info.Extensions.HOST_DN, "1002");
  const again = await desk.register("2002");
  assert.equal(again.Extensions.HOST_DN, "1002");
  // a second association of the same guest is refused
  await assert.rejects(desk.hotDeskInitiate("2002", "1003"), (e) => e.errorCode === 1161);
  const cancelled = await desk.hotDeskCancel("2002");
  assert.equal(cancelled.PrivateMsgID, 2);
  assert.equal(cancelled.OtherDN, "1002");
  assert.equal((await desk.queryAddress("2002")).Extensions.HOST_DN, undefined);
});

test("a call made by the client, answered at the phone, held, retrieved, with user data, released", async () => {
  const a = await connected(url, { applicationName: "ts-test-call-a" });
  const b = await connected(url, { applicationName: "ts-test-call-b" });
  const onA = [];
  const onB = [];
  a.on("1003", (e) => onA.push(e));
  b.on("1004", (e) => onB.push(e));
  await a.register("1003");
  await b.register("1004", { mode: "ModeMonitor" });
  const dialing = await a.makeCall("1003", "1004", { CaseID: "C-1" });
  assert.ok(isEvent(dialing, "EventDialing"), dialing.event);
  assert.match(dialing.ConnID, /^[0-9a-f]{16}$/);
  assert.deepEqual(dialing.UserData, { CaseID: "C-1" });
  const ringing = await waitEvent(onB, (e) => e.event === "EventRinging", "EventRinging on 1004");
  assert.equal(ringing.ConnID, dialing.ConnID);
  assert.equal(ringing.OtherDN, "1003");
  // 1004 answers at its phone (csta-sim's control API)
  await sim(simUrl, "/phones/1004/answer");
  await waitEvent(onA, (e) => e.event === "EventEstablished", "EventEstablished on 1003");
  await waitEvent(onB, (e) => e.event === "EventEstablished", "EventEstablished on 1004");
  const held = await a.holdCall("1003", dialing.ConnID);
  assert.equal(held.event, "EventHeld");
  const retrieved = await a.retrieveCall("1003", dialing.ConnID);
  assert.equal(retrieved.event, "EventRetrieved");
  const data = await a.attachUserData("1003", dialing.ConnID, [["Tag", "vip"], ["Tag", "fr"]]);
  assert.equal(data.event, "EventAttachedDataChanged");
  // a repeated key comes back in the pair form (docs/protocol.md §4)
  assert.deepEqual(data.UserData, [["CaseID", "C-1"], ["Tag", "vip"], ["Tag", "fr"]]);
  const released = await a.releaseCall("1003", dialing.ConnID);
  assert.equal(released.event, "EventReleased");
  assert.equal(released.CallState, "CallStateOk");
  await waitEvent(onB, (e) => e.event === "EventReleased", "EventReleased on 1004");
});

test("a call answered by the client (RequestAnswerCall), then cleared", async () => {
  const c = await connected(url, { applicationName: "ts-test-call-c" });
  const events = collect(c);
  await c.register("1005");
  await c.register("1006");
  const dialing = await c.makeCall("1005", "1006");
  const ringing = await waitEvent(events, (e) => e.event === "EventRinging" && e.ThisDN === "1006", "EventRinging on 1006");
  const est = await c.answerCall("1006", ringing.ConnID);
  assert.equal(est.event, "EventEstablished");
  assert.equal(est.ThisDN, "1006");
  assert.equal(est.ConnID, dialing.ConnID);
  // answering again: the call does not ring any more
  await assert.rejects(c.answerCall("1006", ringing.ConnID), (e) => e.kind === "error" && e.errorCode >= 1100);
  const cleared = await c.clearCall("1005", dialing.ConnID);
  assert.equal(cleared.event, "EventReleased");
  await waitEvent(events, (e) => e.event === "EventReleased" && e.ThisDN === "1006", "EventReleased on 1006");
});

test("agent: login, ready, not ready (after-call work), logout", async () => {
  const c = await connected(url, { applicationName: "ts-test-agent" });
  const events = collect(c);
  await c.register("2005");
  const login = await c.agentLogin("2005", "2005", { queue: "3001" });
  assert.equal(login.event, "EventAgentLogin");
  assert.equal(login.AgentID, "2005");
  // the switch leaves a new agent not ready: EventAgentNotReady without ReferenceID follows
  await waitEvent(events, (e) => e.event === "EventAgentNotReady" && e.ReferenceID === undefined, "EventAgentNotReady after the login");
  const ready = await c.agentReady("2005");
  assert.equal(ready.AgentWorkMode, "AgentManualIn");
  const acw = await c.agentNotReady("2005", "AgentAfterCallWork");
  assert.equal(acw.AgentWorkMode, "AgentAfterCallWork");
  const out = await c.agentLogout("2005");
  assert.equal(out.event, "EventAgentLogout");
  await assert.rejects(c.agentReady("2005"), (e) => e.errorCode === 1161);
});
