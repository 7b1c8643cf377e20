//! Error values of the codec: what was expected and what arrived. Never a panic.

/// Why a CSTA XML document could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not well-formed XML.
    #[error("malformed XML at byte {position}: {reason}")]
    Xml { position: u64, reason: String },
    /// The declaration names an encoding other than UTF-8 or ISO-8859-1.
    #[error("unsupported encoding {0:?} (only UTF-8 and ISO-8859-1)")]
    Encoding(String),
    /// The document has no root element.
    #[error("no root element")]
    NoRoot,
    /// A required child element is absent or empty.
    #[error("{message}: required element <{field}> is missing or empty")]
    Missing {
        message: &'static str,
        field: &'static str,
    },
    /// A value does not have the expected form.
    #[error("<{field}>: expected {expected}, found {found:?}")]
    Invalid {
        field: String,
        expected: &'static str,
        found: String,
    },
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded document would not fit in one frame.
    #[error("encoded document is {0} bytes; a frame holds at most {max} bytes of XML", max = crate::frame::MAX_XML_LEN)]
    TooLarge(usize),
    /// The message cannot be expressed (e.g. an `Unknown` message with invalid raw XML).
    #[error("cannot encode: {0}")]
    Invalid(String),
}

/// Why a frame header is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is below 8: the byte stream can no longer be split into frames.
    #[error("framing lost: length field {length} is below the 8-byte header (header bytes {header:02x?})")]
    FramingLost { length: u16, header: [u8; 8] },
    /// The format indicator is not 0x0000 (e.g. the SOAP variant); the frame is skipped.
    #[error("unsupported format indicator 0x{indicator:04x} in a {length}-byte frame")]
    Format { indicator: u16, length: u16 },
    /// Bytes 4..8 are not four ASCII digits; the frame is skipped.
    #[error("invoke ID is not four ASCII digits: {0:02x?}")]
    InvokeId([u8; 4]),
    /// The frame is larger than the configured size guard; it is skipped.
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge { length: usize, limit: usize },
    /// A message could not be encoded into a frame.
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// An I/O error from the transport (codec use only).
    #[error("i/o: {0}")]
    Io(String),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e.to_string())
    }
}

/// Result with the codec's decode error.
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;
