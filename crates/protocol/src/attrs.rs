//! Typed reading of attribute values with one-line error messages that name the attribute and
//! say what was expected and what arrived. Shared by request and event decoding.

use crate::json::{Number, Value};
use crate::kv::KvList;
use crate::types::{is_valid_dn, ConnId, DN_MAX_LEN};

pub(crate) type AttrResult<T> = Result<T, String>;

/// Largest ReferenceID (2^31 − 1).
pub const REFERENCE_ID_MAX: u32 = i32::MAX as u32;

pub(crate) fn string(name: &str, v: &Value) -> AttrResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "{name}: expected a string, got {}",
            other.describe()
        )),
    }
}

pub(crate) fn dn(name: &str, v: &Value) -> AttrResult<String> {
    let s = string(name, v)?;
    if is_valid_dn(&s) {
        Ok(s)
    } else {
        Err(format!(
            "{name}: expected a DN of 1-{DN_MAX_LEN} characters from 0-9 A-Z a-z + * # . _ @ -, got {}",
            v.describe()
        ))
    }
}

pub(crate) fn integer(name: &str, v: &Value, min: i64, max: i64) -> AttrResult<i64> {
    match v {
        Value::Number(Number::Int(i)) if (min..=max).contains(i) => Ok(*i),
        other => Err(format!(
            "{name}: expected an integer {min}..{max}, got {}",
            other.describe()
        )),
    }
}

pub(crate) fn u64_any(name: &str, v: &Value) -> AttrResult<u64> {
    match v {
        Value::Number(Number::Int(i)) if *i >= 0 => Ok(*i as u64),
        Value::Number(Number::UInt(u)) => Ok(*u),
        other => Err(format!(
            "{name}: expected a non-negative integer, got {}",
            other.describe()
        )),
    }
}

pub(crate) fn reference_id(v: &Value) -> AttrResult<u32> {
    integer("ReferenceID", v, 1, i64::from(REFERENCE_ID_MAX)).map(|i| i as u32)
}

pub(crate) fn u32_attr(name: &str, v: &Value) -> AttrResult<u32> {
    integer(name, v, 0, i64::from(REFERENCE_ID_MAX)).map(|i| i as u32)
}

pub(crate) fn conn_id(name: &str, v: &Value) -> AttrResult<ConnId> {
    match v {
        Value::String(s) => ConnId::parse(s).ok_or_else(|| {
            format!(
                "{name}: expected a string of 16 hex digits, got {}",
                v.describe()
            )
        }),
        other => Err(format!(
            "{name}: expected a string of 16 hex digits, got {}",
            other.describe()
        )),
    }
}

pub(crate) fn kv(name: &str, v: &Value) -> AttrResult<KvList> {
    KvList::from_value(v).map_err(|e| format!("{name}: {e}"))
}

/// Reads an enumeration by name.
pub(crate) fn enumeration<T: crate::enums::Named>(name: &str, v: &Value) -> AttrResult<T> {
    match v {
        Value::String(s) => T::from_name(s).ok_or_else(|| {
            format!(
                "{name}: expected one of {}, got {}",
                T::names(),
                v.describe()
            )
        }),
        other => Err(format!(
            "{name}: expected one of {}, got {}",
            T::names(),
            other.describe()
        )),
    }
}

/// Finds a repeated top-level attribute name.
pub(crate) fn first_repeated(pairs: &[(String, Value)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(*k))
}
