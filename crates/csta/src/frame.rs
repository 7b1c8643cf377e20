//! The 8-byte frame (csta-xml.md §1): format indicator `0x0000`, u16 big-endian total length
//! (header included), 4 ASCII-digit invoke ID (`9999` = unsolicited event), then one XML document.
//!
//! Decoding is two steps: wait until a whole frame is buffered, then judge it. Only a length
//! below 8 loses the framing (an `Err`, the link must be reset); every other bad frame is
//! consumed and handed back as [`FrameItem::Skipped`] so the stream goes on.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, FrameError};
use crate::messages::Message;
use crate::xml::CodecOptions;

/// Header length.
pub const HEADER_LEN: usize = 8;
/// Largest frame the u16 length can describe.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// Largest XML document in one frame.
pub const MAX_XML_LEN: usize = MAX_FRAME_LEN - HEADER_LEN;

/// A 4-digit invoke ID, `0000`–`9999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvokeId(u16);

impl InvokeId {
    /// `9999`: unsolicited events.
    pub const EVENT: InvokeId = InvokeId(9999);
    /// An ID; `None` above 9999.
    pub const fn new(n: u16) -> Option<InvokeId> {
        if n <= 9999 {
            Some(InvokeId(n))
        } else {
            None
        }
    }
    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }
    /// Is this `9999`?
    pub const fn is_event(self) -> bool {
        self.0 == 9999
    }
    /// The four ASCII digits.
    pub fn to_ascii(self) -> [u8; 4] {
        let n = self.0;
        [
            b'0' + (n / 1000) as u8,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ]
    }
    /// Parse four ASCII digits.
    pub fn from_ascii(b: [u8; 4]) -> Option<InvokeId> {
        let mut n: u16 = 0;
        for d in b {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u16::from(d - b'0');
        }
        Some(InvokeId(n))
    }
}

impl std::fmt::Display for InvokeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// One frame: its invoke ID and XML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub invoke_id: InvokeId,
    pub xml: Bytes,
}

/// What the frame decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameItem {
    /// A good frame.
    Frame(Frame),
    /// A bad frame that was consumed (log and count it; the link lives).
    Skipped { error: FrameError, raw: Bytes },
}

/// Take the next frame from `buf` if a whole one is buffered. `limit` is the size guard (at most
/// [`MAX_FRAME_LEN`]); a larger frame is skipped.
pub fn decode_frame(buf: &mut BytesMut, limit: usize) -> Result<Option<FrameItem>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf[..HEADER_LEN]);
    let indicator = u16::from_be_bytes([header[0], header[1]]);
    let length = u16::from_be_bytes([header[2], header[3]]);
    if (length as usize) < HEADER_LEN {
        return Err(FrameError::FramingLost { length, header });
    }
    if buf.len() < length as usize {
        buf.reserve(length as usize - buf.len());
        return Ok(None);
    }
    let raw = buf.split_to(length as usize).freeze();
    if indicator != 0 {
        return Ok(Some(FrameItem::Skipped {
            error: FrameError::Format { indicator, length },
            raw,
        }));
    }
    if length as usize > limit {
        return Ok(Some(FrameItem::Skipped {
            error: FrameError::TooLarge {
                length: length as usize,
                limit,
            },
            raw,
        }));
    }
    let id = [header[4], header[5], header[6], header[7]];
    let Some(invoke_id) = InvokeId::from_ascii(id) else {
        return Ok(Some(FrameItem::Skipped {
            error: FrameError::InvokeId(id),
            raw,
        }));
    };
    let mut raw = raw;
    raw.advance(HEADER_LEN);
    Ok(Some(FrameItem::Frame(Frame {
        invoke_id,
        xml: raw,
    })))
}

/// Append a frame holding `xml` to `dst`.
pub fn encode_frame(
    invoke_id: InvokeId,
    xml: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    if xml.len() > MAX_XML_LEN {
        return Err(EncodeError::TooLarge(xml.len()));
    }
    dst.reserve(HEADER_LEN + xml.len());
    dst.put_u16(0);
    dst.put_u16((HEADER_LEN + xml.len()) as u16);
    dst.put_slice(&invoke_id.to_ascii());
    dst.put_slice(xml);
    Ok(())
}

/// Encode `msg` and append it as one frame to `dst`.
pub fn encode_message(
    invoke_id: InvokeId,
    msg: &Message,
    opts: &CodecOptions,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut xml = Vec::with_capacity(512);
    crate::xml::encode_into(msg, opts, &mut xml)?;
    encode_frame(invoke_id, &xml, dst)
}
