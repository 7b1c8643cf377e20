//! T-Library KV lists (`Extensions`, `UserData`, `Reasons`): ordered key/value pairs whose keys
//! may repeat and whose values are strings, integers, binary data or nested lists.
//!
//! JSON encoding (docs/protocol.md, §4):
//! * **object form** `{"k":"v","n":5}`: keys in list order. Used when the keys of that level are
//!   unique.
//! * **pair form** `[["k","v"],["k","w"]]`: an array of `[key, value]` arrays. Used by the encoder
//!   when a key repeats at that level, or when the level is exactly one pair whose key is `$binary`
//!   (which the object form would confuse with a binary value).
//! * values: string → JSON string; integer → JSON integer (i64); binary → `{"$binary":"<base64>"}`
//!   (standard alphabet, with padding); nested list → object or pair form, by the same rule.
//!
//! A decoder accepts both forms at every level, and also repeated keys in object form (kept in
//! order). `null`, booleans and non-integer numbers are rejected.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::json::{quoted, Number, Value};

/// One value of a KV list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// Binary data.
    Binary(Vec<u8>),
    /// A nested list.
    List(KvList),
}

impl KvValue {
    /// The string, if this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            KvValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            KvValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The nested list, if this is a list value.
    pub fn as_list(&self) -> Option<&KvList> {
        match self {
            KvValue::List(l) => Some(l),
            _ => None,
        }
    }

    /// The kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            KvValue::Str(_) => "string",
            KvValue::Int(_) => "integer",
            KvValue::Binary(_) => "binary",
            KvValue::List(_) => "list",
        }
    }
}

impl fmt::Display for KvValue {
    /// Strings and integers as they are; binary and lists as their JSON encoding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvValue::Str(s) => f.write_str(s),
            KvValue::Int(i) => write!(f, "{i}"),
            other => f.write_str(&serde_json::to_string(other).unwrap_or_default()),
        }
    }
}

impl From<&str> for KvValue {
    fn from(s: &str) -> Self {
        KvValue::Str(s.to_owned())
    }
}
impl From<String> for KvValue {
    fn from(s: String) -> Self {
        KvValue::Str(s)
    }
}
impl From<i64> for KvValue {
    fn from(i: i64) -> Self {
        KvValue::Int(i)
    }
}
impl From<KvList> for KvValue {
    fn from(l: KvList) -> Self {
        KvValue::List(l)
    }
}

/// An ordered key/value list; keys may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvList {
    pairs: Vec<(String, KvValue)>,
}

impl KvList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &KvValue)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The first value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&KvValue> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every value stored under `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a KvValue> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The first value under `key` if it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(KvValue::as_str)
    }

    /// The first value under `key` if it is an integer.
    pub fn get_int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(KvValue::as_int)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`: replaces the first occurrence and removes any others, or appends.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<KvValue>) {
        let key = key.into();
        let value = value.into();
        match self.pairs.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                self.pairs[i].1 = value;
                let mut n = 0;
                self.pairs.retain(|(k, _)| {
                    let keep = *k != key || n == i;
                    n += 1;
                    keep
                });
            }
            None => self.pairs.push((key, value)),
        }
    }

    /// Sets `key` to a string value (see [`KvList::insert`]).
    pub fn insert_str(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.insert(key, KvValue::Str(value.into()));
    }

    /// Sets `key` to an integer value (see [`KvList::insert`]).
    pub fn insert_int(&mut self, key: impl Into<String>, value: i64) {
        self.insert(key, KvValue::Int(value));
    }

    /// Appends a pair, even if the key is already present (T-Library `TKVListAdd*`).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<KvValue>) {
        self.pairs.push((key.into(), value.into()));
    }

    /// Removes every pair with `key`; returns how many were removed.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.pairs.len();
        self.pairs.retain(|(k, _)| k != key);
        before - self.pairs.len()
    }

    /// Compact JSON text of this list (object or pair form, see the module documentation).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a KV list from JSON text.
    pub fn from_json(text: &str) -> Result<KvList, String> {
        let v = Value::parse(text).map_err(|e| format!("invalid JSON: {e}"))?;
        KvList::from_value(&v)
    }

    /// Converts a parsed JSON value (object or pair form); the error says what is wrong and where
    /// (`key "a.b": expected ...`).
    pub fn from_value(v: &Value) -> Result<KvList, String> {
        from_value_at(v, "")
    }

    fn uses_pair_form(&self) -> bool {
        if self.pairs.len() == 1 && self.pairs[0].0 == "$binary" {
            return true;
        }
        let mut seen = std::collections::HashSet::new();
        !self.pairs.iter().all(|(k, _)| seen.insert(k.as_str()))
    }
}

impl<K: Into<String>, V: Into<KvValue>> FromIterator<(K, V)> for KvList {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        KvList {
            pairs: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn from_value_at(v: &Value, path: &str) -> Result<KvList, String> {
    let mut list = KvList::new();
    match v {
        Value::Object(pairs) => {
            for (k, val) in pairs {
                let p = join(path, k);
                list.pairs.push((k.clone(), value_at(val, &p)?));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Array(kv) if kv.len() == 2 => {
                        let Value::String(k) = &kv[0] else {
                            return Err(format!(
                                "pair {i}{}: key must be a string, got {}",
                                at(path),
                                kv[0].describe()
                            ));
                        };
                        let p = join(path, k);
                        list.pairs.push((k.clone(), value_at(&kv[1], &p)?));
                    }
                    other => {
                        return Err(format!(
                            "pair {i}{}: expected a [key, value] array, got {}",
                            at(path),
                            other.describe()
                        ))
                    }
                }
            }
        }
        other => {
            return Err(format!(
                "{}expected a KV list (object or array of [key, value] pairs), got {}",
                if path.is_empty() {
                    String::new()
                } else {
                    format!("key {}: ", quoted(path))
                },
                other.describe()
            ))
        }
    }
    Ok(list)
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" of key {}", quoted(path))
    }
}

