//! The link phase as clients see it: down, syncing (re-monitoring and catching up after the
//! link came up, bounded by `resync-timeout`), or up (EventLinkConnected sent). It holds the
//! requests the resync waits for and builds EventLinkConnected / EventLinkDisconnected
//! (`docs/architecture.md`, "The link phase"; `docs/protocol.md`, §6.1).

use std::collections::BTreeSet;

use ctid_protocol::{ErrorCode, Event, EventName, KvList};
use serde::{Deserialize, Serialize};

use crate::io::Tag;

/// Link state as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LinkState {
    /// No operational link.
    #[default]
    Down,
    /// Link up; re-monitoring and resync running (switch requests still get 54).
    Syncing { deadline_ms: u64 },
    /// Operational; EventLinkConnected sent.
    Up,
}

impl LinkState {
    /// `down`, `syncing` or `up` (logs, `/readyz`, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Syncing { .. } => "syncing",
            LinkState::Up => "up",
        }
    }
}

/// The link phase and the resync in progress.
#[derive(Debug, Serialize, Deserialize)]
pub struct LinkPhase {
    pub state: LinkState,
    /// The name of the link in use (EventLinkConnected's ApplicationName / LinkName).
    pub name: String,
    /// Its configured priority and CSTA edition (EventLinkConnected's LinkPriority, Edition).
    priority: Option<i64>,
    edition: Option<String>,
    /// Requests the resync waits for before EventLinkConnected.
    sync: BTreeSet<Tag>,
    /// DNs re-monitored by a resync on the same session while up (`messagesLost`): the first
    /// answer to their MonitorStart starts a catch-up (differences reported as events).
    catch_up: BTreeSet<String>,
}

impl Default for LinkPhase {
    fn default() -> Self {
        LinkPhase {
            state: LinkState::Down,
            name: String::new(),
            priority: None,
            edition: None,
            sync: BTreeSet::new(),
            catch_up: BTreeSet::new(),
        }
    }
}

impl LinkPhase {
    /// A CSTA request can be sent (syncing or up).
    pub fn usable(&self) -> bool {
        !matches!(self.state, LinkState::Down)
    }

    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// The link `name` came up: syncing until `deadline_ms`.
    pub fn syncing(
        &mut self,
        name: String,
        priority: Option<i64>,
        edition: Option<String>,
        deadline_ms: u64,
    ) {
        self.name = name;
        self.priority = priority;
        self.edition = edition;
        self.state = LinkState::Syncing { deadline_ms };
    }

    /// The resync waits for this request.
    pub fn wait_for(&mut self, tag: Tag) {
        self.sync.insert(tag);
    }

    /// This request is answered (or gone).
    pub fn done(&mut self, tag: Tag) {
        self.sync.remove(&tag);
    }

    /// Requests the resync still waits for.
    pub fn waiting(&self) -> usize {
        self.sync.len()
    }

    /// Syncing, and nothing left to wait for.
    pub fn sync_complete(&self) -> bool {
        matches!(self.state, LinkState::Syncing { .. }) && self.sync.is_empty()
    }

    /// Syncing past the deadline.
    pub fn sync_overdue(&self, now_ms: u64) -> bool {
        matches!(self.state, LinkState::Syncing { deadline_ms } if deadline_ms <= now_ms)
    }

    /// The resync deadline, while syncing.
    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            LinkState::Syncing { deadline_ms } => Some(deadline_ms),
            _ => None,
        }
    }

    /// `dn` is re-monitored by a resync on the same session.
    pub fn catch_up(&mut self, dn: &str) {
        self.catch_up.insert(dn.to_string());
    }

    /// Was `dn` re-monitored by a resync on the same session (forgotten once asked)?
    pub fn caught_up(&mut self, dn: &str) -> bool {
        self.catch_up.remove(dn)
    }

    /// Operational.
    pub fn up(&mut self) {
        self.sync.clear();
        self.state = LinkState::Up;
    }

    /// Lost; returns the state it had.
    pub fn down(&mut self) -> LinkState {
        self.sync.clear();
        self.catch_up.clear();
        std::mem::replace(&mut self.state, LinkState::Down)
    }

    /// EventLinkConnected (with the link's name, priority and edition), or
    /// EventLinkDisconnected with 54 and `reason` (the name only).
    pub fn event(&self, up: bool, reason: Option<&str>) -> Event {
        let mut ev = Event::new(if up {
            EventName::EventLinkConnected
        } else {
            EventName::EventLinkDisconnected
        });
        if !self.name.is_empty() {
            ev.application_name = Some(self.name.clone());
            let mut k = KvList::new();
            k.insert_str("LinkName", self.name.clone());
            if up {
                if let Some(p) = self.priority {
                    k.insert_int("LinkPriority", p);
                }
                if let Some(e) = &self.edition {
                    k.insert_str("Edition", e.clone());
                }
            }
            ev.extensions = Some(k);
        }
        if !up {
            ev.error_code = Some(ErrorCode::NO_SWITCH);
            ev.error_message = Some(
                reason
                    .unwrap_or("no link to the CSTA Connector")
                    .to_string(),
            );
        }
        ev
    }
}
