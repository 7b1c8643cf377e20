//! `cargo bench -p ctid-csta`: decode and encode of a ~1 KB DeliveredEvent, a framed stream of
//! 100 mixed events (frame decode + XML decode), and a bare quick-xml tokenizer pass over the same
//! bytes for comparison. After the criterion groups it prints, from its own timing loop on one
//! core, `decode events/s = N` and `ratio decode/tokenizer = R` (tokenizer time / decode time:
//! 1.0 would mean decoding costs no more than tokenizing).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, Criterion, Throughput};
use ctid_csta::frame::{decode_frame, encode_frame, FrameItem, MAX_FRAME_LEN};
use ctid_csta::{decode, encode, Edition, InvokeId, Message};

/// A realistic DeliveredEvent: namespace declarations, pretty-printed, every device, and vendor
/// private data in `extensions`. About 1 KB.
const DELIVERED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DeliveredEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:pri="http://schema.broadsoft.com/CSTAPrivateData">
  <monitorCrossRefID>1024</monitorCrossRefID>
  <connection>
    <callID>C0000031337</callID>
    <deviceID>4002</deviceID>
  </connection>
  <alertingDevice><deviceIdentifier>4002</deviceIdentifier></alertingDevice>
  <callingDevice><deviceIdentifier>+4930123456701</deviceIdentifier></callingDevice>
  <calledDevice><deviceIdentifier>4002</deviceIdentifier></calledDevice>
  <lastRedirectionDevice><numberDialed>4000</numberDialed></lastRedirectionDevice>
  <localConnectionInfo>alerting</localConnectionInfo>
  <correlatorData>6a1f0c</correlatorData>
  <cause>newCall</cause>
  <networkCallingDevice><deviceIdentifier>+4930123456701</deviceIdentifier></networkCallingDevice>
  <networkCalledDevice><deviceIdentifier>+4930987654002</deviceIdentifier></networkCalledDevice>
  <associatedCallingDevice><notKnown/></associatedCallingDevice>
  <extensions>
    <privateData>
      <private>
        <pri:callInfo><pri:trunkGroup>TG-Berlin-01</pri:trunkGroup><pri:queue>sales</pri:queue><pri:priority>3</pri:priority></pri:callInfo>
      </private>
    </privateData>
  </extensions>
</DeliveredEvent>
"#;

const ESTABLISHED: &[u8] = include_bytes!("../tests/fixtures/spec-20-EstablishedEvent.xml");
const CLEARED: &[u8] = include_bytes!("../tests/fixtures/spec-21-ConnectionClearedEvent.xml");
const PRIVATE: &[u8] = include_bytes!("../tests/fixtures/spec-77-PrivateEvent.xml");

const STREAM_FRAMES: usize = 100;

/// 100 frames, Delivered / Established / ConnectionCleared / PrivateEvent in turn.
fn stream() -> Vec<u8> {
    let docs = [DELIVERED.as_bytes(), ESTABLISHED, CLEARED, PRIVATE];
    let mut b = BytesMut::new();
    for i in 0..STREAM_FRAMES {
        encode_frame(InvokeId::EVENT, docs[i % docs.len()], &mut b).unwrap();
    }
    b.to_vec()
}

/// The XML documents of the stream, for the tokenizer baseline.
fn stream_docs() -> Vec<&'static str> {
    let docs = [
        DELIVERED,
        std::str::from_utf8(ESTABLISHED).unwrap(),
        std::str::from_utf8(CLEARED).unwrap(),
        std::str::from_utf8(PRIVATE).unwrap(),
    ];
    (0..STREAM_FRAMES).map(|i| docs[i % docs.len()]).collect()
}

/// Frame-decode and XML-decode a whole stream; returns the number of messages.
fn decode_stream(bytes: &[u8]) -> usize {
    let mut buf = BytesMut::from(bytes);
    let mut n = 0;
    while let Some(item) = decode_frame(&mut buf, MAX_FRAME_LEN).unwrap() {
        let FrameItem::Frame(f) = item else {
            panic!("skipped frame")
        };
        let msg = decode(&f.xml).unwrap();
        black_box(&msg);
        n += 1;
    }
    n
}

