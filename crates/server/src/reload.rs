//! Configuration reload (SIGHUP, `POST /admin/reload`): re-read the file ctid was started with,
//! validate it, and hand the engine part to the core ([`CoreMsg::Reconfigure`]). An invalid file is
//! rejected and the running configuration stays. The engine monitors added DNs and sends
//! EventUnregistered (with a reason) to clients of removed ones.
//!
//! The connection settings of `[[link]]` (host, port, session, edition, timers) apply at each
//! link's next reconnect (the link tasks read them from a watch channel). What a reload does not
//! change (written in the answer and the log when it differs): `listen`, `max-client-frame`,
//! `client-queue`, `record-inputs`, and the list of links itself (added, removed, renamed). The link options the
//! engine owns (`request-timeout`, `max-outstanding`, `resync-timeout`, `hotdesk.enabled`,
//! `call-rq-gap`, `device-rq-gap`; the active link's) and the top-level call options
//! (`ani-distribution`, `internal-dn-pattern`, `user-data-limit`, `background-processing`)
//! apply at once.

use std::collections::HashSet;
use std::path::PathBuf;

use tokio::sync::{mpsc, Mutex};
use tracing::{info, warn};

use crate::core::CoreMsg;
use crate::metrics::Metrics;
use crate::Config;

/// Re-reads the configuration file on demand.
pub struct Reloader {
    path: Option<PathBuf>,
    core: mpsc::Sender<CoreMsg>,
    /// The link tasks read their settings from here at every (re)connect.
    links: tokio::sync::watch::Sender<Vec<crate::config::LinkConfig>>,
    current: Mutex<Config>,
    metrics: Metrics,
}

/// Why a reload did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// ctid runs without a configuration file (`--demo`, or started from code).
    NoFile,
    /// The new file is invalid; the message names the key (and line).
    Invalid(String),
    /// The core is gone (shutting down).
    Stopped,
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::NoFile => {
                f.write_str("no configuration file to re-read (ctid was started without --config)")
            }
            ReloadError::Invalid(e) => write!(f, "{e}"),
            ReloadError::Stopped => f.write_str("ctid is shutting down"),
        }
    }
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        core: mpsc::Sender<CoreMsg>,
        links: tokio::sync::watch::Sender<Vec<crate::config::LinkConfig>>,
        current: Config,
        metrics: Metrics,
    ) -> Self {
        Reloader {
            path,
            core,
            links,
            current: Mutex::new(current),
            metrics,
        }
    }

    /// Re-read and apply the configuration file; returns a one-line summary.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        let Some(path) = &self.path else {
            self.metrics.reloads_rejected.inc();
            warn!("configuration reload refused: no configuration file");
            return Err(ReloadError::NoFile);
        };
        // One reload at a time.
        let mut cur = self.current.lock().await;
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                self.metrics.reloads_rejected.inc();
                warn!(file = %path.display(), error = %e, "configuration reload rejected; the running configuration stays");
                return Err(ReloadError::Invalid(e));
            }
        };
        let old_dns: HashSet<&str> = cur.engine.dns.iter().map(|d| d.number.as_str()).collect();
        let new_dns: HashSet<&str> = new.engine.dns.iter().map(|d| d.number.as_str()).collect();
        let added = new_dns.difference(&old_dns).count();
        let removed = old_dns.difference(&new_dns).count();
        let mut later = Vec::new();
        if new.listen != cur.listen {
            later.push(format!(
                "listen ({} in the file, {} running)",
                new.listen, cur.listen
            ));
        }
        if new.max_client_frame != cur.max_client_frame {
            later.push("max-client-frame".to_string());
        }
        if new.client_queue != cur.client_queue {
            later.push("client-queue".to_string());
        }
        if new.record_inputs != cur.record_inputs {
            later.push("record-inputs".to_string());
        }
        // Link settings apply at each link's next reconnect when the links are the same ones
        // (same count and names); adding, removing or renaming links needs a restart.
        let mut links_at_reconnect = false;
        if new.links != cur.links {
            let same_links = new.links.len() == cur.links.len()
                && new
                    .links
                    .iter()
                    .zip(&cur.links)
                    .all(|(a, b)| a.name == b.name);
            if same_links {
                links_at_reconnect = true;
                self.links.send_replace(new.links.clone());
            } else {
                later.push("[[link]] list (links added, removed or renamed)".to_string());
            }
        }
        self.core
            .send(CoreMsg::Reconfigure(Box::new(new.engine.clone())))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        self.metrics.reloads_ok.inc();
        let mut summary = format!(
            "reloaded {}: {} DN(s), {added} added, {removed} removed",
            path.display(),
            new.engine.dns.len()
        );
        if links_at_reconnect {
            summary
                .push_str("; [[link]] settings changed: they apply at each link's next reconnect");
        }
        if !later.is_empty() {
            summary.push_str(&format!(
                "; changed, applies at the next restart: {}",
                later.join(", ")
            ));
        }
        info!(file = %path.display(), dns = new.engine.dns.len(), added, removed, restart_needed = %later.join(", "), "configuration reload accepted");
        // Keep the running values of what was not applied, so the next reload reports it again.
        let mut next = new;
        next.listen = cur.listen;
        next.max_client_frame = cur.max_client_frame;
        next.client_queue = cur.client_queue;
        next.record_inputs = cur.record_inputs.clone();
        if !links_at_reconnect {
            next.links = cur.links.clone();
        }
        *cur = next;
        Ok(summary)
    }
}
