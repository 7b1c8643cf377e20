//! One CSTA link session, without IO: bytes from the Connector in, bytes to the Connector and
//! [`SessionEvent`]s out, time passed in as an argument. It owns session start in the three
//! modes (docs/configuration.md, `[[link]]` `session`), waiting for system status normal with
//! the RequestSystemStatus fallback, the keepalive ([`super::keepalive`]),
//! ResetApplicationSessionTimer every half of the granted session duration, the Connector's
//! system status on an open session, the invoke IDs of its own requests
//! ([`super::own_requests`]) and the monitors granted on this session. It owns no model: the
//! engine's requests go out with the engine's invoke IDs, and every answer that is not to one
//! of the session's own requests goes to the engine as it came.
//!
//! The API follows quinn-proto's `Connection`: `handle_*` feed it (bytes, time, the engine's
//! outputs, [`Session::demote`], [`Session::close`]); `poll_*` say what to do (bytes to write,
//! when to call again, what happened). The tokio side is `link::driver`.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ctid_csta::frame::{decode_frame, encode_message, FrameItem, MAX_FRAME_LEN};
use ctid_csta::{
    ApplicationInfo, CodecOptions, CompactString, DecodeError, InvokeId, Message, MessageKind,
    MonitorStop, RequestSystemStatus, RequestTypes, ResetApplicationSessionTimer,
    StartApplicationSession, SystemRegister, SystemStatusResponse, SystemStatusValue,
};
use ctid_engine::Input;
use tracing::{debug, info, warn};

use super::error::LinkError;
use super::keepalive::{Keepalive, KeepaliveDue};
use super::own_requests::{OwnRequest, OwnRequests};
use crate::config::{LinkConfig, SessionMode};
use crate::metrics::Metrics;

/// What a session tells its driver (and through it the link manager). Nearly every one is an
/// `Input`, so that variant is not boxed.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum SessionEvent {
    /// Operational: session started and the Connector's system status is normal or enabled
    /// (again, after a `disabled`).
    Up,
    /// Not operational any more: system status `disabled` (the session stays open and may come
    /// [`SessionEvent::Up`] again), or the session ended (after an `Up`) for this reason.
    Down(LinkError),
    /// Still operational, but events may be missing: the monitors held on this session have
    /// been stopped; everything must be monitored and resynchronised again, on this session
    /// and without link events for clients.
    Resync(ResyncReason),
    /// The Connector reported `overloadReached` (`true`: the engine halves its request
    /// window) or `overloadRelieved` / back to normal (`false`).
    Overload(bool),
    /// An answer, event or request for the engine.
    Input(Input),
}

/// Why an operational session asks for a resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResyncReason {
    /// The Connector reported system status `messagesLost`.
    #[error("Connector system status messagesLost: resynchronising")]
    MessagesLost,
}

/// Where the session is. The deadlines of the starting phases are `connect-tout` after the TCP
/// connection (the RequestSystemStatus fallback gets its own `connect-tout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `ecma354`: StartApplicationSession sent, its answer awaited.
    AwaitSession { deadline: Instant },
    /// `system-register`: the Connector's first SystemStatus awaited.
    AwaitFirstStatus { deadline: Instant },
    /// `system-register`: SystemRegister sent, its answer awaited.
    AwaitRegistered { deadline: Instant },
    /// Session started; a SystemStatus normal/enabled awaited until the deadline, then asked.
    AwaitStatus { deadline: Instant },
    /// RequestSystemStatus sent (the fallback, and all of mode `none`); its answer awaited.
    AskStatus { deadline: Instant },
    /// Started: traffic flows (operational unless the Connector said `disabled`).
    Open,
    /// Ended; the reason is in `Session::closed`.
    Closed,
}

