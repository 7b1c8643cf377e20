//! The tokio side of one CSTA link: TCP connect within `connect-tout`, then a [`Session`] fed
//! with what the socket reads, the core's commands and the clock; what the session has to send
//! is written in batches. What one read gives the engine goes to the core in one message (no
//! hop through the manager: the core takes it while this link is the active one); the
//! session's ups and downs go to the link manager. When the session ends, reconnect
//! with backoff (`reconnect-min` doubling to `reconnect-max`, ±20 % jitter, reset after 60 s
//! of connection or when the link was left for a better one), and take the link's settings
//! from the reloaded configuration at each reconnect (docs/configuration.md, `[[link]]`).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::error::LinkError;
use super::session::{Session, SessionEvent};
use super::LinkCmd;
use crate::config::LinkConfig;
use crate::core::CoreMsg;
use crate::metrics::Metrics;
use ctid_engine::Input;

/// Bytes queued for the Connector after which no more commands are taken into the same write.
const WRITE_BATCH: usize = 60_000;

/// How long the last bytes of an ended session may take to be written.
const LAST_WRITE: Duration = Duration::from_secs(1);

/// What a link task receives from the manager: commands for the Connector, and `reset`,
/// which demotes the running session.
pub(super) struct Inbox {
    pub cmds: mpsc::UnboundedReceiver<LinkCmd>,
    pub reset: mpsc::UnboundedReceiver<()>,
}

/// Where a link task's session events go: ups and downs to the manager, engine inputs to the
/// core.
pub(super) struct Outbox {
    pub mgr: mpsc::Sender<(usize, SessionEvent)>,
    pub core: mpsc::Sender<CoreMsg>,
}

/// Run link `index` forever: connect, serve, reconnect. Nothing is written to the Connector
/// while `gate` is closed (a node that is not the pair's primary).
pub(super) async fn run_link(
    index: usize,
    mut cfg: LinkConfig,
    to: Outbox,
    inbox: Inbox,
    metrics: Metrics,
    settings: watch::Receiver<Vec<LinkConfig>>,
    gate: crate::ha::Gate,
) {
    let Inbox {
        mut cmds,
        mut reset,
    } = inbox;
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
        let mut demoted = false;
        match connect(&cfg).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let addr = format!("{}:{}", cfg.host, cfg.port);
                info!(link = %cfg.name, %addr, "connected to the CSTA Connector");
                // Whatever was sent to an earlier session is stale.
                while reset.try_recv().is_ok() {}
                while cmds.try_recv().is_ok() {}
                let session = Session::new(cfg.clone(), metrics.clone(), Instant::now());
                let reason = serve(&gate, index, session, stream, &to, &mut cmds, &mut reset).await;
                demoted = matches!(reason, LinkError::Demoted);
                warn!(link = %cfg.name, %reason, "CSTA link closed");
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = cfg.reconnect_min;
                }
            }
            Err(LinkError::Connect { addr, source }) => {
                warn!(link = %cfg.name, %addr, error = %source, "cannot connect")
            }
            Err(e) => warn!(link = %cfg.name, error = %e, "connect timed out"),
        }
        metrics.reconnects.inc();
        if demoted {
            // Left for a better link, not lost: come back as a standby at once.
            backoff = cfg.reconnect_min;
        }
        tokio::time::sleep(jittered(backoff, clock_nanos())).await;
        backoff = (backoff * 2).min(cfg.reconnect_max);
        // Commands sent while no session exists are dropped (the engine fails them on LinkDown).
        while cmds.try_recv().is_ok() {}
    }
}

async fn connect(cfg: &LinkConfig) -> Result<TcpStream, LinkError> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(LinkError::Connect {
            addr,
            source: std::sync::Arc::new(e),
        }),
        Err(_) => Err(LinkError::ConnectTimeout {
            addr,
            timeout: cfg.connect_timeout,
        }),
    }
}

