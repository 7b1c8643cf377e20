//! Link faults end to end: ctid and csta-sim over real sockets, faults injected with the
//! simulator's fault API. After every recovery ctid's model — as a client reads it with
//! RequestQueryAddress — must equal the switch's for every registered DN (calls and parties,
//! agents, hot-desk pairs; see `crates/chaos/src/check.rs`), and clients must have seen
//! EventLinkDisconnected, then the catch-up events, then EventLinkConnected.

#[path = "../../chaos/src/check.rs"]
#[allow(dead_code)]
mod check;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{Event, EventName, Request, RequestName};
use ctid_server::demo::demo_config;
use ctid_server::{Config, Running};
use ctid_sim::{Sim, SimConfig};

const T: Duration = Duration::from_secs(5);
const KPL: Duration = Duration::from_millis(300);
const KPL_TOLERANCE: u32 = 2;

/// Every DN of the demo switch.
fn all_dns() -> Vec<String> {
    let mut v: Vec<String> = (1001..=1010)
        .chain(2001..=2010)
        .map(|n| n.to_string())
        .collect();
    v.push("3001".into());
    v.push("3101".into());
    v
}

struct Rig {
    sim: Sim,
    ctid: Running,
    /// Registered on every DN; reads the model with RequestQueryAddress.
    obs: Client,
    dns: Vec<String>,
}

fn fast_link(cfg: &mut Config) {
    for l in &mut cfg.links {
        l.reconnect_min = Duration::from_millis(100);
        l.reconnect_max = Duration::from_millis(300);
        l.connect_timeout = Duration::from_millis(800);
        l.kpl_interval = KPL;
        l.kpl_tolerance = KPL_TOLERANCE;
    }
}

async fn rig_with(edit: impl FnOnce(&mut Config)) -> Rig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = Sim::start(SimConfig::demo(), any, None).await.unwrap();
    let mut cfg = demo_config(any, sim.csta_addr());
    fast_link(&mut cfg);
    edit(&mut cfg);
    let ctid = ctid_server::start(cfg).await.unwrap();
    wait_link(&ctid, "up").await;
    let dns = all_dns();
    let obs = client(&ctid, &dns).await;
    let mut r = Rig {
        sim,
        ctid,
        obs,
        dns,
    };
    r.consistent("at start").await;
    r
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

