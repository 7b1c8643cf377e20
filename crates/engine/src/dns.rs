//! DNs and monitors: the DN table (configured and on-demand DNs, their type and Register flag),
//! client registrations with their modes, the switch monitor of each DN (off, starting, active
//! with its monitorCrossRefID) and the cross-reference index, and the registrations waiting for
//! the first switch-level registration to finish (`docs/protocol.md`, §6.3;
//! `docs/architecture.md`, "DNs and monitors").
//!
//! The table decides; the orchestrator sends: a method here says what to send (a MonitorStart,
//! a MonitorStop) and the orchestrator queues it in the request window.
//!
//! Monitor retries (`docs/protocol.md`, "Monitor retries"): a DN that is still wanted after its
//! MonitorStart failed (refused, timed out, a bad answer) is tried again after a backoff of
//! 1 s, doubling with each failure up to 60 s. A monitor the Connector stops is started again at
//! once the first time, then after the same backoff, so a Connector that keeps stopping it does
//! not get a tight loop. The count goes back to zero when a monitor has stayed up for 60 s (seen
//! when it is next stopped) and when the link goes down. The time of the next retry is state
//! here ([`Dns::next_retry`]); the orchestrator reports it through `poll_timeout` and starts the
//! due ones on Tick ([`Dns::due_retries`]).

use std::collections::{BTreeMap, BTreeSet};

use ctid_csta::{Message, MonitorObject, MonitorStart, MonitorStop, MonitorType};
use ctid_protocol::{AddressType, ControlMode, ErrorCode, RegisterMode, Request};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::config::{EngineConfig, RegisterFlag};
use crate::det::Map;
use crate::io::{ClientId, Tag};
use crate::outbox::Refusal;

/// One client's registration of a DN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reg {
    pub mode: RegisterMode,
    pub control: ControlMode,
}

/// The first retry delay of a monitor (ms).
pub const RETRY_FIRST_MS: u64 = 1_000;
/// The longest retry delay of a monitor (ms); a monitor up this long resets the count.
pub const RETRY_MAX_MS: u64 = 60_000;

/// The backoff before retry number `attempt` (1-based): 1 s, 2 s, 4 s, … 60 s.
pub fn backoff_ms(attempt: u32) -> u64 {
    let shift = attempt.saturating_sub(1).min(16);
    (RETRY_FIRST_MS << shift).min(RETRY_MAX_MS)
}

/// Is this CSTA error the switch saying the device does not exist (no retry helps the
/// registrations)?
pub fn device_gone(e: &ctid_csta::CstaError) -> bool {
    matches!(e, ctid_csta::CstaError::Operation(v)
        if matches!(v.as_str(), "invalidDeviceID" | "invalidMonitorObject"))
}

/// The retry state of a DN's monitor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Failures (and Connector stops) since the count was last reset.
    pub attempts: u32,
    /// When the next MonitorStart is due (monotonic ms), if one is scheduled.
    pub at: Option<u64>,
    /// When the monitor last became active (monotonic ms).
    pub active_since: Option<u64>,
}

/// The switch monitor of a DN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Monitor {
    Off,
    Starting { tag: Tag },
    Active { xref: String },
}

/// A DN ctid knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dn {
    pub number: String,
    pub dn_type: AddressType,
    pub configured: bool,
    pub register: RegisterFlag,
    pub regs: BTreeMap<ClientId, Reg>,
    pub monitor: Monitor,
    /// Registrations waiting for the switch-level registration to finish.
    #[serde(with = "crate::snapshot::with::client_requests")]
    pub waiters: Vec<(ClientId, Request)>,
    /// Monitored for ctid's own use: the guest of an agent-login hot desk
    /// (`docs/protocol.md`, §9.2).
    pub internal: bool,
    /// Monitor retries (see the module documentation).
    pub retry: Retry,
}

impl Dn {
    /// A DN from the configuration.
    pub fn configured(number: &str, dn_type: AddressType, register: RegisterFlag) -> Self {
        Dn {
            number: number.to_string(),
            dn_type,
            configured: true,
            register,
            regs: BTreeMap::new(),
            monitor: Monitor::Off,
            waiters: Vec::new(),
            internal: false,
            retry: Retry::default(),
        }
    }

    /// A DN a client registered without configuration (monitored on demand).
    pub fn unconfigured(number: &str, dn_type: AddressType) -> Self {
        Dn {
            configured: false,
            ..Dn::configured(number, dn_type, RegisterFlag::OnDemand)
        }
    }

