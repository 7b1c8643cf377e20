//! Small value types shared by requests and events: ConnID, InfoStatus, DN syntax, event time.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A ConnID: the 64-bit call identifier ctid assigns (docs/call-model.md, "Calls, ConnIDs, CallIDs"). On the wire, a
/// string of 16 hex digits (`"00a1f3c200000017"`); ctid writes lower case and accepts either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// Parses exactly 16 hex digits.
    pub fn parse(text: &str) -> Option<ConnId> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(ConnId)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl serde::Serialize for ConnId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// From its 16 hex digits (the inverse of `Serialize`).
impl<'de> serde::Deserialize<'de> for ConnId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        ConnId::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("ConnID {text:?} is not 16 hex digits"))
        })
    }
}

/// The `InfoStatus` of EventRegistered / EventAddressInfo. T-Library sends a type name for
/// `AddressInfoAddressType` (`"InfoStatus":"AddressTypeDN"`) and a number for
/// `AddressInfoDNStatus` (`"InfoStatus":0`, the number of calls on the DN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoStatus {
    /// An address type, sent as its name.
    AddressType(crate::AddressType),
    /// A number (for AddressInfoDNStatus: the number of calls on the DN).
    Number(i64),
    /// Any other name.
    Name(String),
}

impl fmt::Display for InfoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoStatus::AddressType(t) => f.write_str(t.as_str()),
            InfoStatus::Number(n) => write!(f, "{n}"),
            InfoStatus::Name(s) => f.write_str(s),
        }
    }
}

impl serde::Serialize for InfoStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InfoStatus::AddressType(t) => s.serialize_str(t.as_str()),
            InfoStatus::Number(n) => s.serialize_i64(*n),
            InfoStatus::Name(n) => s.serialize_str(n),
        }
    }
}

/// Maximum length of a DN (docs/protocol.md, §3).
pub const DN_MAX_LEN: usize = 64;

/// DN syntax (docs/protocol.md, §3): 1–64 characters from `0-9 A-Z a-z + * # . _ @ -`.
pub fn is_valid_dn(dn: &str) -> bool {
    !dn.is_empty()
        && dn.len() <= DN_MAX_LEN
        && dn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+*#._@-".contains(&b))
}

/// Formats a time as the protocol's `time`: RFC 3339, UTC, microseconds
/// (`2026-11-24T17:40:00.123456Z`). Times before 1970 are clamped to the epoch.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format_unix_micros(d.as_secs(), d.subsec_micros())
}

/// Formats seconds + microseconds since the Unix epoch like [`format_time`].
pub fn format_unix_micros(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        micros.min(999_999)
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn conn_id() {
        let c = ConnId::parse("00a1f3c200000017").unwrap();
        assert_eq!(c.to_string(), "00a1f3c200000017");
        assert_eq!(ConnId::parse("00A1F3C200000017"), Some(c));
        assert_eq!(ConnId::parse("a1f3c200000017"), None);
        assert_eq!(ConnId::parse("+0a1f3c20000001"), None);
    }

    #[test]
    fn conn_id_serde_round_trip() {
        let c = ConnId(0x00a1_f3c2_0000_0017);
        let v = serde_json::to_value(c).unwrap();
        assert_eq!(v, serde_json::json!("00a1f3c200000017"));
        assert_eq!(serde_json::from_value::<ConnId>(v).unwrap(), c);
        let e = serde_json::from_value::<ConnId>(serde_json::json!("17")).unwrap_err();
        assert!(e.to_string().contains("16 hex digits"), "{e}");
        assert!(serde_json::from_value::<ConnId>(serde_json::json!(17)).is_err());
    }

    #[test]
    fn dn_syntax() {
        assert!(is_valid_dn("5001"));
        assert!(is_valid_dn("agent.one@site-2_#*+"));
        assert!(!is_valid_dn(""));
        assert!(!is_valid_dn("50 01"));
        assert!(!is_valid_dn(&"1".repeat(65)));
        assert!(!is_valid_dn("５００１"));
    }

    #[test]
    fn time_format() {
        assert_eq!(format_unix_micros(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2026-11-24T17:40:00Z
        let t = UNIX_EPOCH + Duration::new(1_795_542_000, 123_456_789);
        assert_eq!(format_time(t), "2026-11-24T17:40:00.123456Z");
        assert_eq!(
            format_unix_micros(951_782_400, 1),
            "2000-02-29T00:00:00.000001Z"
        );
    }
}
