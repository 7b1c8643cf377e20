//! Private data (`privateData` = `<private>` any XML | `<string>` hexBinary) and ctid's
//! hot-desking dialect (csta-xml.md §12): `guestAssociatedExtension` in Escape / EscapeResponse
//! and `guestAssociatedEvent` in PrivateEvent.
//!
//! `<private>` content is dispatched on the (namespace, local name) of its first element. The
//! dialect is matched by namespace URI (any prefix), leniently also with no namespace (or a CSTA
//! default namespace inherited by unprefixed elements). Anything else is kept opaque, with the
//! namespace declarations in scope, so it re-encodes to equivalent XML.

use compact_str::CompactString;
use serde_json::Value;

use crate::enums::{HotDeskAction, HotDeskState};
use crate::error::{DecodeError, Result};
use crate::json::{JsonError, JsonValue};
use crate::xml::{Elem, Next, Parser, Writer, XmlValue};

/// Default namespace URI of the hot-desking dialect, version 1.
pub const HOTDESK_NS: &str = "urn:ctid:csta:hotdesk:1";

/// Namespace URI of BroadSoft's CSTA private data (csta-xml.md, agent state: the not-ready
/// reason `AgentNotReadyReasonValue` on SetAgentState and AgentNotReadyEvent).
pub const BROADSOFT_NS: &str = "http://schema.broadsoft.com/CSTAPrivateData";

/// `privateData`.
#[derive(Debug, Clone, PartialEq)]
pub enum PrivateData {
    /// `<private>…</private>`.
    Private(PrivateContent),
    /// `<string>` hexBinary `</string>`.
    String(String),
}

/// What a `<private>` element holds.
#[derive(Debug, Clone, PartialEq)]
pub enum PrivateContent {
    /// ctid's hot-desking dialect.
    HotDesk(HotDesk),
    /// BroadSoft's `AgentNotReadyReasonValue`: the agent's not-ready reason code.
    NotReadyReason(CompactString),
    /// Anything else, verbatim, with the namespace declarations that were in scope.
    Opaque {
        xml: String,
        namespaces: Vec<(String, String)>,
    },
}

/// The hot-desking dialect's top elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotDesk {
    /// `hd:guestAssociatedExtension`: a request (with `action`) or a query answer (without).
    Extension {
        action: Option<HotDeskAction>,
        guest: Option<CompactString>,
        host: Option<CompactString>,
    },
    /// `hd:guestAssociatedEvent`.
    Event {
        state: HotDeskState,
        guest: CompactString,
        host: CompactString,
    },
}

impl HotDesk {
    /// `associate` guest with host.
    pub fn associate(guest: &str, host: &str) -> Self {
        HotDesk::Extension {
            action: Some(HotDeskAction::Associate),
            guest: Some(guest.into()),
            host: Some(host.into()),
        }
    }
    /// `cancel` the guest's association.
    pub fn cancel(guest: &str) -> Self {
        HotDesk::Extension {
            action: Some(HotDeskAction::Cancel),
            guest: Some(guest.into()),
            host: None,
        }
    }
    /// `query` the pair in which `guest` is the guest.
    pub fn query_guest(guest: &str) -> Self {
        HotDesk::Extension {
            action: Some(HotDeskAction::Query),
            guest: Some(guest.into()),
            host: None,
        }
    }
    /// `query` the pair in which `host` is the host.
    pub fn query_host(host: &str) -> Self {
        HotDesk::Extension {
            action: Some(HotDeskAction::Query),
            guest: None,
            host: Some(host.into()),
        }
    }
    /// A query answer: the pair, or none.
    pub fn answer(pair: Option<(&str, &str)>) -> Self {
        HotDesk::Extension {
            action: None,
            guest: pair.map(|p| p.0.into()),
            host: pair.map(|p| p.1.into()),
        }
    }
    /// A change event.
    pub fn event(state: HotDeskState, guest: &str, host: &str) -> Self {
        HotDesk::Event {
            state,
            guest: guest.into(),
            host: host.into(),
        }
    }
    /// Wrap as `privateData`.
    pub fn into_private_data(self) -> PrivateData {
        PrivateData::Private(PrivateContent::HotDesk(self))
    }
}