    /// Does anything need this DN monitored at the switch (`docs/configuration.md`, `register`)?
    pub fn wants_monitor(&self) -> bool {
        self.register == RegisterFlag::True
            || self.internal
            || self.regs.values().any(|r| match r.control {
                ControlMode::Local => false,
                ControlMode::Force => true,
                ControlMode::Default => self.register != RegisterFlag::False,
            })
    }

    pub fn is_active(&self) -> bool {
        matches!(self.monitor, Monitor::Active { .. })
    }
}

/// What a DN's monitor needs after a change of who wants it.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorChange {
    None,
    /// Send MonitorStart.
    Start,
    /// Send this MonitorStop (the monitor is already forgotten here).
    Stop(Box<Message>),
}

/// How a registration goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Answer EventRegistered now.
    Done,
    /// Answered when the switch-level registration finishes; `start`: send MonitorStart.
    Waiting { start: bool },
}

/// The DN table.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(with = "crate::snapshot::with::sorted")]
    map: Map<String, Dn>,
    /// monitorCrossRefID → DN.
    #[serde(with = "crate::snapshot::with::sorted")]
    xref: Map<String, String>,
    /// Events for a monitorCrossRefID ctid does not hold (dropped).
    pub unknown_cross_ref: u64,
    /// Scheduled monitor retries: (due time, DN), mirrored by each DN's `retry.at`.
    retries: BTreeSet<(u64, String)>,
    /// `internal-dn-pattern`.
    #[serde(with = "crate::snapshot::with::pattern")]
    internal_pattern: crate::config::DnPattern,
    /// The event export is on: [`crate::io::EXPORT`] is a registrant of every DN.
    export: bool,
}

impl Dns {
    /// The configured DNs.
    pub fn new(cfg: &EngineConfig) -> Self {
        let mut t = Dns {
            internal_pattern: cfg.internal_dn_pattern.clone(),
            export: cfg.export_events,
            ..Dns::default()
        };
        for d in &cfg.dns {
            t.map.insert(
                d.number.clone(),
                Dn::configured(&d.number, d.dn_type, d.register),
            );
        }
        t
    }

    /// Is `number` internal: in the DN table, or matching `internal-dn-pattern`
    /// (`docs/call-model.md`, call type)?
    pub fn is_internal(&self, number: &str) -> bool {
        self.map.contains_key(number) || self.internal_pattern.matches(number)
    }

    /// A new `internal-dn-pattern` (reload).
    pub fn set_internal_pattern(&mut self, p: crate::config::DnPattern) {
        self.internal_pattern = p;
    }

    pub fn get(&self, dn: &str) -> Option<&Dn> {
        self.map.get(dn)
    }

    pub fn get_mut(&mut self, dn: &str) -> Option<&mut Dn> {
        self.map.get_mut(dn)
    }

    pub fn contains(&self, dn: &str) -> bool {
        self.map.contains_key(dn)
    }

    pub fn insert(&mut self, d: Dn) {
        self.map.insert(d.number.clone(), d);
    }

    pub fn remove(&mut self, dn: &str) -> Option<Dn> {
        self.unschedule(dn);
        self.map.remove(dn)
    }

