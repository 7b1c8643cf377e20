// Shared by the tests: where ctid --demo is, waiting on conditions with deadlines, csta-sim's
// control API, and a TCP proxy that can drop connections.
//
// CTID_URL (ws://HOST:PORT/ws) and CSTA_SIM (http://HOST:PORT, csta-sim's control API) name a
// running `ctid --demo` (.ci/typescript.sh starts one). Without them each test file starts its
// own from CTID_BIN (default: ../../target/debug/ctid) and reads both addresses from its log.
import { spawn } from "node:child_process";
import net from "node:net";
import { after } from "node:test";
import { fileURLToPath } from "node:url";

import { CtidClient } from "../dist/index.js";
export { CtidClient, CtidError, isEvent, isResumeRefusal } from "../dist/index.js";

const here = fileURLToPath(new URL(".", import.meta.url));

let demo = null;

/** { url, sim }: the ctid --demo the tests talk to. */
export async function ctid() {
  if (process.env.CTID_URL && process.env.CSTA_SIM) return { url: process.env.CTID_URL, sim: process.env.CSTA_SIM };
  if (!demo) demo = await spawnDemo();
  return demo;
}

/** Starts a ctid --demo of its own (CTID_BIN, default ../../target/debug/ctid): { url, sim, kill() }. */
export async function spawnDemo() {
  const bin = process.env.CTID_BIN || here + "../../../target/debug/ctid";
  const child = spawn(bin, ["--demo", "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  const kill = () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  };
  after(kill);
  let log = "";
  const found = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("ctid --demo did not start: " + log)), 20000);
    const seen = (d) => {
      log += d;
      const url = /ws:\/\/127\.0\.0\.1:\d+\/ws/.exec(log);
      const sim = /control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (url && sim) {
        clearTimeout(t);
        resolve({ url: url[0], sim: sim[1] });
      }
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.on("exit", (code) => reject(new Error(`ctid --demo exited (${code}): ${log}`)));
  });
  return { ...found, kill };
}

const clients = [];
after(() => Promise.all(clients.map((c) => c.close())));

/** A connected client, closed when the file's tests are over (also when one failed). */
export async function connected(url, options = {}) {
  const c = new CtidClient(options);
  clients.push(c);
  await c.connect(url);
  return c;
}

/** A client not connected yet, closed when the file's tests are over. */
export function client(options = {}) {
  const c = new CtidClient(options);
  clients.push(c);
  return c;
}

/** Resolves once `pred()` is truthy (its value), polling; fails after `ms` naming `what`. */
export async function until(pred, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every event `client` hands out, in order. */
export function collect(client) {
  const events = [];
  client.onEvent((ev) => events.push(ev));
  return events;
}

/** The first event of `events` matching `pred(event, index)`, waited for. */
export function waitEvent(events, pred, what, ms = 10000) {
  return until(() => events.find(pred), what, ms);
}

/** POST to csta-sim's control API (docs/csta-sim.md), e.g. sim(s, "/phones/1004/answer"). */
export async function sim(base, path, body) {
  const r = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${text}`);
  return text;
}

/** A TCP proxy in front of `target` (a ws:// URL): url is the proxied ws:// URL; cut() drops
 * every proxied connection at once, both ways, without a WebSocket close frame; block(true)
 * turns new connections away. */
export function tcpProxy(target) {
  let t = new URL(target);
  const socks = new Set();
  let blocked = false;
  let accepted = 0;
  const server = net.createServer((down) => {
    if (blocked) {
      down.destroy();
      return;
    }
    accepted++;
    const up = net.connect(Number(t.port), t.hostname);
    socks.add(down);
    socks.add(up);
    const gone = () => {
      down.destroy();
      up.destroy();
      socks.delete(down);
      socks.delete(up);
    };
    for (const s of [down, up]) {
      s.on("error", gone);
      s.on("close", gone);
    }
    down.pipe(up);
    up.pipe(down);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `ws://127.0.0.1:${server.address().port}${t.pathname}`,
        get accepted() {
          return accepted;
        },
        cut() {
          for (const s of socks) s.resetAndDestroy ? s.resetAndDestroy() : s.destroy();
          socks.clear();
        },
        block(on) {
          blocked = on;
        },
        retarget(url) {
          t = new URL(url);
        },
        close() {
          this.cut();
          server.close();
        },
      }),
    ),
  );
}

/** A port nothing listens on (a connect to it is refused). */
export async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Asserts the events' EventSequenceNumbers strictly increase (none twice, in order), ignoring
 * EventSessionResumed (it repeats the last number received, §6.9). */
export function strictlyIncreasing(events) {
  const seqs = events.filter((e) => e.event !== "EventSessionResumed").map((e) => e.EventSequenceNumber);
  for (let i = 1; i < seqs.length; i++) {
    if (!(seqs[i] > seqs[i - 1])) throw new Error(`EventSequenceNumber ${seqs[i]} after ${seqs[i - 1]}: ${seqs.join(",")}`);
  }
}
