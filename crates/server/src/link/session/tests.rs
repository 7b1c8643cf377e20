//! The link session driven without sockets: frames built with `encode_message` go in, what it
//! transmits is decoded back, and time is moved by hand.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use ctid_csta::frame::{decode_frame, encode_frame, encode_message, FrameItem, MAX_FRAME_LEN};
use ctid_csta::{CodecOptions, Edition, InvokeId, Message};
use ctid_engine::Input;

use super::{Session, SessionEvent};
use crate::config::{LinkConfig, SessionMode};
use crate::link::{LinkError, SESSION_INVOKE_IDS};
use crate::metrics::Metrics;

const S: Duration = Duration::from_secs(1);

const NORMAL: &str = "<SystemStatus><systemStatus>normal</systemStatus></SystemStatus>";
const DISABLED: &str = "<SystemStatus><systemStatus>disabled</systemStatus></SystemStatus>";
const MESSAGES_LOST: &str =
    "<SystemStatus><systemStatus>messagesLost</systemStatus></SystemStatus>";
const STATUS_NORMAL: &str =
    "<RequestSystemStatusResponse><systemStatus>normal</systemStatus></RequestSystemStatusResponse>";
const MONITOR_START: &str = "<MonitorStart><monitorObject><deviceObject>1001</deviceObject></monitorObject><monitorType>device</monitorType></MonitorStart>";
const EVENT: &str = "<DoNotDisturbEvent><monitorCrossRefID>A</monitorCrossRefID><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>";

fn cfg(session: SessionMode) -> LinkConfig {
    LinkConfig {
        name: "test".into(),
        host: "127.0.0.1".into(),
        port: 1040,
        priority: 1,
        session,
        edition: Edition::Ed3,
        connect_timeout: 2 * S,
        kpl_interval: 10 * S,
        kpl_tolerance: 3,
        request_timeout: 5 * S,
        reconnect_min: S,
        reconnect_max: 30 * S,
        hotdesk_enabled: true,
        hotdesk_namespace: ctid_csta::HOTDESK_NS.into(),
        session_duration: 180,
    }
}

fn id(n: u16) -> InvokeId {
    InvokeId::new(n).unwrap()
}