    /// Every DN, by number.
    pub fn iter(&self) -> impl Iterator<Item = &Dn> {
        let mut v: Vec<&Dn> = self.map.values().collect();
        v.sort_unstable_by(|a, b| a.number.cmp(&b.number));
        v.into_iter()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of DNs with an active switch monitor.
    pub fn monitored_count(&self) -> usize {
        self.xref.len()
    }

    pub fn is_monitored(&self, dn: &str) -> bool {
        self.map.get(dn).is_some_and(Dn::is_active)
    }

    pub fn dn_type(&self, dn: &str) -> Option<AddressType> {
        self.map.get(dn).map(|d| d.dn_type)
    }

    /// The clients registered on any of `dns`, each once, in order.
    /// With the event export on, [`crate::io::EXPORT`] (last) for every DN ctid knows.
    pub fn registrants(&self, dns: &[&str]) -> Vec<ClientId> {
        let mut v = std::collections::BTreeSet::new();
        let mut known = false;
        for d in dns {
            if let Some(dn) = self.map.get(*d) {
                known = true;
                v.extend(dn.regs.keys().copied());
            }
        }
        if self.export && known {
            v.insert(crate::io::EXPORT);
        }
        v.into_iter().collect()
    }

    /// Every client number a registration or a waiting registration holds, to `f`.
    pub(crate) fn client_ids(&self, f: &mut dyn FnMut(ClientId)) {
        for d in self.map.values() {
            d.regs.keys().for_each(|c| f(*c));
            d.waiters.iter().for_each(|(c, _)| f(*c));
        }
    }

    /// The registration mode of `client` on `dn`.
    pub fn mode_of(&self, dn: &str, client: ClientId) -> Option<RegisterMode> {
        self.map.get(dn)?.regs.get(&client).map(|r| r.mode)
    }

    /// The DN an event's monitorCrossRefID belongs to (counted when unknown).
    pub fn dn_of_xref(&mut self, xref: &str) -> Option<String> {
        let dn = self.xref.get(xref).cloned();
        if dn.is_none() {
            self.unknown_cross_ref += 1;
        }
        dn
    }

    // ------------------------------------------------------------------------ registrations

    /// RequestRegisterAddress's checks and bookkeeping (`docs/protocol.md`, §6.3):
    /// an unconfigured DN is taken on demand if its type is accepted; ModePrivate excludes
    /// others. `busy`: a switch-level registration (monitor or hot-desk query) is running.
    pub fn register(
        &mut self,
        client: ClientId,
        req: &Request,
        number: &str,
        accept: &[AddressType],
        link_usable: bool,
        busy: bool,
    ) -> Result<Registration, Refusal> {
        let mode = req.register_mode.unwrap_or(RegisterMode::Share);
        let control = req.control_mode.unwrap_or(ControlMode::Default);
        let wanted = req.address_type.filter(|t| *t != AddressType::Unknown);
        match self.map.get(number) {
            Some(d) if d.configured => {
                if let Some(t) = wanted {
                    if t != d.dn_type {
                        let msg = format!(
                            "DN {number} is configured as {}, not {}",
                            d.dn_type.as_str(),
                            t.as_str()
                        );
                        return Err((ErrorCode::INVALID_ATTR, msg));
                    }
                }
            }
            Some(_) => {}
            None => {
                let t = wanted.unwrap_or(AddressType::Dn);
                if !accept.contains(&t) {
                    let msg = format!(
                        "DN {number} is not configured and type {} is not accepted (accept-dn-type)",
                        t.as_str()
                    );
                    return Err((ErrorCode::NOT_CONFIGURED, msg));
                }
                self.map
                    .insert(number.to_string(), Dn::unconfigured(number, t));
            }
        }
        let Some(d) = self.map.get_mut(number) else {
            return Err((ErrorCode::INTERNAL, format!("DN {number} vanished")));
        };
        let others_hold = d.regs.keys().any(|c| *c != client);
        let private_elsewhere = d
            .regs
            .iter()
            .any(|(c, r)| *c != client && r.mode == RegisterMode::Private);
        if private_elsewhere || (mode == RegisterMode::Private && others_hold) {
            let msg = format!("DN {number} is held in ModePrivate by another client");
            return Err((ErrorCode::RESOURCE_SEIZED, msg));
        }
        d.regs.insert(client, Reg { mode, control });
        // First switch-level registration: answer after MonitorStart (and the hot-desk query).
        let starting = matches!(d.monitor, Monitor::Starting { .. }) || busy;
        let start =
            !starting && link_usable && d.wants_monitor() && matches!(d.monitor, Monitor::Off);
        if starting || start {
            d.waiters.push((client, req.clone()));
            Ok(Registration::Waiting { start })
        } else {
            Ok(Registration::Done)
        }
    }

    /// RequestUnregisterAddress: was `dn` registered by `client`?
    pub fn unregister(&mut self, client: ClientId, dn: &str) -> bool {
        self.map
            .get_mut(dn)
            .is_some_and(|d| d.regs.remove(&client).is_some())
    }

    /// A client left: its registration and waiting requests on `dn` go.
    pub fn client_gone(&mut self, client: ClientId, dn: &str) {
        if let Some(d) = self.map.get_mut(dn) {
            d.regs.remove(&client);
            d.waiters.retain(|(c, _)| *c != client);
        }
    }

    /// The registrations waiting on `dn`, taken (to answer).
    pub fn take_waiters(&mut self, dn: &str) -> Vec<(ClientId, Request)> {
        self.map
            .get_mut(dn)
            .map(|d| std::mem::take(&mut d.waiters))
            .unwrap_or_default()
    }

    // ------------------------------------------------------------------------ monitors

    /// MonitorStart for `number`.
    pub fn monitor_start(number: &str) -> Message {
        Message::MonitorStart(MonitorStart {
            monitor_object: MonitorObject::Device(number.into()),
            monitor_type: Some(MonitorType::Device),
            extensions: None,
        })
    }

    /// MonitorStart for `number` is queued as `tag`.
    pub fn starting(&mut self, number: &str, tag: Tag) {
        self.unschedule(number);
        if let Some(d) = self.map.get_mut(number) {
            d.monitor = Monitor::Starting { tag };
        }
    }

    /// MonitorStart was answered with `xref` at `now_ms`. Returns false when the DN is gone.
    pub fn active(&mut self, number: &str, xref: String, now_ms: u64) -> bool {
        self.xref.insert(xref.clone(), number.to_string());
        match self.map.get_mut(number) {
            Some(d) => {
                d.monitor = Monitor::Active { xref };
                d.retry.active_since = Some(now_ms);
                true
            }
            None => false,
        }
    }

    /// The monitor of `number` is off (refused, timed out).
    pub fn monitor_off(&mut self, number: &str) {
        if let Some(d) = self.map.get_mut(number) {
            d.monitor = Monitor::Off;
        }
    }

    /// The Connector stopped the monitor `xref` at `now_ms`: its DN, now without monitor, and
    /// whether a retry was scheduled (false: start it again now, if still wanted). The first
    /// stop after a monitor was up [`RETRY_MAX_MS`] is re-monitored at once; further ones back
    /// off.
    pub fn stopped_by_connector(&mut self, xref: &str, now_ms: u64) -> Option<(String, bool)> {
        let dn = self.xref.remove(xref)?;
        self.monitor_off(&dn);
        let d = self.map.get_mut(&dn)?;
        let stable = d
            .retry
            .active_since
            .is_some_and(|t| now_ms.saturating_sub(t) >= RETRY_MAX_MS);
        if stable {
            d.retry.attempts = 0;
        }
        if d.retry.attempts == 0 {
            d.retry.attempts = 1;
            return Some((dn, false));
        }
        // The n-th stop in a row waits backoff(n - 1): at once, 1 s, 2 s, … 60 s.
        let scheduled = self.schedule(&dn, now_ms, |n| backoff_ms(n - 1)).is_some();
        Some((dn, scheduled))
    }

    /// The MonitorStart of `number` failed at `now_ms`: if the DN is still wanted, schedule the
    /// next attempt after the backoff (1 s, 2 s, … 60 s). Returns the delay (ms) when scheduled.
    pub fn retry_later(&mut self, number: &str, now_ms: u64) -> Option<u64> {
        self.schedule(number, now_ms, backoff_ms)
    }

    /// Count one more attempt and schedule the next after `delay(attempts)`, if still wanted.
    fn schedule(&mut self, number: &str, now_ms: u64, delay: fn(u32) -> u64) -> Option<u64> {
        self.unschedule(number);
        let d = self.map.get_mut(number)?;
        if !d.wants_monitor() || !matches!(d.monitor, Monitor::Off) {
            return None;
        }
        d.retry.attempts = d.retry.attempts.saturating_add(1);
        let delay = delay(d.retry.attempts);
        let at = now_ms + delay;
        d.retry.at = Some(at);
        self.retries.insert((at, number.to_string()));
        debug!(
            dn = number,
            attempt = d.retry.attempts,
            delay,
            "monitor retry scheduled"
        );
        Some(delay)
    }

    /// Drop the scheduled retry of `number` (the attempt count stays).
    fn unschedule(&mut self, number: &str) {
        if let Some(d) = self.map.get_mut(number) {
            if let Some(at) = d.retry.at.take() {
                self.retries.remove(&(at, number.to_string()));
            }
        }
    }

    /// When the next monitor retry is due (monotonic ms).
    pub fn next_retry(&self) -> Option<u64> {
        self.retries.first().map(|(at, _)| *at)
    }

    /// The DNs whose retry is due at `now_ms` and that still want a monitor that is off, taken
    /// from the schedule, in due order.
    pub fn due_retries(&mut self, now_ms: u64) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((at, n)) = self.retries.first().cloned() {
            if at > now_ms {
                break;
            }
            self.retries.remove(&(at, n.clone()));
            if let Some(d) = self.map.get_mut(&n) {
                d.retry.at = None;
                if d.wants_monitor() && matches!(d.monitor, Monitor::Off) {
                    due.push(n);
                }
            }
        }
        due
    }