/// The baseline: quick-xml reading every event of the document, touching nothing.
fn tokenize(xml: &str) -> usize {
    let mut r = quick_xml::Reader::from_str(xml);
    r.config_mut().trim_text(true);
    let mut n = 0;
    loop {
        match r.read_event() {
            Ok(quick_xml::events::Event::Eof) => return n,
            Ok(ev) => {
                black_box(&ev);
                n += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn tokenize_docs(docs: &[&str]) -> usize {
    docs.iter().map(|d| tokenize(d)).sum()
}

fn bench_single(c: &mut Criterion) {
    let msg = decode(DELIVERED.as_bytes()).unwrap();
    assert!(matches!(msg, Message::DeliveredEvent(_)));
    let mut g = c.benchmark_group("delivered_1k");
    g.throughput(Throughput::Bytes(DELIVERED.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| decode(black_box(DELIVERED.as_bytes())).unwrap())
    });
    g.bench_function("encode_ed3", |b| {
        b.iter(|| encode(black_box(&msg), Edition::Ed3).unwrap())
    });
    g.bench_function("tokenize", |b| b.iter(|| tokenize(black_box(DELIVERED))));
    g.finish();
}

fn bench_stream(c: &mut Criterion) {
    let bytes = stream();
    let docs = stream_docs();
    let mut g = c.benchmark_group("stream_100_events");
    g.throughput(Throughput::Elements(STREAM_FRAMES as u64));
    g.bench_function("frame+decode", |b| {
        b.iter(|| decode_stream(black_box(&bytes)))
    });
    g.bench_function("tokenize", |b| b.iter(|| tokenize_docs(black_box(&docs))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench_single, bench_stream
}

/// Best time per call of `a` and of `b`, measured in alternating rounds so that the load of a
/// shared machine falls on both alike; the best round of each is the least disturbed one.
fn best_per_call_pair(
    rounds: u32,
    round: Duration,
    mut a: impl FnMut() -> usize,
    mut b: impl FnMut() -> usize,
) -> (Duration, Duration) {
    let mut best = (Duration::MAX, Duration::MAX);
    let time = |f: &mut dyn FnMut() -> usize| {
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < round {
            black_box(f());
            calls += 1;
        }
        start.elapsed() / calls
    };
    for _ in 0..rounds {
        best.0 = best.0.min(time(&mut a));
        best.1 = best.1.min(time(&mut b));
    }
    best
}

fn report() {
    let bytes = stream();
    let docs = stream_docs();
    assert_eq!(decode_stream(&bytes), STREAM_FRAMES);
    let (dec, tok) = best_per_call_pair(
        20,
        Duration::from_millis(100),
        || decode_stream(&bytes),
        || tokenize_docs(&docs),
    );
    let (one_dec, one_tok) = best_per_call_pair(
        20,
        Duration::from_millis(50),
        || decode(DELIVERED.as_bytes()).map(|_| 1).unwrap(),
        || tokenize(DELIVERED),
    );
    let events_per_s = STREAM_FRAMES as f64 / dec.as_secs_f64();
    println!();
    println!(
        "stream of {STREAM_FRAMES} mixed events ({} bytes framed): frame+decode {:?}, tokenizer {:?}",
        bytes.len(),
        dec,
        tok
    );
    println!(
        "1 KB DeliveredEvent ({} bytes): decode {:?}, tokenizer {:?}, ratio {:.2}",
        DELIVERED.len(),
        one_dec,
        one_tok,
        one_tok.as_secs_f64() / one_dec.as_secs_f64()
    );
    println!("decode events/s = {events_per_s:.0}");
    println!(
        "ratio decode/tokenizer = {:.2}",
        tok.as_secs_f64() / dec.as_secs_f64()
    );
}

fn main() {
    // For a profiler: `CTID_BENCH_PROFILE=5 target/release/deps/codec-*` decodes the stream for
    // 5 seconds and nothing else; `CTID_BENCH_PROFILE=200x` decodes it 200 times (a fixed amount
    // of work, for comparing instruction counts under callgrind). `CTID_BENCH_PROFILE_TOKENIZER=1`
    // profiles the bare tokenizer pass over the same documents instead.
    if let Ok(what) = std::env::var("CTID_BENCH_PROFILE") {
        let bytes = stream();
        let docs = stream_docs();
        let tokenizer = std::env::var_os("CTID_BENCH_PROFILE_TOKENIZER").is_some();
        let run = || {
            if tokenizer {
                black_box(tokenize_docs(&docs));
            } else {
                black_box(decode_stream(&bytes));
            }
        };
        if let Some(n) = what.strip_suffix('x').and_then(|n| n.parse::<u32>().ok()) {
            (0..n).for_each(|_| run());
        } else if let Ok(secs) = what.parse::<f64>() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs_f64(secs) {
                run();
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not (then criterion runs each
    // benchmark once as a test, and the timing report is skipped).
    if std::env::args().any(|a| a == "--bench") {
        report();
    }
}