fn xml(s: &str) -> Message {
    ctid_csta::decode(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn frame(n: u16, s: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_message(id(n), &xml(s), &CodecOptions::default(), &mut b).unwrap();
    b.to_vec()
}

fn monitor_start_response(xref: &str) -> String {
    format!("<MonitorStartResponse><monitorCrossRefID>{xref}</monitorCrossRefID></MonitorStartResponse>")
}

/// A session, its clock and its metrics.
struct Rig {
    s: Session,
    t0: Instant,
    now: Instant,
    metrics: Metrics,
}

impl Rig {
    fn new(cfg: LinkConfig) -> Rig {
        let t0 = Instant::now();
        let metrics = Metrics::default();
        Rig {
            s: Session::new(cfg, metrics.clone(), t0),
            t0,
            now: t0,
            metrics,
        }
    }

    /// A session that went operational at `t0` with nothing left to read.
    fn open(mut cfg: LinkConfig) -> Rig {
        cfg.session = SessionMode::None;
        let mut r = Rig::new(cfg);
        r.feed(9000, STATUS_NORMAL);
        assert_eq!(r.events(), ["Up"]);
        assert_eq!(r.sent_names(), [(9000, "RequestSystemStatus".to_string())]);
        r
    }

    /// The Connector sends `msg` with invoke ID `n`, now.
    fn feed(&mut self, n: u16, msg: &str) {
        self.s.handle_bytes(self.now, &frame(n, msg));
    }

    fn feed_raw(&mut self, bytes: &[u8]) {
        self.s.handle_bytes(self.now, bytes);
    }

    /// Move the clock to `t0 + d` and let the session act on it.
    fn at(&mut self, d: Duration) {
        self.now = self.t0 + d;
        self.s.handle_timeout(self.now);
    }

    /// Move the clock to `t0 + d` without a timeout call.
    fn set(&mut self, d: Duration) {
        self.now = self.t0 + d;
    }

    fn timeout_in(&self) -> Option<Duration> {
        self.s.poll_timeout().map(|t| t - self.t0)
    }

    /// Everything transmitted since the last call, decoded.
    fn sent(&mut self) -> Vec<(u16, Message)> {
        let mut out = Vec::new();
        while let Some(bytes) = self.s.poll_transmit() {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Some(item) = decode_frame(&mut buf, MAX_FRAME_LEN).unwrap() {
                let FrameItem::Frame(f) = item else {
                    panic!("bad frame sent: {item:?}")
                };
                out.push((f.invoke_id.get(), ctid_csta::decode(&f.xml).unwrap()));
            }
            assert!(buf.is_empty(), "a partial frame was transmitted");
        }
        out
    }

    fn sent_names(&mut self) -> Vec<(u16, String)> {
        self.sent()
            .into_iter()
            .map(|(n, m)| (n, m.name().to_string()))
            .collect()
    }

    /// The events since the last call, as short text.
    fn events(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = self.s.poll_event() {
            out.push(match e {
                SessionEvent::Up => "Up".to_string(),
                SessionEvent::Down(r) => format!("Down: {r}"),
                SessionEvent::Resync(r) => format!("Resync: {r}"),
                SessionEvent::Overload(o) => format!("Overload: {o}"),
                SessionEvent::Input(Input::CstaAnswer { invoke_id, message }) => {
                    format!("CstaAnswer {invoke_id} {}", message.name())
                }
                SessionEvent::Input(Input::CstaAnswerMalformed { invoke_id, .. }) => {
                    format!("CstaAnswerMalformed {invoke_id}")
                }
                SessionEvent::Input(Input::CstaEvent { message }) => {
                    format!("CstaEvent {}", message.name())
                }
                SessionEvent::Input(Input::CstaRequest { invoke_id, message }) => {
                    format!("CstaRequest {invoke_id} {}", message.name())
                }
                SessionEvent::Input(other) => other.name().to_string(),
            });
        }
        out
    }

    fn monitors(&self) -> Vec<&str> {
        self.s.monitors().collect()
    }

    /// The engine monitors DNs: MonitorStart with engine invoke IDs 1, 2, … answered with
    /// these crossRefIDs.
    fn monitor(&mut self, xrefs: &[&str]) {
        for (i, x) in xrefs.iter().enumerate() {
            let n = i as u16 + 1;
            self.s.send_request(id(n), xml(MONITOR_START));
            self.feed(n, &monitor_start_response(x));
        }
        assert_eq!(self.sent().len(), xrefs.len());
        assert_eq!(self.events().len(), xrefs.len());
    }
}

fn names(v: &[(u16, &str)]) -> Vec<(u16, String)> {
    v.iter().map(|(n, s)| (*n, s.to_string())).collect()
}

// ------------------------------------------------------------------------------ session start

#[test]
fn ecma354_starts_the_session_then_waits_for_status_normal() {
    let mut r = Rig::new(cfg(SessionMode::Ecma354));
    let sent = r.sent();
    assert_eq!(sent.len(), 1);
    let (n, Message::StartApplicationSession(m)) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(*n, 9000);
    assert_eq!(m.application_info.application_id, "ctid");
    assert_eq!(m.requested_session_duration, Some(180));
    assert_eq!(
        m.requested_protocol_versions,
        [Edition::Ed3.namespace().to_string()]
    );
    assert_eq!(r.timeout_in(), Some(2 * S), "connect-tout");
    // An event before the session is open is nobody's.
    r.feed(9999, EVENT);
    r.feed(9000, "<StartApplicationSessionPosResponse><sessionID>S1</sessionID><actualSessionDuration>60</actualSessionDuration></StartApplicationSessionPosResponse>");
    assert_eq!(r.s.session_id(), Some("S1"));
    assert!(r.events().is_empty());
    assert!(r.sent().is_empty());
    r.set(S);
    r.feed(0, NORMAL);
    assert_eq!(r.sent_names(), names(&[(0, "SystemStatusResponse")]));
    assert_eq!(r.events(), ["Up"]);
    assert!(r.s.is_operational());
}

#[test]
fn ecma354_status_seen_before_the_session_answer_is_enough() {
    let mut r = Rig::new(cfg(SessionMode::Ecma354));
    r.sent();
    r.feed(7, NORMAL);
    assert_eq!(r.sent_names(), names(&[(7, "SystemStatusResponse")]));
    assert!(r.events().is_empty());
    r.feed(9000, "<StartApplicationSessionPosResponse><sessionID>S1</sessionID></StartApplicationSessionPosResponse>");
    assert_eq!(r.events(), ["Up"]);
}

#[test]
fn ecma354_asks_for_the_status_when_none_comes() {
    let mut r = Rig::new(cfg(SessionMode::Ecma354));
    r.sent();
    r.feed(9000, "<StartApplicationSessionPosResponse><sessionID>S1</sessionID></StartApplicationSessionPosResponse>");
    r.at(2 * S - Duration::from_millis(1));
    assert!(r.sent().is_empty());
    r.at(2 * S);
    assert_eq!(r.sent_names(), names(&[(9001, "RequestSystemStatus")]));
    // The fallback gets its own connect-tout.
    assert_eq!(r.timeout_in(), Some(4 * S));
    r.feed(9001, STATUS_NORMAL);
    assert_eq!(r.events(), ["Up"]);
}

#[test]
fn ecma354_status_not_normal_when_asked_fails_the_start() {
    let mut r = Rig::new(cfg(SessionMode::Ecma354));
    r.feed(9000, "<StartApplicationSessionPosResponse><sessionID>S1</sessionID></StartApplicationSessionPosResponse>");
    r.at(2 * S);
    r.feed(
        9001,
        "<RequestSystemStatusResponse><systemStatus>disabled</systemStatus></RequestSystemStatusResponse>",
    );
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::StatusNotNormal(_))
    ));
    // Never operational: no Down.
    assert!(r.events().is_empty());
    assert_eq!(r.timeout_in(), None);
}

