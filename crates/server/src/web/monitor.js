// ctid web monitor. Reads the DN and call views from /api/state (paged, filtered) and speaks the
// client protocol over /ws like any client, through the TypeScript client @ctid/client (its browser
// build, served as /ctid-client.js; clients/typescript): RequestRegisterClient, then
// RequestRegisterAddress in ModeMonitor for the DNs on the current page. Every event is logged and
// triggers a refresh of /api/state (at most one every 300 ms); a 2 s poll catches what the page is
// not registered for.
//
// The page's session outlives its connection (docs/protocol.md §6.9): CtidClient keeps the
// SessionID and the last EventSequenceNumber; when the WebSocket drops it reconnects with backoff
// (100 ms doubling to 5 s) and resumes the session, so the events missed meanwhile are replayed
// into the log, none twice. A refused resume (EventError 1901-1905) starts afresh on the new
// connection's session, and the client registers the page's DNs again. Leaving the page closes
// with code 1000, which ends the session at once.
//
// A pair of nodes (docs/protocol.md §6.10): a node that is not primary closes the WebSocket with
// code 4010 and the reason "not primary; primary=<ws URL>" (or "primary unknown"); the client then
// connects to the named primary at once (cross-origin WebSockets are fine). The page reads
// /api/ha (when HA is enabled) and gives the other nodes' URLs to the client; after a drop, or
// "primary unknown", it tries the next known node with the backoff. Redirects are bounded (each
// primary once, at most 4, after one node taken from the list) so two nodes naming each other
// cannot bounce it for ever. The session is resumed on whichever node serves. The header shows
// the node the WebSocket is connected to and its role. The tables (/api/state, /api/ha) still
// come from the node that served the page.
import { CtidClient } from "/ctid-client.js";