/// One CSTA link session over one TCP connection.
#[derive(Debug)]
pub struct Session {
    cfg: LinkConfig,
    opts: CodecOptions,
    metrics: Metrics,
    phase: Phase,
    closed: Option<LinkError>,
    /// A system status normal/enabled was seen while starting.
    status_ok: bool,
    /// `Up` reported and no `Down` since.
    operational: bool,
    rbuf: BytesMut,
    wbuf: BytesMut,
    events: VecDeque<SessionEvent>,
    own: OwnRequests,
    keepalive: Keepalive,
    /// ECMA-354 session ID (`ecma354` only).
    session_id: Option<CompactString>,
    /// Granted session duration, seconds.
    session_duration: u32,
    /// When the next ResetApplicationSessionTimer is due (`ecma354`, once open).
    next_timer_reset: Option<Instant>,
    /// `overloadReached` seen and not relieved since.
    overloaded: bool,
    /// monitorCrossRefIDs the Connector granted on this session (MonitorStartResponse) and not
    /// stopped since: stopped before a resync on the same session, so none is held twice, and
    /// when the session is demoted.
    monitors: BTreeSet<CompactString>,
}

fn is_ok(s: &SystemStatusValue) -> bool {
    matches!(s, SystemStatusValue::Normal | SystemStatusValue::Enabled)
}

fn request_system_status() -> Message {
    Message::RequestSystemStatus(RequestSystemStatus {
        sys_stat_register_id: None,
        extensions: None,
    })
}

impl Session {
    /// A session on a TCP connection established at `now`, with `cfg`'s settings. In `ecma354`
    /// StartApplicationSession, in `none` RequestSystemStatus, is ready to send at once; in
    /// `system-register` the Connector speaks first.
    pub fn new(cfg: LinkConfig, metrics: Metrics, now: Instant) -> Session {
        let deadline = now + cfg.connect_timeout;
        let mut s = Session {
            opts: CodecOptions {
                edition: cfg.edition,
                hotdesk_ns: cfg.hotdesk_namespace.clone(),
            },
            metrics,
            phase: Phase::AwaitFirstStatus { deadline },
            closed: None,
            status_ok: false,
            operational: false,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            events: VecDeque::new(),
            own: OwnRequests::default(),
            keepalive: Keepalive::new(cfg.kpl_interval, cfg.kpl_tolerance, now),
            session_id: None,
            session_duration: cfg.session_duration,
            next_timer_reset: None,
            monitors: BTreeSet::new(),
            overloaded: false,
            cfg,
        };
        let started = match s.cfg.session {
            SessionMode::Ecma354 => {
                let msg = Message::StartApplicationSession(StartApplicationSession {
                    application_info: ApplicationInfo {
                        application_id: "ctid".into(),
                        application_specific_info: None,
                    },
                    requested_protocol_versions: vec![s.cfg.edition.namespace().into()],
                    requested_session_duration: Some(s.cfg.session_duration),
                    extensions: None,
                });
                s.phase = Phase::AwaitSession { deadline };
                s.own_request(OwnRequest::StartSession, &msg)
            }
            SessionMode::SystemRegister => Ok(()),
            SessionMode::None => s.await_status(now, deadline),
        };
        if let Err(e) = started {
            s.close(e);
        }
        s
    }

    // ------------------------------------------------------------------------------- handle_*

