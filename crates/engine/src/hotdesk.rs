//! Hot desking: the association table (guest → host, with the reverse index, the implied
//! changes when the switch moves a guest or takes a host, duplicate detection), the private
//! services 1 (initiate) and 2 (cancel) with their queue per guest, the hot-desking query at
//! (re-)monitoring, PrivateEvent 1/2 from the switch, and the agent-login hot desk (a guest's
//! calls shown on its host) (`docs/protocol.md`, §6.7–6.8).
//!
//! The part decides; the orchestrator sends: methods here return the Escape to send, the changes
//! to announce (EventPrivateInfo 1 / 2) and the next queued request.

use std::collections::{BTreeMap, VecDeque};

use ctid_csta::{CstaError, Escape, HotDesk as Dialect, Message, OperationError};
use ctid_protocol::{AddressType, ErrorCode, Request};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::agents::Agents;
use crate::io::{ClientId, Tag};
use crate::outbox::Refusal;

/// The hot-desking private services and events (PrivateMsgID): 1 initiates (or announces) an
/// association, 2 cancels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivateService {
    Initiate = 1,
    Cancel = 2,
}

impl PrivateService {
    /// The service of a PrivateMsgID.
    pub fn from_id(id: u32) -> Option<PrivateService> {
        match id {
            1 => Some(PrivateService::Initiate),
            2 => Some(PrivateService::Cancel),
            _ => None,
        }
    }

    /// The PrivateMsgID.
    pub fn id(self) -> u32 {
        self as u32
    }
}

/// One change to report as EventPrivateInfo 1 (established) or 2 (cancelled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub established: bool,
    pub guest: String,
    pub host: String,
    /// Implied by another change, not reported by the switch itself.
    pub synthesized: bool,
}

impl Change {
    /// The PrivateMsgID: 1 established, 2 cancelled.
    pub fn msg_id(&self) -> u32 {
        if self.established {
            PrivateService::Initiate.id()
        } else {
            PrivateService::Cancel.id()
        }
    }
}

/// The association table: guest → host, at most one host per guest and one guest per host; never both roles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HotDeskTable {
    by_guest: BTreeMap<String, String>,
    by_host: BTreeMap<String, String>,
}

impl HotDeskTable {
    /// The host of a guest.
    pub fn host_of(&self, guest: &str) -> Option<&str> {
        self.by_guest.get(guest).map(String::as_str)
    }
    /// The guest of a host.
    pub fn guest_of(&self, host: &str) -> Option<&str> {
        self.by_host.get(host).map(String::as_str)
    }
    /// Is this DN a guest or a host of a pair?
    pub fn involves(&self, dn: &str) -> bool {
        self.by_guest.contains_key(dn) || self.by_host.contains_key(dn)
    }
    /// The two directions agree (a restored snapshot's check).
    pub(crate) fn check(&self) -> Result<(), String> {
        let agree = self.by_guest.len() == self.by_host.len()
            && self
                .by_guest
                .iter()
                .all(|(g, h)| self.by_host.get(h) == Some(g));
        if agree {
            Ok(())
        } else {
            Err("the hot-desk table's guest and host indexes disagree".into())
        }
    }
    /// Every pair (guest, host).
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.by_guest
            .iter()
            .map(|(g, h)| (g.clone(), h.clone()))
            .collect()
    }
    /// Remove a guest's pair without reporting.
    pub fn remove_guest(&mut self, guest: &str) -> Option<String> {
        let h = self.by_guest.remove(guest)?;
        self.by_host.remove(&h);
        Some(h)
    }

    fn insert(&mut self, guest: &str, host: &str) {
        self.by_guest.insert(guest.to_string(), host.to_string());
        self.by_host.insert(host.to_string(), guest.to_string());
    }

    /// The switch says `guest` now uses `host`. Returns the changes to report, implied ones
    /// first and the main one last; empty when the table already says so (a duplicate).
    pub fn apply_established(&mut self, guest: &str, host: &str) -> Vec<Change> {
        if self.host_of(guest) == Some(host) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let implied = |g: &str, h: &str| Change {
            established: false,
            guest: g.to_string(),
            host: h.to_string(),
            synthesized: true,
        };
        if let Some(old) = self.remove_guest(guest) {
            out.push(implied(guest, &old));
        }
        if let Some(g1) = self.by_host.get(host).cloned() {
            self.remove_guest(&g1);
            out.push(implied(&g1, host));
        }
        // A DN is never guest and host at once.
        if let Some(g2) = self.by_host.get(guest).cloned() {
            self.remove_guest(&g2);
            out.push(implied(&g2, guest));
        }
        if let Some(h2) = self.by_guest.get(host).cloned() {
            self.remove_guest(host);
            out.push(implied(host, &h2));
        }
        self.insert(guest, host);
        out.push(Change {
            established: true,
            guest: guest.to_string(),
            host: host.to_string(),
            synthesized: false,
        });
        out
    }

    /// The switch says `guest`'s association ended (with `host`, if it says). Returns the change
    /// to report (OtherDN = the host the guest had), or nothing when the guest had none.
    pub fn apply_cancelled(&mut self, guest: &str, host: Option<&str>) -> Vec<Change> {
        let _ = host;
        match self.remove_guest(guest) {
            Some(old) => vec![Change {
                established: false,
                guest: guest.to_string(),
                host: old,
                synthesized: false,
            }],
            None => Vec::new(),
        }
    }
}

