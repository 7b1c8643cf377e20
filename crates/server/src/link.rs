//! The CSTA link driver: TCP connect, session start (ecma354 / system-register / none), waiting
//! for system status normal, keepalive, invoke-ID allocation and correlation, reconnect with
//! backoff. It turns frames into engine inputs and engine outputs into frames; it owns no model.
//!
//! Several links ([`run_links`], tserver-behaviour §8.6): every configured link runs its own
//! session; the highest-priority operational one is **active** — the engine sees only its
//! inputs, and the core's commands go only to it. Losing the active link moves to the next
//! operational one at once (the engine sees LinkDown then LinkUp and resyncs; client
//! registrations stay). When a higher-priority link becomes operational again, ctid moves back
//! to it and resets the session of the link it leaves, so that link holds no monitors.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ctid_csta::frame::{decode_frame, encode_message, FrameItem, MAX_FRAME_LEN};
use ctid_csta::{
    ApplicationInfo, CodecOptions, InvokeId, Message, MessageKind, MonitorStop,
    RequestSystemStatus, ResetApplicationSessionTimer, StartApplicationSession, SystemRegister,
    SystemStatusResponse, SystemStatusValue,
};
use ctid_engine::Input;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{LinkConfig, SessionMode};
use crate::core::CoreMsg;
use crate::metrics::Metrics;

/// What the core asks the link to do.
#[derive(Debug)]
pub enum LinkCmd {
    /// An engine request, sent with the engine's invoke ID.
    Request {
        invoke_id: InvokeId,
        message: Message,
    },
    Answer {
        invoke_id: InvokeId,
        message: Message,
    },
}

/// What one link tells the link manager. (Nearly every report is an `Input`, so it is not
/// boxed.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Report {
    /// Operational (session up, system status normal).
    Up,
    /// Not operational any more (connection lost, or system status disabled).
    Down(String),
    /// Operational, but events may be missing (`messagesLost`): resync everything.
    Resync(String),
    /// An answer, event or request for the engine.
    Input(Input),
}

/// Run every configured link forever (`links` sorted by priority, best first); the best
/// operational one carries the traffic.
pub async fn run_links(
    links: Vec<LinkConfig>,
    core: mpsc::Sender<CoreMsg>,
    mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
    metrics: Metrics,
    settings: tokio::sync::watch::Receiver<Vec<LinkConfig>>,
) {
    let (report_tx, mut reports) = mpsc::channel::<(usize, Report)>(65_536);
    let mut to_link = Vec::new();
    let mut resets = Vec::new();
    let mut tasks = Vec::new();
    for (i, cfg) in links.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reset_tx, reset_rx) = mpsc::unbounded_channel();
        to_link.push(tx);
        resets.push(reset_tx);
        tasks.push(tokio::spawn(run(
            i,
            cfg.clone(),
            report_tx.clone(),
            rx,
            reset_rx,
            metrics.clone(),
            settings.clone(),
        )));
    }
    // Aborts the link tasks when this task is dropped (ctid stopping).
    struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _tasks = AbortOnDrop(tasks);
    let mut up = vec![false; links.len()];
    let mut active: Option<usize> = None;
    metrics.link_up(false);
    loop {
        tokio::select! {
            biased;
            r = reports.recv() => {
                let Some((i, r)) = r else { return };
                match r {
                    Report::Input(input) => {
                        if active == Some(i) {
                            let _ = core.send(CoreMsg::Link(input)).await;
                        } else {
                            debug!(link = %links[i].name, "input from a link that is not active dropped");
                        }
                    }
                    Report::Up => {
                        up[i] = true;
                        match active {
                            None => {}
                            Some(a) if i < a => {
                                info!(link = %links[i].name, from = %links[a].name, "a link with higher priority is operational; switching back");
                                let reason = format!("switching to link {} with higher priority", links[i].name);
                                let _ = core.send(CoreMsg::Link(Input::LinkDown { reason })).await;
                                // The link left behind restarts its session: it must hold no monitors.
                                up[a] = false;
                                let _ = resets[a].send(());
                            }
                            Some(_) => {
                                info!(link = %links[i].name, priority = links[i].priority, "standby link operational");
                                continue;
                            }
                        }
                        active = Some(i);
                        select(&links[i], &core, &metrics).await;
                    }
                    Report::Down(reason) => {
                        up[i] = false;
                        if active != Some(i) {
                            continue;
                        }
                        active = up.iter().position(|u| *u);
                        let reason = match active {
                            Some(n) => format!("{reason}; switching to link {}", links[n].name),
                            None => reason,
                        };
                        metrics.link_up(false);
                        let _ = core.send(CoreMsg::Link(Input::LinkDown { reason })).await;
                        if let Some(n) = active {
                            select(&links[n], &core, &metrics).await;
                        }
                    }
                    Report::Resync(reason) => {
                        if active == Some(i) {
                            let _ = core.send(CoreMsg::Link(Input::LinkDown { reason })).await;
                            select(&links[i], &core, &metrics).await;
                        }
                    }
                }
            }
            c = cmds.recv() => {
                let Some(c) = c else { return };
                // Without an active link the command is dropped: the engine fails its requests
                // when it handles the LinkDown that is on its way.
                if let Some(a) = active {
                    let _ = to_link[a].send(c);
                }
            }
        }
    }
}

