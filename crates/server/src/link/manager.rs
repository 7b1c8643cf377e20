//! Several links (docs/configuration.md, `[[link]]`): every configured link runs its own
//! session ([`super::driver`]); the highest-priority operational one is **active** — the engine
//! sees only its inputs, and the core's commands go only to it. Losing the active link moves to
//! the next operational one at once (the engine sees LinkDown then LinkUp and resyncs; client
//! registrations stay); a `messagesLost` of the active link is `Input::Resync` (same session,
//! no link events), `overloadReached` / `overloadRelieved` `Input::Overload`. When a
//! higher-priority link becomes operational again, ctid moves back to it and demotes the link it leaves (its session ends after stopping its monitors), so that
//! link holds no monitors. The `ctid_link_up` gauge follows the active link.

use ctid_engine::Input;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::driver::run_link;
use super::session::SessionEvent;
use super::LinkCmd;
use crate::config::LinkConfig;
use crate::core::CoreMsg;
use crate::metrics::Metrics;

/// Run every configured link forever (`links` sorted by priority, best first); the best
/// operational one carries the traffic. `settings` carries the links' settings after a reload
/// (each link takes its own at its next reconnect).
pub async fn run_links(
    links: Vec<LinkConfig>,
    core: mpsc::Sender<CoreMsg>,
    mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
    metrics: Metrics,
    settings: watch::Receiver<Vec<LinkConfig>>,
    gate: crate::ha::Gate,
) {
    let (event_tx, mut events) = mpsc::channel::<(usize, SessionEvent)>(65_536);
    let mut to_link = Vec::new();
    let mut resets = Vec::new();
    let mut tasks = Vec::new();
    for (i, cfg) in links.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reset_tx, reset_rx) = mpsc::unbounded_channel();
        to_link.push(tx);
        resets.push(reset_tx);
        tasks.push(tokio::spawn(run_link(
            i,
            cfg.clone(),
            super::driver::Outbox {
                mgr: event_tx.clone(),
                core: core.clone(),
            },
            super::driver::Inbox {
                cmds: rx,
                reset: reset_rx,
            },
            metrics.clone(),
            settings.clone(),
            gate.clone(),
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
    // The core takes the drivers' inputs only from the active link (none yet).
    let _ = core.send(CoreMsg::LinkActive(None)).await;
    loop {
        tokio::select! {
            biased;
            e = events.recv() => {
                let Some((i, e)) = e else { return };
                match e {
                    SessionEvent::Up => {
                        up[i] = true;
                        match active {
                            None => {}
                            Some(a) if i < a => {
                                info!(link = %links[i].name, from = %links[a].name, "a link with higher priority is operational; switching back");
                                let reason = format!("switching to link {} with higher priority", links[i].name);
                                let _ = core.send(CoreMsg::LinkActive(None)).await;
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
                        select(i, &links[i], &core, &metrics).await;
                    }
                    SessionEvent::Down(reason) => {
                        up[i] = false;
                        if active != Some(i) {
                            continue;
                        }
                        active = up.iter().position(|u| *u);
                        let reason = match active {
                            Some(n) => format!("{reason}; switching to link {}", links[n].name),
                            None => reason.to_string(),
                        };
                        metrics.link_up(false);
                        let _ = core.send(CoreMsg::LinkActive(None)).await;
                        let _ = core.send(CoreMsg::Link(Input::LinkDown { reason })).await;
                        if let Some(n) = active {
                            select(n, &links[n], &core, &metrics).await;
                        }
                    }
                    // A driver sends its inputs (resyncs and overloads among them) to the core
                    // itself, which takes them from the active link only.
                    SessionEvent::Input(_) | SessionEvent::Resync(_) | SessionEvent::Overload(_) => {
                        debug!(link = %links[i].name, "an input sent to the link manager dropped");
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
async fn select(index: usize, link: &LinkConfig, core: &mpsc::Sender<CoreMsg>, metrics: &Metrics) {
    info!(link = %link.name, priority = link.priority, edition = %link.edition, "CTI link {} with priority {} is selected", link.name, link.priority);
    metrics.link_up(true);
    let _ = core.send(CoreMsg::LinkActive(Some(index))).await;
    let _ = core
        .send(CoreMsg::Link(Input::LinkUp {
            name: link.name.clone(),
            priority: Some(link.priority),
            edition: Some(link.edition.to_string()),
        }))
        .await;
}
