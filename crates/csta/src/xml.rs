//! The XML layer: a streaming pull parser over quick-xml that resolves namespaces only where they
//! matter (the root and private data), the [`XmlValue`] trait every typed value implements, the
//! writer, and the top-level [`decode`] / [`encode`] entry points.
//!
//! Decoding is recursive descent over the event stream (no tree is built): a struct reads its
//! children in any order, matching them by local name, and skips what it does not know.

use std::borrow::Cow;

use compact_str::CompactString;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::{DecodeError, EncodeError, Result};
use crate::messages::Message;
use crate::private::HOTDESK_NS;

/// ECMA-323 edition used when encoding (decoding accepts every edition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Edition {
    #[default]
    Ed3,
    Ed4,
    Ed5,
    Ed6,
}

/// ECMA-354 application-session namespace.
pub const NS_354: &str = "http://www.ecma-international.org/standards/ecma-354/appl_session";
const NS_323_PREFIX: &str = "http://www.ecma-international.org/standards/ecma-323/csta/";

impl Edition {
    /// The edition's namespace URI.
    pub fn namespace(self) -> &'static str {
        match self {
            Edition::Ed3 => "http://www.ecma-international.org/standards/ecma-323/csta/ed3",
            Edition::Ed4 => "http://www.ecma-international.org/standards/ecma-323/csta/ed4",
            Edition::Ed5 => "http://www.ecma-international.org/standards/ecma-323/csta/ed5",
            Edition::Ed6 => "http://www.ecma-international.org/standards/ecma-323/csta/ed6",
        }
    }
    /// `ed3` … `ed6`.
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Ed3 => "ed3",
            Edition::Ed4 => "ed4",
            Edition::Ed5 => "ed5",
            Edition::Ed6 => "ed6",
        }
    }
    /// Parse `ed3` … `ed6`.
    pub fn parse(s: &str) -> Option<Edition> {
        match s {
            "ed3" => Some(Edition::Ed3),
            "ed4" => Some(Edition::Ed4),
            "ed5" => Some(Edition::Ed5),
            "ed6" => Some(Edition::Ed6),
            _ => None,
        }
    }
    /// The edition a namespace URI names, if it is an ECMA-323 one.
    pub fn from_namespace(ns: &str) -> Option<Edition> {
        Edition::parse(ns.strip_prefix(NS_323_PREFIX)?)
    }
}

impl std::fmt::Display for Edition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options shared by decode and encode on one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecOptions {
    /// Edition written by the encoder.
    pub edition: Edition,
    /// Namespace URI of the hot-desking private-data dialect.
    pub hotdesk_ns: String,
}

impl Default for CodecOptions {
    fn default() -> Self {
        CodecOptions {
            edition: Edition::Ed3,
            hotdesk_ns: HOTDESK_NS.to_string(),
        }
    }
}

impl CodecOptions {
    /// Default options with the given encoding edition.
    pub fn with_edition(edition: Edition) -> Self {
        CodecOptions {
            edition,
            ..Default::default()
        }
    }
}

/// A decoded document: the message and the edition its root namespace named (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub message: Message,
    /// `None` for no namespace, the ECMA-354 namespace or an unknown one.
    pub edition: Option<Edition>,
}

// ---------------------------------------------------------------------------------------------
// Parser

/// One start tag (or empty-element tag) the parser handed out.
pub struct Elem<'a> {
    pub(crate) start: BytesStart<'a>,
    /// `<x/>`: there are no children and no text, and no end tag follows.
    pub(crate) empty: bool,
}

impl Elem<'_> {
    /// The local name (prefix stripped).
    pub fn local(&self) -> &[u8] {
        let n = self.start.name().into_inner();
        match n.iter().position(|&b| b == b':') {
            Some(i) => &n[i + 1..],
            None => n,
        }
    }
    fn prefix(&self) -> &[u8] {
        let n = self.start.name().into_inner();
        match n.iter().position(|&b| b == b':') {
            Some(i) => &n[..i],
            None => b"",
        }
    }
    /// The local name as text (lossy).
    pub fn local_str(&self) -> String {
        String::from_utf8_lossy(self.local()).into_owned()
    }
}

