//! csta-sim: a CSTA Connector simulator in front of a BroadWorks-like switch.
//!
//! The switch ctid is tested against, the engine behind `ctid --demo` and the load source of
//! the benchmarks. Start one in-process with [`Sim::start`] (on `127.0.0.1:0` in tests), drive
//! its phones from Rust through the [`Sim`] handle or over HTTP (the control API, see
//! `docs/csta-sim.md`), and talk CSTA XML to it over TCP with the 8-byte framing.
//!
//! Layout: [`config`] (devices, session mode, `sim.toml`), [`model`] (the switch, sans-IO),
//! `actor` (the one task that owns the model, the sessions and the monitors), `conn` (one task
//! per CSTA connection), [`control`] (HTTP control API), [`load`] (load mode), [`record`]
//! (record mode), [`events`] (event helpers), [`dual`] (the dual-primary check for ctid's hot
//! standby: did two clients act on the switch at once? See [`Sim::dual_primary`]).
#![deny(unsafe_code)]

mod actor;
pub mod config;
mod conn;
pub mod control;
pub mod dual;
pub mod error;
pub mod events;
pub mod load;
pub mod model;
pub mod nats;
pub mod record;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use ctid_csta::json::JsonValue;
use ctid_csta::{CodecOptions, CstaError, ForwardingType, ReqAgentState, SystemStatusValue};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use actor::Stats;
pub use config::{DeviceConfig, DeviceKind, Hoteling, SessionMode, SimConfig};
pub use dual::DualPrimary;
pub use error::SimError;
use model::Model;

use actor::{Actor, Cmd};

/// A running simulator. Cheap to clone; [`Sim::shutdown`] stops it.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Cmd>,
    csta_addr: SocketAddr,
    control_addr: OnceLock<SocketAddr>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<Stats>,
    dual: Arc<Mutex<dual::Tracker>>,
}

/// What a phone button does ([`Sim::phone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneAction {
    /// Lift the handset without dialling.
    OffHook,
    Answer,
    Hangup,
    Hold,
    Retrieve,
}

impl PhoneAction {
    /// Parse `offhook`, `answer`, `hangup`, `hold`, `retrieve`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "offhook" => Some(PhoneAction::OffHook),
            "answer" => Some(PhoneAction::Answer),
            "hangup" => Some(PhoneAction::Hangup),
            "hold" => Some(PhoneAction::Hold),
            "retrieve" => Some(PhoneAction::Retrieve),
            _ => None,
        }
    }
}

/// Parse a CSTAErrorCode family and value (`operation`, `invalidDeviceID`).
pub fn parse_csta_error(family: &str, value: &str) -> Result<CstaError, SimError> {
    if family == "unspecified" {
        return Ok(CstaError::Unspecified);
    }
    let families = [
        "operation",
        "security",
        "stateIncompatibility",
        "systemResourceAvailibility",
        "systemResourceAvailability",
        "subscribedResourceAvailability",
        "performanceManagement",
        "privateData",
        "privateErrorCode",
    ];
    if !families.contains(&family) || value.is_empty() {
        return Err(SimError::BadRequest(format!(
            "CSTA error {family:?}/{value:?}: expected a family among {families:?} and a value"
        )));
    }
    let family = if family == "systemResourceAvailability" {
        "systemResourceAvailibility"
    } else {
        family
    };
    CstaError::from_json(&serde_json::json!({ family: value }), "error")
        .map_err(|e| SimError::BadRequest(e.to_string()))
}

