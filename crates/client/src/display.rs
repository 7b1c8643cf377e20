//! One-line human-readable rendering of events for `ctictl`:
//! `EventPrivateInfo ThisDN=2001 OtherDN=1001 PrivateMsgID=1`.

use ctid_protocol::json::{Number, Value};

/// Renders an event frame: its name, then `Attribute=value` for every attribute in wire order,
/// with `Extensions` keys inlined (`HOST_DN=1010`) and without the bookkeeping attributes
/// (`ReferenceID`, `EventSequenceNumber`, `time`) or the restatements of EventRegistered
/// (`InfoType`, and `InfoStatus` when `AddressType` is present). Values with spaces are quoted.
/// Text that is not a JSON object is returned as it is.
pub fn event_line(raw: &str) -> String {
    let Ok(Value::Object(pairs)) = Value::parse(raw) else {
        return raw.to_owned();
    };
    let name = pairs
        .iter()
        .find(|(k, _)| k == "event")
        .and_then(|(_, v)| v.as_str())
        .unwrap_or("?");
    let has_address_type = pairs.iter().any(|(k, _)| k == "AddressType");
    let mut out = name.to_owned();
    for (k, v) in &pairs {
        match k.as_str() {
            "event" | "ReferenceID" | "EventSequenceNumber" | "time" => {}
            "InfoType" if name == "EventRegistered" => {}
            "InfoStatus" if has_address_type => {}
            "Extensions" => match v {
                Value::Object(ext) => {
                    for (ek, ev) in ext {
                        push(&mut out, ek, ev);
                    }
                }
                other => push(&mut out, k, other),
            },
            _ => push(&mut out, k, v),
        }
    }
    out
}

fn push(out: &mut String, key: &str, v: &Value) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    match v {
        Value::String(s)
            if !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('"') =>
        {
            out.push_str(s)
        }
        Value::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Value::Number(Number::Int(i)) => out.push_str(&i.to_string()),
        other => out.push_str(&other.to_json()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            event_line(
                r#"{"event":"EventRegistered","ReferenceID":7,"ThisDN":"2010","InfoType":"AddressInfoAddressType","InfoStatus":"AddressTypeDN","AddressType":"AddressTypeDN","Extensions":{"status":"AddressStatusIdle","HOST_DN":"1010"},"EventSequenceNumber":41,"time":"x"}"#
            ),
            "EventRegistered ThisDN=2010 AddressType=AddressTypeDN status=AddressStatusIdle HOST_DN=1010"
        );
        assert_eq!(
            event_line(
                r#"{"event":"EventPrivateInfo","ReferenceID":15,"ThisDN":"2001","OtherDN":"1001","PrivateMsgID":1,"EventSequenceNumber":90,"time":"..."}"#
            ),
            "EventPrivateInfo ThisDN=2001 OtherDN=1001 PrivateMsgID=1"
        );
        assert_eq!(
            event_line(
                r#"{"event":"EventError","ReferenceID":16,"ThisDN":"2001","ErrorCode":1161,"ErrorMessage":"guest 2001 is already associated","Extensions":{"CSTAError":"stateIncompatibility/invalidObjectState"},"EventSequenceNumber":91,"time":"..."}"#
            ),
            r#"EventError ThisDN=2001 ErrorCode=1161 ErrorMessage="guest 2001 is already associated" CSTAError=stateIncompatibility/invalidObjectState"#
        );
        assert_eq!(
            event_line(
                r#"{"event":"EventAddressInfo","ThisDN":"2010","InfoType":"AddressInfoDNStatus","InfoStatus":0,"Extensions":[["a","1"],["a","2"]]}"#
            ),
            r#"EventAddressInfo ThisDN=2010 InfoType=AddressInfoDNStatus InfoStatus=0 Extensions=[["a","1"],["a","2"]]"#
        );
    }
}
