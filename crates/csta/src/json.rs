//! The JSON form of CSTA messages (used by `ctictl csta decode|encode`): one object whose
//! `"message"` is the XML root's local name and whose other keys are the XML element names of
//! the decoded children. Choices are objects with one key; marker elements are `true`.

use serde_json::Value;

/// A JSON document that does not describe a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

impl JsonError {
    /// `field`: expected `expected`, found `v`.
    pub fn new(field: &str, expected: &str, v: &Value) -> Self {
        let mut found = v.to_string();
        if found.len() > 60 {
            found.truncate(60);
            found.push('…');
        }
        JsonError(format!("\"{field}\": expected {expected}, found {found}"))
    }
    /// A required key is missing.
    pub fn missing(message: &str, field: &str) -> Self {
        JsonError(format!("{message}: required key \"{field}\" is missing"))
    }
}

/// A value with a JSON form.
pub trait JsonValue: Sized {
    fn to_json(&self) -> Value;
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError>;
}

impl JsonValue for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(JsonError::new(field, "a string", v)),
        }
    }
}

impl JsonValue for compact_str::CompactString {
    fn to_json(&self) -> Value {
        Value::String(self.to_string())
    }
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        match v {
            Value::String(s) => Ok(s.as_str().into()),
            Value::Number(n) => Ok(compact_str::ToCompactString::to_compact_string(n)),
            _ => Err(JsonError::new(field, "a string", v)),
        }
    }
}

impl JsonValue for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        v.as_bool()
            .ok_or_else(|| JsonError::new(field, "true or false", v))
    }
}

impl JsonValue for u32 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn from_json(v: &Value, field: &str) -> Result<Self, JsonError> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| JsonError::new(field, "an unsigned 32-bit integer", v))
    }
}

/// The JSON object of a message.
pub fn to_json(msg: &crate::Message) -> Value {
    msg.to_json()
}

/// A message from its JSON object.
pub fn from_json(v: &Value) -> Result<crate::Message, JsonError> {
    crate::Message::from_json(v)
}