fn value_at(v: &Value, path: &str) -> Result<KvValue, String> {
    match v {
        Value::String(s) => Ok(KvValue::Str(s.clone())),
        Value::Number(Number::Int(i)) => Ok(KvValue::Int(*i)),
        Value::Object(pairs) if pairs.len() == 1 && pairs[0].0 == "$binary" => match &pairs[0].1 {
            Value::String(b64) => base64_decode(b64)
                .map(KvValue::Binary)
                .ok_or_else(|| format!("key {}: $binary is not valid base64", quoted(path))),
            other => Err(format!(
                "key {}: $binary must be a base64 string, got {}",
                quoted(path),
                other.describe()
            )),
        },
        Value::Object(_) | Value::Array(_) => from_value_at(v, path).map(KvValue::List),
        other => Err(format!(
            "key {}: expected a string, integer, {{\"$binary\":...}} or nested list, got {}",
            quoted(path),
            other.describe()
        )),
    }
}

impl Serialize for KvValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KvValue::Str(v) => s.serialize_str(v),
            KvValue::Int(i) => s.serialize_i64(*i),
            KvValue::Binary(b) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("$binary", &base64_encode(b))?;
                m.end()
            }
            KvValue::List(l) => l.serialize(s),
        }
    }
}

impl Serialize for KvList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.uses_pair_form() {
            let mut seq = s.serialize_seq(Some(self.pairs.len()))?;
            for (k, v) in &self.pairs {
                seq.serialize_element(&(k, v))?;
            }
            seq.end()
        } else {
            let mut m = s.serialize_map(Some(self.pairs.len()))?;
            for (k, v) in &self.pairs {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; padding is required, whitespace is not allowed. `None` if invalid.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; MSRV is 1.85
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let nchunks = bytes.len() / 4;
    for (ci, chunk) in bytes.chunks(4).enumerate() {
        let last = ci + 1 == nchunks;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n: u32 = 0;
        for &c in &chunk[..4 - pad] {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            n = (n << 6) | u32::from(v);
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64_encode(&data);
            assert_eq!(base64_decode(&enc), Some(data));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), None);
        assert_eq!(base64_decode("Z=8="), None);
        assert_eq!(base64_decode("Zm8=Zm8="), None);
    }

    #[test]
    fn object_form_for_unique_keys() {
        let mut l = KvList::new();
        l.insert_str("HOST_DN", "1010");
        l.insert_int("n", 5);
        l.insert("bin", KvValue::Binary(vec![0, 255]));
        let mut inner = KvList::new();
        inner.insert_str("x", "y");
        l.insert("sub", inner);
        let json = l.to_json();
        assert_eq!(
            json,
            r#"{"HOST_DN":"1010","n":5,"bin":{"$binary":"AP8="},"sub":{"x":"y"}}"#
        );
        assert_eq!(KvList::from_json(&json).unwrap(), l);
        assert_eq!(l.get_str("HOST_DN"), Some("1010"));
        assert_eq!(l.get_str("n"), None);
    }

    #[test]
    fn pair_form_for_repeated_keys_and_lone_binary_key() {
        let mut l = KvList::new();
        l.push("k", "a");
        l.push("k", 2i64);
        let json = l.to_json();
        assert_eq!(json, r#"[["k","a"],["k",2]]"#);
        assert_eq!(KvList::from_json(&json).unwrap(), l);

        let tricky: KvList = [("$binary", "not base64?")].into_iter().collect();
        let mut outer = KvList::new();
        outer.insert("t", tricky.clone());
        let json = outer.to_json();
        assert_eq!(json, r#"{"t":[["$binary","not base64?"]]}"#);
        assert_eq!(KvList::from_json(&json).unwrap(), outer);
    }

    #[test]
    fn repeated_keys_in_object_form_are_kept() {
        let l = KvList::from_json(r#"{"a":"1","a":"2"}"#).unwrap();
        assert_eq!(l.get_all("a").count(), 2);
        assert_eq!(l.to_json(), r#"[["a","1"],["a","2"]]"#);
    }

    #[test]
    fn insert_replaces_and_dedups() {
        let mut l = KvList::from_json(r#"[["a","1"],["b","x"],["a","2"]]"#).unwrap();
        l.insert_str("a", "3");
        assert_eq!(l.to_json(), r#"{"a":"3","b":"x"}"#);
        assert_eq!(l.remove("b"), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let e = KvList::from_json(r#"{"a":{"b":true}}"#).unwrap_err();
        assert!(e.contains("\"a.b\""), "{e}");
        assert!(e.contains("boolean true"), "{e}");
        assert!(KvList::from_json(r#"{"a":1.5}"#).is_err());
        assert!(KvList::from_json(r#"{"a":null}"#).is_err());
        assert!(KvList::from_json(r#"[["a"]]"#).is_err());
        assert!(KvList::from_json(r#"[[1,"a"]]"#).is_err());
        assert!(KvList::from_json(r#""x""#).is_err());
        assert!(KvList::from_json(r#"{"b":{"$binary":"@@@@"}}"#).is_err());
    }
}
