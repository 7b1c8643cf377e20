//! The fuzz entry functions. Each takes arbitrary bytes, must never panic on its own account,
//! and asserts the codec's invariants (a panic here is a finding):
//!
//! * [`xml`]: whatever [`decode`] accepts re-encodes in every edition to a document that decodes
//!   to the same message, and survives the JSON form (`ctictl csta decode|encode`).
//! * [`frame`]: the frame decoder, fed the bytes in chunks whose size the first byte picks,
//!   accounts for every byte, agrees with a single-chunk feed, and each frame's XML goes to
//!   [`xml`].
//!
//! This file is compiled twice: by the fuzz crate (`crates/csta/fuzz`) and, included by path, by
//! the regular test `crates/csta/tests/fuzz_corpus.rs`. It may use only `ctid_csta`, its
//! dependencies `bytes` and `serde_json`, and `std`.

use bytes::BytesMut;
use ctid_csta::frame::{decode_frame, FrameItem, MAX_FRAME_LEN};
use ctid_csta::{decode, decode_with, encode, json, CodecOptions, Edition, EncodeError, Message};

const EDITIONS: [Edition; 4] = [Edition::Ed3, Edition::Ed4, Edition::Ed5, Edition::Ed6];

/// Decode one XML document; if it decodes, check the round trips.
pub fn xml(data: &[u8]) {
    let Ok(decoded) = decode_with(data, &CodecOptions::default()) else {
        return;
    };
    check_round_trip(&decoded.message);
}

/// Assert that `msg` survives encode → decode in every edition and the JSON form.
pub fn check_round_trip(msg: &Message) {
    let j = json::to_json(msg);
    let text = j.to_string();
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("JSON text parses");
    let from = json::from_json(&parsed)
        .unwrap_or_else(|e| panic!("JSON of a decoded message is refused: {e}\n{text}"));
    assert_eq!(&from, msg, "JSON round trip\n{text}");
    for ed in EDITIONS {
        let out = match encode(msg, ed) {
            Ok(out) => out,
            // a document near the frame limit can grow when re-encoded (escapes, namespace)
            Err(EncodeError::TooLarge(_)) => continue,
            Err(e) => panic!("a decoded message does not encode in {ed}: {e}\n{msg:?}"),
        };
        let again = decode(&out).unwrap_or_else(|e| {
            panic!(
                "re-encoded message ({ed}) does not decode: {e}\n{msg:?}\n{}",
                String::from_utf8_lossy(&out)
            )
        });
        match (msg, &again) {
            // Unknown roots keep the document verbatim; re-encoding drops the declaration.
            (Message::Unknown(a), Message::Unknown(b)) => assert_eq!(a.name, b.name),
            _ => assert_eq!(
                &again,
                msg,
                "re-encoded message ({ed}) decodes differently\n{}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Feed the bytes to the frame decoder in chunks, then each frame's XML to [`xml`].
pub fn frame(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 32) + 1;
    let limit = if first & 0x80 != 0 {
        512
    } else {
        MAX_FRAME_LEN
    };
    let chunked = feed(rest.chunks(chunk), limit);
    let whole = feed(std::iter::once(rest), limit);
    // (once the framing is lost, how much was buffered depends on the chunks: not compared)
    assert_eq!(
        chunked.0, whole.0,
        "splitting the stream changed the frames"
    );
    assert_eq!(
        chunked.1, whole.1,
        "splitting the stream changed the framing loss"
    );
    let (items, lost, left) = whole;
    if lost {
        // the framing is lost exactly where a header's length field is below 8
        let consumed: usize = items.iter().map(raw_len).sum();
        let header = &rest[consumed..];
        assert!(header.len() >= 8 && u16::from_be_bytes([header[2], header[3]]) < 8);
    } else {
        let consumed: usize = items.iter().map(raw_len).sum();
        assert_eq!(consumed + left, rest.len(), "bytes went missing");
        // what stays buffered is an incomplete frame
        let tail = &rest[rest.len() - left..];
        if left >= 8 {
            assert!(left < usize::from(u16::from_be_bytes([tail[2], tail[3]])));
        }
    }
    for item in &items {
        if let FrameItem::Frame(f) = item {
            assert!(f.xml.len() + 8 <= limit);
            xml(&f.xml);
        }
    }
}

fn raw_len(i: &FrameItem) -> usize {
    match i {
        FrameItem::Frame(f) => f.xml.len() + 8,
        FrameItem::Skipped { raw, .. } => raw.len(),
    }
}

/// Items decoded, whether the framing was lost, and how many bytes stayed buffered.
fn feed<'a>(chunks: impl Iterator<Item = &'a [u8]>, limit: usize) -> (Vec<FrameItem>, bool, usize) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match decode_frame(&mut buf, limit) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(_) => return (out, true, buf.len()),
            }
        }
    }
    (out, false, buf.len())
}
