// ctid web monitor. Reads the DN and call views from /api/state (paged, filtered) and speaks the
// client protocol over /ws like any client: RequestRegisterClient, then RequestRegisterAddress in
// ModeMonitor for the DNs on the current page. Every event is logged and triggers a refresh of
// /api/state (at most one every 300 ms); a 2 s poll catches what the page is not registered for.
//
// The page's session outlives its connection (docs/protocol.md §6.9): it keeps the SessionID of
// the first frame and the last EventSequenceNumber received; when the WebSocket drops it
// reconnects with backoff (100 ms doubling to 5 s) and sends RequestResumeSession first, so the
// events missed meanwhile are replayed into the log, none twice. A refused resume (EventError
// 1901-1905) starts afresh on the new connection's session: register again. Leaving the page
// closes with code 1000, which ends the session at once.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const view = { offset: 0, limit: 100, filter: "", total: 0 };
  const LOG_MAX = 500;
  let ws = null;
  let refId = 0;
  // The session (§6.9): its SessionID, the last EventSequenceNumber received, resumes so far.
  const session = { id: null, last: 0, resumes: 0 };
  let ready = false; // the connection carries our session (fresh or resumed): requests may go
  let resumeRef = null; // ReferenceID of the RequestResumeSession waiting for its answer
  let fresh = null; // the current connection's first frame, until the resume is answered
  let resumeTimer = null;
  let registered = new Set(); // DNs this page registered (ModeMonitor)
  let ours = new Set(); // ReferenceIDs of our own requests (their answers are not logged)
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

  function send(req) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !ready) return;
    refId = refId >= 2147483647 ? 1 : refId + 1;
    req.ReferenceID = refId;
    ours.add(refId);
    ws.send(JSON.stringify(req));
  }

  function syncRegistrations(dns) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !ready) return;
    const want = new Set(dns);
    for (const dn of registered) {
      if (!want.has(dn)) {
        send({ request: "RequestUnregisterAddress", ThisDN: dn });
        registered.delete(dn);
      }
    }
    for (const dn of want) {
      if (!registered.has(dn)) {
        send({ request: "RequestRegisterAddress", ThisDN: dn, RegisterMode: "ModeMonitor" });
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
    $("ws").dataset.resumes = String(session.resumes);
    $("ws-state").textContent = text || state;
  }

  function logNote(text) {
    if ($("pause-log").checked) return;
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = text;
    $("log").appendChild(li);
  }

  // The connection carries a session of its own from here on: register as a new client.
  function startFresh(first) {
    session.id = first.SessionID || null;
    session.last = first.EventSequenceNumber || 0;
    registered = new Set();
    ours = new Set();
    ready = true;
    send({ request: "RequestRegisterClient", ApplicationName: "web-monitor" });
    refresh();
  }

  // An event of the session: remember its number, show it.
  function handle(ev) {
    if (typeof ev.EventSequenceNumber === "number" && ev.EventSequenceNumber > session.last) session.last = ev.EventSequenceNumber;
    if (ev.event === "EventLinkConnected") setLink("up", ev.ApplicationName || "");
    if (ev.event === "EventLinkDisconnected") setLink("down", ev.ApplicationName || "");
    if (ev.ReferenceID !== undefined && ours.has(ev.ReferenceID)) {
      ours.delete(ev.ReferenceID);
      if (ev.event !== "EventError") return; // our own registrations: not news
    }
    logEvent(ev);
    schedule();
  }

  // Before the session is settled on this connection: the first frame, then the resume's answer.
  function settle(ev) {
    if (fresh === null) {
      fresh = ev; // the first frame: the connection's own fresh session
      if (!session.id) { startFresh(ev); handle(ev); return; }
      refId = refId >= 2147483647 ? 1 : refId + 1;
      resumeRef = refId;
      ws.send(JSON.stringify({ request: "RequestResumeSession", ReferenceID: resumeRef, SessionID: session.id, EventSequenceNumber: session.last }));
      setWs("resuming");
      // No answer in time: drop this connection (not with 1000, which would end the session).
      const mine = ws;
      resumeTimer = setTimeout(() => { if (ws === mine && !ready) mine.close(4000, "resume timed out"); }, 5000);
      return;
    }
    if (ev.ReferenceID !== resumeRef) return; // of the throw-away session
    clearTimeout(resumeTimer);
    resumeRef = null;
    if (ev.event === "EventSessionResumed") {
      session.resumes++;
      ready = true;
      const n = ev.Extensions && ev.Extensions.Replayed !== undefined ? ev.Extensions.Replayed : 0;
      setWs("open", "open (resumed, " + n + " replayed)");
      logNote("connection lost; session resumed, " + n + " missed events follow");
      refresh();
    } else {
      setWs("open", "open (new session)");
      logNote("connection lost; session not resumed (" + ev.ErrorCode + " " + (ev.ErrorMessage || "") + "): registering again");
      const first = fresh;
      startFresh(first);
      handle(first);
      handle(ev);
    }
  }

  let backoff = 100;
  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" +
      (token ? "?token=" + encodeURIComponent(token) : "");
    setWs("connecting");
    ready = false;
    fresh = null;
    resumeRef = null;
    const sock = new WebSocket(url);
    ws = sock;
    sock.onopen = () => {
      backoff = 100;
      if (!session.id) setWs("open");
    };
    sock.onmessage = (m) => {
      if (ws !== sock) return;
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (!ready) settle(ev);
      else handle(ev);
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      clearTimeout(resumeTimer);
      ready = false;
      setWs("closed", "closed (retrying)");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 5000);
    };
  }
  // Leaving the page ends the session at once instead of leaving it to expire.
  window.addEventListener("pagehide", () => { if (ws) { const s = ws; ws = null; s.close(1000); } });

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

  connect();
  refresh();
  setInterval(() => { if (Date.now() - lastRefresh > 1900) refresh(); }, 2000);
})();