/// A private service in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HdService {
    pub client: ClientId,
    #[serde(with = "crate::snapshot::with::request")]
    pub request: Request,
    pub guest: String,
    /// Service 1: the requested host. Service 2: the former host as far as we know.
    pub host: Option<String>,
    pub service: PrivateService,
    /// A matching PrivateEvent arrived before the answer: its change was applied to the table
    /// and is held here, not yet announced.
    pub held: Option<Change>,
}

/// How a private service request goes on.
#[derive(Debug)]
pub enum ServiceStep {
    /// Another service for the guest is in flight: queued behind it.
    Queued,
    /// Send this Escape; the answer goes to the service.
    Send(Box<Message>, Box<HdService>),
}

/// How a private service ended.
#[derive(Debug)]
pub enum Outcome {
    Ok,
    Failed {
        code: ErrorCode,
        text: String,
        csta: Option<CstaError>,
    },
}

/// The hot-desking part.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HotDesk {
    pub table: HotDeskTable,
    /// The Connector speaks the dialect (and `hotdesk.enabled`).
    pub supported: bool,
    /// Guest → tag of its private service in flight; others wait in `waiting`.
    busy: BTreeMap<String, Tag>,
    #[serde(with = "crate::snapshot::with::queued_by_dn")]
    waiting: BTreeMap<String, VecDeque<(ClientId, Request)>>,
    /// DN → tag of its hot-desking query in flight.
    queries: BTreeMap<String, Tag>,
    /// PrivateEvents that changed nothing.
    pub duplicate_events: u64,
}

fn escape(hd: Dialect) -> Message {
    Message::Escape(Escape {
        escape_register_id: None,
        private_data: Some(hd.into_private_data()),
        extensions: None,
    })
}

impl HotDesk {
    pub fn new(enabled: bool) -> Self {
        HotDesk {
            supported: enabled,
            ..Default::default()
        }
    }

    /// A reloaded configuration's `hotdesk.enabled` (was `before`).
    pub fn reconfigure(&mut self, before: bool, enabled: bool) {
        self.supported = self.supported && enabled;
        if enabled && !before {
            self.supported = true;
        }
    }

    /// Is this DN part of a pair, or being queried? (Then it is not forgotten.)
    pub fn refers_to(&self, dn: &str) -> bool {
        self.table.involves(dn) || self.queries.contains_key(dn)
    }

    /// A hot-desking query for `dn` is in flight.
    pub fn querying(&self, dn: &str) -> bool {
        self.queries.contains_key(dn)
    }

    // ------------------------------------------------------------------------ the query