    /// The switch says `number` does not exist: its registrations end (returned, to tell
    /// them); waiters are left to be refused.
    pub fn drop_registrations(&mut self, number: &str) -> Vec<ClientId> {
        let Some(d) = self.map.get_mut(number) else {
            return Vec::new();
        };
        let waiting: BTreeSet<ClientId> = d.waiters.iter().map(|(c, _)| *c).collect();
        let gone: Vec<ClientId> = d
            .regs
            .keys()
            .copied()
            .filter(|c| !waiting.contains(c))
            .collect();
        for c in &gone {
            d.regs.remove(c);
        }
        gone
    }

    /// Start or stop the monitor of `number` to match who needs it.
    pub fn sync(&mut self, number: &str, link_usable: bool) -> MonitorChange {
        let Some(d) = self.map.get_mut(number) else {
            return MonitorChange::None;
        };
        let wants = d.wants_monitor();
        let scheduled = d.retry.at.is_some();
        if !wants {
            self.unschedule(number);
        }
        let Some(d) = self.map.get_mut(number) else {
            return MonitorChange::None;
        };
        match (&d.monitor, wants) {
            // A scheduled retry waits for its time.
            (Monitor::Off, true) if link_usable && !scheduled => MonitorChange::Start,
            (Monitor::Active { xref }, false) => {
                let xref = xref.clone();
                d.monitor = Monitor::Off;
                self.xref.remove(&xref);
                if link_usable {
                    MonitorChange::Stop(Box::new(Message::MonitorStop(MonitorStop {
                        monitor_cross_ref_id: xref.into(),
                        extensions: None,
                    })))
                } else {
                    MonitorChange::None
                }
            }
            _ => MonitorChange::None,
        }
    }