impl PrivateData {
    /// The hot-desking content, if that is what this is.
    pub fn hotdesk(&self) -> Option<&HotDesk> {
        match self {
            PrivateData::Private(PrivateContent::HotDesk(h)) => Some(h),
            _ => None,
        }
    }

    /// BroadSoft's not-ready reason code, if that is what this is.
    pub fn not_ready_reason(&self) -> Option<&str> {
        match self {
            PrivateData::Private(PrivateContent::NotReadyReason(r)) => Some(r),
            _ => None,
        }
    }

    /// BroadSoft's `AgentNotReadyReasonValue` carrying `code`.
    pub fn with_not_ready_reason(code: &str) -> Self {
        PrivateData::Private(PrivateContent::NotReadyReason(code.into()))
    }

    /// Decode `<privateData>`; `None` when it is empty.
    pub(crate) fn decode_opt<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Option<Self>> {
        let mut out = None;
        p.children(el, |p, child| {
            match child.local() {
                b"private" if out.is_none() => {
                    out = Some(PrivateData::Private(decode_private(p, &child)?));
                }
                b"string" if out.is_none() => {
                    out = Some(PrivateData::String(String::decode_xml(p, &child)?));
                }
                _ => p.skip(&child)?,
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Is `ns` the namespace `want`, none, or a CSTA one (inherited by unprefixed elements)?
fn is_dialect_ns(ns: Option<&str>, want: &str) -> bool {
    match ns {
        None => true,
        Some(u) => u == want || crate::xml::Edition::from_namespace(u).is_some(),
    }
}

/// Decode `<private>` in one pass: look at its first element; if that is the dialect, decode it
/// and skip the rest, otherwise keep the whole content verbatim (from the position after the
/// start tag to the end tag) with the namespace declarations in scope at `<private>`.
fn decode_private<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<PrivateContent> {
    let depth = p.depth();
    let start = p.position();
    // `<private>`'s own declarations are popped with its end tag: take them now if it has any.
    let own_decls = el.start.attributes_raw().windows(5).any(|w| w == b"xmlns");
    let early_scope = own_decls.then(|| p.in_scope_upto(depth));
    let opaque = |inner: &str, scope: Vec<(String, String)>| PrivateContent::Opaque {
        xml: crate::xml::trim_xml(inner).to_string(),
        namespaces: scope,
    };
    if el.empty {
        return Ok(opaque(
            "",
            early_scope.unwrap_or_else(|| p.in_scope_upto(depth)),
        ));
    }
    let first = loop {
        match p.next_node()? {
            Next::Start(e) => break e,
            Next::Text(_) => {}
            Next::End => {
                // no element: text, comments or nothing up to the end tag
                let inner = p.input_slice(start, p.end_tag_start())?;
                return Ok(opaque(
                    inner,
                    early_scope.unwrap_or_else(|| p.in_scope_upto(depth)),
                ));
            }
            Next::Eof => {
                return Err(DecodeError::Xml {
                    position: p.position(),
                    reason: "unexpected end".into(),
                })
            }
        }
    };
    let opts = p.opts;
    if first.local() == b"AgentNotReadyReasonValue"
        && is_dialect_ns(p.namespace_of(&first), BROADSOFT_NS)
    {
        let code = CompactString::new(p.text(&first)?.trim());
        p.children(el, |p, c| p.skip(&c))?;
        return Ok(PrivateContent::NotReadyReason(code));
    }
    let kind: &[u8] = match first.local() {
        b"guestAssociatedExtension" => b"guestAssociatedExtension",
        b"guestAssociatedEvent" => b"guestAssociatedEvent",
        _ => b"",
    };
    if kind.is_empty() || !is_dialect_ns(p.namespace_of(&first), &opts.hotdesk_ns) {
        let scope = early_scope.unwrap_or_else(|| p.in_scope_upto(depth));
        p.skip(&first)?;
        let inner = p.rest_from(el, start)?;
        return Ok(opaque(inner, scope));
    }
    let (mut action, mut state, mut guest, mut host) = (None, None, None, None);
    p.children(&first, |fp, c| {
        match c.local() {
            b"action" => action = Some(HotDeskAction::decode_xml(fp, &c)?),
            b"state" => state = Some(HotDeskState::decode_xml(fp, &c)?),
            b"guest" => guest = Some(CompactString::decode_xml(fp, &c)?).filter(|s| !s.is_empty()),
            b"host" => host = Some(CompactString::decode_xml(fp, &c)?).filter(|s| !s.is_empty()),
            _ => fp.skip(&c)?,
        }
        Ok(())
    })?;
    // anything after the dialect element is ignored
    p.children(el, |p, c| p.skip(&c))?;
    if kind == b"guestAssociatedExtension" {
        return Ok(PrivateContent::HotDesk(HotDesk::Extension {
            action,
            guest,
            host,
        }));
    }
    let missing = |field| DecodeError::Missing {
        message: "guestAssociatedEvent",
        field,
    };
    Ok(PrivateContent::HotDesk(HotDesk::Event {
        state: state.ok_or(missing("state"))?,
        guest: guest.ok_or(missing("guest"))?,
        host: host.ok_or(missing("host"))?,
    }))
}

impl XmlValue for PrivateData {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        Ok(PrivateData::decode_opt(p, el)?.unwrap_or(PrivateData::String(String::new())))
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        let m = w.open(name);
        match self {
            PrivateData::String(s) => w.text_elem("string", s),
            PrivateData::Private(PrivateContent::Opaque { xml, namespaces }) => {
                w.out.extend_from_slice(b"<private");
                for (prefix, uri) in namespaces {
                    w.out.extend_from_slice(b" xmlns");
                    if !prefix.is_empty() {
                        w.out.push(b':');
                        w.out.extend_from_slice(prefix.as_bytes());
                    }
                    w.out.extend_from_slice(b"=\"");
                    crate::xml::escape_into(w.out, uri, true);
                    w.out.push(b'"');
                }
                w.out.push(b'>');
                w.raw(xml);
                w.raw("</private>");
            }
            PrivateData::Private(PrivateContent::HotDesk(h)) => {
                let pm = w.open("private");
                encode_hotdesk(w, h);
                w.close("private", pm);
            }
            PrivateData::Private(PrivateContent::NotReadyReason(code)) => {
                w.out.extend_from_slice(b"<private xmlns:pri=\"");
                crate::xml::escape_into(w.out, BROADSOFT_NS, true);
                w.out.extend_from_slice(b"\">");
                w.text_elem("pri:AgentNotReadyReasonValue", code);
                w.raw("</private>");
            }
        }
        w.close(name, m);
    }
    fn is_blank(&self) -> bool {
        matches!(self, PrivateData::String(s) if s.is_empty())
    }
}

fn encode_hotdesk(w: &mut Writer<'_>, h: &HotDesk) {
    let top = match h {
        HotDesk::Extension { .. } => "hd:guestAssociatedExtension",
        HotDesk::Event { .. } => "hd:guestAssociatedEvent",
    };
    w.out.push(b'<');
    w.out.extend_from_slice(top.as_bytes());
    w.out.extend_from_slice(b" xmlns:hd=\"");
    let ns = w.hotdesk_ns;
    crate::xml::escape_into(w.out, ns, true);
    w.out.extend_from_slice(b"\">");
    let mark = w.out.len();
    match h {
        HotDesk::Extension {
            action,
            guest,
            host,
        } => {
            if let Some(a) = action {
                w.text_elem("hd:action", a.as_str());
            }
            if let Some(g) = guest {
                w.text_elem("hd:guest", g);
            }
            if let Some(x) = host {
                w.text_elem("hd:host", x);
            }
        }
        HotDesk::Event { state, guest, host } => {
            w.text_elem("hd:state", state.as_str());
            w.text_elem("hd:guest", guest);
            w.text_elem("hd:host", host);
        }
    }
    w.close(top, mark);
}

impl JsonValue for PrivateData {
    fn to_json(&self) -> Value {
        match self {
            PrivateData::String(s) => serde_json::json!({ "string": s }),
            PrivateData::Private(PrivateContent::Opaque { xml, namespaces }) => {
                let ns: serde_json::Map<String, Value> = namespaces
                    .iter()
                    .map(|(p, u)| (p.clone(), Value::String(u.clone())))
                    .collect();
                serde_json::json!({ "private": { "xml": xml, "namespaces": ns } })
            }
            PrivateData::Private(PrivateContent::HotDesk(HotDesk::Extension {
                action,
                guest,
                host,
            })) => {
                let mut m = serde_json::Map::new();
                if let Some(a) = action {
                    m.insert("action".into(), a.as_str().into());
                }
                if let Some(g) = guest {
                    m.insert("guest".into(), g.as_str().into());
                }
                if let Some(h) = host {
                    m.insert("host".into(), h.as_str().into());
                }
                serde_json::json!({ "private": { "guestAssociatedExtension": m } })
            }
            PrivateData::Private(PrivateContent::HotDesk(HotDesk::Event {
                state,
                guest,
                host,
            })) => serde_json::json!({ "private": { "guestAssociatedEvent": {
                "state": state.as_str(), "guest": guest.as_str(), "host": host.as_str() } } }),
            PrivateData::Private(PrivateContent::NotReadyReason(code)) => {
                serde_json::json!({ "private": { "agentNotReadyReasonValue": code.as_str() } })
            }
        }
    }
    fn from_json(v: &Value, field: &str) -> std::result::Result<Self, JsonError> {
        if let Some(s) = v.get("string") {
            return String::from_json(s, "string").map(PrivateData::String);
        }
        let Some(p) = v.get("private") else {
            return Err(JsonError::new(field, "an object with private or string", v));
        };
        let opt_str = |o: &Value, k: &str| -> std::result::Result<Option<String>, JsonError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => String::from_json(x, k).map(Some),
            }
        };
        if let Some(e) = p.get("guestAssociatedExtension") {
            let action = match e.get("action") {
                None | Some(Value::Null) => None,
                Some(a) => Some(HotDeskAction::from_json(a, "action")?),
            };
            return Ok(HotDesk::Extension {
                action,
                guest: opt_str(e, "guest")?.map(CompactString::from),
                host: opt_str(e, "host")?.map(CompactString::from),
            }
            .into_private_data());
        }
        if let Some(e) = p.get("guestAssociatedEvent") {
            let req = |k: &str| {
                opt_str(e, k)?.ok_or_else(|| JsonError::missing("guestAssociatedEvent", k))
            };
            let state = HotDeskState::parse(&req("state")?);
            return Ok(HotDesk::Event {
                state,
                guest: req("guest")?.into(),
                host: req("host")?.into(),
            }
            .into_private_data());
        }
        if let Some(c) = p.get("agentNotReadyReasonValue") {
            let code = match c {
                Value::Number(n) => n.to_string(),
                other => String::from_json(other, "agentNotReadyReasonValue")?,
            };
            return Ok(PrivateData::with_not_ready_reason(&code));
        }
        let xml = opt_str(p, "xml")?.unwrap_or_default();
        let mut namespaces = Vec::new();
        if let Some(Value::Object(m)) = p.get("namespaces") {
            for (k, u) in m {
                namespaces.push((k.clone(), String::from_json(u, k)?));
            }
        }
        Ok(PrivateData::Private(PrivateContent::Opaque {
            xml,
            namespaces,
        }))
    }
}