impl Sim {
    /// Start a simulator: the CSTA listener on `csta_listen`, the control API on
    /// `control_listen` (if any), and the switch task.
    pub async fn start(
        cfg: SimConfig,
        csta_listen: SocketAddr,
        control_listen: Option<SocketAddr>,
    ) -> anyhow::Result<Sim> {
        let model = Model::new(&cfg).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        let listener = TcpListener::bind(csta_listen)
            .await
            .map_err(|e| anyhow::anyhow!("CSTA listener {csta_listen}: {e}"))?;
        let csta_addr = listener.local_addr()?;
        let recorder = match &cfg.record {
            Some(p) => Some(record::Recorder::start(p)?),
            None => None,
        };
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(4096);
        let stats = Arc::new(Stats::default());
        let dual = Arc::new(Mutex::new(dual::Tracker::default()));
        let opts = CodecOptions {
            edition: cfg.edition,
            hotdesk_ns: cfg.hotdesk_ns.clone(),
        };
        let out_queue = cfg.out_queue.max(16);
        info!(%csta_addr, session = cfg.session.as_str(), edition = %cfg.edition, devices = cfg.devices.len(), "csta-sim listening");
        let actor = Actor::new(cfg, model, stats.clone(), dual.clone());
        let mut tasks = vec![tokio::spawn(actor.run(rx, cancel.clone()))];
        tasks.push(tokio::spawn(accept_loop(
            listener,
            tx.clone(),
            opts,
            recorder,
            cancel.clone(),
            out_queue,
        )));
        let sim = Sim {
            inner: Arc::new(Inner {
                tx,
                csta_addr,
                control_addr: OnceLock::new(),
                cancel: cancel.clone(),
                tasks: Mutex::new(tasks),
                stats,
                dual,
            }),
        };
        if let Some(addr) = control_listen {
            let (bound, task) = control::serve(sim.clone(), addr, cancel).await?;
            let _ = sim.inner.control_addr.set(bound);
            sim.inner.tasks.lock().expect("tasks").push(task);
            info!(control = %bound, "control API listening");
        }
        Ok(sim)
    }

    /// Where the CSTA listener is bound.
    pub fn csta_addr(&self) -> SocketAddr {
        self.inner.csta_addr
    }