/// What [`Parser::next`] saw.
pub enum Next<'a> {
    Start(Elem<'a>),
    Text(Cow<'a, str>),
    End,
    Eof,
}

/// Is `s` only XML whitespace (space, tab, CR, LF)?
pub fn is_xml_space(s: &str) -> bool {
    is_xml_space_bytes(s.as_bytes())
}

fn is_xml_space_bytes(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// `s` without leading and trailing XML whitespace (not Unicode whitespace: U+00A0 is data).
pub fn trim_xml(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

fn trim_cow(c: Cow<'_, str>) -> Cow<'_, str> {
    match c {
        Cow::Borrowed(s) => Cow::Borrowed(trim_xml(s)),
        Cow::Owned(s) => {
            let t = trim_xml(&s);
            if t.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(t.to_string())
            }
        }
    }
}

/// The pull parser used by every [`XmlValue`] decoder.
pub struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    input: &'a str,
    /// In-scope namespace declarations: (depth, prefix, uri); prefix "" is the default namespace.
    /// Borrowed from the input unless the URI had to be unescaped.
    ns: Vec<(usize, Cow<'a, str>, Cow<'a, str>)>,
    depth: usize,
    /// An empty element's declarations are popped at the next call.
    pop_after_empty: bool,
    pub(crate) opts: &'a CodecOptions,
}

fn xml_err(pos: u64, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Xml {
        position: pos,
        reason: e.to_string(),
    }
}

impl<'a> Parser<'a> {
    pub(crate) fn new(input: &'a str, opts: &'a CodecOptions) -> Self {
        // Whitespace between elements is skipped by the reader (no event). Inside a text value
        // `Parser::text` turns that off, and trims after unescaping and joining the pieces
        // (quick-xml's trimming would trim each piece between comments, CDATA and child elements
        // on its own, and before character references are expanded).
        let mut reader = Reader::from_str(input);
        reader.config_mut().trim_text_start = true;
        Parser {
            reader,
            input,
            ns: Vec::new(),
            depth: 0,
            pop_after_empty: false,
            opts,
        }
    }

    /// Push the namespace declarations among `start`'s attributes.
    #[inline]
    fn push_decls(&mut self, start: &BytesStart<'_>, depth: usize) -> Result<()> {
        // most elements have no attributes: no call
        if start.len() > start.name().as_ref().len() {
            self.push_attr_decls(start, depth)
        } else {
            Ok(())
        }
    }

    #[inline(never)]
    fn push_attr_decls(&mut self, start: &BytesStart<'_>, depth: usize) -> Result<()> {
        if start
            .attributes_raw()
            .iter()
            .all(|b| b.is_ascii_whitespace())
        {
            return Ok(());
        }
        for attr in start.attributes().with_checks(false) {
            let attr = attr.map_err(|e| xml_err(self.reader.buffer_position(), e))?;
            let key = attr.key.into_inner();
            let prefix = if key == b"xmlns" {
                Cow::Borrowed("")
            } else if let Some(p) = key.strip_prefix(b"xmlns:") {
                self.borrow_str(p)?
            } else {
                continue;
            };
            let uri = self.borrow_str(&attr.value)?;
            let uri = if uri.contains('&') {
                let u = quick_xml::escape::unescape(&uri)
                    .map_err(|e| xml_err(self.reader.buffer_position(), e))?;
                Cow::Owned(u.into_owned())
            } else {
                uri
            };
            self.ns.push((depth, prefix, uri));
        }
        Ok(())
    }

    fn pop_decls(&mut self, depth: usize) {
        while matches!(self.ns.last(), Some((d, _, _)) if *d == depth) {
            self.ns.pop();
        }
    }

    /// The namespace URI of an element handed out by the last call to `next` (`None` = no
    /// namespace). Valid until the following call.
    pub fn namespace_of(&self, el: &Elem<'_>) -> Option<&str> {
        let prefix = el.prefix();
        self.ns
            .iter()
            .rev()
            .find(|(_, p, _)| p.as_bytes() == prefix)
            .map(|(_, _, u)| &**u)
            .filter(|u| !u.is_empty())
    }

    /// The declarations in scope at `depth` (deeper ones are left out), innermost last, without
    /// the ECMA-323 namespaces (for preserving an opaque subtree: the encoder writes its own).
    pub(crate) fn in_scope_upto(&self, depth: usize) -> Vec<(String, String)> {
        let visible = |(d, _, _): &&(usize, Cow<'a, str>, Cow<'a, str>)| *d <= depth;
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, (_, p, u)) in self.ns.iter().enumerate().filter(|(_, e)| visible(e)) {
            let shadowed = self.ns[i + 1..]
                .iter()
                .filter(visible)
                .any(|(_, q, _)| q == p);
            if !shadowed && Edition::from_namespace(u).is_none() {
                out.push((p.to_string(), u.to_string()));
            }
        }
        out
    }

    /// `bytes`, which quick-xml handed out from the input, as a slice of the input `&str`: no
    /// second UTF-8 validation, no copy. Bytes from elsewhere are validated and copied.
    #[inline]
    fn borrow_str(&self, bytes: &[u8]) -> Result<Cow<'a, str>> {
        let base = self.input.as_ptr() as usize;
        let at = (bytes.as_ptr() as usize).wrapping_sub(base);
        if at <= self.input.len() && bytes.len() <= self.input.len() - at {
            if let Some(s) = self.input.get(at..at + bytes.len()) {
                return Ok(Cow::Borrowed(s));
            }
        }
        std::str::from_utf8(bytes)
            .map(|s| Cow::Owned(s.to_string()))
            .map_err(|e| xml_err(self.reader.buffer_position(), e))
    }

    /// Text content: borrowed from the input, unescaped only if it holds a reference.
    #[inline]
    fn text_of(&self, bytes: &[u8], pos: u64) -> Result<Cow<'a, str>> {
        let s = self.borrow_str(bytes)?;
        if !s.contains('&') {
            return Ok(s);
        }
        let u = quick_xml::escape::unescape(&s).map_err(|e| xml_err(pos, e))?;
        Ok(Cow::Owned(u.into_owned()))
    }

    /// The next event that matters; text that is only whitespace is skipped.
    pub fn next_node(&mut self) -> Result<Next<'a>> {
        self.next_event(false)
    }

    /// The next event; `keep_space` hands out whitespace-only text too (inside a text value,
    /// where it may sit between two pieces, e.g. `a<!-- -->&#32;<!-- -->b`).
    #[inline(always)]
    fn next_event(&mut self, keep_space: bool) -> Result<Next<'a>> {
        if self.pop_after_empty {
            self.pop_after_empty = false;
            self.pop_decls(self.depth + 1);
        }
        loop {
            let pos = self.reader.buffer_position();
            // matched in place: moving the event out of the result first costs a copy per event
            match self.reader.read_event() {
                Ok(Event::Start(start)) => {
                    self.depth += 1;
                    self.push_decls(&start, self.depth)?;
                    return Ok(Next::Start(Elem {
                        start,
                        empty: false,
                    }));
                }
                Ok(Event::Empty(start)) => {
                    self.push_decls(&start, self.depth + 1)?;
                    self.pop_after_empty = true;
                    return Ok(Next::Start(Elem { start, empty: true }));
                }
                Ok(Event::End(_)) => {
                    self.pop_decls(self.depth);
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Next::End);
                }
                Ok(Event::Text(t)) => {
                    let raw: &[u8] = &t;
                    if raw.is_empty() || (!keep_space && is_xml_space_bytes(raw)) {
                        continue;
                    }
                    return Ok(Next::Text(self.text_of(raw, pos)?));
                }
                Ok(Event::CData(c)) => {
                    let raw: &[u8] = &c;
                    if raw.is_empty() || (!keep_space && is_xml_space_bytes(raw)) {
                        continue;
                    }
                    return Ok(Next::Text(self.borrow_str(raw)?));
                }
                Ok(Event::Eof) => return Ok(Next::Eof),
                Ok(Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_)) => {}
                Err(e) => return Err(xml_err(pos, e)),
            }
        }
    }

    /// Skip the rest of an element handed out by `next` (its children and end tag).
    pub fn skip(&mut self, el: &Elem<'_>) -> Result<()> {
        self.inner_span(el).map(|_| ())
    }

    /// Skip the rest of `el` and return its raw inner XML.
    pub fn inner_span(&mut self, el: &Elem<'_>) -> Result<&'a str> {
        if el.empty {
            return Ok("");
        }
        let pos = self.reader.buffer_position();
        let span = self
            .reader
            .read_to_end(el.start.name())
            .map_err(|e| xml_err(pos, e))?;
        self.pop_decls(self.depth);
        self.depth = self.depth.saturating_sub(1);
        let (a, b) = (span.start as usize, span.end as usize);
        self.input
            .get(a..b)
            .ok_or_else(|| xml_err(pos, "span outside the document"))
    }

    /// Skip the rest of `el` (its remaining children and end tag) and return its raw inner XML
    /// from `start` (a [`Parser::position`] taken inside `el`).
    pub(crate) fn rest_from(&mut self, el: &Elem<'_>, start: u64) -> Result<&'a str> {
        if self.pop_after_empty {
            self.pop_after_empty = false;
            self.pop_decls(self.depth + 1);
        }
        let end = if el.empty {
            start
        } else {
            let pos = self.reader.buffer_position();
            let span = self
                .reader
                .read_to_end(el.start.name())
                .map_err(|e| xml_err(pos, e))?;
            self.pop_decls(self.depth);
            self.depth = self.depth.saturating_sub(1);
            span.end
        };
        self.input
            .get(start as usize..end as usize)
            .ok_or_else(|| xml_err(start, "span outside the document"))
    }

    /// The input between two positions.
    pub(crate) fn input_slice(&self, start: u64, end: u64) -> Result<&'a str> {
        self.input
            .get(start as usize..end as usize)
            .ok_or_else(|| xml_err(start, "span outside the document"))
    }

    /// Where the end tag just read starts (an end tag holds no `<`).
    pub(crate) fn end_tag_start(&self) -> u64 {
        let end = (self.reader.buffer_position() as usize).min(self.input.len());
        self.input.as_bytes()[..end]
            .iter()
            .rposition(|&b| b == b'<')
            .unwrap_or(end) as u64
    }

    /// The depth of the element handed out last (its children are one deeper).
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// The text content of `el` (unescaped, joined, then trimmed of XML whitespace), consuming
    /// it; child elements are skipped.
    pub fn text(&mut self, el: &Elem<'_>) -> Result<Cow<'a, str>> {
        if el.empty {
            return Ok(Cow::Borrowed(""));
        }
        self.reader.config_mut().trim_text_start = false;
        let out = self.text_pieces();
        self.reader.config_mut().trim_text_start = true;
        out
    }

    fn text_pieces(&mut self) -> Result<Cow<'a, str>> {
        let mut out: Option<Cow<'a, str>> = None;
        loop {
            match self.next_event(true)? {
                Next::Text(t) => {
                    out = Some(match out {
                        None => t,
                        Some(prev) => Cow::Owned(prev.into_owned() + &t),
                    })
                }
                Next::Start(child) => self.skip(&child)?,
                Next::End => return Ok(trim_cow(out.unwrap_or(Cow::Borrowed("")))),
                Next::Eof => return Err(xml_err(self.reader.buffer_position(), "unexpected end")),
            }
        }
    }

    /// Iterate the child elements of `el`, calling `f` for each; `f` must consume the child
    /// (decode it or [`Parser::skip`] it). Text between children is ignored.
    pub fn children(
        &mut self,
        el: &Elem<'_>,
        mut f: impl FnMut(&mut Self, Elem<'a>) -> Result<()>,
    ) -> Result<()> {
        if el.empty {
            return Ok(());
        }
        loop {
            match self.next_node()? {
                Next::Start(child) => f(self, child)?,
                Next::Text(_) => {}
                Next::End => return Ok(()),
                Next::Eof => return Err(xml_err(self.reader.buffer_position(), "unexpected end")),
            }
        }
    }

    /// Reader position, for error messages.
    pub fn position(&self) -> u64 {
        self.reader.buffer_position()
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Appends XML to a buffer.
pub struct Writer<'o> {
    pub(crate) out: &'o mut Vec<u8>,
    pub(crate) edition: Edition,
    pub(crate) hotdesk_ns: &'o str,
}

impl Writer<'_> {
    /// Write `<name>`; returns the mark to pass to [`Writer::close`].
    pub fn open(&mut self, name: &str) -> usize {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
        self.out.len()
    }
    /// Write `<name xmlns="ns">`.
    pub fn open_ns(&mut self, name: &str, ns: &str) -> usize {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b" xmlns=\"");
        escape_into(self.out, ns, true);
        self.out.extend_from_slice(b"\">");
        self.out.len()
    }
    /// Close `name`; an element with no content becomes `<name/>`.
    pub fn close(&mut self, name: &str, mark: usize) {
        if self.out.len() == mark {
            self.out.pop();
            self.out.extend_from_slice(b"/>");
        } else {
            self.out.extend_from_slice(b"</");
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'>');
        }
    }
    /// `<name>text</name>` with the text escaped.
    pub fn text_elem(&mut self, name: &str, text: &str) {
        let m = self.open(name);
        escape_into(self.out, text, false);
        self.close(name, m);
    }
    /// Escaped text.
    pub fn text(&mut self, text: &str) {
        escape_into(self.out, text, false);
    }
    /// Raw (already well-formed) XML.
    pub fn raw(&mut self, xml: &str) {
        self.out.extend_from_slice(xml.as_bytes());
    }
    /// `<name/>`.
    pub fn empty_elem(&mut self, name: &str) {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"/>");
    }
    /// The edition being written.
    pub fn edition(&self) -> Edition {
        self.edition
    }
}