    /// Bytes received from the Connector. Whole frames are taken as they complete; a bad frame
    /// is logged, counted and skipped; a lost framing (length below 8) closes the session.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        self.rbuf.extend_from_slice(data);
        while self.closed.is_none() {
            match decode_frame(&mut self.rbuf, MAX_FRAME_LEN) {
                Ok(Some(FrameItem::Frame(f))) => {
                    self.keepalive.on_frame(now);
                    if tracing::enabled!(target: "ctid::csta", tracing::Level::DEBUG) {
                        debug!(target: "ctid::csta", dir = "in", invoke = %f.invoke_id, len = f.xml.len() + 8, xml = %String::from_utf8_lossy(&f.xml), "frame");
                    }
                    let msg = ctid_csta::decode_with(&f.xml, &self.opts).map(|d| d.message);
                    if let Err(e) = &msg {
                        self.metrics.bad_frames.inc();
                        warn!(link = %self.cfg.name, invoke = %f.invoke_id, error = %e, xml = %String::from_utf8_lossy(&f.xml), "malformed CSTA frame skipped");
                    }
                    if let Err(e) = self.on_message(now, f.invoke_id, msg) {
                        self.close(e);
                    }
                }
                Ok(Some(FrameItem::Skipped { error, raw })) => {
                    self.keepalive.on_frame(now);
                    self.metrics.bad_frames.inc();
                    warn!(link = %self.cfg.name, %error, bytes = ?&raw[..raw.len().min(64)], "bad CSTA frame skipped");
                }
                Ok(None) => break,
                Err(e) => {
                    self.metrics.bad_frames.inc();
                    self.close(LinkError::FramingLost(e));
                }
            }
        }
        if self.closed.is_some() {
            self.rbuf.clear();
        }
    }

    /// The Connector closed the connection.
    pub fn handle_eof(&mut self) {
        self.close(LinkError::ClosedByPeer);
    }

    /// Time passed: start deadlines, keepalive, session timer reset. Call it when
    /// [`Session::poll_timeout`] comes (earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let r = match self.phase {
            Phase::AwaitSession { deadline }
            | Phase::AwaitFirstStatus { deadline }
            | Phase::AwaitRegistered { deadline }
            | Phase::AskStatus { deadline }
                if now >= deadline =>
            {
                Err(LinkError::NotOperational {
                    timeout: self.cfg.connect_timeout,
                })
            }
            Phase::AwaitStatus { deadline } if now >= deadline => self.ask_status(now),
            Phase::Open => self.open_timers(now),
            _ => Ok(()),
        };
        if let Err(e) = r {
            self.close(e);
        }
    }

    /// Send an engine request with the engine's invoke ID (from
    /// `ctid_engine::window::ENGINE_INVOKE_IDS`; the engine holds its timeout). Dropped while
    /// the session is not open: the engine fails its requests on the LinkDown it gets.
    pub fn send_request(&mut self, invoke_id: InvokeId, message: Message) {
        if self.phase != Phase::Open {
            debug!(link = %self.cfg.name, invoke = %invoke_id, request = message.name(), "link not open: request dropped");
            return;
        }
        if let Message::MonitorStop(m) = &message {
            self.monitors.remove(&m.monitor_cross_ref_id);
        }
        if let Err(e) = self.queue(invoke_id, &message) {
            self.close(e);
        }
    }

    /// Answer a Connector request (the engine's answer, with the request's invoke ID).
    pub fn send_answer(&mut self, invoke_id: InvokeId, message: Message) {
        if self.phase != Phase::Open {
            debug!(link = %self.cfg.name, invoke = %invoke_id, answer = message.name(), "link not open: answer dropped");
            return;
        }
        if let Err(e) = self.queue(invoke_id, &message) {
            self.close(e);
        }
    }

    /// The link manager moved to a link with higher priority: stop the monitors held on this
    /// session (answers are not awaited) and end it, so the link comes back as a standby that
    /// holds none. A session that is still starting holds none and goes on.
    pub fn demote(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        if let Err(e) = self.stop_monitors() {
            warn!(link = %self.cfg.name, error = %e, "cannot stop every monitor of the session left");
        }
        self.close(LinkError::Demoted);
    }

    /// End the session (the transport failed, ctid stops, …). When it was operational a
    /// [`SessionEvent::Down`] with the reason follows. Bytes already queued can still be taken
    /// with [`Session::poll_transmit`]; nothing else happens after.
    pub fn close(&mut self, reason: LinkError) {
        if self.closed.is_some() {
            return;
        }
        if self.operational {
            self.operational = false;
            self.events.push_back(SessionEvent::Down(reason.clone()));
        }
        self.phase = Phase::Closed;
        self.closed = Some(reason);
        self.metrics.set_partially_disabled(&self.cfg.name, false);
    }

    // --------------------------------------------------------------------------------- poll_*

    /// Everything queued for the Connector, in one piece (a batch of frames).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.wbuf.is_empty() {
            None
        } else {
            Some(self.wbuf.split().freeze())
        }
    }

    /// When [`Session::handle_timeout`] is needed next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitSession { deadline }
            | Phase::AwaitFirstStatus { deadline }
            | Phase::AwaitRegistered { deadline }
            | Phase::AwaitStatus { deadline }
            | Phase::AskStatus { deadline } => Some(deadline),
            Phase::Open => [self.keepalive.deadline(), self.next_timer_reset]
                .into_iter()
                .flatten()
                .min(),
            Phase::Closed => None,
        }
    }

    /// The next thing that happened, oldest first.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------------------------ accessors

    /// Operational: `Up` reported and no `Down` since.
    pub fn is_operational(&self) -> bool {
        self.operational
    }

    /// Why the session ended; `None` while it lives.
    pub fn close_reason(&self) -> Option<&LinkError> {
        self.closed.as_ref()
    }

    /// Bytes queued for the Connector and not taken yet.
    pub fn transmit_len(&self) -> usize {
        self.wbuf.len()
    }

    /// The monitorCrossRefIDs held on this session, in order.
    pub fn monitors(&self) -> impl Iterator<Item = &str> {
        self.monitors.iter().map(CompactString::as_str)
    }

    /// The ECMA-354 session ID, once granted.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    // ------------------------------------------------------------------------------- internal

    fn queue(&mut self, id: InvokeId, msg: &Message) -> Result<(), LinkError> {
        let before = self.wbuf.len();
        encode_message(id, msg, &self.opts, &mut self.wbuf).map_err(|source| {
            LinkError::Encode {
                message: msg.name().to_string(),
                source,
            }
        })?;
        if tracing::enabled!(target: "ctid::csta", tracing::Level::DEBUG) {
            let xml = String::from_utf8_lossy(&self.wbuf[before + 8..]);
            debug!(target: "ctid::csta", dir = "out", invoke = %id, len = self.wbuf.len() - before, %xml, "frame");
        }
        self.metrics.csta_out(msg.name());
        Ok(())
    }

    /// Send one of the session's own requests with an invoke ID of its range.
    fn own_request(&mut self, kind: OwnRequest, msg: &Message) -> Result<(), LinkError> {
        let id = self.own.start(kind).ok_or(LinkError::InvokeIdsExhausted)?;
        self.queue(id, msg)
    }

    fn answer_status(&mut self, id: InvokeId) -> Result<(), LinkError> {
        self.queue(
            id,
            &Message::SystemStatusResponse(SystemStatusResponse { extensions: None }),
        )
    }

    fn reset_period(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_duration / 2).max(1))
    }

    fn on_message(
        &mut self,
        now: Instant,
        id: InvokeId,
        msg: Result<Message, DecodeError>,
    ) -> Result<(), LinkError> {
        match (self.phase, msg) {
            (Phase::Open, msg) => self.inbound(id, msg),
            (Phase::Closed, _) => Ok(()),
            // Before the session is open, a malformed frame concerns nobody.
            (_, Err(_)) => Ok(()),
            (_, Ok(msg)) => self.starting(now, id, msg),
        }
    }

    /// A message while the session starts. Only the session's own exchange counts; anything
    /// else (events, answers to an earlier session's requests) is dropped.
    fn starting(&mut self, now: Instant, id: InvokeId, msg: Message) -> Result<(), LinkError> {
        match (self.phase, msg) {
            (Phase::AwaitSession { deadline }, Message::StartApplicationSessionPosResponse(r)) => {
                self.own.finish(id);
                self.session_id = Some(r.session_id);
                if let Some(d) = r.actual_session_duration {
                    self.session_duration = d.max(2);
                }
                self.await_status(now, deadline)
            }
            (Phase::AwaitSession { .. }, Message::StartApplicationSessionNegResponse(r)) => {
                Err(LinkError::SessionRefused(r.error_code))
            }
            (Phase::AwaitSession { .. }, Message::SystemStatus(s)) => {
                self.answer_status(id)?;
                if is_ok(&s.system_status) {
                    self.status_ok = true;
                }
                Ok(())
            }
            (Phase::AwaitFirstStatus { deadline }, Message::SystemStatus(s)) => {
                self.answer_status(id)?;
                self.status_ok = is_ok(&s.system_status);
                let register = Message::SystemRegister(SystemRegister {
                    request_types: Some(RequestTypes {
                        system_status: Some(true),
                        request_system_status: Some(false),
                        switching_function_caps_changed: None,
                        switching_function_devices_changed: None,
                    }),
                    extensions: None,
                });
                self.own_request(OwnRequest::SystemRegister, &register)?;
                self.phase = Phase::AwaitRegistered { deadline };
                Ok(())
            }
            (Phase::AwaitRegistered { deadline }, Message::SystemRegisterResponse(_)) => {
                self.own.finish(id);
                self.await_status(now, deadline)
            }
            (Phase::AwaitRegistered { .. }, Message::CstaErrorCode(e)) => {
                Err(LinkError::RegisterRefused(e.error))
            }
            (Phase::AwaitRegistered { .. }, Message::SystemStatus(s)) => {
                self.answer_status(id)?;
                self.status_ok = is_ok(&s.system_status);
                Ok(())
            }
            (Phase::AwaitStatus { .. } | Phase::AskStatus { .. }, Message::SystemStatus(s)) => {
                self.answer_status(id)?;
                if is_ok(&s.system_status) {
                    self.open(now);
                } else if s.system_status == SystemStatusValue::Initializing {
                    self.initializing(now);
                }
                Ok(())
            }
            (Phase::AskStatus { .. }, Message::RequestSystemStatusResponse(r)) => {
                self.own.finish(id);
                match r.system_status {
                    Some(SystemStatusValue::Initializing) => {
                        self.initializing(now);
                        Ok(())
                    }
                    Some(s) if !is_ok(&s) => Err(LinkError::StatusNotNormal(s)),
                    _ => {
                        self.open(now);
                        Ok(())
                    }
                }
            }
            // Any answer to the RequestSystemStatus proves a live link, as for the keepalive
            // (docs/configuration.md, `kpl-tolerance`).
            (Phase::AskStatus { .. }, Message::CstaErrorCode(_)) if self.own.contains(id) => {
                self.own.finish(id);
                self.open(now);
                Ok(())
            }
            (_, other) => {
                debug!(link = %self.cfg.name, invoke = %id, root = other.name(), "link not open yet: message ignored");
                Ok(())
            }
        }
    }

    /// Session started; operational at once if a status normal was seen, else wait for one
    /// until `deadline` (not in mode `none`), else ask.
    fn await_status(&mut self, now: Instant, deadline: Instant) -> Result<(), LinkError> {
        if self.status_ok {
            self.open(now);
            return Ok(());
        }
        if self.cfg.session != SessionMode::None && now < deadline {
            self.phase = Phase::AwaitStatus { deadline };
            return Ok(());
        }
        self.ask_status(now)
    }

    /// The Connector is still initializing (docs/configuration.md, system status): not a
    /// failure. Wait another `connect-tout` for a SystemStatus normal, then ask again; a
    /// Connector that says nothing for `connect-tout` is given up on as before.
    fn initializing(&mut self, now: Instant) {
        info!(link = %self.cfg.name, "Connector system status initializing; waiting");
        self.phase = Phase::AwaitStatus {
            deadline: now + self.cfg.connect_timeout,
        };
    }

    fn ask_status(&mut self, now: Instant) -> Result<(), LinkError> {
        self.own_request(OwnRequest::AskStatus, &request_system_status())?;
        self.phase = Phase::AskStatus {
            deadline: now + self.cfg.connect_timeout,
        };
        Ok(())
    }

    fn open(&mut self, now: Instant) {
        self.phase = Phase::Open;
        self.operational = true;
        self.next_timer_reset = self.session_id.as_ref().map(|_| now + self.reset_period());
        info!(link = %self.cfg.name, priority = self.cfg.priority, "CTI link {} is operational", self.cfg.name);
        self.events.push_back(SessionEvent::Up);
    }

    /// Keepalive and session timer reset on an open session.
    fn open_timers(&mut self, now: Instant) -> Result<(), LinkError> {
        match self.keepalive.on_timeout(now) {
            KeepaliveDue::Nothing => {}
            KeepaliveDue::Send { misses } => {
                if misses > 0 {
                    warn!(link = %self.cfg.name, misses, tolerance = self.cfg.kpl_tolerance, "keepalive not answered within kpl-interval");
                }
                self.own_request(OwnRequest::Keepalive, &request_system_status())?;
            }
            KeepaliveDue::Lost { misses } => {
                warn!(link = %self.cfg.name, misses, tolerance = self.cfg.kpl_tolerance, "keepalive not answered within kpl-interval");
                return Err(LinkError::KeepaliveMissed {
                    misses,
                    interval: self.keepalive.interval(),
                });
            }
        }
        if let (Some(at), Some(sid)) = (self.next_timer_reset, &self.session_id) {
            if now >= at {
                let msg = Message::ResetApplicationSessionTimer(ResetApplicationSessionTimer {
                    session_id: sid.clone(),
                    requested_session_duration: Some(self.cfg.session_duration),
                    extensions: None,
                });
                self.own_request(OwnRequest::TimerReset, &msg)?;
                self.next_timer_reset = Some(now + self.reset_period());
            }
        }
        Ok(())
    }

    /// A message on an open session.
    fn inbound(
        &mut self,
        id: InvokeId,
        msg: Result<Message, DecodeError>,
    ) -> Result<(), LinkError> {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                // The engine fails its request with this invoke ID (T-Library 1102).
                if !self.own.contains(id) && !is_own_range(id) && id != InvokeId::EVENT {
                    self.for_engine(Input::CstaAnswerMalformed {
                        invoke_id: id,
                        reason: e.to_string(),
                    });
                }
                return Ok(());
            }
        };
        self.metrics.csta_in(msg.name());
        match &msg {
            Message::MonitorStartResponse(r) => {
                self.monitors.insert(r.monitor_cross_ref_id.clone());
            }
            Message::MonitorStop(m) => {
                self.monitors.remove(&m.monitor_cross_ref_id);
            }
            _ => {}
        }
        match msg.kind() {
            MessageKind::Response | MessageKind::Error => match self.own.finish(id) {
                Some(OwnRequest::Keepalive) => {
                    self.keepalive.on_answer();
                    if let Message::RequestSystemStatusResponse(r) = &msg {
                        if let Some(s) = &r.system_status {
                            self.status_changed(s)?;
                        }
                    }
                }
                Some(_) => {
                    if let Message::ResetApplicationSessionTimerNegResponse(r) = msg {
                        return Err(LinkError::TimerResetRefused(r.error_code));
                    }
                }
                // An unawaited request of the session's own (MonitorStop of a stale monitor).
                None if is_own_range(id) => {
                    debug!(link = %self.cfg.name, invoke = %id, answer = msg.name(), "answer to an unawaited session request");
                }
                // Not one of the session's own: the engine's (it counts late and unknown ones).
                None => self.for_engine(Input::CstaAnswer {
                    invoke_id: id,
                    message: msg,
                }),
            },
            MessageKind::Event => {
                if let Message::ApplicationSessionTerminated(t) = msg {
                    return Err(LinkError::SessionTerminated(t.session_term_reason));
                }
                self.for_engine(Input::CstaEvent { message: msg });
            }
            MessageKind::Request => {
                if let Message::SystemStatus(s) = &msg {
                    self.answer_status(id)?;
                    return self.status_changed(&s.system_status);
                }
                self.for_engine(Input::CstaRequest {
                    invoke_id: id,
                    message: msg,
                });
            }
            MessageKind::Unknown => {
                self.metrics.unknown_messages.inc();
                debug!(link = %self.cfg.name, root = msg.name(), "unknown CSTA message ignored");
            }
        }
        Ok(())
    }

    /// The Connector's system status on an open session (docs/configuration.md, `[[link]]`):
    /// `disabled` is Down with the session kept; back to normal/enabled (or messagesLost,
    /// partiallyDisabled) after that stops this session's monitors, then Up; `messagesLost` on
    /// an operational session stops them, then Resync; `overloadReached` / `overloadRelieved`
    /// are Overload; `partiallyDisabled` sets the `ctid_link_partially_disabled` gauge of the
    /// link until a normal/enabled.
    fn status_changed(&mut self, s: &SystemStatusValue) -> Result<(), LinkError> {
        if is_ok(s) {
            self.metrics.set_partially_disabled(&self.cfg.name, false);
            if std::mem::take(&mut self.overloaded) {
                info!(link = %self.cfg.name, status = %s, "Connector overload over");
                self.events.push_back(SessionEvent::Overload(false));
            }
        }
        match s {
            SystemStatusValue::OverloadReached => {
                warn!(link = %self.cfg.name, "Connector reports system status overloadReached; halving the request window");
                if !self.overloaded {
                    self.overloaded = true;
                    self.events.push_back(SessionEvent::Overload(true));
                }
                return Ok(());
            }
            SystemStatusValue::OverloadRelieved => {
                info!(link = %self.cfg.name, "Connector reports system status overloadRelieved");
                if std::mem::take(&mut self.overloaded) {
                    self.events.push_back(SessionEvent::Overload(false));
                }
                return Ok(());
            }
            _ => {}
        }
        match s {
            SystemStatusValue::Disabled => {
                if self.operational {
                    warn!(link = %self.cfg.name, "Connector reports system status disabled");
                    self.operational = false;
                    self.events
                        .push_back(SessionEvent::Down(LinkError::StatusDisabled));
                }
            }
            s if is_ok(s)
                || matches!(
                    s,
                    SystemStatusValue::MessagesLost | SystemStatusValue::PartiallyDisabled
                ) =>
            {
                if !self.operational {
                    info!(link = %self.cfg.name, status = %s, "Connector system status back; resync");
                    // The Connector may still hold our monitors: stop them, the engine starts
                    // new ones (otherwise every event would arrive twice).
                    self.stop_monitors()?;
                    self.operational = true;
                    self.events.push_back(SessionEvent::Up);
                } else if *s == SystemStatusValue::MessagesLost {
                    warn!(link = %self.cfg.name, "Connector lost messages; full resync");
                    self.stop_monitors()?;
                    self.events
                        .push_back(SessionEvent::Resync(ResyncReason::MessagesLost));
                }
                if *s == SystemStatusValue::PartiallyDisabled {
                    warn!(link = %self.cfg.name, "Connector reports system status partiallyDisabled");
                    self.metrics.set_partially_disabled(&self.cfg.name, true);
                }
            }
            other => info!(link = %self.cfg.name, status = %other, "Connector system status"),
        }
        Ok(())
    }

    /// MonitorStop for every monitor this session holds (answers are not awaited): before the
    /// engine re-monitors on the same session, and when leaving a session.
    fn stop_monitors(&mut self) -> Result<(), LinkError> {
        let xrefs = std::mem::take(&mut self.monitors);
        if !xrefs.is_empty() {
            info!(link = %self.cfg.name, monitors = xrefs.len(), "stopping the monitors of this session before re-monitoring");
        }
        for x in xrefs {
            let msg = Message::MonitorStop(MonitorStop {
                monitor_cross_ref_id: x,
                extensions: None,
            });
            let id = self.own.fire().ok_or(LinkError::InvokeIdsExhausted)?;
            self.queue(id, &msg)?;
        }
        Ok(())
    }

    fn for_engine(&mut self, input: Input) {
        self.events.push_back(SessionEvent::Input(input));
    }
}

/// Is this invoke ID in the session's own range (never one of the engine's)?
fn is_own_range(id: InvokeId) -> bool {
    super::own_requests::SESSION_INVOKE_IDS.contains(&id.get())
}

#[cfg(test)]
mod tests;