    /// The query of `dn`'s association (at monitoring).
    pub fn query(dn: &str) -> Message {
        escape(Dialect::query_guest(dn))
    }

    pub fn query_sent(&mut self, dn: &str, tag: Tag) {
        self.queries.insert(dn.to_string(), tag);
    }

    /// The query of `dn` ended without an answer (timeout).
    pub fn query_gone(&mut self, dn: &str) {
        self.queries.remove(dn);
    }

    /// The query's answer: the table follows it; the changes are returned (to announce when the
    /// query was part of a resync).
    pub fn query_answer(&mut self, dn: &str, msg: Result<Message, String>) -> Vec<Change> {
        self.queries.remove(dn);
        match msg {
            Ok(Message::EscapeResponse(r)) => {
                let pair = match r.private_data().and_then(|p| p.hotdesk()) {
                    Some(Dialect::Extension {
                        guest: Some(g),
                        host: Some(h),
                        ..
                    }) if g == dn => Some(h.clone()),
                    Some(Dialect::Extension { .. }) => None,
                    _ => {
                        warn!(%dn, "hot-desking query answer without the dialect's data");
                        None
                    }
                };
                match pair {
                    Some(h) => self.table.apply_established(dn, &h),
                    None => self.table.apply_cancelled(dn, None),
                }
            }
            Ok(Message::CstaErrorCode(e)) => {
                if crate::errors::is_dialect_unsupported(&e.error) {
                    if self.supported {
                        warn!(error = %e.error, "the Connector does not support hot desking; disabling it on this link");
                    }
                    self.supported = false;
                } else {
                    warn!(%dn, error = %e.error, "hot-desking query failed");
                }
                Vec::new()
            }
            Ok(other) => {
                warn!(%dn, answer = other.name(), "unexpected answer to the hot-desking query");
                Vec::new()
            }
            Err(reason) => {
                warn!(%dn, %reason, "malformed answer to the hot-desking query");
                Vec::new()
            }
        }
    }

    // ------------------------------------------------------------------------ private services

    /// The checks before the guard: PrivateMsgID present (53), 1 or 2 (51), hot desking
    /// available (51).
    pub fn precheck(&self, req: &Request) -> Result<PrivateService, Refusal> {
        let Some(id) = req.private_msg_id else {
            return Err((ErrorCode::INVALID_ATTR, "PrivateMsgID missing".into()));
        };
        let Some(id) = PrivateService::from_id(id) else {
            return Err((
                ErrorCode::UNSUP_OPER,
                format!("PrivateMsgID {id} is not supported"),
            ));
        };
        if !self.supported {
            return Err((ErrorCode::UNSUP_OPER, "hot desking not available".into()));
        }
        Ok(id)
    }

    /// Private service `id` for guest `guest` (guarded: registered, not ModeMonitor) of type
    /// `dn_type`.
    pub fn service(
        &mut self,
        client: ClientId,
        req: Request,
        id: PrivateService,
        guest: String,
        dn_type: Option<AddressType>,
    ) -> Result<ServiceStep, Refusal> {
        if dn_type != Some(AddressType::Dn) {
            return Err((ErrorCode::INVALID_ATTR, "ThisDN is not an Extension".into()));
        }
        let host = if id == PrivateService::Initiate {
            let h = match req
                .extensions
                .as_ref()
                .map(|e| (e.get_str("HOST_DN"), e.get("HOST_DN")))
            {
                Some((Some(h), _)) => h.to_string(),
                Some((None, Some(_))) => {
                    return Err((ErrorCode::INVALID_ATTR, "HOST_DN must be a string".into()));
                }
                _ => return Err((ErrorCode::INVALID_ATTR, "HOST_DN missing".into())),
            };
            if h.is_empty() || !ctid_protocol::is_valid_dn(&h) {
                return Err((
                    ErrorCode::INVALID_ATTR,
                    format!("HOST_DN {h:?} is not a valid DN"),
                ));
            }
            if h == guest {
                return Err((ErrorCode::INVALID_ATTR, "HOST_DN equals ThisDN".into()));
            }
            Some(h)
        } else {
            self.table.host_of(&guest).map(str::to_string)
        };
        if self.busy.contains_key(&guest) {
            self.waiting
                .entry(guest)
                .or_default()
                .push_back((client, req));
            return Ok(ServiceStep::Queued);
        }
        let hd = match &host {
            Some(h) if id == PrivateService::Initiate => Dialect::associate(&guest, h),
            _ => Dialect::cancel(&guest),
        };
        let svc = HdService {
            client,
            request: req,
            guest,
            host,
            service: id,
            held: None,
        };
        Ok(ServiceStep::Send(Box::new(escape(hd)), Box::new(svc)))
    }