/// XML-escape `s` into `out`.
pub fn escape_into(out: &mut Vec<u8>, s: &str, attr: bool) {
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' if attr => b"&quot;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[last..i]);
        out.extend_from_slice(rep);
        last = i + 1;
    }
    out.extend_from_slice(&bytes[last..]);
}

// ---------------------------------------------------------------------------------------------
// Value traits

/// A value that has an XML form.
pub trait XmlValue: Sized {
    /// Decode from the element `el` just handed out by the parser, consuming it.
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self>;
    /// Encode as the element `name`.
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str);
    /// An empty value stands for an absent optional element (`<agentID/>`).
    fn is_blank(&self) -> bool {
        false
    }
}

impl XmlValue for String {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        Ok(p.text(el)?.into_owned())
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        w.text_elem(name, self)
    }
    fn is_blank(&self) -> bool {
        self.is_empty()
    }
}

impl XmlValue for CompactString {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        // borrowed text of up to 24 bytes is stored inline: no allocation
        Ok(CompactString::from(p.text(el)?))
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        w.text_elem(name, self)
    }
    fn is_blank(&self) -> bool {
        self.is_empty()
    }
}

impl XmlValue for bool {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        let t = p.text(el)?;
        match &*t {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(DecodeError::Invalid {
                field: el.local_str(),
                expected: "true or false",
                found: other.to_string(),
            }),
        }
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        w.text_elem(name, if *self { "true" } else { "false" })
    }
}