#[test]
fn ecma354_refused_or_unanswered_fails_the_start() {
    let mut r = Rig::new(cfg(SessionMode::Ecma354));
    r.feed(9000, "<StartApplicationSessionNegResponse><errorCode><definedError>serverResourcesBusy</definedError></errorCode></StartApplicationSessionNegResponse>");
    let reason = r.s.close_reason().unwrap().to_string();
    assert!(reason.starts_with("session refused"), "{reason}");
    assert!(r.events().is_empty());

    let mut r = Rig::new(cfg(SessionMode::Ecma354));
    r.at(2 * S);
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::NotOperational { timeout }) if *timeout == 2 * S
    ));
    assert!(r.events().is_empty());
}

#[test]
fn system_register_waits_for_the_connector_to_speak_first() {
    let mut r = Rig::new(cfg(SessionMode::SystemRegister));
    assert!(r.sent().is_empty());
    assert_eq!(r.timeout_in(), Some(2 * S));
    r.feed(
        0,
        "<SystemStatus><systemStatus>enabled</systemStatus></SystemStatus>",
    );
    let sent = r.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].0, 0);
    assert!(matches!(sent[0].1, Message::SystemStatusResponse(_)));
    let (9000, Message::SystemRegister(reg)) = &sent[1] else {
        panic!("{sent:?}")
    };
    let types = reg.request_types.as_ref().unwrap();
    assert_eq!(
        (types.system_status, types.request_system_status),
        (Some(true), Some(false))
    );
    assert!(r.events().is_empty());
    r.feed(
        9000,
        "<SystemRegisterResponse><sysStatRegisterID>X</sysStatRegisterID></SystemRegisterResponse>",
    );
    assert_eq!(r.events(), ["Up"]);
}

#[test]
fn system_register_refused_or_silent_fails_the_start() {
    let mut r = Rig::new(cfg(SessionMode::SystemRegister));
    r.feed(0, NORMAL);
    r.sent();
    r.feed(
        9000,
        "<CSTAErrorCode><operation>generic</operation></CSTAErrorCode>",
    );
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::RegisterRefused(_))
    ));

    let mut r = Rig::new(cfg(SessionMode::SystemRegister));
    r.at(2 * S);
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::NotOperational { .. })
    ));
}

#[test]
fn system_register_without_status_normal_asks_after_connect_tout() {
    let mut r = Rig::new(cfg(SessionMode::SystemRegister));
    r.feed(
        0,
        "<SystemStatus><systemStatus>initializing</systemStatus></SystemStatus>",
    );
    r.feed(9000, "<SystemRegisterResponse/>");
    assert_eq!(
        r.sent_names(),
        names(&[(0, "SystemStatusResponse"), (9000, "SystemRegister")])
    );
    assert!(r.events().is_empty());
    r.at(2 * S);
    assert_eq!(r.sent_names(), names(&[(9001, "RequestSystemStatus")]));
    r.feed(9001, STATUS_NORMAL);
    assert_eq!(r.events(), ["Up"]);
}

#[test]
fn mode_none_polls_and_any_answer_proves_the_link() {
    let mut r = Rig::new(cfg(SessionMode::None));
    assert_eq!(r.sent_names(), names(&[(9000, "RequestSystemStatus")]));
    assert_eq!(r.timeout_in(), Some(2 * S));
    r.feed(
        9000,
        "<CSTAErrorCode><operation>generic</operation></CSTAErrorCode>",
    );
    assert_eq!(r.events(), ["Up"]);

    let mut r = Rig::new(cfg(SessionMode::None));
    r.at(2 * S);
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::NotOperational { .. })
    ));
}