async fn wait_link(ctid: &Running, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rx = ctid.status.clone();
    while rx.borrow().link.as_str() != state {
        assert!(Instant::now() < deadline, "link never became {state}");
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

/// A client registered on `dns`, the link status and register answers consumed.
async fn client(ctid: &Running, dns: &[String]) -> Client {
    let mut c = Client::connect(&ctid.ws_url()).await.unwrap();
    let first = c.next_event(T).await.unwrap().unwrap();
    assert_eq!(first.name, EventName::EventLinkConnected, "{first:?}");
    for d in dns {
        let ev = c
            .request(Request::register_address(d.clone()), T)
            .await
            .unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }
    c
}

impl Rig {
    /// ctid's model equals the switch's (waiting for events in flight).
    async fn consistent(&mut self, when: &str) {
        let d = check::settle(&self.sim, &mut self.obs, &self.dns, T)
            .await
            .unwrap();
        assert!(
            d.is_empty(),
            "{when}: ctid and the switch differ:\n{}",
            d.join("\n")
        );
    }
}

/// Read events until one matches; returns every event read, the match last.
async fn until(
    c: &mut Client,
    what: &str,
    wait: Duration,
    f: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c.next_event(left).await.unwrap();
        let Some(ev) = ev else {
            panic!("no {what} within {wait:?}; saw {:?}", names(&seen));
        };
        let hit = f(&ev);
        seen.push(ev);
        if hit {
            return seen;
        }
    }
}

fn is(name: EventName) -> impl Fn(&Event) -> bool {
    move |e| e.name == name
}

fn names(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{}({})",
                e.name.as_str(),
                e.this_dn.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// EventLinkDisconnected, then everything up to EventLinkConnected (returned, the catch-up
/// events, EventLinkConnected last).
async fn link_cycle(c: &mut Client) -> Vec<Event> {
    let down = until(
        c,
        "EventLinkDisconnected",
        T,
        is(EventName::EventLinkDisconnected),
    )
    .await;
    let last = down.last().unwrap();
    assert_eq!(last.error_code.map(|c| c.0), Some(54), "{last:?}");
    assert!(last.error_message.is_some(), "{last:?}");
    until(
        c,
        "EventLinkConnected",
        Duration::from_secs(10),
        is(EventName::EventLinkConnected),
    )
    .await
}

/// No EventLinkDisconnected for `wait`.
async fn no_link_loss(c: &mut Client, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match c.next_event(left).await.unwrap() {
            None => return,
            Some(e) => assert_ne!(e.name, EventName::EventLinkDisconnected, "{e:?}"),
        }
    }
}

fn req(name: RequestName, dn: &str) -> Request {
    Request::new(name).with_this_dn(dn)
}

#[tokio::test]
async fn link_dropped_mid_call_resyncs_calls_and_hot_desk_pairs() {
    let mut r = rig().await;
    let mut desk = client(&r.ctid, &["1001".to_string()]).await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.sim.answer("1002").await.unwrap();
    r.sim.dial("1003", "1004").await.unwrap();
    r.sim.dial("1007", "3001").await.unwrap();
    r.consistent("before the fault").await;
    let conn = {
        let q = desk
            .request(
                Request::query_address("1001", ctid_protocol::AddressInfoType::DnStatus),
                T,
            )
            .await
            .unwrap();
        q.extension_str("conn-1").unwrap().to_string()
    };

    // The link drops and cannot come back until the switch answers again.
    r.sim.set_stall(true).await;
    r.sim.drop_connections().await;
    until(
        &mut r.obs,
        "EventLinkDisconnected",
        T,
        is(EventName::EventLinkDisconnected),
    )
    .await;
    // Requests for the switch get 54 at once; local ones still work.
    let e = desk
        .request(
            req(RequestName::RequestMakeCall, "1001").with_other_dn("1005"),
            T,
        )
        .await
        .unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(54), "{e:?}");
    let q = desk
        .request(
            Request::query_address("1001", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(q.extension_str("conn-1"), Some(conn.as_str()), "{q:?}");

    // While it is down: the call ends, the ringing one is answered, a new one starts, a guest
    // sits down at a desk and the guest of 1010 leaves.
    r.sim.hangup("1001").await.unwrap();
    r.sim.answer("1004").await.unwrap();
    r.sim.dial("1005", "1006").await.unwrap();
    r.sim.hotdesk_associate("2002", "1002").await.unwrap();
    r.sim.hotdesk_cancel("2010").await.unwrap();
    r.sim.set_stall(false).await;

    let evs = until(
        &mut desk,
        "EventLinkConnected",
        Duration::from_secs(10),
        is(EventName::EventLinkConnected),
    )
    .await;
    let rel = evs
        .iter()
        .find(|e| e.name == EventName::EventReleased)
        .unwrap_or_else(|| {
            panic!(
                "no EventReleased before EventLinkConnected: {:?}",
                names(&evs)
            )
        });
    assert_eq!(rel.conn_id.map(|c| c.to_string()), Some(conn.clone()));
    assert_eq!(rel.extension_str("ReleaseCause"), Some("resync"));

    let evs = link_cycle_from_connected(&mut r.obs).await;
    let private: Vec<(Option<u32>, Option<&str>)> = evs
        .iter()
        .filter(|e| e.name == EventName::EventPrivateInfo)
        .map(|e| (e.private_msg_id, e.this_dn.as_deref()))
        .collect();
    assert!(
        private.contains(&(Some(1), Some("2002"))),
        "{:?}",
        names(&evs)
    );
    assert!(
        private.contains(&(Some(2), Some("2010"))),
        "{:?}",
        names(&evs)
    );
    r.consistent("after the link came back").await;
}

/// The observer already saw EventLinkDisconnected: everything up to EventLinkConnected.
async fn link_cycle_from_connected(c: &mut Client) -> Vec<Event> {
    until(
        c,
        "EventLinkConnected",
        Duration::from_secs(10),
        is(EventName::EventLinkConnected),
    )
    .await
}

#[tokio::test]
async fn agent_state_changed_while_the_link_was_down_is_resynced() {
    let mut r = rig().await;
    r.sim
        .agent_state("2001", "loggedOn", None, None)
        .await
        .unwrap();
    r.sim
        .agent_state("2003", "loggedOn", None, None)
        .await
        .unwrap();
    r.consistent("agents logged on").await;
    r.sim.set_stall(true).await;
    r.sim.drop_connections().await;
    until(
        &mut r.obs,
        "EventLinkDisconnected",
        T,
        is(EventName::EventLinkDisconnected),
    )
    .await;
    r.sim
        .agent_state("2001", "ready", None, None)
        .await
        .unwrap();
    r.sim
        .agent_state("2003", "loggedOff", None, None)
        .await
        .unwrap();
    r.sim
        .agent_state("2004", "loggedOn", None, None)
        .await
        .unwrap();
    r.sim.set_stall(false).await;
    link_cycle_from_connected(&mut r.obs).await;
    r.consistent("after the link came back").await;
}

#[tokio::test]
async fn forwarding_and_dnd_changed_while_the_link_was_down_are_resynced() {
    use ctid_protocol::ForwardMode;
    let mut r = rig().await;
    r.sim
        .set_forwarding("1004", "forwardImmediate", Some("1005"))
        .await
        .unwrap();
    r.sim.set_dnd("1006", true).await.unwrap();
    until(&mut r.obs, "EventDNDOn", T, is(EventName::EventDNDOn)).await;
    r.sim.set_stall(true).await;
    r.sim.drop_connections().await;
    until(
        &mut r.obs,
        "EventLinkDisconnected",
        T,
        is(EventName::EventLinkDisconnected),
    )
    .await;
    // while ctid cannot see the switch
    r.sim
        .set_forwarding("1004", "forwardImmediate", None)
        .await
        .unwrap();
    r.sim
        .set_forwarding("1007", "forwardBusy", Some("1009"))
        .await
        .unwrap();
    r.sim.set_dnd("1006", false).await.unwrap();
    r.sim.set_dnd("1008", true).await.unwrap();
    r.sim.set_stall(false).await;
    let evs = link_cycle_from_connected(&mut r.obs).await;
    type Seen<'a> = (
        EventName,
        Option<&'a str>,
        Option<ForwardMode>,
        Option<&'a str>,
    );
    let seen: Vec<Seen> = evs
        .iter()
        .filter(|e| {
            matches!(
                e.name,
                EventName::EventForwardSet
                    | EventName::EventForwardCancel
                    | EventName::EventDNDOn
                    | EventName::EventDNDOff
            )
        })
        .map(|e| {
            (
                e.name,
                e.this_dn.as_deref(),
                e.forward_mode,
                e.other_dn.as_deref(),
            )
        })
        .collect();
    for want in [
        (
            EventName::EventForwardCancel,
            Some("1004"),
            Some(ForwardMode::Unconditional),
            None,
        ),
        (
            EventName::EventForwardSet,
            Some("1007"),
            Some(ForwardMode::OnBusy),
            Some("1009"),
        ),
        (EventName::EventDNDOff, Some("1006"), None, None),
        (EventName::EventDNDOn, Some("1008"), None, None),
    ] {
        assert!(seen.contains(&want), "{want:?} not in {seen:?}");
    }
    assert_eq!(seen.len(), 4, "only what changed: {seen:?}");
    // the DN status is the switch's
    let q = r
        .obs
        .request(
            Request::query_address("1007", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(q.extension_str("ForwardMode"), Some("ForwardModeOnBusy"));
    assert_eq!(q.extension_str("ForwardDN"), Some("1009"));
    r.consistent("after the link came back").await;
}

#[tokio::test]
async fn connector_stall_is_detected_by_the_keepalive() {
    let mut r = rig().await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.consistent("call ringing").await;
    // Let the link go quiet, then stop answering.
    let t0 = Instant::now();
    r.sim.set_stall(true).await;
    until(
        &mut r.obs,
        "EventLinkDisconnected",
        T,
        is(EventName::EventLinkDisconnected),
    )
    .await;
    let took = t0.elapsed();
    // Silence for one interval before the first keepalive, then `tolerance` unanswered ones.
    let bound = KPL * (KPL_TOLERANCE + 1) + Duration::from_millis(400);
    assert!(
        took <= bound,
        "stall detected after {took:?} (bound {bound:?})"
    );
    let m = r.ctid.metrics.render();
    assert!(m.contains("ctid_link_up 0"), "{m}");
    // The stalled switch keeps refusing sessions; once it answers, the link comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.sim.answer("1002").await.unwrap();
    r.sim.set_stall(false).await;
    link_cycle_from_connected(&mut r.obs).await;
    r.consistent("after the stall").await;
}

#[tokio::test]
async fn delayed_answers_keep_the_link() {
    let mut r = rig().await;
    let mut a = client(&r.ctid, &["1001".to_string()]).await;
    // Shorter than the keepalive interval: slow, but alive. Events overtake their answers.
    r.sim.set_delay(200).await;
    let d = a
        .request(
            req(RequestName::RequestMakeCall, "1001").with_other_dn("1002"),
            T,
        )
        .await
        .unwrap();
    assert_eq!(d.name, EventName::EventDialing, "{d:?}");
    let conn = d.conn_id.unwrap();
    let mut ans = req(RequestName::RequestAnswerCall, "1002");
    ans.conn_id = Some(conn);
    let mut b = client(&r.ctid, &["1002".to_string()]).await;
    let e = b.request(ans, T).await.unwrap();
    assert_eq!(e.name, EventName::EventEstablished, "{e:?}");
    no_link_loss(&mut r.obs, KPL * 6).await;
    r.consistent("with delayed answers").await;
    r.sim.set_delay(0).await;
}

#[tokio::test]
async fn answers_later_than_request_timeout_get_57_and_are_ignored() {
    let mut r = rig_with(|c| {
        for l in &mut c.links {
            // A Connector this slow would fail the keepalive; switch it off for this test.
            l.kpl_interval = Duration::ZERO;
            l.request_timeout = Duration::from_millis(500);
        }
        c.engine.request_timeout_ms = 500;
    })
    .await;
    let mut a = client(&r.ctid, &["1001".to_string()]).await;
    r.sim.set_delay(1200).await;
    let e = a
        .request(
            req(RequestName::RequestMakeCall, "1001").with_other_dn("1002"),
            T,
        )
        .await
        .unwrap();
    // The events (not delayed) may still win: then the call is reported; otherwise 57.
    assert!(
        e.name == EventName::EventDialing || e.error_code.map(|c| c.0) == Some(57),
        "{e:?}"
    );
    // The late answer arrives and changes nothing; the call the switch made is in the model.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.sim.set_delay(0).await;
    no_link_loss(&mut r.obs, Duration::from_millis(300)).await;
    r.consistent("after late answers").await;
}

#[tokio::test]
async fn system_status_disabled_then_normal() {
    let mut r = rig().await;
    let mut a = client(&r.ctid, &["1001".to_string()]).await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.consistent("call ringing").await;
    r.sim.set_system_status("disabled").await;
    let down = until(
        &mut a,
        "EventLinkDisconnected",
        T,
        is(EventName::EventLinkDisconnected),
    )
    .await;
    assert!(
        down.last()
            .unwrap()
            .error_message
            .as_deref()
            .unwrap_or("")
            .contains("disabled"),
        "{down:?}"
    );
    let e = a
        .request(
            req(RequestName::RequestMakeCall, "1001").with_other_dn("1003"),
            T,
        )
        .await
        .unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(54), "{e:?}");
    // The TCP session is kept while disabled.
    let conns = r.sim.snapshot().await["connections"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(conns, 1);
    r.sim.set_system_status("normal").await;
    let evs = until(
        &mut a,
        "EventLinkConnected",
        T,
        is(EventName::EventLinkConnected),
    )
    .await;
    assert!(
        !evs.iter()
            .any(|e| e.name == EventName::EventLinkDisconnected),
        "{:?}",
        names(&evs)
    );
    link_cycle(&mut r.obs).await;
    // Re-monitored once: the switch holds one monitor per DN, not two.
    let snap = r.sim.snapshot().await;
    let monitors = snap["connections"][0]["monitors"].as_array().unwrap().len();
    assert_eq!(monitors, r.dns.len(), "{}", snap["connections"]);
    r.sim.answer("1002").await.unwrap();
    r.consistent("after disabled/normal").await;
}

#[tokio::test]
async fn malformed_frames_are_skipped_and_the_link_lives() {
    let mut r = rig().await;
    for kind in ["xml", "invoke", "format"] {
        let n = r.sim.inject_malformed_kind(kind).await.unwrap();
        assert_eq!(n, 1, "{kind}");
    }
    no_link_loss(&mut r.obs, KPL * 4).await;
    let m = r.ctid.metrics.render();
    let bad: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ctid_csta_bad_frames_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ctid_csta_bad_frames_total in\n{m}"));
    assert!(bad >= 3, "bad frames counted: {bad}");
    // Still working.
    r.sim.dial("1001", "1002").await.unwrap();
    r.consistent("after malformed frames").await;
}

#[tokio::test]
async fn lost_framing_resets_the_link() {
    let mut r = rig().await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.sim.answer("1002").await.unwrap();
    r.consistent("call established").await;
    r.sim.inject_malformed_kind("framing").await.unwrap();
    link_cycle(&mut r.obs).await;
    r.consistent("after the framing reset").await;
}

#[tokio::test]
async fn monitor_stop_from_the_switch_is_followed_by_monitor_start() {
    let mut r = rig().await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.consistent("call ringing").await;
    let stopped = r.sim.stop_monitors().await;
    assert_eq!(stopped, r.dns.len());
    // Re-monitored without a link cycle.
    let deadline = Instant::now() + T;
    loop {
        let snap = r.sim.snapshot().await;
        let n = snap["connections"][0]["monitors"]
            .as_array()
            .map_or(0, |m| m.len());
        if n == r.dns.len() {
            break;
        }
        assert!(Instant::now() < deadline, "{n} monitors of {}", r.dns.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    no_link_loss(&mut r.obs, Duration::from_millis(200)).await;
    // Events flow on the new monitors.
    r.sim.answer("1002").await.unwrap();
    r.sim.dial("1003", "1004").await.unwrap();
    r.consistent("after MonitorStop").await;
}

#[tokio::test]
async fn messages_lost_resyncs_on_the_same_session() {
    let mut r = rig().await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.consistent("call ringing").await;
    let held = |snap: &serde_json::Value| snap["connections"][0]["monitors"].to_string();
    let before = held(&r.sim.snapshot().await);
    r.sim.set_system_status("messagesLost").await;
    // Same session, new monitors, and no link events for clients (docs/configuration.md).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = r.sim.snapshot().await;
        assert_eq!(snap["connections"].as_array().unwrap().len(), 1);
        let monitors = snap["connections"][0]["monitors"].as_array().unwrap().len();
        if monitors == r.dns.len() && held(&snap) != before {
            break;
        }
        assert!(Instant::now() < deadline, "{}", snap["connections"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    no_link_loss(&mut r.obs, Duration::from_millis(300)).await;
    r.sim.answer("1002").await.unwrap();
    r.consistent("after messagesLost").await;
}

/// The monitors each simulator holds (over all its connections).
async fn monitors(sim: &Sim) -> usize {
    let snap = sim.snapshot().await;
    snap["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["monitors"].as_array().map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test]
async fn the_best_operational_link_is_used_and_losing_it_moves_to_the_next() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let primary = Sim::start(SimConfig::demo(), any, None).await.unwrap();
    let backup = Sim::start(SimConfig::demo(), any, None).await.unwrap();
    let mut cfg = demo_config(any, primary.csta_addr());
    let mut second = cfg.links[0].clone();
    second.name = "backup".into();
    second.port = backup.csta_addr().port();
    second.priority = 2;
    // Listed first, but priority 2: order in the file does not matter.
    cfg.links.insert(0, second);
    cfg.links[1].name = "primary".into();
    cfg.links[1].priority = 1;
    cfg.links.sort_by_key(|l| l.priority);
    fast_link(&mut cfg);
    let ctid = ctid_server::start(cfg).await.unwrap();
    wait_link(&ctid, "up").await;
    assert_eq!(ctid.status.borrow().link_name, "primary");
    let dns = all_dns();
    let mut obs = client(&ctid, &dns).await;
    // Both links are open; only the active one holds monitors.
    let deadline = Instant::now() + T;
    while backup.snapshot().await["connections"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the backup link never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(monitors(&primary).await, dns.len());
    assert_eq!(monitors(&backup).await, 0);
    // A call on the primary switch only (two simulators are two switches).
    primary.dial("1001", "1002").await.unwrap();
    let d = check::settle(&primary, &mut obs, &dns, T).await.unwrap();
    assert!(d.is_empty(), "{d:?}");

    // The primary goes away and stays away: the backup takes over, registrations stay.
    primary.set_stall(true).await;
    primary.drop_connections().await;
    let evs = link_cycle(&mut obs).await;
    let up = evs.last().unwrap();
    assert_eq!(up.extension_str("LinkName"), Some("backup"), "{up:?}");
    assert!(
        evs.iter().any(|e| e.name == EventName::EventReleased),
        "the primary's call is released on resync: {:?}",
        names(&evs)
    );
    assert_eq!(ctid.status.borrow().link_name, "backup");
    assert_eq!(monitors(&backup).await, dns.len());
    backup.dial("1003", "1004").await.unwrap();
    let d = check::settle(&backup, &mut obs, &dns, T).await.unwrap();
    assert!(d.is_empty(), "on the backup: {d:?}");
    // Still registered: events of the backup switch reach the observer.
    until(&mut obs, "EventRinging", T, |e| {
        e.name == EventName::EventRinging && e.this_dn.as_deref() == Some("1004")
    })
    .await;

    // The primary is back: ctid returns to it and the backup drops its monitors.
    primary.set_stall(false).await;
    let evs = link_cycle(&mut obs).await;
    assert_eq!(
        evs.last().unwrap().extension_str("LinkName"),
        Some("primary")
    );
    let d = check::settle(&primary, &mut obs, &dns, T).await.unwrap();
    assert!(d.is_empty(), "back on the primary: {d:?}");
    let deadline = Instant::now() + T;
    while monitors(&backup).await != 0 {
        assert!(Instant::now() < deadline, "the backup still holds monitors");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(monitors(&primary).await, dns.len());

    // The primary fails again: straight back to the standby.
    primary.set_stall(true).await;
    primary.drop_connections().await;
    let evs = link_cycle(&mut obs).await;
    assert_eq!(
        evs.last().unwrap().extension_str("LinkName"),
        Some("backup")
    );
}

#[tokio::test]
async fn a_queue_client_gets_its_catch_up_before_event_link_connected() {
    // docs/call-model.md, "Snapshot and resync": the catch-up events (here: the queued call that ended during the
    // outage) come before EventLinkConnected, also for DNs without a hot-desking query.
    let mut r = rig().await;
    let mut q = client(&r.ctid, &["3001".to_string()]).await;
    r.sim.dial("1007", "3001").await.unwrap();
    until(&mut q, "EventQueued", T, is(EventName::EventQueued)).await;
    r.sim.set_stall(true).await;
    r.sim.drop_connections().await;
    until(
        &mut q,
        "EventLinkDisconnected",
        T,
        is(EventName::EventLinkDisconnected),
    )
    .await;
    r.sim.hangup("1007").await.unwrap();
    r.sim.set_stall(false).await;
    let evs = until(
        &mut q,
        "EventLinkConnected",
        Duration::from_secs(10),
        is(EventName::EventLinkConnected),
    )
    .await;
    assert!(
        evs.iter().any(
            |e| matches!(e.name, EventName::EventReleased | EventName::EventAbandoned)
                && e.this_dn.as_deref() == Some("3001")
        ),
        "no catch-up for 3001 before EventLinkConnected: {:?}",
        names(&evs)
    );
    r.consistent("after the outage").await;
}

#[tokio::test]
async fn a_monitor_start_refused_during_the_resync_is_retried() {
    let mut r = rig().await;
    // The first MonitorStart after the reconnect is refused (busy).
    r.sim
        .try_fail_next(
            "systemResourceAvailibility",
            "resourceBusy",
            Some("MonitorStart"),
        )
        .await
        .unwrap();
    r.sim.drop_connections().await;
    let seen = link_cycle(&mut r.obs).await;
    assert!(
        seen.iter()
            .all(|e| e.name != EventName::EventError && e.name != EventName::EventUnregistered),
        "{:?}",
        names(&seen)
    );
    let snap = r.sim.snapshot().await;
    assert!(snap["faults"]["failNext"].is_null(), "{}", snap["faults"]);
    // The refused DN is monitored again after the backoff (1 s), without a link cycle.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = r.ctid.status.clone();
    loop {
        let n = monitors(&r.sim).await;
        if n == r.dns.len() && status.borrow().monitored == r.dns.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} monitors of {} after the refusal",
            r.dns.len()
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
    no_link_loss(&mut r.obs, Duration::from_millis(200)).await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.consistent("after the retried MonitorStart").await;
}