impl XmlValue for u32 {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        let t = p.text(el)?;
        t.parse().map_err(|_| DecodeError::Invalid {
            field: el.local_str(),
            expected: "a decimal integer",
            found: t.to_string(),
        })
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        w.text_elem(name, &self.to_string());
    }
}

/// Decode the items named `item` inside the wrapper `el` (other children are skipped).
pub(crate) fn decode_list<'a, T: XmlValue>(
    p: &mut Parser<'a>,
    el: &Elem<'a>,
    item: &str,
    out: &mut Vec<T>,
) -> Result<()> {
    p.children(el, |p, child| {
        if child.local() == item.as_bytes() {
            out.push(T::decode_xml(p, &child)?);
            Ok(())
        } else {
            p.skip(&child)
        }
    })
}

/// Encode `<name><item>…</item>…</name>`.
pub(crate) fn encode_list<T: XmlValue>(w: &mut Writer<'_>, name: &str, item: &str, v: &[T]) {
    let m = w.open(name);
    for x in v {
        x.encode_xml(w, item);
    }
    w.close(name, m);
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Transcode per the XML declaration: UTF-8 (default) passes through, ISO-8859-1 is converted,
/// anything else is refused.
fn to_utf8(xml: &[u8]) -> Result<Cow<'_, str>> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let mut latin1 = false;
    // the declaration every peer writes: nothing to look up
    const USUAL: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    if xml.starts_with(b"<?xml") && !xml.starts_with(USUAL) {
        if let Some(end) = xml.windows(2).position(|w| w == b"?>") {
            if xml[..end].is_ascii() {
                latin1 = ascii_decl_is_latin1(&xml[..end])?;
            } else {
                latin1 = decl_is_latin1(&xml[..end])?;
            }
        }
    }
    if latin1 {
        Ok(Cow::Owned(xml.iter().map(|&b| b as char).collect()))
    } else {
        std::str::from_utf8(xml)
            .map(Cow::Borrowed)
            .map_err(|e| DecodeError::Xml {
                position: e.valid_up_to() as u64,
                reason: "invalid UTF-8".to_string(),
            })
    }
}