#[test]
fn engine_traffic_before_the_session_is_open_is_dropped() {
    let mut r = Rig::new(cfg(SessionMode::Ecma354));
    r.sent();
    r.s.send_request(id(1), xml(MONITOR_START));
    r.s.send_answer(id(5), xml("<MonitorStopResponse/>"));
    assert!(r.sent().is_empty());
    // An answer for the engine before the session is open goes nowhere either.
    r.feed(1, &monitor_start_response("A"));
    assert!(r.events().is_empty());
    assert!(r.monitors().is_empty());
}

#[test]
fn a_frame_split_across_reads_is_put_together() {
    let mut r = Rig::new(cfg(SessionMode::None));
    r.sent();
    let mut bytes = frame(9000, STATUS_NORMAL);
    bytes.extend(frame(9999, EVENT));
    for b in bytes.chunks(5) {
        r.feed_raw(b);
    }
    assert_eq!(r.events(), ["Up", "CstaEvent DoNotDisturbEvent"]);
}

// ---------------------------------------------------------------------------------- keepalive

#[test]
fn keepalive_after_kpl_interval_of_silence_answered_keeps_the_link() {
    let mut r = Rig::open(cfg(SessionMode::None));
    assert_eq!(r.timeout_in(), Some(10 * S));
    // Traffic moves the keepalive.
    r.set(4 * S);
    r.feed(9999, EVENT);
    assert_eq!(r.timeout_in(), Some(14 * S));
    r.at(14 * S);
    assert_eq!(r.sent_names(), names(&[(9001, "RequestSystemStatus")]));
    assert_eq!(r.timeout_in(), Some(24 * S), "answer deadline");
    r.set(15 * S);
    r.feed(9001, STATUS_NORMAL);
    assert_eq!(r.timeout_in(), Some(25 * S));
    // The keepalive's answer is the session's own: the engine sees only the event.
    assert_eq!(r.events(), ["CstaEvent DoNotDisturbEvent"]);
    r.at(25 * S);
    assert_eq!(r.sent_names(), names(&[(9002, "RequestSystemStatus")]));
    r.set(26 * S);
    r.feed(
        9002,
        "<CSTAErrorCode><operation>generic</operation></CSTAErrorCode>",
    );
    assert!(
        r.events().is_empty(),
        "any answer counts, and is not the engine's"
    );
    assert!(r.s.close_reason().is_none());
}

#[test]
fn keepalive_misses_up_to_the_tolerance_close_the_link() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.at(10 * S);
    assert_eq!(r.sent_names(), names(&[(9001, "RequestSystemStatus")]));
    // Unanswered within kpl-interval: a miss, another one at once.
    r.at(20 * S);
    assert_eq!(r.sent_names(), names(&[(9002, "RequestSystemStatus")]));
    // Other frames do not answer a keepalive.
    r.set(25 * S);
    r.feed(9999, EVENT);
    r.at(30 * S);
    assert_eq!(r.sent_names(), names(&[(9003, "RequestSystemStatus")]));
    assert!(r.s.close_reason().is_none());
    r.at(40 * S - Duration::from_millis(1));
    assert!(r.s.close_reason().is_none());
    // Third miss: kpl-interval × (kpl-tolerance + 1) after the last frame before the silence.
    r.at(40 * S);
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::KeepaliveMissed { misses: 3, interval }) if *interval == 10 * S
    ));
    assert!(r.sent().is_empty());
    assert_eq!(
        r.events(),
        [
            "CstaEvent DoNotDisturbEvent",
            "Down: keepalive: 3 RequestSystemStatus unanswered within kpl-interval (10s)"
        ]
    );
    assert_eq!(r.timeout_in(), None);
    assert!(!r.s.is_operational());
}

#[test]
fn a_late_answer_to_an_earlier_keepalive_resets_the_count() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.at(10 * S);
    r.at(20 * S);
    r.at(30 * S);
    assert_eq!(r.sent().len(), 3);
    r.set(31 * S);
    r.feed(9001, STATUS_NORMAL);
    r.at(40 * S);
    assert!(r.s.close_reason().is_none());
    assert_eq!(r.timeout_in(), Some(41 * S));
}

#[test]
fn keepalive_tolerance_zero_counts_as_one() {
    let mut c = cfg(SessionMode::None);
    c.kpl_tolerance = 0;
    let mut r = Rig::open(c);
    r.at(10 * S);
    assert_eq!(r.sent().len(), 1);
    r.at(20 * S);
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::KeepaliveMissed { misses: 1, .. })
    ));
}

