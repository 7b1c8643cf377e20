// A list of servers (docs/protocol.md §6.10): a refused connect moves on to the next URL; a node
// that is not primary (close 4010, played here by a WebSocket server of the test) sends the client
// to the primary it names at once, also in the middle of a session, which is then resumed there.
import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";
import { client, collect, connected, CtidError, ctid, deadPort, strictlyIncreasing, until, waitEvent } from "./helpers.mjs";

const { url } = await ctid();

/** A WebSocket server that closes every connection at once with 4010 and `reason`. */
async function notPrimary(reason) {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise((r) => wss.on("listening", r));
  let hits = 0;
  wss.on("connection", (ws) => {
    hits++;
    ws.close(4010, reason);
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    get hits() {
      return hits;
    },
    close: () => new Promise((r) => wss.close(r)),
  };
}

/** A WebSocket proxy in front of ctid that can close its client side with 4010 (a node losing the
 * primary role); the ctid side is then dropped without a close frame (the session detaches). */
async function wsProxy(target) {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise((r) => wss.on("listening", r));
  const pairs = new Set();
  wss.on("connection", (down) => {
    const up = new WebSocket(target);
    const early = [];
    up.on("open", () => early.splice(0).forEach((m) => up.send(m)));
    up.on("message", (d) => down.readyState === WebSocket.OPEN && down.send(String(d)));
    down.on("message", (d) => (up.readyState === WebSocket.OPEN ? up.send(String(d)) : early.push(String(d))));
    const pair = { up, down };
    pairs.add(pair);
    up.on("close", () => down.readyState === WebSocket.OPEN && down.terminate());
    down.on("close", () => up.terminate());
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    kick(reason) {
      for (const { up, down } of pairs) {
        up.terminate();
        down.close(4010, reason);
      }
      pairs.clear();
    },
    close: () => new Promise((r) => wss.close(r)),
  };
}

test("a refused connect moves on to the next URL of the list", async () => {
  const dead = `ws://127.0.0.1:${await deadPort()}/ws`;
  const c = client({ applicationName: "ts-test-list", minBackoff: 20 });
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  await c.connect([dead, url]);
  assert.equal(c.url, url);
  assert.deepEqual(statuses.map((s) => [s.state, s.url]).slice(0, 3), [["connecting", dead], ["lost", dead], ["connecting", url]]);
  assert.match(statuses[1].reason, /ECONNREFUSED|cannot connect/);
  assert.equal((await c.queryServer()).event, "EventServerInfo");
});

test("a node that is not primary (4010) sends the client to the primary it names, at once", async (t) => {
  const backup = await notPrimary(`not primary; primary=${url}`);
  t.after(() => backup.close());
  // A long backoff: only a redirect without backoff gets through in time.
  const c = client({ applicationName: "ts-test-4010", minBackoff: 5000 });
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  const t0 = Date.now();
  await c.connect([backup.url]);
  assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
  assert.equal(c.url, url, "the named primary, though not in the list");
  assert.equal(backup.hits, 1);
  const lost = statuses.find((s) => s.state === "lost");
  assert.equal(lost.redirect, true);
  assert.equal(lost.next, url);
  assert.match(lost.reason, /4010 not primary; primary=/);
});

test("\"primary unknown\" moves on to the next URL of the list", async (t) => {
  const taking = await notPrimary("not primary; primary unknown");
  t.after(() => taking.close());
  const c = client({ applicationName: "ts-test-unknown", minBackoff: 20 });
  await c.connect([taking.url, url]);
  assert.equal(c.url, url);
  assert.equal(taking.hits, 1);
});

test("a 4010 in the middle of a session: the client moves to the named primary and resumes there", async (t) => {
  const node = await wsProxy(url);
  t.after(() => node.close());
  const c = client({ applicationName: "ts-test-switchover", minBackoff: 5000 });
  const events = collect(c);
  await c.connect(node.url);
  assert.equal(c.url, node.url);
  const session = c.sessionId;
  await c.register("1006", { mode: "ModeMonitor" });
  const actor = await connected(url, { applicationName: "ts-test-switchover-actor" });
  await actor.register("1006");
  node.kick(`not primary; primary=${url}`);
  // while it moves: a call from 1006 (its events are kept for the detached session)
  const dialing = await actor.makeCall("1006", "1007");
  await until(() => c.resumes === 1, "the resume on the primary", 4000);
  assert.equal(c.url, url);
  assert.equal(c.sessionId, session);
  const mine = await waitEvent(events, (e) => e.event === "EventDialing" && e.ConnID === dialing.ConnID, "EventDialing on 1006");
  assert.equal(mine.ReferenceID, undefined);
  strictlyIncreasing(events);
  assert.equal(events.filter((e) => e.EventSequenceNumber === dialing.EventSequenceNumber).length, 1);
  await actor.releaseCall("1006", dialing.ConnID);
});

test("no server serves within giveUpAfter: connect() rejects with kind connect", async () => {
  const dead = `ws://127.0.0.1:${await deadPort()}/ws`;
  const c = client({ minBackoff: 20, giveUpAfter: 300 });
  await assert.rejects(c.connect([dead]), (e) => e instanceof CtidError && e.kind === "connect" && /no server served within 300 ms/.test(e.message));
});

test("a URL that can never work (HTTP 401 to the upgrade) is left out at once", async (t) => {
  const server = http.createServer((req, res) => {
    res.writeHead(401, { "www-authenticate": "Bearer" });
    res.end("invalid token\n");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const c = client({ minBackoff: 20, giveUpAfter: 30000 });
  const t0 = Date.now();
  await assert.rejects(c.connect([`ws://127.0.0.1:${server.address().port}/ws`]), (e) => e.kind === "connect" && /none of them can work.*401/.test(e.message));
  assert.ok(Date.now() - t0 < 5000);
});