/// [`decl_is_latin1`] for an all-ASCII declaration, without allocating.
fn ascii_decl_is_latin1(decl: &[u8]) -> Result<bool> {
    // a cheap first-byte test before the case-insensitive comparison
    let Some(i) = (0..decl.len().saturating_sub(7))
        .find(|&i| decl[i] | 0x20 == b'e' && decl[i..i + 8].eq_ignore_ascii_case(b"encoding"))
    else {
        return Ok(false);
    };
    let ws = |b: &u8| matches!(b, 0x09..=0x0d | b' ');
    let mut rest = &decl[i + 8..];
    while rest.first().is_some_and(ws) {
        rest = &rest[1..];
    }
    while rest.first() == Some(&b'=') {
        rest = &rest[1..];
    }
    while rest.first().is_some_and(ws) {
        rest = &rest[1..];
    }
    let val = match rest.split_first() {
        None => &[][..],
        Some((&q, body)) => &body[..body.iter().position(|&c| c == q).unwrap_or(body.len())],
    };
    let is = |names: &[&str]| names.iter().any(|n| val.eq_ignore_ascii_case(n.as_bytes()));
    if is(&["utf-8", "utf8", "us-ascii", "ascii"]) {
        Ok(false)
    } else if is(&["iso-8859-1", "latin1", "latin-1", "iso8859-1", "iso_8859-1"]) {
        Ok(true)
    } else {
        Err(DecodeError::Encoding(
            String::from_utf8_lossy(val).to_ascii_lowercase(),
        ))
    }
}