#[test]
fn kpl_interval_zero_disables_the_keepalive() {
    let mut c = cfg(SessionMode::None);
    c.kpl_interval = Duration::ZERO;
    let mut r = Rig::open(c);
    assert_eq!(r.timeout_in(), None);
    r.at(3600 * S);
    assert!(r.sent().is_empty());
    assert!(r.s.close_reason().is_none());
}

// -------------------------------------------------------------------- session timer (ecma354)

#[test]
fn session_timer_is_reset_every_half_of_the_granted_duration() {
    let mut c = cfg(SessionMode::Ecma354);
    c.kpl_interval = Duration::ZERO;
    let mut r = Rig::new(c);
    r.feed(9000, "<StartApplicationSessionPosResponse><sessionID>S1</sessionID><actualSessionDuration>60</actualSessionDuration></StartApplicationSessionPosResponse>");
    r.feed(0, NORMAL);
    r.sent();
    assert_eq!(r.events(), ["Up"]);
    assert_eq!(r.timeout_in(), Some(30 * S));
    r.at(30 * S);
    let sent = r.sent();
    let [(n, Message::ResetApplicationSessionTimer(m))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(SESSION_INVOKE_IDS.contains(n));
    assert_eq!(m.session_id, "S1");
    assert_eq!(
        m.requested_session_duration,
        Some(180),
        "the configured duration"
    );
    assert_eq!(r.timeout_in(), Some(60 * S));
    r.feed(
        *n,
        "<ResetApplicationSessionTimerPosResponse><actualSessionDuration>60</actualSessionDuration></ResetApplicationSessionTimerPosResponse>",
    );
    assert!(r.events().is_empty(), "the session's own answer");
    r.at(60 * S);
    let sent = r.sent();
    assert_eq!(sent.len(), 1);
    r.feed(
        sent[0].0,
        "<ResetApplicationSessionTimerNegResponse><errorCode><definedError>invalidSessionID</definedError></errorCode></ResetApplicationSessionTimerNegResponse>",
    );
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::TimerResetRefused(_))
    ));
    assert_eq!(r.events().len(), 1, "Down");
}

#[test]
fn no_session_timer_outside_ecma354() {
    let mut c = cfg(SessionMode::None);
    c.kpl_interval = Duration::ZERO;
    let r = Rig::open(c);
    assert_eq!(r.timeout_in(), None);
}

#[test]
fn application_session_terminated_and_eof_end_the_session() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.feed(9999, "<ApplicationSessionTerminated><sessionTermReason><definedTermReason>sessionTimerExpired</definedTermReason></sessionTermReason></ApplicationSessionTerminated>");
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::SessionTerminated(Some(_)))
    ));
    assert_eq!(r.events().len(), 1);

    let mut r = Rig::open(cfg(SessionMode::None));
    r.s.handle_eof();
    assert_eq!(r.events(), ["Down: connection closed by the Connector"]);
    // Nothing happens after the end.
    r.feed(9999, EVENT);
    r.s.send_request(id(1), xml(MONITOR_START));
    assert!(r.events().is_empty());
    assert!(r.sent().is_empty());
}

// ------------------------------------------------------------------------------ system status