/// Make `link` the active one: logged as Genesys's 35115 is, then LinkUp to the engine.
async fn select(link: &LinkConfig, core: &mpsc::Sender<CoreMsg>, metrics: &Metrics) {
    info!(link = %link.name, priority = link.priority, edition = %link.edition, "CTI link {} with priority {} is selected", link.name, link.priority);
    metrics.link_up(true);
    let _ = core
        .send(CoreMsg::Link(Input::LinkUp {
            name: link.name.clone(),
        }))
        .await;
}

/// Run one link forever: connect, serve, reconnect.
async fn run(
    index: usize,
    mut cfg: LinkConfig,
    mgr: mpsc::Sender<(usize, Report)>,
    mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
    mut reset: mpsc::UnboundedReceiver<()>,
    metrics: Metrics,
    settings: tokio::sync::watch::Receiver<Vec<LinkConfig>>,
) {
    let mut backoff = cfg.reconnect_min;
    loop {
        // Settings changed by a reload apply from this (re)connect on.
        if let Some(new) = settings.borrow().get(index) {
            if *new != cfg {
                info!(link = %new.name, "new link settings from the reloaded configuration apply now");
                cfg = new.clone();
                backoff = cfg.reconnect_min;
            }
        }
        let started = Instant::now();
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let mut demoted = false;
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                info!(link = %cfg.name, %addr, "connected to the CSTA Connector");
                while reset.try_recv().is_ok() {}
                let mut s = Session::new(index, &cfg, stream, &mgr, &metrics);
                let reason = s.run(&mut cmds, &mut reset).await;
                demoted = s.demoted;
                warn!(link = %cfg.name, %reason, "CSTA link closed");
                if s.operational {
                    let _ = mgr.send((index, Report::Down(reason))).await;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = cfg.reconnect_min;
                }
            }
            Ok(Err(e)) => warn!(link = %cfg.name, %addr, error = %e, "cannot connect"),
            Err(_) => warn!(link = %cfg.name, %addr, "connect timed out"),
        }
        metrics.reconnects.inc();
        if demoted {
            // Left for a better link, not lost: come back as a standby at once.
            backoff = cfg.reconnect_min;
        }
        // ±20 % jitter, derived from the clock (no RNG needed for this).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = 0.8 + 0.4 * (nanos % 1000) as f64 / 1000.0;
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(cfg.reconnect_max);
        // Commands sent while no session exists are dropped (the engine fails them on LinkDown).
        while cmds.try_recv().is_ok() {}
    }
}

/// The session's own requests (the engine's are correlated by the engine).
enum Pending {
    Keepalive,
    Session,
}

struct Session<'a> {
    index: usize,
    cfg: &'a LinkConfig,
    stream: TcpStream,
    mgr: &'a mpsc::Sender<(usize, Report)>,
    metrics: &'a Metrics,
    opts: CodecOptions,
    rbuf: BytesMut,
    wbuf: BytesMut,
    pending: HashMap<u16, Pending>,
    next_id: u16,
    operational: bool,
    /// The manager asked this session to end (a better link took over).
    demoted: bool,
    last_rx: Instant,
    /// When the keepalive in flight was sent.
    kpl_sent: Option<Instant>,
    kpl_misses: u32,
    session_id: Option<String>,
    session_duration: u32,
    /// monitorCrossRefIDs the Connector granted on this session (MonitorStartResponse) and not
    /// stopped since: stopped before a resync on the same session, so none is held twice.
    monitors: HashSet<String>,
}