(function () {
  const $ = (id) => document.getElementById(id);
  const view = { offset: 0, limit: 100, filter: "", total: 0 };
  const LOG_MAX = 500;
  let registered = new Set(); // DNs this page registered (ModeMonitor)
  let refreshTimer = null;
  let lastRefresh = 0;
  let inFlight = false;
  let again = false;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function short(status) {
    return String(status || "").replace(/^AddressStatus/, "");
  }

  // ------------------------------------------------------------------ the nodes of a pair (§6.10)

  const ownUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  let ha = null; // the last /api/ha answer of this page's node (null: not read yet / not there)
  let target = ownUrl; // the URL of the current (or next) connection

  function bare(u) {
    return String(u || "").split("?")[0];
  }
  // A node's URL for the client's list (it tries them in turn after a drop).
  function know(u) {
    const b = bare(u);
    if (/^wss?:\/\//.test(b)) client.addServer(b);
  }

  // Node name and role of a WebSocket URL, as /api/ha of this page's node tells them.
  function nodeOf(u) {
    const b = bare(u);
    const host = b.replace(/^wss?:\/\//, "").replace(/\/.*$/, "");
    if (!ha) return { node: host, role: "" };
    if (!ha.enabled) return { node: host, role: ha.role || "standalone" };
    if (b === ownUrl) return { node: ha.node || host, role: ha.role || "" };
    if (ha.lease && bare(ha.lease.url) === b) return { node: ha.lease.holder || host, role: "primary" };
    for (const n of ha.nodes || []) if (bare(n.url) === b) return { node: n.node || host, role: n.role || "" };
    return { node: host, role: "" };
  }

  function showNode() {
    const n = nodeOf(target);
    $("node").dataset.role = n.role || "unknown";
    $("node-name").textContent = n.node;
    $("node-role").textContent = n.role ? "(" + n.role + ")" : "";
    $("node").title = "the ctid node this page's WebSocket is connected to: " + bare(target);
  }

  async function readHa() {
    try {
      const r = await fetch("/api/ha", { cache: "no-store", headers: authHeaders });
      if (r.status === 404) ha = { enabled: false, role: "standalone" }; // a ctid without /api/ha
      else if (r.ok) ha = await r.json();
      else return;
    } catch (e) {
      return; // this page's node is away: keep what was known
    }
    if (ha && ha.enabled) {
      if (ha.lease) know(ha.lease.url);
      for (const n of ha.nodes || []) know(n.url);
    }
    showNode();
  }

  function setLink(state, name) {
    $("link").dataset.state = state;
    $("link-state").textContent = state;
    if (name !== undefined) $("link-name").textContent = name ? "(" + name + ")" : "";
  }

  // ------------------------------------------------------------------ state from /api/state

  // With auth = "token" the page is opened as /?token=...: the token goes to /api/state as a
  // bearer header and to /ws in the URL (browsers cannot set headers on a WebSocket).
  const token = new URLSearchParams(location.search).get("token");
  const authHeaders = token ? { Authorization: "Bearer " + token } : {};

  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    lastRefresh = Date.now();
    try {
      const q = new URLSearchParams({ offset: view.offset, limit: view.limit, filter: view.filter });
      const r = await fetch("/api/state?" + q, { cache: "no-store", headers: authHeaders });
      if (r.ok) render(await r.json());
      else if (r.status === 401) setLink("unauthorized: open this page as /?token=<token>", "");
    } catch (e) {
      setLink("unknown", "");
    } finally {
      inFlight = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    if (refreshTimer) return;
    const wait = Math.max(0, 300 - (Date.now() - lastRefresh));
    refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, wait);
  }

  function render(s) {
    setLink(s.link.state, s.link.name);
    const c = s.counts;
    $("counts").innerHTML =
      "DNs <b>" + c.dns + "</b> · monitored <b>" + c.monitored + "</b> · clients <b>" + c.clients +
      "</b> · calls <b>" + c.calls + "</b> · hot desks <b>" + c.hotdesk + "</b> · outstanding <b>" + c.outstanding +
      "</b> · sessions <b>" + (c.sessions || 0) + "</b>" + (c.detached ? " (<b>" + c.detached + "</b> detached)" : "");
    renderSessions(s.sessions || []);
    view.total = s.dns.total;
    if (view.offset >= view.total && view.total > 0) {
      view.offset = Math.floor((view.total - 1) / view.limit) * view.limit;
      schedule();
    }
    const from = view.total ? view.offset + 1 : 0;
    const to = Math.min(view.offset + view.limit, view.total);
    $("page-info").textContent = from + "–" + to + " of " + view.total;
    $("prev").disabled = view.offset === 0;
    $("next").disabled = to >= view.total;

    const rows = s.dns.items.map((d) => {
      let hd = "";
      if (d.host) hd = "guest ⇄ host " + esc(d.host);
      else if (d.guest) hd = "host ⇄ guest " + esc(d.guest);
      const agent = d.agent_id ? esc(d.agent_id) + (d.agent_status ? ' <span class="muted">' + esc(d.agent_status.replace(/^Agent/, "")) + "</span>" : "") : "";
      const fwd = [d.forward_to ? "→ " + esc(d.forward_to) : "", d.dnd ? "DND" : ""].filter(Boolean).join(" ");
      const st = short(d.status);
      const cls = [d.calls > 0 ? "busy" : "", hd ? "hd" : ""].join(" ");
      return '<tr data-dn="' + esc(d.number) + '" class="' + cls + '">' +
        '<td class="num">' + esc(d.number) + "</td>" +
        "<td>" + esc(d.type) + (d.configured ? "" : ' <span class="muted">(dyn)</span>') + "</td>" +
        '<td><span class="st st-' + esc(st) + '">' + esc(st) + "</span></td>" +
        "<td>" + (d.calls || "") + "</td>" +
        "<td>" + agent + "</td>" +
        '<td class="hd">' + hd + "</td>" +
        "<td>" + fwd + "</td>" +
        "<td>" + (d.monitored ? "yes" : '<span class="muted">no</span>') + "</td>" +
        "<td>" + d.registrations + "</td></tr>";
    });
    $("dns").tBodies[0].innerHTML = rows.join("");

    $("hotdesk").innerHTML = s.hotdesk.length
      ? s.hotdesk.map((p) => '<li data-guest="' + esc(p.guest) + '" data-host="' + esc(p.host) + '">' + esc(p.guest) + " ⇄ " + esc(p.host) + "</li>").join("")
      : '<li class="none muted">none</li>';

    const calls = s.calls.items.map((c) =>
      '<tr data-conn="' + esc(c.conn_id) + '"><td class="num" title="CallID ' + esc(c.call_id) + '">' + esc(c.conn_id) + "</td>" +
      "<td>" + esc(c.type.replace(/^CallType/, "")) + "</td><td>" +
      c.parties.map((p) => '<span class="party" data-dn="' + esc(p.dn) + '">' + esc(p.dn) + ' <span class="st st-' + esc(p.state) + '">' + esc(p.state) + "</span></span>").join("") +
      "</td></tr>");
    $("calls").tBodies[0].innerHTML = calls.length ? calls.join("") : '<tr><td colspan="3" class="muted">no active calls</td></tr>';

    syncRegistrations(s.dns.items.map((d) => d.number));
  }

  function kib(n) {
    return n >= 1024 * 1024 ? (n / 1048576).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
  }

  // Sessions (§6.9): attached ones, and detached ones waiting for a resume with what they keep.
  function renderSessions(list) {
    const rows = list.map((x) => {
      const det = x.detached_for_ms !== null && x.detached_for_ms !== undefined;
      const state = det
        ? '<span class="st st-detached">detached ' + (x.detached_for_ms / 1000).toFixed(1) + " s</span>"
        : '<span class="st st-attached">attached</span>';
      return '<tr data-client="' + esc(x.client) + '" data-state="' + (det ? "detached" : "attached") + '" data-dns="' + esc(x.dns) + '"' + (det ? ' class="detached"' : "") + ">" +
        '<td class="num">' + esc(x.client) + "</td>" +
        "<td>" + esc(x.app || "") + ' <span class="muted">' + esc(x.peer || "") + "</span></td>" +
        "<td>" + esc(x.dns) + "</td>" +
        "<td>" + state + "</td>" +
        '<td class="kept">' + esc(x.kept_events) + " · " + esc(kib(x.kept_bytes)) + "</td></tr>";
    });
    $("sessions").tBodies[0].innerHTML = rows.length ? rows.join("") : '<tr><td colspan="5" class="muted">no sessions</td></tr>';
  }

  // ------------------------------------------------------------------ the client protocol

  // ApplicationName "web-monitor"; the token (auth = "token") goes to /ws as ?token=; the page
  // never gives up reconnecting.
  const client = new CtidClient({ applicationName: "web-monitor", token: token || undefined, giveUpAfter: Infinity });
  const noop = () => {};

  function syncRegistrations(dns) {
    if (!client.connected) return;
    const want = new Set(dns);
    for (const dn of registered) {
      if (!want.has(dn)) {
        client.unregister(dn).catch(noop);
        registered.delete(dn);
      }
    }
    for (const dn of want) {
      if (!registered.has(dn)) {
        client.register(dn, { mode: "ModeMonitor" }).catch(noop);
        registered.add(dn);
      }
    }
  }

  function logEvent(ev) {
    if ($("pause-log").checked) return;
    const log = $("log");
    const li = document.createElement("li");
    if (ev.event === "EventError") li.className = "err";
    const t = (ev.time || new Date().toISOString()).replace(/^.*T/, "").replace(/Z$/, "").slice(0, 12);
    const attrs = ["ThisDN", "OtherDN", "ThirdPartyDN", "ConnID", "CallState", "AgentID", "PrivateMsgID", "ErrorCode", "ErrorMessage", "ApplicationName"]
      .filter((k) => ev[k] !== undefined)
      .map((k) => k + "=" + (typeof ev[k] === "object" ? JSON.stringify(ev[k]) : ev[k]));
    if (ev.Extensions && ev.Extensions.HOST_DN) attrs.push("HOST_DN=" + ev.Extensions.HOST_DN);
    li.innerHTML = '<span class="t">' + esc(t) + '</span> <span class="n">' + esc(ev.event) + "</span> " + esc(attrs.join(" "));
    li.title = JSON.stringify(ev);
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(li);
    while (log.childElementCount > LOG_MAX) log.removeChild(log.firstChild);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function setWs(state, text) {
    $("ws").dataset.state = state;
    $("ws").dataset.resumes = String(client.resumes);
    $("ws-state").textContent = text || state;
  }

  function logNote(text) {
    if ($("pause-log").checked) return;
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = text;
    $("log").appendChild(li);
  }

  // Every event of the session, once, in order (replayed ones included).
  client.onEvent((ev) => {
    if (ev.event === "EventLinkConnected") setLink("up", ev.ApplicationName || "");
    if (ev.event === "EventLinkDisconnected") setLink("down", ev.ApplicationName || "");
    if (ev.event === "EventSessionResumed") return; // shown as a note
    // Answers to this page's own requests (registrations) are not news; their errors are.
    if (ev.ReferenceID !== undefined && ev.event !== "EventError") return;
    logEvent(ev);
    schedule();
  });

  // The connection's changes: the ws badge, the node, notes in the log.
  client.onStatus((s) => {
    switch (s.state) {
      case "connecting":
        target = s.url;
        showNode();
        setWs("connecting", s.url === ownUrl ? "connecting" : "connecting to " + bare(s.url));
        break;
      case "resuming":
        setWs("resuming");
        break;
      case "open":
        target = s.url;
        served();
        if (s.session === "resumed") {
          setWs("open", "open (resumed, " + s.replayed + " replayed)");
          logNote("connection lost; session resumed, " + s.replayed + " missed events follow");
        } else if (s.session === "fresh") {
          setWs("open", "open (new session)");
          logNote("connection lost; session not resumed (" + s.refusal.ErrorCode + " " + (s.refusal.ErrorMessage || "") + "): registering again");
          registered = new Set(client.registeredDns); // the client registers them again
        } else setWs("open");
        refresh();
        break;
      case "lost":
        if (s.redirect) logNote(bare(s.url) + " is not primary; moving to " + bare(s.next));
        else if (/primary unknown/.test(s.reason)) logNote(bare(s.url) + " is not primary and knows no primary");
        setWs("closed", "closed (retrying" + (client.servers.length > 1 && s.next ? " " + bare(s.next) : "") + ")");
        break;
      case "closed":
        setWs("closed", s.gaveUp ? "closed (" + s.reason + ")" : "closed");
        break;
    }
  });

  // The connection carries the session: show where, and learn the other nodes.
  function served() {
    showNode();
    readHa();
  }

  // Leaving the page ends the session at once instead of leaving it to expire.
  window.addEventListener("pagehide", () => { client.close(); });

  // ------------------------------------------------------------------ controls

  let filterTimer = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      view.filter = $("filter").value.trim();
      view.offset = 0;
      refresh();
    }, 250);
  });
  $("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - view.limit); refresh(); });
  $("next").addEventListener("click", () => { if (view.offset + view.limit < view.total) { view.offset += view.limit; refresh(); } });
  $("page-size").addEventListener("change", () => { view.limit = Number($("page-size").value); view.offset = 0; refresh(); });
  $("clear-log").addEventListener("click", () => { $("log").innerHTML = ""; });

  client.connect([ownUrl]).catch((e) => setWs("closed", "closed (" + e.message + ")"));
  refresh();
  readHa();
  setInterval(() => { if (Date.now() - lastRefresh > 1900) refresh(); }, 2000);
  setInterval(readHa, 10000);
})();