#[test]
fn status_disabled_then_normal_stops_this_sessions_monitors_before_up() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.monitor(&["A", "B"]);
    assert_eq!(r.monitors(), ["A", "B"]);
    r.feed(3, DISABLED);
    assert_eq!(r.sent_names(), names(&[(3, "SystemStatusResponse")]));
    assert_eq!(r.events(), ["Down: Connector system status disabled"]);
    assert!(!r.s.is_operational());
    // The TCP session is kept and still carries traffic.
    assert!(r.s.close_reason().is_none());
    r.feed(9999, EVENT);
    assert_eq!(r.events(), ["CstaEvent DoNotDisturbEvent"]);
    r.feed(4, NORMAL);
    let sent = r.sent();
    let stops: Vec<(u16, &str)> = sent
        .iter()
        .filter_map(|(n, m)| match m {
            Message::MonitorStop(s) => Some((*n, s.monitor_cross_ref_id.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(sent[0].0, 4);
    assert!(matches!(sent[0].1, Message::SystemStatusResponse(_)));
    assert_eq!(stops, [(9001, "A"), (9002, "B")]);
    assert_eq!(r.events(), ["Up"]);
    assert!(r.monitors().is_empty());
    // The MonitorStop answers are the session's own.
    r.feed(9001, "<MonitorStopResponse/>");
    r.feed(
        9002,
        "<CSTAErrorCode><operation>invalidMonitorCrossRefID</operation></CSTAErrorCode>",
    );
    assert!(r.events().is_empty());
}

#[test]
fn messages_lost_stops_the_monitors_and_asks_for_a_resync() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.monitor(&["A"]);
    r.feed(9999, MESSAGES_LOST);
    assert_eq!(
        r.sent_names(),
        names(&[(9999, "SystemStatusResponse"), (9001, "MonitorStop")])
    );
    assert_eq!(
        r.events(),
        ["Resync: Connector system status messagesLost: resynchronising"]
    );
    assert!(r.s.is_operational());
    assert!(r.monitors().is_empty());
    // New monitors of the resync are held again.
    r.monitor(&["C"]);
    assert_eq!(r.monitors(), ["C"]);
}

#[test]
fn more_stale_monitors_than_session_invoke_ids_are_all_stopped() {
    let mut r = Rig::open(cfg(SessionMode::None));
    let xrefs: Vec<String> = (0..2500).map(|i| format!("x{i}")).collect();
    let refs: Vec<&str> = xrefs.iter().map(String::as_str).collect();
    r.monitor(&refs);
    r.feed(9999, MESSAGES_LOST);
    let sent = r.sent_names();
    let stops = sent.iter().filter(|(_, n)| n == "MonitorStop").count();
    assert_eq!(
        stops, 2500,
        "every monitor stopped, none left for lack of IDs"
    );
    assert!(sent
        .iter()
        .filter(|(_, n)| n == "MonitorStop")
        .all(|(id, _)| (9000..=9998).contains(id)));
    assert!(r.s.is_operational());
    // Their answers are the session's, not the engine's.
    r.feed(9001, "<MonitorStopResponse/>");
    assert_eq!(
        r.events(),
        ["Resync: Connector system status messagesLost: resynchronising"]
    );
}

#[test]
fn keepalive_answer_carries_the_status_too() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.at(10 * S);
    r.sent();
    r.feed(
        9001,
        "<RequestSystemStatusResponse><systemStatus>disabled</systemStatus></RequestSystemStatusResponse>",
    );
    assert_eq!(r.events(), ["Down: Connector system status disabled"]);
    r.at(20 * S);
    r.sent();
    r.feed(9002, STATUS_NORMAL);
    assert_eq!(r.events(), ["Up"]);
}

#[test]
fn monitors_stopped_by_either_side_are_forgotten() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.monitor(&["A", "B", "C"]);
    r.s.send_request(
        id(4),
        xml("<MonitorStop><monitorCrossRefID>A</monitorCrossRefID></MonitorStop>"),
    );
    assert_eq!(r.sent_names(), names(&[(4, "MonitorStop")]));
    r.feed(
        17,
        "<MonitorStop><monitorCrossRefID>B</monitorCrossRefID></MonitorStop>",
    );
    assert_eq!(r.events(), ["CstaRequest 0017 MonitorStop"]);
    r.s.send_answer(id(17), xml("<MonitorStopResponse/>"));
    assert_eq!(r.sent_names(), names(&[(17, "MonitorStopResponse")]));
    assert_eq!(r.monitors(), ["C"]);
}

// ------------------------------------------------------------------------------ demotion

#[test]
fn demote_stops_the_monitors_and_ends_the_session() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.monitor(&["A", "B"]);
    r.s.demote();
    assert_eq!(
        r.sent_names(),
        names(&[(9001, "MonitorStop"), (9002, "MonitorStop")])
    );
    assert!(matches!(r.s.close_reason(), Some(LinkError::Demoted)));
    assert_eq!(
        r.events(),
        ["Down: left for a link with higher priority; session restarted as standby"]
    );
}

#[test]
fn demote_while_starting_changes_nothing() {
    let mut r = Rig::new(cfg(SessionMode::None));
    r.sent();
    r.s.demote();
    assert!(r.s.close_reason().is_none());
    r.feed(9000, STATUS_NORMAL);
    assert_eq!(r.events(), ["Up"]);
}

// ------------------------------------------------------------------------------ bad frames

