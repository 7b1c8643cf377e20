// ctid web monitor. Reads the DN and call views from /api/state (paged, filtered) and speaks the
// client protocol over /ws like any client: RequestRegisterClient, then RequestRegisterAddress in
// ModeMonitor for the DNs on the current page. Every event is logged and triggers a refresh of
// /api/state (at most one every 300 ms); a 2 s poll catches what the page is not registered for.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const view = { offset: 0, limit: 100, filter: "", total: 0 };
  const LOG_MAX = 500;
  let ws = null;
  let refId = 0;
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
      "</b> · calls <b>" + c.calls + "</b> · hot desks <b>" + c.hotdesk + "</b> · outstanding <b>" + c.outstanding + "</b>";
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

  // ------------------------------------------------------------------ the client protocol

  function send(req) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    refId = refId >= 2147483647 ? 1 : refId + 1;
    req.ReferenceID = refId;
    ours.add(refId);
    ws.send(JSON.stringify(req));
  }

  function syncRegistrations(dns) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
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

  let backoff = 500;
  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" +
      (token ? "?token=" + encodeURIComponent(token) : "");
    $("ws").dataset.state = "connecting";
    $("ws-state").textContent = "connecting";
    ws = new WebSocket(url);
    ws.onopen = () => {
      backoff = 500;
      $("ws").dataset.state = "open";
      $("ws-state").textContent = "open";
      registered = new Set();
      ours = new Set();
      send({ request: "RequestRegisterClient", ApplicationName: "web-monitor" });
      refresh();
    };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (ev.event === "EventLinkConnected") setLink("up", ev.ApplicationName || "");
      if (ev.event === "EventLinkDisconnected") setLink("down", ev.ApplicationName || "");
      if (ev.ReferenceID !== undefined && ours.has(ev.ReferenceID)) {
        ours.delete(ev.ReferenceID);
        if (ev.event !== "EventError") return; // our own registrations: not news
      }
      logEvent(ev);
      schedule();
    };
    ws.onclose = () => {
      $("ws").dataset.state = "closed";
      $("ws-state").textContent = "closed (retrying)";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

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