    /// The service of `guest` was queued as `tag`.
    pub fn service_sent(&mut self, guest: &str, tag: Tag) {
        self.busy.insert(guest.to_string(), tag);
    }

    /// The tag of the service in flight for `guest`.
    pub fn in_flight(&self, guest: &str) -> Option<Tag> {
        self.busy.get(guest).copied()
    }

    /// The Connector's answer to a service.
    pub fn service_answer(&mut self, s: &HdService, msg: Result<Message, String>) -> Outcome {
        match msg {
            Ok(Message::EscapeResponse(_)) => Outcome::Ok,
            Ok(Message::CstaErrorCode(e)) => {
                if crate::errors::is_dialect_unsupported(&e.error) {
                    warn!(error = %e.error, "the Connector does not support hot desking; disabling it");
                    self.supported = false;
                    return Outcome::Failed {
                        code: ErrorCode::UNSUP_OPER,
                        text: "hot desking not available".into(),
                        csta: None,
                    };
                }
                let text = match (&e.error, s.service) {
                    (CstaError::StateIncompatibility(_), PrivateService::Initiate) => {
                        format!("hot desking: guest {} is already associated", s.guest)
                    }
                    (CstaError::StateIncompatibility(_), _) => {
                        format!("hot desking: guest {} is not associated", s.guest)
                    }
                    (CstaError::Operation(OperationError::InvalidDeviceID), _) => {
                        "hot desking: unknown device".to_string()
                    }
                    (CstaError::SystemResourceAvailability(_), _) => format!(
                        "hot desking: host {} is in use by another guest",
                        s.host.as_deref().unwrap_or("")
                    ),
                    (err, _) => format!("hot desking refused by the Connector: {err}"),
                };
                Outcome::Failed {
                    code: ErrorCode(0),
                    text,
                    csta: Some(e.error),
                }
            }
            Ok(other) => Outcome::Failed {
                code: ErrorCode::CSTA_RESULT_UNEXPECTED,
                text: format!(
                    "unexpected answer {} to the hot-desking service",
                    other.name()
                ),
                csta: None,
            },
            Err(reason) => Outcome::Failed {
                code: ErrorCode::CSTA_BADLY_STRUCTURED,
                text: format!("malformed answer from the Connector: {reason}"),
                csta: None,
            },
        }
    }

    /// A service succeeded: the table follows it (unless a PrivateEvent already did). Returns
    /// the implied changes to announce first, and the main change (`None`: already so).
    pub fn service_applied(&mut self, s: &HdService) -> (Vec<Change>, Option<Change>) {
        if let Some(c) = s.held.clone() {
            return (Vec::new(), Some(c));
        }
        let mut changes = if s.service == PrivateService::Initiate {
            self.table
                .apply_established(&s.guest, s.host.as_deref().unwrap_or(""))
        } else {
            self.table.apply_cancelled(&s.guest, s.host.as_deref())
        };
        let main = changes.pop();
        (changes, main)
    }

    /// The service of `guest` is over: the next queued request for it, if any.
    pub fn service_done(&mut self, guest: &str) -> Option<(ClientId, Request)> {
        self.busy.remove(guest);
        let next = self.waiting.get_mut(guest).and_then(|q| q.pop_front());
        if self.waiting.get(guest).is_some_and(|q| q.is_empty()) {
            self.waiting.remove(guest);
        }
        next
    }

