//! Declarative macros that give every typed CSTA value its XML and JSON forms from one
//! description: field name, kind (`req`, `opt`, `list`), type and element name, in schema order.

/// An enumeration of XML literals that keeps unknown literals as `Other(String)`.
#[macro_export]
#[doc(hidden)]
macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident = $lit:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = concat!("`", $lit, "`")] $var,)*
            /// A literal this build does not know (kept verbatim).
            Other(String),
        }
        impl $name {
            /// Every literal of the standard, in schema order.
            pub const LITERALS: &'static [&'static str] = &[$($lit),*];
            /// The XML literal.
            pub fn as_str(&self) -> &str {
                match self { $(Self::$var => $lit,)* Self::Other(s) => s }
            }
            /// Parse a literal; an unknown one becomes `Other`.
            pub fn parse(s: &str) -> Self {
                match s { $($lit => Self::$var,)* other => Self::Other(other.to_string()) }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
        impl $crate::xml::XmlValue for $name {
            fn decode_xml<'a>(p: &mut $crate::xml::Parser<'a>, el: &$crate::xml::Elem<'a>) -> $crate::error::Result<Self> {
                Ok(Self::parse(&p.text(el)?))
            }
            fn encode_xml(&self, w: &mut $crate::xml::Writer<'_>, name: &str) { w.text_elem(name, self.as_str()) }
            fn is_blank(&self) -> bool { matches!(self, Self::Other(s) if s.is_empty()) }
        }
        impl $crate::types::FromText for $name {
            fn from_text(s: &str) -> Self { Self::parse(s) }
        }
        impl $crate::json::JsonValue for $name {
            fn to_json(&self) -> serde_json::Value { serde_json::Value::String(self.as_str().to_string()) }
            fn from_json(v: &serde_json::Value, field: &str) -> Result<Self, $crate::json::JsonError> {
                match v.as_str() {
                    Some(s) => Ok(Self::parse(s)),
                    None => Err($crate::json::JsonError::new(field, "a string literal", v)),
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_ty {
    (req $t:ty) => { $t };
    (opt $t:ty) => { Option<$t> };
    (list $t:ty) => { Vec<$t> };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_init {
    (list $t:ty) => {
        Vec::<$t>::new()
    };
    ($k:ident $t:ty) => {
        None::<$t>
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_assign {
    (list $t:ty, $p:ident, $child:ident, $slot:ident, $item:expr) => {
        $crate::xml::decode_list::<$t>($p, &$child, $item, &mut $slot)?
    };
    ($k:ident $t:ty, $p:ident, $child:ident, $slot:ident, $item:expr) => {{
        let v = <$t as $crate::xml::XmlValue>::decode_xml($p, &$child)?;
        if !$crate::xml::XmlValue::is_blank(&v) {
            $slot = Some(v);
        }
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_finish {
    (req, $slot:ident, $xml:expr, $msg:expr) => {
        $slot.ok_or($crate::error::DecodeError::Missing {
            message: $msg,
            field: $xml,
        })?
    };
    ($k:ident, $slot:ident, $xml:expr, $msg:expr) => {
        $slot
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_encode {
    (req, $w:ident, $v:expr, $xml:expr, $item:expr) => {
        $crate::xml::XmlValue::encode_xml(&$v, $w, $xml)
    };
    (opt, $w:ident, $v:expr, $xml:expr, $item:expr) => {
        if let Some(x) = &$v {
            $crate::xml::XmlValue::encode_xml(x, $w, $xml)
        }
    };
    (list, $w:ident, $v:expr, $xml:expr, $item:expr) => {
        if !$v.is_empty() {
            $crate::xml::encode_list($w, $xml, $item, &$v)
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_to_json {
    (req, $map:ident, $v:expr, $xml:expr) => {
        $map.insert($xml.to_string(), $crate::json::JsonValue::to_json(&$v));
    };
    (opt, $map:ident, $v:expr, $xml:expr) => {
        if let Some(x) = &$v {
            $map.insert($xml.to_string(), $crate::json::JsonValue::to_json(x));
        }
    };
    (list, $map:ident, $v:expr, $xml:expr) => {
        if !$v.is_empty() {
            $map.insert(
                $xml.to_string(),
                serde_json::Value::Array($v.iter().map($crate::json::JsonValue::to_json).collect()),
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_from_json {
    (req $t:ty, $obj:ident, $xml:expr, $msg:expr) => {
        match $obj.get($xml) {
            Some(v) => <$t as $crate::json::JsonValue>::from_json(v, $xml)?,
            None => return Err($crate::json::JsonError::missing($msg, $xml)),
        }
    };
    (opt $t:ty, $obj:ident, $xml:expr, $msg:expr) => {
        match $obj.get($xml) {
            Some(serde_json::Value::Null) | None => None,
            Some(v) => Some(<$t as $crate::json::JsonValue>::from_json(v, $xml)?),
        }
    };
    (list $t:ty, $obj:ident, $xml:expr, $msg:expr) => {
        match $obj.get($xml) {
            Some(serde_json::Value::Null) | None => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| <$t as $crate::json::JsonValue>::from_json(v, $xml))
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => return Err($crate::json::JsonError::new($xml, "an array", v)),
        }
    };
}

/// A sequence type: named children in schema order, decoded in any order. Written
/// `Name + extensions { … }`, the struct also gets a trailing optional `extensions` (the
/// standard's private-data carrier).
#[macro_export]
#[doc(hidden)]
macro_rules! xml_struct {
    (
        $(#[$m:meta])*
        $name:ident $(+ $ext:ident)? {
            $( $(#[$fm:meta])* $field:ident : $kind:ident $t:ty = $xml:literal $(| $alias:literal)* $(; item $item:literal)? ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fm])* #[doc = concat!("`", $xml, "`")] pub $field: $crate::__field_ty!($kind $t), )*
            $( /// `extensions` (private data).
            pub $ext: Option<$crate::types::Extensions>, )?
        }

        impl $name {
            #[allow(unused_variables, unused_mut)]
            pub(crate) fn decode_children<'a>(p: &mut $crate::xml::Parser<'a>, el: &$crate::xml::Elem<'a>) -> $crate::error::Result<Self> {
                $( let mut $field = $crate::__field_init!($kind $t); )*
                $( let mut $ext: Option<$crate::types::Extensions> = None; )?
                p.children(el, |p, child| {
                    let local = child.local();
                    $(
                        if local == $xml.as_bytes() $(|| local == $alias.as_bytes())* {
                            let item: &str = "" $(; let item: &str = $item)?;
                            $crate::__field_assign!($kind $t, p, child, $field, item);
                            return Ok(());
                        }
                    )*
                    $( if local == b"extensions" {
                        let v = <$crate::types::Extensions as $crate::xml::XmlValue>::decode_xml(p, &child)?;
                        if !$crate::xml::XmlValue::is_blank(&v) { $ext = Some(v); }
                        return Ok(());
                    } )?
                    p.skip(&child)
                })?;
                Ok(Self {
                    $( $field: $crate::__field_finish!($kind, $field, $xml, stringify!($name)), )*
                    $( $ext, )?
                })
            }

            #[allow(unused_variables)]
            pub(crate) fn encode_children(&self, w: &mut $crate::xml::Writer<'_>) {
                $(
                    let item: &str = "" $(; let item: &str = $item)?;
                    $crate::__field_encode!($kind, w, self.$field, $xml, item);
                )*
                $( if let Some(x) = &self.$ext { $crate::xml::XmlValue::encode_xml(x, w, "extensions") } )?
            }

            #[allow(unused_mut)]
            pub(crate) fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
                let mut map = serde_json::Map::new();
                $( $crate::__field_to_json!($kind, map, self.$field, $xml); )*
                $( if let Some(x) = &self.$ext { map.insert("extensions".to_string(), $crate::json::JsonValue::to_json(x)); } )?
                map
            }

            #[allow(unused_variables)]
            pub(crate) fn from_json_map(obj: &serde_json::Map<String, serde_json::Value>) -> Result<Self, $crate::json::JsonError> {
                Ok(Self {
                    $( $field: $crate::__field_from_json!($kind $t, obj, $xml, stringify!($name)), )*
                    $( $ext: match obj.get("extensions") {
                        Some(serde_json::Value::Null) | None => None,
                        Some(v) => Some(<$crate::types::Extensions as $crate::json::JsonValue>::from_json(v, "extensions")?),
                    }, )?
                })
            }
        }

        impl $crate::xml::XmlValue for $name {
            fn decode_xml<'a>(p: &mut $crate::xml::Parser<'a>, el: &$crate::xml::Elem<'a>) -> $crate::error::Result<Self> {
                Self::decode_children(p, el)
            }
            fn encode_xml(&self, w: &mut $crate::xml::Writer<'_>, name: &str) {
                let m = w.open(name);
                self.encode_children(w);
                w.close(name, m);
            }
        }

        impl $crate::json::JsonValue for $name {
            fn to_json(&self) -> serde_json::Value { serde_json::Value::Object(self.to_json_map()) }
            fn from_json(v: &serde_json::Value, field: &str) -> Result<Self, $crate::json::JsonError> {
                match v.as_object() {
                    Some(o) => Self::from_json_map(o),
                    None => Err($crate::json::JsonError::new(field, "an object", v)),
                }
            }
        }
    };
}

/// A choice type: exactly one of several child elements. `values` carry content, `markers` are
/// empty elements. Plain text instead of a child is read as the first value variant (sloppy
/// peers write `<callingDevice>4001</callingDevice>`).
#[macro_export]
#[doc(hidden)]
macro_rules! xml_choice {
    (
        $(#[$m:meta])*
        $name:ident {
            values: [ $($var:ident($t:ty) = $xml:literal $(| $alias:literal)*),* $(,)? ],
            markers: [ $($mvar:ident = $mxml:literal),* $(,)? ] $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( #[doc = concat!("`", $xml, "`")] $var($t), )*
            $( #[doc = concat!("`<", $mxml, "/>`")] $mvar, )*
        }

        impl $name {
            #[allow(unreachable_code, unused_variables)]
            pub(crate) fn decode_children<'a>(p: &mut $crate::xml::Parser<'a>, el: &$crate::xml::Elem<'a>) -> $crate::error::Result<Self> {
                let mut found: Option<Self> = None;
                let mut text: Option<String> = None;
                if el.empty {
                    return Err($crate::error::DecodeError::Invalid { field: el.local_str(), expected: concat!("one of" $(, " ", $xml)* $(, " ", $mxml)*), found: String::new() });
                }
                loop {
                    match p.next_node()? {
                        $crate::xml::Next::Start(child) => {
                            let local = child.local();
                            if found.is_some() { p.skip(&child)?; continue; }
                            $(
                                if local == $xml.as_bytes() $(|| local == $alias.as_bytes())* {
                                    found = Some(Self::$var(<$t as $crate::xml::XmlValue>::decode_xml(p, &child)?));
                                    continue;
                                }
                            )*
                            $(
                                if local == $mxml.as_bytes() {
                                    p.skip(&child)?;
                                    found = Some(Self::$mvar);
                                    continue;
                                }
                            )*
                            p.skip(&child)?;
                        }
                        $crate::xml::Next::Text(t) => {
                            // whitespace before the first text is trimmed anyway: no allocation
                            if text.is_some() || !$crate::xml::is_xml_space(&t) {
                                text.get_or_insert_with(String::new).push_str(&t);
                            }
                        }
                        $crate::xml::Next::End => break,
                        $crate::xml::Next::Eof => return Err($crate::error::DecodeError::Xml { position: p.position(), reason: "unexpected end".into() }),
                    }
                }
                if let Some(f) = found { return Ok(f); }
                if let Some(t) = text.as_deref().map($crate::xml::trim_xml).filter(|t| !t.is_empty()) {
                    $( return Ok(Self::$var(<$t as $crate::types::FromText>::from_text(t))); )*
                }
                Err($crate::error::DecodeError::Invalid { field: el.local_str(), expected: concat!("one of" $(, " ", $xml)* $(, " ", $mxml)*), found: String::new() })
            }

            pub(crate) fn encode_children(&self, w: &mut $crate::xml::Writer<'_>) {
                match self {
                    $( Self::$var(v) => $crate::xml::XmlValue::encode_xml(v, w, $xml), )*
                    $( Self::$mvar => w.empty_elem($mxml), )*
                }
            }

            /// The chosen element's name.
            pub fn choice_name(&self) -> &'static str {
                match self {
                    $( Self::$var(_) => $xml, )*
                    $( Self::$mvar => $mxml, )*
                }
            }
        }

        impl $crate::xml::XmlValue for $name {
            fn decode_xml<'a>(p: &mut $crate::xml::Parser<'a>, el: &$crate::xml::Elem<'a>) -> $crate::error::Result<Self> {
                Self::decode_children(p, el)
            }
            fn encode_xml(&self, w: &mut $crate::xml::Writer<'_>, name: &str) {
                let m = w.open(name);
                self.encode_children(w);
                w.close(name, m);
            }
        }

        impl $crate::json::JsonValue for $name {
            fn to_json(&self) -> serde_json::Value {
                let mut map = serde_json::Map::new();
                match self {
                    $( Self::$var(v) => { map.insert($xml.to_string(), $crate::json::JsonValue::to_json(v)); } )*
                    $( Self::$mvar => { map.insert($mxml.to_string(), serde_json::Value::Bool(true)); } )*
                }
                serde_json::Value::Object(map)
            }
            #[allow(unreachable_code)]
            fn from_json(v: &serde_json::Value, field: &str) -> Result<Self, $crate::json::JsonError> {
                let Some(o) = v.as_object() else {
                    $( if let Some(s) = v.as_str() { return Ok(Self::$var(<$t as $crate::types::FromText>::from_text(s))); } )*
                    return Err($crate::json::JsonError::new(field, "an object with one key", v));
                };
                $( if let Some(x) = o.get($xml) { return Ok(Self::$var(<$t as $crate::json::JsonValue>::from_json(x, $xml)?)); } )*
                $( if o.contains_key($mxml) { return Ok(Self::$mvar); } )*
                Err($crate::json::JsonError::new(field, concat!("one of" $(, " ", $xml)* $(, " ", $mxml)*), v))
            }
        }
    };
}