impl<'a> Session<'a> {
    fn new(
        index: usize,
        cfg: &'a LinkConfig,
        stream: TcpStream,
        mgr: &'a mpsc::Sender<(usize, Report)>,
        metrics: &'a Metrics,
    ) -> Self {
        Session {
            index,
            cfg,
            stream,
            mgr,
            metrics,
            opts: CodecOptions {
                edition: cfg.edition,
                hotdesk_ns: cfg.hotdesk_namespace.clone(),
            },
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            pending: HashMap::new(),
            next_id: 0,
            operational: false,
            demoted: false,
            last_rx: Instant::now(),
            kpl_sent: None,
            kpl_misses: 0,
            session_id: None,
            session_duration: cfg.session_duration,
            monitors: HashSet::new(),
        }
    }

    /// An invoke ID for the session's own requests: 9000–9998 (the engine uses
    /// `ctid_engine::window::ENGINE_INVOKE_IDS`).
    fn alloc_id(&mut self) -> Option<InvokeId> {
        for _ in 9000..=9998 {
            self.next_id = if self.next_id >= 9998 || self.next_id < 9000 {
                9000
            } else {
                self.next_id + 1
            };
            if !self.pending.contains_key(&self.next_id) {
                return InvokeId::new(self.next_id);
            }
        }
        None
    }

    fn queue(&mut self, id: InvokeId, msg: &Message) -> Result<(), String> {
        let before = self.wbuf.len();
        encode_message(id, msg, &self.opts, &mut self.wbuf)
            .map_err(|e| format!("encode {}: {e}", msg.name()))?;
        if tracing::enabled!(target: "ctid::csta", tracing::Level::DEBUG) {
            let xml = String::from_utf8_lossy(&self.wbuf[before + 8..]);
            debug!(target: "ctid::csta", dir = "out", invoke = %id, len = self.wbuf.len() - before, %xml, "frame");
        }
        self.metrics.csta_out(msg.name());
        Ok(())
    }

    fn request(&mut self, msg: &Message, p: Pending) -> Result<(), String> {
        let id = self.alloc_id().ok_or("no free invoke ID")?;
        self.pending.insert(id.get(), p);
        self.queue(id, msg)
    }

