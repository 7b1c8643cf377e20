//! The hot-desk association table (tserver-behaviour §4.3): guest → host with the reverse index,
//! and the rules for applying a change reported by the switch, including the implied changes
//! ("switch wins") and duplicate detection.

use std::collections::BTreeMap;

/// One change to report as EventPrivateInfo 1 (established) or 2 (cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
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
            1
        } else {
            2
        }
    }
}

/// guest → host, at most one host per guest and one guest per host; never both roles.
#[derive(Debug, Clone, Default)]
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