    // ------------------------------------------------------------------------ switch events

    /// PrivateEvent 1 (established) or 2 (cancelled) from the switch. `in_flight`: the service
    /// for this guest waiting for its answer; a matching event is held there (announced with
    /// the answer). Returns the changes to announce now.
    pub fn event(
        &mut self,
        established: bool,
        guest: &str,
        host: &str,
        in_flight: Option<&mut HdService>,
    ) -> Vec<Change> {
        if let Some(s) = in_flight {
            let matches = s.held.is_none()
                && if s.service == PrivateService::Initiate {
                    established && s.host.as_deref() == Some(host)
                } else {
                    !established
                };
            if matches {
                let mut changes = if established {
                    self.table.apply_established(guest, host)
                } else {
                    self.table.apply_cancelled(guest, Some(host))
                };
                let main = changes.pop();
                s.held = Some(main.unwrap_or(Change {
                    established,
                    guest: guest.to_string(),
                    host: host.to_string(),
                    synthesized: false,
                }));
                return changes;
            }
        }
        let changes = if established {
            self.table.apply_established(guest, host)
        } else {
            self.table.apply_cancelled(guest, Some(host))
        };
        if changes.is_empty() {
            self.duplicate_events += 1;
            debug!(%guest, %host, established, "duplicate hot-desking event");
        }
        changes
    }

    // ------------------------------------------------------------------------ agent-login hot desk

    /// Is `guest` an agent-login guest: associated with a host where it is the logged-in agent?
    /// Then its calls are shown on the host.
    pub fn agent_login_linked(&self, guest: &str, agents: &Agents) -> bool {
        self.table
            .host_of(guest)
            .is_some_and(|h| agents.on(h).is_some_and(|a| a.agent_id == guest))
    }

    /// The agent-login guest whose calls `host` shows, if any: the desk's requests on those
    /// calls act on the guest's connection.
    pub fn agent_login_guest(&self, host: &str, agents: &Agents) -> Option<&str> {
        self.table
            .guest_of(host)
            .filter(|g| self.agent_login_linked(g, agents))
    }

    // ------------------------------------------------------------------------ life cycle

    /// Every client number a queued private service holds, to `f` (the one in flight is in
    /// the request window).
    pub(crate) fn client_ids(&self, f: &mut dyn FnMut(ClientId)) {
        for q in self.waiting.values() {
            q.iter().for_each(|(c, _)| f(*c));
        }
    }

    /// A client left: its queued requests go.
    pub fn client_gone(&mut self, client: ClientId) {
        for q in self.waiting.values_mut() {
            q.retain(|(c, _)| *c != client);
        }
    }

    /// The link is gone: no query is in flight any more.
    pub fn forget_queries(&mut self) {
        self.queries.clear();
    }

    /// The link is gone (after the services in flight were failed): the queued requests are
    /// returned (each gets 54).
    pub fn link_lost(&mut self) -> Vec<(ClientId, Request)> {
        self.busy.clear();
        std::mem::take(&mut self.waiting)
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_and_takeover_are_reported_as_implied_cancels() {
        let mut t = HotDeskTable::default();
        assert_eq!(t.apply_established("2001", "1001").len(), 1);
        assert!(t.apply_established("2001", "1001").is_empty(), "duplicate");
        // guest moves to another host
        let c = t.apply_established("2001", "1002");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].established, c[0].host.as_str(), c[0].synthesized),
            (false, "1001", true)
        );
        assert_eq!(t.host_of("2001"), Some("1002"));
        assert_eq!(t.guest_of("1001"), None);
        // another guest takes the host
        let c = t.apply_established("2002", "1002");
        assert_eq!(c[0].guest, "2001");
        assert_eq!(t.host_of("2001"), None);
        assert_eq!(t.apply_cancelled("2002", Some("1002")).len(), 1);
        assert!(t.apply_cancelled("2002", None).is_empty());
        assert!(t.pairs().is_empty());
    }
}