    async fn flush(&mut self) -> Result<(), String> {
        if !self.wbuf.is_empty() {
            self.stream
                .write_all(&self.wbuf)
                .await
                .map_err(|e| format!("write: {e}"))?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Read the next decoded message (with its invoke ID).
    async fn read_msg(&mut self) -> Result<(InvokeId, Result<Message, String>), String> {
        loop {
            match decode_frame(&mut self.rbuf, MAX_FRAME_LEN) {
                Ok(Some(FrameItem::Frame(f))) => {
                    self.last_rx = Instant::now();
                    if tracing::enabled!(target: "ctid::csta", tracing::Level::DEBUG) {
                        debug!(target: "ctid::csta", dir = "in", invoke = %f.invoke_id, len = f.xml.len() + 8, xml = %String::from_utf8_lossy(&f.xml), "frame");
                    }
                    let msg = ctid_csta::decode_with(&f.xml, &self.opts)
                        .map(|d| d.message)
                        .map_err(|e| e.to_string());
                    if let Err(e) = &msg {
                        self.metrics.bad_frames.inc();
                        warn!(link = %self.cfg.name, invoke = %f.invoke_id, error = %e, xml = %String::from_utf8_lossy(&f.xml), "malformed CSTA frame skipped");
                    }
                    return Ok((f.invoke_id, msg));
                }
                Ok(Some(FrameItem::Skipped { error, raw })) => {
                    self.last_rx = Instant::now();
                    self.metrics.bad_frames.inc();
                    warn!(link = %self.cfg.name, %error, bytes = ?&raw[..raw.len().min(64)], "bad CSTA frame skipped");
                }
                Ok(None) => {
                    let n = self
                        .stream
                        .read_buf(&mut self.rbuf)
                        .await
                        .map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("connection closed by the Connector".into());
                    }
                }
                Err(e) => {
                    self.metrics.bad_frames.inc();
                    return Err(format!("{e}"));
                }
            }
        }
    }

    /// Session start; returns when the link is operational.
    async fn start(&mut self, cmds: &mut mpsc::UnboundedReceiver<LinkCmd>) -> Result<(), String> {
        while cmds.try_recv().is_ok() {}
        let deadline = Instant::now() + self.cfg.connect_timeout;
        match self.cfg.session {
            SessionMode::Ecma354 => {
                let msg = Message::StartApplicationSession(StartApplicationSession {
                    application_info: ApplicationInfo {
                        application_id: "ctid".into(),
                        application_specific_info: None,
                    },
                    requested_protocol_versions: vec![self.cfg.edition.namespace().to_string()],
                    requested_session_duration: Some(self.cfg.session_duration),
                    extensions: None,
                });
                self.request(&msg, Pending::Session)?;
                self.flush().await?;
                loop {
                    let (id, m) = self.read_until(deadline).await?;
                    match m {
                        Ok(Message::StartApplicationSessionPosResponse(r)) => {
                            self.pending.remove(&id.get());
                            self.session_id = Some(r.session_id);
                            if let Some(d) = r.actual_session_duration {
                                self.session_duration = d.max(2);
                            }
                            break;
                        }
                        Ok(Message::StartApplicationSessionNegResponse(r)) => {
                            return Err(format!("session refused: {:?}", r.error_code));
                        }
                        Ok(Message::SystemStatus(s)) => {
                            self.answer_status(id)?;
                            if is_ok(&s.system_status) {
                                self.operational = true;
                            }
                        }
                        _ => {}
                    }
                }
                self.await_status(deadline).await
            }
            SessionMode::SystemRegister => {
                loop {
                    let (id, m) = self.read_until(deadline).await?;
                    if let Ok(Message::SystemStatus(s)) = m {
                        self.answer_status(id)?;
                        if is_ok(&s.system_status) {
                            self.operational = true;
                        }
                        break;
                    }
                }
                let msg = Message::SystemRegister(SystemRegister {
                    request_types: Some(ctid_csta::RequestTypes {
                        system_status: Some(true),
                        request_system_status: Some(false),
                        switching_function_caps_changed: None,
                        switching_function_devices_changed: None,
                    }),
                    extensions: None,
                });
                self.request(&msg, Pending::Session)?;
                self.flush().await?;
                loop {
                    let (id, m) = self.read_until(deadline).await?;
                    match m {
                        Ok(Message::SystemRegisterResponse(_)) => {
                            self.pending.remove(&id.get());
                            break;
                        }
                        Ok(Message::CstaErrorCode(e)) => {
                            return Err(format!("SystemRegister refused: {}", e.error))
                        }
                        Ok(Message::SystemStatus(s)) => {
                            self.answer_status(id)?;
                            self.operational = is_ok(&s.system_status);
                        }
                        _ => {}
                    }
                }
                self.await_status(deadline).await
            }
            SessionMode::None => self.await_status(deadline).await,
        }
    }

    /// Wait for a normal/enabled status until `deadline`, then ask with RequestSystemStatus.
    async fn await_status(&mut self, deadline: Instant) -> Result<(), String> {
        if self.operational {
            return Ok(());
        }
        if self.cfg.session != SessionMode::None {
            while Instant::now() < deadline {
                match tokio::time::timeout_at(deadline.into(), self.read_msg()).await {
                    Ok(r) => {
                        let (id, m) = r?;
                        if let Ok(Message::SystemStatus(s)) = m {
                            self.answer_status(id)?;
                            if is_ok(&s.system_status) {
                                return Ok(());
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let ask_deadline = Instant::now() + self.cfg.connect_timeout;
        self.request(
            &Message::RequestSystemStatus(RequestSystemStatus {
                sys_stat_register_id: None,
                extensions: None,
            }),
            Pending::Session,
        )?;
        self.flush().await?;
        loop {
            let (id, m) = self.read_until(ask_deadline).await?;
            match m {
                Ok(Message::RequestSystemStatusResponse(r)) => {
                    self.pending.remove(&id.get());
                    match r.system_status {
                        Some(s) if is_ok(&s) => return Ok(()),
                        None => return Ok(()),
                        Some(s) => return Err(format!("Connector system status is {s}")),
                    }
                }
                Ok(Message::SystemStatus(s)) => {
                    self.answer_status(id)?;
                    if is_ok(&s.system_status) {
                        return Ok(());
                    }
                }
                Ok(Message::CstaErrorCode(_)) if self.pending.contains_key(&id.get()) => {
                    // Any answer proves a live link (csta-xml.md §3.3).
                    self.pending.remove(&id.get());
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    async fn read_until(
        &mut self,
        deadline: Instant,
    ) -> Result<(InvokeId, Result<Message, String>), String> {
        match tokio::time::timeout_at(deadline.into(), self.read_msg()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "not operational within connect-tout ({:?})",
                self.cfg.connect_timeout
            )),
        }
    }

    fn answer_status(&mut self, id: InvokeId) -> Result<(), String> {
        self.queue(
            id,
            &Message::SystemStatusResponse(SystemStatusResponse { extensions: None }),
        )
    }

    async fn run(
        &mut self,
        cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
        reset: &mut mpsc::UnboundedReceiver<()>,
    ) -> String {
        if let Err(e) = self.start(cmds).await {
            self.operational = false;
            let _ = self.flush().await;
            return e;
        }
        if let Err(e) = self.flush().await {
            self.operational = false;
            return e;
        }
        self.operational = true;
        info!(link = %self.cfg.name, priority = self.cfg.priority, "CTI link {} is operational", self.cfg.name);
        self.report(Report::Up).await;
        match self.serve(cmds, reset).await {
            Ok(()) => "shutdown".into(),
            Err(e) => e,
        }
    }

    /// When the keepalive needs attention next: the answer deadline of the one in flight, or
    /// `kpl-interval` after the last frame received.
    fn kpl_deadline(&self) -> Option<Instant> {
        let kpl = self.cfg.kpl_interval;
        if kpl.is_zero() {
            return None;
        }
        Some(match self.kpl_sent {
            Some(t) => t + kpl,
            None => self.last_rx + kpl,
        })
    }

    /// Keepalive (tserver-behaviour §8.3): after `kpl-interval` without any frame received,
    /// send RequestSystemStatus; one not answered within `kpl-interval` is a miss and another is
    /// sent at once; `kpl-tolerance` misses in a row (0 counts as 1) close the link. So a silent
    /// Connector is detected at most `kpl-interval × (kpl-tolerance + 1)` after its last frame.
    fn keepalive(&mut self) -> Result<(), String> {
        let Some(deadline) = self.kpl_deadline() else {
            return Ok(());
        };
        if Instant::now() < deadline {
            return Ok(());
        }
        if self.kpl_sent.is_some() {
            self.kpl_misses += 1;
            warn!(link = %self.cfg.name, misses = self.kpl_misses, tolerance = self.cfg.kpl_tolerance, "keepalive not answered within kpl-interval");
            if self.kpl_misses >= self.cfg.kpl_tolerance.max(1) {
                return Err(format!(
                    "keepalive: {} RequestSystemStatus unanswered within kpl-interval ({:?})",
                    self.kpl_misses, self.cfg.kpl_interval
                ));
            }
        }
        self.request(
            &Message::RequestSystemStatus(RequestSystemStatus {
                sys_stat_register_id: None,
                extensions: None,
            }),
            Pending::Keepalive,
        )?;
        self.kpl_sent = Some(Instant::now());
        Ok(())
    }

    async fn serve(
        &mut self,
        cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
        reset: &mut mpsc::UnboundedReceiver<()>,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_reset = Instant::now();
        let far = Duration::from_secs(3600);
        loop {
            let kpl_at = self.kpl_deadline().unwrap_or_else(|| Instant::now() + far);
            tokio::select! {
                r = self.read_msg() => {
                    let (id, m) = r?;
                    self.inbound(id, m).await?;
                }
                c = cmds.recv() => {
                    let Some(c) = c else { return Ok(()) };
                    self.command(c)?;
                    // Batch whatever else is queued into the same write.
                    while let Ok(c) = cmds.try_recv() {
                        self.command(c)?;
                        if self.wbuf.len() > 60_000 { break; }
                    }
                }
                Some(()) = reset.recv() => {
                    self.demoted = true;
                    self.stop_monitors()?;
                    let _ = self.flush().await;
                    return Err("left for a link with higher priority; session restarted as standby".into());
                }
                _ = tokio::time::sleep_until(kpl_at.into()) => self.keepalive()?,
                _ = tick.tick() => {
                    if let Some(sid) = self.session_id.clone() {
                        if last_reset.elapsed() >= Duration::from_secs(u64::from(self.session_duration / 2).max(1)) {
                            self.request(&Message::ResetApplicationSessionTimer(ResetApplicationSessionTimer { session_id: sid, requested_session_duration: Some(self.cfg.session_duration), extensions: None }), Pending::Session)?;
                            last_reset = Instant::now();
                        }
                    }
                }
            }
            self.flush().await?;
        }
    }

    /// MonitorStop for every monitor this session holds (answers are not waited for): before
    /// the engine re-monitors on the same session, and when leaving a session.
    fn stop_monitors(&mut self) -> Result<(), String> {
        let xrefs: Vec<String> = self.monitors.drain().collect();
        if !xrefs.is_empty() {
            info!(link = %self.cfg.name, monitors = xrefs.len(), "stopping the monitors of this session before re-monitoring");
        }
        for x in xrefs {
            self.request(
                &Message::MonitorStop(MonitorStop {
                    monitor_cross_ref_id: x,
                    extensions: None,
                }),
                Pending::Session,
            )?;
        }
        Ok(())
    }

    fn command(&mut self, c: LinkCmd) -> Result<(), String> {
        match c {
            LinkCmd::Request { invoke_id, message } => {
                if let Message::MonitorStop(m) = &message {
                    self.monitors.remove(&m.monitor_cross_ref_id);
                }
                self.queue(invoke_id, &message)
            }
            LinkCmd::Answer { invoke_id, message } => self.queue(invoke_id, &message),
        }
    }

    async fn inbound(&mut self, id: InvokeId, m: Result<Message, String>) -> Result<(), String> {
        let msg = match m {
            Ok(m) => m,
            Err(reason) => {
                if !self.pending.contains_key(&id.get()) && id != InvokeId::EVENT {
                    self.to_core(Input::CstaAnswerMalformed {
                        invoke_id: id,
                        reason,
                    })
                    .await;
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
            MessageKind::Response | MessageKind::Error => match self.pending.remove(&id.get()) {
                Some(Pending::Keepalive) => {
                    self.kpl_sent = None;
                    self.kpl_misses = 0;
                    if let Message::RequestSystemStatusResponse(r) = &msg {
                        if let Some(s) = &r.system_status {
                            self.status_changed(s).await?;
                        }
                    }
                }
                Some(Pending::Session) => {
                    if let Message::ResetApplicationSessionTimerNegResponse(r) = &msg {
                        return Err(format!("session timer reset refused: {:?}", r.error_code));
                    }
                }
                // Not one of the session's own: the engine's (it counts unmatched ones).
                None => {
                    self.to_core(Input::CstaAnswer {
                        invoke_id: id,
                        message: msg,
                    })
                    .await
                }
            },
            MessageKind::Event => {
                if let Message::ApplicationSessionTerminated(t) = &msg {
                    return Err(format!(
                        "session terminated by the Connector: {:?}",
                        t.session_term_reason
                    ));
                }
                self.to_core(Input::CstaEvent { message: msg }).await;
            }
            MessageKind::Request => {
                if let Message::SystemStatus(s) = &msg {
                    self.answer_status(id)?;
                    let s = s.system_status.clone();
                    return self.status_changed(&s).await;
                }
                self.to_core(Input::CstaRequest {
                    invoke_id: id,
                    message: msg,
                })
                .await;
            }
            MessageKind::Unknown => {
                self.metrics.unknown_messages.inc();
                debug!(link = %self.cfg.name, root = msg.name(), "unknown CSTA message ignored");
            }
        }
        Ok(())
    }

    async fn status_changed(&mut self, s: &SystemStatusValue) -> Result<(), String> {
        match s {
            SystemStatusValue::Disabled => {
                if self.operational {
                    warn!(link = %self.cfg.name, "Connector reports system status disabled");
                    self.operational = false;
                    self.report(Report::Down("Connector system status disabled".into()))
                        .await;
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
                    self.report(Report::Up).await;
                } else if *s == SystemStatusValue::MessagesLost {
                    warn!(link = %self.cfg.name, "Connector lost messages; full resync");
                    self.stop_monitors()?;
                    self.report(Report::Resync(
                        "Connector system status messagesLost: resynchronising".into(),
                    ))
                    .await;
                }
                if *s == SystemStatusValue::PartiallyDisabled {
                    warn!(link = %self.cfg.name, "Connector reports system status partiallyDisabled");
                }
            }
            other => info!(link = %self.cfg.name, status = %other, "Connector system status"),
        }
        Ok(())
    }

    async fn to_core(&self, input: Input) {
        self.report(Report::Input(input)).await;
    }

    async fn report(&self, r: Report) {
        let _ = self.mgr.send((self.index, r)).await;
    }
}

fn is_ok(s: &SystemStatusValue) -> bool {
    matches!(s, SystemStatusValue::Normal | SystemStatusValue::Enabled)
}
