// Browser test of ctid's web monitor, run by .ci/browser.sh against `ctid --demo`.
//
// Env: CTID_HTTP (http://127.0.0.1:PORT), CTICTL (path to the ctictl binary), SHOT_DIR (where the
// screenshots go), CHROMIUM (default /usr/bin/chromium).
//
// Steps: the page loads and shows the link up; a hot desk made with `ctictl hotdesk initiate`
// appears (pair list and DN row); a call made over the client protocol (RequestMakeCall +
// RequestAnswerCall from a second page's WebSocket: ctictl has no call command) appears with both
// parties; screenshot; `ctictl hotdesk cancel` makes the hot desk disappear; the DN filter works;
// a second monitor page, loaded through a TCP proxy in this script, loses its connection (the
// proxy drops it, no close frame) and resumes its session: the first page shows it detached
// meanwhile, the event made while it was away is replayed into its log once, and it ends up
// attached again. Exit status 0 when every step passed.

import { chromium } from "playwright-core";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.CTID_HTTP || "http://127.0.0.1:7000";
const ctictl = process.env.CTICTL || "target/debug/ctictl";
const shots = process.env.SHOT_DIR || "target/browser";
const wsUrl = base.replace(/^http/, "ws") + "/ws";
const T = 15000;

let passed = 0;
let failed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.message ? e.message.split("\n")[0] : e}`);
    throw e;
  }
}

function run(args) {
  return new Promise((resolve, reject) => {
    execFile(ctictl, ["--server", wsUrl, ...args], { timeout: T }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ctictl ${args.join(" ")}: ${err.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

// A T-Library client inside a browser page: register, make a call, answer it; returns the ConnID.
async function makeCall(page, from, to) {
  return page.evaluate(
    async ({ url, from, to }) => {
      const ws = new WebSocket(url);
      const events = [];
      let waiters = [];
      ws.onmessage = (m) => {
        const ev = JSON.parse(m.data);
        events.push(ev);
        waiters = waiters.filter((w) => !w(ev));
      };
      await new Promise((ok, err) => { ws.onopen = ok; ws.onerror = () => err(new Error("ws error")); });
      let ref = 0;
      const wait = (pred, what) => new Promise((ok, err) => {
        const hit = events.find(pred);
        if (hit) return ok(hit);
        const t = setTimeout(() => err(new Error("timeout waiting for " + what + "; got " + events.map((e) => e.event).join(","))), 10000);
        waiters.push((ev) => { if (pred(ev)) { clearTimeout(t); ok(ev); return true; } return false; });
      });
      const request = async (req) => {
        req.ReferenceID = ++ref;
        ws.send(JSON.stringify(req));
        const ev = await wait((e) => e.ReferenceID === req.ReferenceID, req.request);
        if (ev.event === "EventError") throw new Error(req.request + ": " + ev.ErrorCode + " " + ev.ErrorMessage);
        return ev;
      };
      await request({ request: "RequestRegisterClient", ApplicationName: "browser-test-caller" });
      await request({ request: "RequestRegisterAddress", ThisDN: from });
      await request({ request: "RequestRegisterAddress", ThisDN: to });
      await request({ request: "RequestMakeCall", ThisDN: from, OtherDN: to, MakeCallType: "MakeCallRegular" });
      const ringing = await wait((e) => e.event === "EventRinging" && e.ThisDN === to, "EventRinging on " + to);
      await request({ request: "RequestAnswerCall", ThisDN: to, ConnID: ringing.ConnID });
      await wait((e) => e.event === "EventEstablished" && e.ThisDN === to, "EventEstablished on " + to);
      window.__caller = ws; // keep the session (and its registrations) open
      return ringing.ConnID;
    },
    { url: wsUrl, from, to },
  );
}

// A TCP proxy in front of ctid: cut() drops every proxied connection at once, both ways, without
// a WebSocket close frame (a reset); block(true) turns new connections away.
function startProxy(target) {
  const socks = new Set();
  let blocked = false;
  const server = net.createServer((down) => {
    if (blocked) { down.destroy(); return; }
    const up = net.connect(Number(target.port), target.hostname);
    socks.add(down);
    socks.add(up);
    const gone = () => { down.destroy(); up.destroy(); socks.delete(down); socks.delete(up); };
    for (const s of [down, up]) { s.on("error", gone); s.on("close", gone); }
    down.pipe(up);
    up.pipe(down);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok({
    url: "http://127.0.0.1:" + server.address().port,
    cut() { for (const s of socks) { if (s.resetAndDestroy) s.resetAndDestroy(); else s.destroy(); } socks.clear(); },
    block(on) { blocked = on; },
    close() { server.close(); },
  })));
}

const userDir = mkdtempSync(join(tmpdir(), "ctid-chromium-"));
mkdirSync(shots, { recursive: true });
// A persistent context is how playwright takes a fresh --user-data-dir.
const browser = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1440, height: 900 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let code = 0;
try {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(T);

  await step("page loads and shows the link up", async () => {
    await page.goto(base + "/");
    await page.waitForSelector('#link[data-state="up"]');
    await page.waitForSelector('#ws[data-state="open"]');
    await page.waitForSelector('#dns tr[data-dn="1001"]');
    const name = await page.textContent("#link-name");
    if (!name.includes("csta-sim")) throw new Error(`link name ${name}`);
  });

  await step("hot desk made through ctictl appears", async () => {
    const out = await run(["hotdesk", "initiate", "--guest", "2001", "--host", "1001"]);
    if (!out.includes("EventPrivateInfo")) throw new Error(`ctictl said: ${out}`);
    await page.waitForSelector('#hotdesk li[data-guest="2001"][data-host="1001"]');
    await page.waitForFunction(() => {
      const g = document.querySelector('#dns tr[data-dn="2001"] td.hd');
      const h = document.querySelector('#dns tr[data-dn="1001"] td.hd');
      return g && g.textContent.includes("1001") && h && h.textContent.includes("2001");
    });
    await page.waitForFunction(() => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes("EventPrivateInfo") && li.textContent.includes("OtherDN=1001")));
  });

  const caller = await browser.newPage();
  let connId;
  await step("a call made over the client protocol appears with its parties", async () => {
    await caller.goto(base + "/healthz");
    connId = await makeCall(caller, "1003", "1004");
    await page.waitForFunction((c) => {
      const row = document.querySelector(`#calls tr[data-conn="${c}"]`);
      if (!row) return false;
      const parties = [...row.querySelectorAll(".party")].map((p) => p.dataset.dn + ":" + p.textContent);
      return parties.some((p) => p.startsWith("1003:") && p.includes("Connected")) && parties.some((p) => p.startsWith("1004:") && p.includes("Connected"));
    }, connId);
    await page.waitForFunction(() => /Talking/.test(document.querySelector('#dns tr[data-dn="1004"]').textContent));
  });

  await step("screenshot with the hot desk and the call", async () => {
    await page.screenshot({ path: join(shots, "monitor.png") });
  });

  await step("hot desk cancelled through ctictl disappears", async () => {
    const out = await run(["hotdesk", "cancel", "--guest", "2001"]);
    if (!out.includes("EventPrivateInfo")) throw new Error(`ctictl said: ${out}`);
    await page.waitForSelector('#hotdesk li[data-guest="2001"]', { state: "detached" });
    await page.waitForFunction(() => !document.querySelector('#dns tr[data-dn="2001"] td.hd').textContent.includes("1001"));
  });

  await step("the DN filter narrows the table", async () => {
    await page.fill("#filter", "300");
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll("#dns tbody tr")].map((r) => r.dataset.dn);
      return rows.length === 1 && rows[0] === "3001";
    });
    await page.fill("#filter", "");
    await page.waitForSelector('#dns tr[data-dn="1001"]');
    await page.screenshot({ path: join(shots, "monitor-after.png") });
  });

  const mon = await browser.newPage();
  mon.on("pageerror", (e) => pageErrors.push("second monitor: " + e.message));
  mon.setDefaultTimeout(T);
  const proxy = await startProxy(new URL(base));
  await step("a monitor whose connection drops resumes its session and gets what it missed, once", async () => {
    await mon.goto(proxy.url + "/");
    await mon.waitForSelector('#ws[data-state="open"]');
    await mon.waitForSelector('#dns tr[data-dn="2003"]');
    // both monitors registered the DN (ModeMonitor)
    await page.waitForFunction(() => document.querySelector('#dns tr[data-dn="2003"]').lastElementChild.textContent === "2");
    proxy.block(true);
    proxy.cut();
    await mon.waitForSelector('#ws[data-state="closed"]');
    // the first monitor shows the second one's session detached, keeping its events
    await page.waitForSelector('#sessions tr[data-state="detached"]:not([data-dns="0"])');
    const out = await run(["hotdesk", "initiate", "--guest", "2003", "--host", "1003"]);
    if (!out.includes("EventPrivateInfo")) throw new Error(`ctictl said: ${out}`);
    await page.waitForFunction(() => {
      const row = document.querySelector('#sessions tr[data-state="detached"]:not([data-dns="0"])');
      return row && !row.querySelector("td.kept").textContent.startsWith("0 ");
    });
    await page.screenshot({ path: join(shots, "monitor-detached.png") });
    proxy.block(false);
    await mon.waitForSelector('#ws[data-state="open"][data-resumes="1"]');
    await mon.waitForFunction(() => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes("EventPrivateInfo") && li.textContent.includes("OtherDN=1003")));
    await mon.waitForSelector('#hotdesk li[data-guest="2003"][data-host="1003"]');
    // every event in the log once: no EventSequenceNumber twice
    const seqs = await mon.evaluate(() => [...document.querySelectorAll("#log li[title]")].map((li) => JSON.parse(li.title).EventSequenceNumber));
    if (new Set(seqs).size !== seqs.length) throw new Error(`an event logged twice: ${seqs.join(",")}`);
    const note = await mon.evaluate(() => [...document.querySelectorAll("#log li.note")].map((li) => li.textContent).join("; "));
    if (!/session resumed, [1-9]\d* missed events follow/.test(note)) throw new Error(`log note: ${note}`);
    // attached again: nothing with DNs waits for a resume
    await page.waitForFunction(() => !document.querySelector('#sessions tr[data-state="detached"]:not([data-dns="0"])'));
  });

  await step("leaving the page ends its session at once", async () => {
    await run(["hotdesk", "cancel", "--guest", "2003"]);
    await mon.close({ runBeforeUnload: true });
    await page.waitForFunction(() => document.querySelector('#dns tr[data-dn="2003"]').lastElementChild.textContent === "1");
    await page.waitForFunction(() => !document.querySelector('#sessions tr[data-state="detached"]:not([data-dns="0"])'));
    proxy.close();
  });

  await step("no script errors on the page", async () => {
    if (pageErrors.length) throw new Error(pageErrors.join("; "));
  });
  await caller.close();
} catch (e) {
  code = 1;
  console.error(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
  rmSync(userDir, { recursive: true, force: true });
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(code || (failed ? 1 : 0));
