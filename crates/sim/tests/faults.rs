//! Fault injection (drop, stall, delay, malformed frames, fail-next), record mode and its
//! replay, and the load mode — over real sockets.

mod common;
use std::time::{Duration, Instant};

use common::*;
use ctid_csta::*;
use ctid_sim::load::{LoadSpec, Step};
use ctid_sim::record::{read_recording, Dir};
use ctid_sim::{DeviceConfig, SessionMode, SimConfig};

fn rss() -> Message {
    Message::RequestSystemStatus(RequestSystemStatus {
        sys_stat_register_id: None,
        extensions: None,
    })
}

#[tokio::test]
async fn drop_connections() {
    let sim = start(demo_none()).await;
    let mut a = Client::connect(sim.csta_addr()).await;
    let mut b = Client::connect(sim.csta_addr()).await;
    a.monitor("1001").await;
    b.monitor("1001").await;
    sim.drop_connections().await;
    assert!(a.read_frame(WAIT).await.is_none());
    assert!(b.read_frame(WAIT).await.is_none());
    // monitors went with them; a new connection works
    let mut c = Client::connect(sim.csta_addr()).await;
    assert_eq!(
        summary(&c.request(rss()).await),
        "RequestSystemStatusResponse systemStatus=normal"
    );
    let st = sim.snapshot().await;
    assert_eq!(st["connections"].as_array().unwrap().len(), 1);
    assert_eq!(st["devices"][0]["monitors"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn stall_and_delay() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    sim.set_stall(true).await;
    c.send(1, &rss()).await;
    c.quiet(300).await;
    sim.set_stall(false).await;
    c.send(2, &rss()).await;
    let (inv, m) = c.next().await;
    assert_eq!(
        (inv.get(), summary(&m)),
        (
            2,
            "RequestSystemStatusResponse systemStatus=normal".to_string()
        )
    );
    assert_eq!(sim.snapshot().await["faults"]["stalledRequests"], 1);
    // delayed responses; the events are not held back
    c.monitor("1001").await;
    sim.set_delay(400).await;
    let t = Instant::now();
    c.send(3, &make_call("1001", "1002")).await;
    let (inv, m) = c.next().await;
    assert!(inv.is_event(), "events first: {}", summary(&m));
    assert!(t.elapsed() < Duration::from_millis(300));
    c.events(2).await;
    let (inv, m) = c.next().await;
    assert_eq!(
        (inv.get(), summary(&m)),
        (3, "MakeCallResponse callingDevice=C1@1001".to_string())
    );
    assert!(t.elapsed() >= Duration::from_millis(400));
    sim.set_delay(0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_frames() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    c.request(rss()).await;
    sim.inject_malformed().await;
    let raw = c.read_raw(Duration::from_millis(300)).await;
    assert_eq!(&raw[4..8], b"9999");
    let text = String::from_utf8_lossy(&raw[8..]).to_string();
    assert!(
        text.starts_with("<?xml")
            && text.contains("<DeliveredEvent")
            && !text.contains("</DeliveredEvent>")
    );
    assert!(decode(&raw[8..]).is_err());
    assert_eq!(sim.inject_malformed_kind("invoke").await.unwrap(), 1);
    assert_eq!(&c.read_raw(Duration::from_millis(300)).await[4..8], b"99X9");
    sim.inject_malformed_kind("format").await.unwrap();
    assert_eq!(&c.read_raw(Duration::from_millis(300)).await[0..2], &[1, 0]);
    sim.inject_malformed_kind("framing").await.unwrap();
    assert_eq!(
        c.read_raw(Duration::from_millis(300)).await,
        [0, 0, 0, 4, b'9', b'9', b'9', b'9']
    );
    assert!(sim.inject_malformed_kind("bogus").await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_next() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    sim.fail_next("operation", "invalidCallingDeviceID").await;
    // keepalives are not services: unaffected
    assert_eq!(
        summary(&c.request(rss()).await),
        "RequestSystemStatusResponse systemStatus=normal"
    );
    assert_eq!(
        summary(&c.request(make_call("1001", "1002")).await),
        "CSTAErrorCode operation=invalidCallingDeviceID"
    );
    assert_eq!(
        summary(&c.request(make_call("1001", "1002")).await),
        "MakeCallResponse callingDevice=C1@1001"
    );
    // aimed at one service, any family
    sim.try_fail_next(
        "systemResourceAvailibility",
        "resourceBusy",
        Some("RequestSystemStatus"),
    )
    .await
    .unwrap();
    c.monitor("1001").await;
    assert_eq!(
        summary(&c.request(rss()).await),
        "CSTAErrorCode systemResourceAvailibility=resourceBusy"
    );
    sim.try_fail_next("privateErrorCode", "42", None)
        .await
        .unwrap();
    assert_eq!(
        summary(&c.request(escape(HotDesk::query_guest("2010"))).await),
        "CSTAErrorCode privateErrorCode=42"
    );
    assert!(sim.try_fail_next("nonsense", "x", None).await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn record_and_replay() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("csta-sim-record.jsonl");
    let cfg = SimConfig {
        session: SessionMode::Ecma354,
        record: Some(path.clone()),
        ..SimConfig::demo()
    };
    let sim = start(cfg.clone()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let start_session = Message::StartApplicationSession(StartApplicationSession {
        application_info: ApplicationInfo {
            application_id: "ctid".into(),
            application_specific_info: None,
        },
        requested_protocol_versions: vec![],
        requested_session_duration: Some(180),
        extensions: None,
    });
    c.request(start_session).await;
    c.next().await; // SystemStatus
    c.send(
        0,
        &Message::SystemStatusResponse(SystemStatusResponse { extensions: None }),
    )
    .await;
    c.monitor("1001").await;
    c.monitor("1002").await;
    c.request(make_call("1001", "1002")).await;
    c.events(4).await;
    c.request(escape(HotDesk::associate("2001", "1001"))).await;
    c.events(2).await; // ForwardingEvent and PrivateEvent on 1001's monitor
    sim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rec = read_recording(&path).unwrap();
    let ins = rec.iter().filter(|r| r.dir == Dir::In).count();
    let outs = rec.iter().filter(|r| r.dir == Dir::Out).count();
    assert_eq!((ins, outs), (6, 12), "{rec:#?}");
    assert!(rec[0]
        .xml
        .as_deref()
        .unwrap()
        .contains("StartApplicationSession"));
    assert!(rec.windows(2).all(|w| w[0].t <= w[1].t));

    // replay the client's side against a fresh simulator: the same answers and events come out
    let sim = start(SimConfig {
        record: None,
        ..cfg
    })
    .await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let mut i = 0;
    while i < rec.len() {
        let r = &rec[i];
        assert_eq!(r.dir, Dir::In);
        c.send_raw(&r.frame_bytes()).await;
        i += 1;
        while i < rec.len() && rec[i].dir == Dir::Out {
            let (inv, m) = c.read_frame(WAIT).await.expect("replayed answer");
            let want = decode(rec[i].xml.as_deref().unwrap().as_bytes()).unwrap();
            assert_eq!(
                (inv.to_string(), &m),
                (rec[i].invoke.clone().unwrap(), &want)
            );
            i += 1;
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn load_mode_drives_events_to_monitors() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    for n in 7000..7009 {
        sim.add_device(DeviceConfig::extension(&n.to_string()))
            .await
            .unwrap();
        c.monitor(&n.to_string()).await;
    }
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while c.read_frame(Duration::from_millis(1500)).await.is_some() {
            n += 1;
        }
        n
    });
    let spec = LoadSpec {
        devices: 9,
        first: 7000,
        rate: 20.0,
        pattern: Step::parse_pattern("call,ring,answer,hold,retrieve,transfer,release").unwrap(),
        duration: Duration::from_secs(1),
        step: Duration::from_millis(10),
    };
    let mut ticks = 0;
    let report = ctid_sim::load::run(&sim, &spec, |_| ticks += 1).await;
    assert!(report.calls_started >= 10, "{report:?}");
    assert_eq!(report.calls_failed, 0, "{report:?}");
    assert_eq!(report.calls_completed, report.calls_started);
    assert!(ticks >= 1);
    let got = reader.await.unwrap();
    assert_eq!(got, report.events);
    assert!(report.events > 20 * report.calls_started, "{report:?}");
    assert_eq!(sim.snapshot().await["calls"], serde_json::json!([]));
    sim.shutdown().await;
}