#[test]
fn malformed_frames_are_skipped_and_the_session_lives() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.at(10 * S);
    assert_eq!(r.sent_names(), names(&[(9001, "RequestSystemStatus")]));
    let broken = |n: u16| {
        let mut b = BytesMut::new();
        encode_frame(id(n), b"<MonitorStartResponse><monitorCross", &mut b).unwrap();
        b.to_vec()
    };
    // Not well-formed, for an engine invoke ID: the engine fails that request.
    r.feed_raw(&broken(12));
    // For an event or one of the session's own requests: nobody's.
    r.feed_raw(&broken(9999));
    r.feed_raw(&broken(9001));
    // Another format indicator, and an invoke ID that is not four digits: skipped.
    let mut soap = frame(9999, EVENT);
    soap[0] = 0x01;
    r.feed_raw(&soap);
    let mut bad_id = frame(9999, EVENT);
    bad_id[6] = b'X';
    r.feed_raw(&bad_id);
    assert_eq!(r.metrics.bad_frames.get(), 5);
    // Unknown roots are counted, never an error.
    r.feed(9999, "<SomethingNew><a>1</a></SomethingNew>");
    assert_eq!(r.metrics.unknown_messages.get(), 1);
    r.feed(9999, EVENT);
    assert_eq!(
        r.events(),
        ["CstaAnswerMalformed 0012", "CstaEvent DoNotDisturbEvent"]
    );
    assert!(r.s.close_reason().is_none());
    // The malformed answer did not answer the keepalive.
    r.at(20 * S);
    assert_eq!(r.sent_names(), names(&[(9002, "RequestSystemStatus")]));
}

#[test]
fn lost_framing_closes_the_session() {
    let mut r = Rig::open(cfg(SessionMode::None));
    let mut bytes = vec![0, 0, 0, 4, b'0', b'0', b'0', b'0'];
    // Whatever follows cannot be read any more.
    bytes.extend(frame(9999, EVENT));
    r.feed_raw(&bytes);
    assert!(matches!(
        r.s.close_reason(),
        Some(LinkError::FramingLost(_))
    ));
    let ev = r.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(ev[0].starts_with("Down: framing lost"), "{ev:?}");
    assert_eq!(r.metrics.bad_frames.get(), 1);
}

// ------------------------------------------------------------------------------ invoke IDs

#[test]
fn engine_requests_keep_their_invoke_ids_and_their_answers_go_to_the_engine() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.s.send_request(id(17), xml(MONITOR_START));
    r.s.send_request(id(8999), xml(MONITOR_START));
    let bytes = r.s.poll_transmit().unwrap();
    assert_eq!(
        &bytes[4..8],
        b"0017",
        "written with exactly the engine's ID"
    );
    let sent: Vec<u16> = {
        let mut buf = BytesMut::from(&bytes[..]);
        std::iter::from_fn(|| match decode_frame(&mut buf, MAX_FRAME_LEN).unwrap() {
            Some(FrameItem::Frame(f)) => Some(f.invoke_id.get()),
            _ => None,
        })
        .collect()
    };
    assert_eq!(sent, [17, 8999]);
    r.feed(17, &monitor_start_response("A"));
    r.feed(
        8999,
        "<CSTAErrorCode><operation>invalidDeviceID</operation></CSTAErrorCode>",
    );
    // An answer nobody asked for in the engine's range is the engine's to count; one in the
    // session's range answers an unawaited request of the session's (a stale MonitorStop).
    r.feed(42, "<MonitorStopResponse/>");
    r.feed(9500, "<MonitorStopResponse/>");
    assert_eq!(
        r.events(),
        [
            "CstaAnswer 0017 MonitorStartResponse",
            "CstaAnswer 8999 CSTAErrorCode",
            "CstaAnswer 0042 MonitorStopResponse",
        ]
    );
    assert_eq!(r.monitors(), ["A"]);
}

#[test]
fn the_sessions_own_requests_use_9000_to_9998() {
    let mut c = cfg(SessionMode::None);
    c.kpl_tolerance = 10;
    let mut r = Rig::open(c);
    let mut ids = vec![9000];
    // Keepalives answered one by one: the IDs go round the range and wrap.
    for k in 1..=1200u32 {
        r.at(10 * S * k);
        let sent = r.sent();
        assert_eq!(sent.len(), 1);
        let n = sent[0].0;
        ids.push(n);
        r.feed(n, STATUS_NORMAL);
    }
    assert!(ids.iter().all(|n| SESSION_INVOKE_IDS.contains(n)));
    assert_eq!(ids[999], 9000, "wrapped after 9998");
    assert!(r.events().is_empty());
}