/// Does the declaration (`<?xml` up to `?>`) name ISO-8859-1? UTF-8 or none: no; others: error.
fn decl_is_latin1(decl: &[u8]) -> Result<bool> {
    let decl = String::from_utf8_lossy(decl).to_ascii_lowercase();
    let Some(i) = decl.find("encoding") else {
        return Ok(false);
    };
    let rest = decl[i + 8..]
        .trim_start()
        .trim_start_matches('=')
        .trim_start();
    let q = rest.chars().next().unwrap_or('"');
    let val: String = rest.chars().skip(1).take_while(|&c| c != q).collect();
    match val.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => Ok(false),
        "iso-8859-1" | "latin1" | "latin-1" | "iso8859-1" | "iso_8859-1" => Ok(true),
        other => Err(DecodeError::Encoding(other.to_string())),
    }
}

/// Decode one CSTA XML document (no frame header) with default options.
pub fn decode(xml: &[u8]) -> Result<Message> {
    static DEFAULT: std::sync::OnceLock<CodecOptions> = std::sync::OnceLock::new();
    decode_with(xml, DEFAULT.get_or_init(CodecOptions::default)).map(|d| d.message)
}

/// Decode one CSTA XML document (no frame header).
pub fn decode_with(xml: &[u8], opts: &CodecOptions) -> Result<Decoded> {
    let text = to_utf8(xml)?;
    let mut p = Parser::new(&text, opts);
    let root = loop {
        match p.next_node()? {
            Next::Start(el) => break el,
            Next::Text(t) if is_xml_space(&t) => {}
            Next::Text(_) => return Err(xml_err(p.position(), "text outside the root element")),
            Next::End => return Err(xml_err(p.position(), "unexpected end tag")),
            Next::Eof => return Err(DecodeError::NoRoot),
        }
    };
    let edition = p.namespace_of(&root).and_then(Edition::from_namespace);
    let message = Message::decode_root(&mut p, &root, &text)?;
    // The rest must be well-formed too (comments and whitespace only).
    loop {
        match p.next_node()? {
            Next::Eof => break,
            Next::Text(t) if is_xml_space(&t) => {}
            Next::Start(_) | Next::Text(_) | Next::End => {
                return Err(xml_err(p.position(), "content after the root element"));
            }
        }
    }
    Ok(Decoded { message, edition })
}

/// Encode a message as a complete UTF-8 document in `edition`, with default options otherwise.
pub fn encode(msg: &Message, edition: Edition) -> std::result::Result<Vec<u8>, EncodeError> {
    encode_with(msg, &CodecOptions::with_edition(edition))
}

/// Encode a message as a complete UTF-8 document.
pub fn encode_with(
    msg: &Message,
    opts: &CodecOptions,
) -> std::result::Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(512);
    encode_into(msg, opts, &mut out)?;
    Ok(out)
}

/// Append the encoded document to `out`.
pub fn encode_into(
    msg: &Message,
    opts: &CodecOptions,
    out: &mut Vec<u8>,
) -> std::result::Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut w = Writer {
        out,
        edition: opts.edition,
        hotdesk_ns: &opts.hotdesk_ns,
    };
    msg.encode_root(&mut w)?;
    let len = out.len() - start;
    if len > crate::frame::MAX_XML_LEN {
        out.truncate(start);
        return Err(EncodeError::TooLarge(len));
    }
    Ok(())
}