    /// Where the control API is bound, if it runs.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.inner.control_addr.get().copied()
    }

    /// Counters (events sent, frames in/out).
    pub fn stats(&self) -> Arc<Stats> {
        self.inner.stats.clone()
    }

    /// The dual-primary check (see [`dual`]): frames received on connections whose link another
    /// connection took over. Every frame already handed to the switch task is counted; after
    /// [`Sim::shutdown`] it still answers, with the final counts.
    pub async fn dual_primary(&self) -> DualPrimary {
        let _ = self.with_actor(|_| ()).await;
        self.dual().report()
    }

    /// Zero the dual-primary counters (who owns the link, and who was superseded, stay).
    pub async fn reset_dual_primary(&self) {
        let _ = self.with_actor(|_| ()).await;
        self.dual().reset();
    }

    fn dual(&self) -> std::sync::MutexGuard<'_, dual::Tracker> {
        self.inner.dual.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` against the switch model; its events go out before this returns.
    pub async fn with_model<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Model) -> Result<T, SimError> + Send + 'static,
    ) -> Result<T, SimError> {
        let (tx, rx) = oneshot::channel();
        let cmd = Cmd::Model(Box::new(move |m: &mut Model| {
            let _ = tx.send(f(m));
        }));
        self.inner
            .tx
            .send(cmd)
            .await
            .map_err(|_| SimError::Stopped)?;
        rx.await.map_err(|_| SimError::Stopped)?
    }

    async fn with_actor<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Actor) -> T + Send + 'static,
    ) -> Result<T, SimError> {
        let (tx, rx) = oneshot::channel();
        let cmd = Cmd::Actor(Box::new(move |a: &mut Actor| {
            let _ = tx.send(f(a));
        }));
        self.inner
            .tx
            .send(cmd)
            .await
            .map_err(|_| SimError::Stopped)?;
        rx.await.map_err(|_| SimError::Stopped)
    }

    // ------------------------------------------------------------------ the phones

    /// Dial `to` at phone `from` (as if dialled by hand). Returns the call ID.
    pub async fn dial(&self, from: &str, to: &str) -> Result<String, SimError> {
        let (f, t) = (from.to_string(), to.to_string());
        self.with_model(move |m| m.phone_dial(&f, &t)).await
    }

    /// Press a button at a phone; `call` picks the call (default: the obvious one). Returns
    /// the call ID acted on.
    pub async fn phone(
        &self,
        device: &str,
        action: PhoneAction,
        call: Option<&str>,
    ) -> Result<String, SimError> {
        let (d, c) = (device.to_string(), call.map(str::to_string));
        self.with_model(move |m| match action {
            PhoneAction::OffHook => m.phone_off_hook(&d),
            PhoneAction::Answer => m.phone_answer(&d, c.as_deref()),
            PhoneAction::Hangup => m.phone_hangup(&d, c.as_deref()),
            PhoneAction::Hold => m.phone_hold(&d, c.as_deref()),
            PhoneAction::Retrieve => m.phone_retrieve(&d, c.as_deref()),
        })
        .await
    }

    /// Lift the handset without dialling (ServiceInitiated only); returns the call ID.
    pub async fn off_hook(&self, device: &str) -> Result<String, SimError> {
        self.phone(device, PhoneAction::OffHook, None).await
    }

    /// Answer the ringing call at the phone.
    pub async fn answer(&self, device: &str) -> Result<(), SimError> {
        self.phone(device, PhoneAction::Answer, None)
            .await
            .map(drop)
    }

    /// Hang up at the phone (the active call, else a ringing one, else a held one).
    pub async fn hangup(&self, device: &str) -> Result<(), SimError> {
        self.phone(device, PhoneAction::Hangup, None)
            .await
            .map(drop)
    }

    /// Put the active call on hold at the phone.
    pub async fn hold(&self, device: &str) -> Result<(), SimError> {
        self.phone(device, PhoneAction::Hold, None).await.map(drop)
    }

    /// Retrieve the held call at the phone.
    pub async fn retrieve(&self, device: &str) -> Result<(), SimError> {
        self.phone(device, PhoneAction::Retrieve, None)
            .await
            .map(drop)
    }

    /// Consultation at the phone: hold the active call and dial `to`. Returns the new call.
    pub async fn consult(&self, device: &str, to: &str) -> Result<String, SimError> {
        let (d, t) = (device.to_string(), to.to_string());
        self.with_model(move |m| m.phone_consult(&d, &t)).await
    }

    /// Complete a transfer at the phone (the held call joins the active one).
    pub async fn transfer(&self, device: &str) -> Result<String, SimError> {
        let d = device.to_string();
        self.with_model(move |m| m.phone_complete(&d, false)).await
    }

    /// Complete a conference at the phone.
    pub async fn conference(&self, device: &str) -> Result<String, SimError> {
        let d = device.to_string();
        self.with_model(move |m| m.phone_complete(&d, true)).await
    }

    /// Log an agent on/off or change its state at the phone (`loggedOn`, `ready`, …).
    pub async fn agent_state(
        &self,
        device: &str,
        state: &str,
        agent: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), SimError> {
        let st = ReqAgentState::parse(state);
        if let ReqAgentState::Other(s) = &st {
            return Err(SimError::BadRequest(format!(
                "agent state {s:?}: expected one of {:?}",
                ReqAgentState::LITERALS
            )));
        }
        let (d, a) = (device.to_string(), agent.map(str::to_string));
        let r = reason.map(str::to_string);
        self.with_model(move |m| m.set_agent_state(&d, &st, a.as_deref(), None, r.as_deref()))
            .await
    }

    /// Set or clear forwarding at the phone.
    pub async fn set_forwarding(
        &self,
        device: &str,
        kind: &str,
        to: Option<&str>,
    ) -> Result<(), SimError> {
        let t = ForwardingType::parse(kind);
        let (d, to) = (device.to_string(), to.map(str::to_string));
        self.with_model(move |m| m.set_forwarding(&d, Some(&t), to.is_some(), to.as_deref()))
            .await
    }

    /// Do-not-disturb on or off at the phone.
    pub async fn set_dnd(&self, device: &str, on: bool) -> Result<(), SimError> {
        let d = device.to_string();
        self.with_model(move |m| m.set_dnd(&d, on)).await
    }

    /// The person at the desk: guest `guest` sits down at host `host`.
    pub async fn hotdesk_associate(&self, guest: &str, host: &str) -> Result<(), SimError> {
        let (g, h) = (guest.to_string(), host.to_string());
        self.with_model(move |m| m.hotdesk_associate(&g, &h)).await
    }

    /// The person at the desk: guest `guest` leaves.
    pub async fn hotdesk_cancel(&self, guest: &str) -> Result<(), SimError> {
        let g = guest.to_string();
        self.with_model(move |m| m.hotdesk_cancel(&g)).await
    }

    /// Create a device.
    pub async fn add_device(&self, device: DeviceConfig) -> Result<(), SimError> {
        self.with_model(move |m| m.add_device(device)).await
    }

    /// Remove a device (its calls are cleared, its monitors stopped by MonitorStop).
    pub async fn remove_device(&self, device: &str) -> Result<(), SimError> {
        let d = device.to_string();
        self.with_model(move |m| m.remove_device(&d)).await
    }

    /// The whole state: devices, calls with connections and states, agents, forwarding,
    /// associations, CSTA connections with their monitors, faults.
    pub async fn snapshot(&self) -> Value {
        self.with_actor(|a| a.to_json())
            .await
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }

    // ------------------------------------------------------------------ faults

    /// Close every CSTA connection at once.
    pub async fn drop_connections(&self) {
        let n = self.with_actor(|a| a.drop_all()).await.unwrap_or(0);
        info!(connections = n, "fault: dropped every CSTA connection");
    }

    /// Stop answering requests (they are swallowed) or resume.
    pub async fn set_stall(&self, on: bool) {
        let _ = self.with_actor(move |a| a.stall = on).await;
        info!(on, "fault: stall");
    }

    /// Delay every response by `ms` milliseconds (0 = off). Events are not delayed.
    pub async fn set_delay(&self, ms: u64) {
        let _ = self.with_actor(move |a| a.delay_ms = ms).await;
        info!(ms, "fault: response delay");
    }

    /// Send a frame with malformed XML to every connection.
    pub async fn inject_malformed(&self) {
        if let Err(e) = self.inject_malformed_kind("xml").await {
            warn!(error = %e, "inject malformed");
        }
    }

    /// Send a malformed frame of `kind` (`xml`, `invoke`, `format`, `framing`) to every
    /// connection; returns how many got it.
    pub async fn inject_malformed_kind(&self, kind: &str) -> Result<usize, SimError> {
        let k = kind.to_string();
        self.with_actor(move |a| a.inject_malformed(&k)).await?
    }

    /// Answer the next service request with the CSTAErrorCode `family`/`value`.
    pub async fn fail_next(&self, family: &str, value: &str) {
        if let Err(e) = self.try_fail_next(family, value, None).await {
            warn!(error = %e, "fail-next");
        }
    }

    /// Answer the next request (of root `service`, or the next service request when `None`)
    /// with the CSTAErrorCode `family`/`value`.
    pub async fn try_fail_next(
        &self,
        family: &str,
        value: &str,
        service: Option<&str>,
    ) -> Result<(), SimError> {
        self.try_fail_after(family, value, service, 0).await
    }

    /// Like [`Sim::try_fail_next`], after letting `skip` such requests through (e.g. the
    /// second of two SetForwarding).
    pub async fn try_fail_after(
        &self,
        family: &str,
        value: &str,
        service: Option<&str>,
        skip: u32,
    ) -> Result<(), SimError> {
        let e = parse_csta_error(family, value)?;
        let s = service.map(str::to_string);
        self.with_actor(move |a| {
            a.fail_next = Some((e, s));
            a.fail_skip = skip;
        })
        .await
    }

    /// Report a system status (`disabled`, `normal`, …) to every connection in session.
    pub async fn set_system_status(&self, status: &str) {
        let s = SystemStatusValue::parse(status);
        let _ = self.with_actor(move |a| a.set_system_status(s)).await;
        info!(status, "system status changed");
    }

    /// Stop every monitor from the switch side (MonitorStop to the clients).
    pub async fn stop_monitors(&self) -> usize {
        self.with_actor(|a| a.stop_all_monitors())
            .await
            .unwrap_or(0)
    }

    /// Stop the simulator: listeners, connections, the switch task.
    pub async fn shutdown(self) {
        self.inner.cancel.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks"));
        for t in tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    cmd: mpsc::Sender<Cmd>,
    opts: CodecOptions,
    recorder: Option<record::Recorder>,
    cancel: CancellationToken,
    out_queue: usize,
) {
    let mut next_id = 1u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let id = next_id;
        next_id += 1;
        let (tx, rx) = mpsc::channel(out_queue);
        let (kill_tx, kill_rx) = oneshot::channel();
        if cmd
            .send(Cmd::Accepted {
                id,
                peer,
                tx,
                kill: kill_tx,
            })
            .await
            .is_err()
        {
            return;
        }
        let task = conn::ConnTask {
            id,
            peer,
            cmd: cmd.clone(),
            rx,
            kill: kill_rx,
            opts: opts.clone(),
            recorder: recorder.clone(),
            cancel: cancel.clone(),
        };
        tokio::spawn(task.run(stream));
    }
}