    /// Forget an unconfigured DN nobody uses (`keep`: something else still refers to it).
    /// Returns true when it was forgotten.
    pub fn forget_if_unused(&mut self, number: &str, keep: bool) -> bool {
        let Some(d) = self.map.get(number) else {
            return false;
        };
        if !d.configured
            && d.regs.is_empty()
            && d.waiters.is_empty()
            && matches!(d.monitor, Monitor::Off)
            && !keep
        {
            debug!(dn = number, "forgetting unconfigured DN");
            self.remove(number);
            return true;
        }
        false
    }

    /// The link is gone: every monitor is off.
    pub fn link_lost(&mut self) {
        self.xref.clear();
        self.retries.clear();
        for d in self.map.values_mut() {
            d.monitor = Monitor::Off;
            d.retry = Retry::default();
        }
    }

    /// The session stopped every monitor it held (system status `messagesLost`): each active
    /// monitor is off (its cross-reference forgotten) and scheduled retries are dropped, so that
    /// [`Dns::to_monitor`] names every DN to monitor again. A MonitorStart in flight stays:
    /// its answer brings a monitor the session did not stop.
    pub fn monitors_lost(&mut self) {
        self.xref.clear();
        self.retries.clear();
        for d in self.map.values_mut() {
            if matches!(d.monitor, Monitor::Active { .. }) {
                d.monitor = Monitor::Off;
            }
            d.retry.at = None;
        }
    }

    /// DNs to monitor when the link comes up: queues and routing points first, then the rest,
    /// each group by number (`docs/protocol.md`, §6.1).
    pub fn to_monitor(&self) -> Vec<String> {
        let mut v: Vec<(bool, String)> = self
            .map
            .values()
            .filter(|d| d.wants_monitor() && matches!(d.monitor, Monitor::Off))
            .map(|d| {
                (
                    !matches!(d.dn_type, AddressType::Queue | AddressType::RouteDn),
                    d.number.clone(),
                )
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// Mark the guest of an agent-login hot desk as monitored for ctid's own use (or not any
    /// more). Returns true when that changed.
    pub fn set_internal(&mut self, guest: &str, linked: bool) -> bool {
        match self.map.get_mut(guest) {
            Some(d) if d.internal == linked => false,
            Some(d) => {
                d.internal = linked;
                true
            }
            None if linked => {
                let mut d = Dn::unconfigured(guest, AddressType::Dn);
                d.internal = true;
                self.map.insert(guest.to_string(), d);
                true
            }
            None => false,
        }
    }
}