/// Drive one session on one connection until it ends; its reason.
#[allow(clippy::too_many_arguments)]
async fn serve(
    gate: &crate::ha::Gate,
    index: usize,
    mut session: Session,
    mut stream: TcpStream,
    to: &Outbox,
    cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
    reset: &mut mpsc::UnboundedReceiver<()>,
) -> LinkError {
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let far = Duration::from_secs(3600);
    let mut inputs = Vec::new();
    loop {
        // In the session's order: the inputs before an up or down reach the core first.
        while let Some(ev) = session.poll_event() {
            match ev {
                SessionEvent::Input(i) => inputs.push(i),
                SessionEvent::Resync(r) => inputs.push(Input::Resync {
                    reason: r.to_string(),
                }),
                SessionEvent::Overload(reached) => inputs.push(Input::Overload { reached }),
                ev @ (SessionEvent::Up | SessionEvent::Down(_)) => {
                    send_inputs(to, index, &mut inputs).await;
                    let _ = to.mgr.send((index, ev)).await;
                }
            }
        }
        send_inputs(to, index, &mut inputs).await;
        if let Some(reason) = session.close_reason() {
            let reason = reason.clone();
            // What the session queued last (e.g. the MonitorStops of a demoted session) goes
            // out if the socket takes it soon.
            if let Some(bytes) = session.poll_transmit().filter(|_| gate.is_open()) {
                let _ = tokio::time::timeout(LAST_WRITE, stream.write_all(&bytes)).await;
            }
            return reason;
        }
        if let Some(bytes) = session.poll_transmit() {
            // A node of a pair writes only while it may act as primary (docs/operations.md §13).
            if !gate.is_open() {
                return LinkError::NotPrimary;
            }
            if let Err(e) = stream.write_all(&bytes).await {
                session.close(LinkError::io("write", e));
                continue;
            }
        }
        let wake = session.poll_timeout();
        let sleep = tokio::time::sleep_until(wake.unwrap_or_else(|| Instant::now() + far).into());
        tokio::select! {
            r = stream.read_buf(&mut rbuf) => match r {
                Ok(0) => session.handle_eof(),
                Ok(_) => {
                    session.handle_bytes(Instant::now(), &rbuf);
                    rbuf.clear();
                }
                Err(e) => session.close(LinkError::io("read", e)),
            },
            c = cmds.recv() => {
                let Some(c) = c else {
                    session.close(LinkError::Shutdown);
                    continue;
                };
                command(&mut session, c);
                // Batch whatever else is queued into the same write.
                while session.transmit_len() < WRITE_BATCH {
                    let Ok(c) = cmds.try_recv() else { break };
                    command(&mut session, c);
                }
            }
            Some(()) = reset.recv() => session.demote(),
            _ = sleep, if wake.is_some() => session.handle_timeout(Instant::now()),
        }
    }
}

/// The inputs gathered so far, to the core in one message.
async fn send_inputs(to: &Outbox, index: usize, inputs: &mut Vec<Input>) {
    if !inputs.is_empty() {
        let inputs = std::mem::take(inputs);
        let _ = to
            .core
            .send(CoreMsg::LinkInputs {
                link: index,
                inputs,
            })
            .await;
    }
}

fn command(session: &mut Session, c: LinkCmd) {
    match c {
        LinkCmd::Request { invoke_id, message } => session.send_request(invoke_id, message),
        LinkCmd::Answer { invoke_id, message } => session.send_answer(invoke_id, message),
    }
}

/// Sub-second nanoseconds of the wall clock: the jitter's randomness (no RNG needed for this).
fn clock_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// `backoff` ±20 %, the fraction taken from `nanos`.
fn jittered(backoff: Duration, nanos: u32) -> Duration {
    let jitter = 0.8 + 0.4 * f64::from(nanos % 1000) / 1000.0;
    backoff.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let b = Duration::from_secs(10);
        assert_eq!(jittered(b, 0), Duration::from_secs(8));
        assert_eq!(jittered(b, 500), Duration::from_secs(10));
        for n in [1, 999, 1_000_999, 123_456_789] {
            let j = jittered(b, n);
            assert!(
                j >= Duration::from_secs(8) && j < Duration::from_secs(12),
                "{j:?}"
            );
        }
    }
}