#[test]
fn connector_requests_are_classified_by_root_and_answered_with_their_id() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.s.send_request(id(3), xml(MONITOR_START));
    r.sent();
    // A SystemStatus that collides with the engine's outstanding ID 3 is still a request.
    r.feed(3, NORMAL);
    assert_eq!(r.sent_names(), names(&[(3, "SystemStatusResponse")]));
    assert!(r.events().is_empty());
    r.feed(3, &monitor_start_response("A"));
    r.feed(9999, EVENT);
    assert_eq!(
        r.events(),
        [
            "CstaAnswer 0003 MonitorStartResponse",
            "CstaEvent DoNotDisturbEvent"
        ]
    );
    let m = r.metrics.render();
    assert!(m.contains("MonitorStartResponse"), "{m}");
}

fn status(v: &str) -> String {
    format!("<SystemStatus><systemStatus>{v}</systemStatus></SystemStatus>")
}

#[test]
fn overload_reached_and_relieved_are_reported_once() {
    let mut r = Rig::open(cfg(SessionMode::None));
    r.monitor(&["A"]);
    r.feed(9999, &status("overloadImminent"));
    assert!(r.events().is_empty());
    r.feed(9999, &status("overloadReached"));
    r.feed(9999, &status("overloadReached"));
    assert_eq!(r.events(), ["Overload: true"]);
    r.feed(9999, &status("overloadRelieved"));
    r.feed(9999, &status("overloadRelieved"));
    assert_eq!(r.events(), ["Overload: false"]);
    // A status back to normal also ends an overload; no monitor is stopped for any of these.
    r.feed(9999, &status("overloadReached"));
    r.feed(9999, NORMAL);
    assert_eq!(r.events(), ["Overload: true", "Overload: false"]);
    assert!(r.s.is_operational());
    assert_eq!(r.monitors(), ["A"]);
    assert!(r
        .sent_names()
        .iter()
        .all(|(_, n)| n == "SystemStatusResponse"));
}

#[test]
fn partially_disabled_sets_the_gauge_until_normal() {
    let mut r = Rig::open(cfg(SessionMode::None));
    assert_eq!(r.metrics.partially_disabled("test"), 0);
    r.feed(9999, &status("partiallyDisabled"));
    assert!(r.events().is_empty(), "operational: nothing for the engine");
    assert!(r.s.is_operational());
    assert_eq!(r.metrics.partially_disabled("test"), 1);
    assert!(r
        .metrics
        .render()
        .contains("ctid_link_partially_disabled{link=\"test\"} 1"));
    r.feed(9999, &status("enabled"));
    assert_eq!(r.metrics.partially_disabled("test"), 0);
    // Closing the session clears it too.
    r.feed(9999, &status("partiallyDisabled"));
    assert_eq!(r.metrics.partially_disabled("test"), 1);
    r.s.close(LinkError::ClosedByPeer);
    assert_eq!(r.metrics.partially_disabled("test"), 0);
}

#[test]
fn initializing_while_starting_waits_instead_of_failing() {
    let mut r = Rig::new(cfg(SessionMode::None));
    assert_eq!(r.sent_names(), [(9000, "RequestSystemStatus".to_string())]);
    r.set(S);
    r.feed(
        9000,
        "<RequestSystemStatusResponse><systemStatus>initializing</systemStatus></RequestSystemStatusResponse>",
    );
    assert!(r.s.close_reason().is_none(), "{:?}", r.s.close_reason());
    assert!(r.events().is_empty());
    // A whole connect-tout from the answer, then asked again.
    assert_eq!(r.timeout_in(), Some(3 * S));
    r.at(3 * S);
    assert_eq!(r.sent_names(), [(9001, "RequestSystemStatus".to_string())]);
    // A SystemStatus initializing restarts the wait too.
    r.set(4 * S);
    r.feed(9999, &status("initializing"));
    assert_eq!(r.sent_names(), [(9999, "SystemStatusResponse".to_string())]);
    assert_eq!(r.timeout_in(), Some(6 * S));
    assert!(r.s.close_reason().is_none());
    r.feed(9999, NORMAL);
    assert_eq!(r.events(), ["Up"]);
}

#[test]
fn a_connector_silent_after_initializing_is_given_up_on() {
    let mut r = Rig::new(cfg(SessionMode::None));
    r.sent();
    r.feed(
        9000,
        "<RequestSystemStatusResponse><systemStatus>initializing</systemStatus></RequestSystemStatusResponse>",
    );
    r.at(2 * S);
    assert_eq!(r.sent_names(), [(9001, "RequestSystemStatus".to_string())]);
    r.at(4 * S);
    assert!(
        matches!(r.s.close_reason(), Some(LinkError::NotOperational { .. })),
        "{:?}",
        r.s.close_reason()
    );
}
