//! Session start in each mode (csta-xml.md §3), system status, several connections with their
//! own monitors, snapshots with the device's real calls, bad frames skipped.

mod common;
use common::*;
use ctid_csta::*;
use ctid_sim::{SessionMode, SimConfig};

fn cfg(mode: SessionMode) -> SimConfig {
    SimConfig {
        session: mode,
        ..SimConfig::demo()
    }
}

fn start_session(versions: &[&str]) -> Message {
    Message::StartApplicationSession(StartApplicationSession {
        application_info: ApplicationInfo {
            application_id: "ctid".into(),
            application_specific_info: None,
        },
        requested_protocol_versions: versions.iter().map(|&s| s.into()).collect(),
        requested_session_duration: Some(180),
        extensions: None,
    })
}

fn rss() -> Message {
    Message::RequestSystemStatus(RequestSystemStatus {
        sys_stat_register_id: None,
        extensions: None,
    })
}

#[tokio::test]
async fn ecma354_session() {
    let sim = start(cfg(SessionMode::Ecma354)).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    // nothing before the session
    let r = c.request(rss()).await;
    assert_eq!(summary(&r), "CSTAErrorCode operation=generic");
    let r = c.request(start_session(&[Edition::Ed3.namespace()])).await;
    let Message::StartApplicationSessionPosResponse(p) = r else {
        panic!("{}", summary(&r))
    };
    assert_eq!(
        p.actual_protocol_version.as_deref(),
        Some(Edition::Ed3.namespace())
    );
    assert_eq!(p.actual_session_duration, Some(180));
    // then the Connector reports its status, as a request with its own invoke ID
    let (inv, m) = c.next().await;
    assert_eq!(inv.get(), 0);
    assert_eq!(summary(&m), "SystemStatus systemStatus=normal");
    c.send(
        inv.get(),
        &Message::SystemStatusResponse(SystemStatusResponse { extensions: None }),
    )
    .await;
    assert_eq!(
        summary(&c.request(rss()).await),
        "RequestSystemStatusResponse systemStatus=normal"
    );
    // keepalive
    let r = c
        .request(Message::ResetApplicationSessionTimer(
            ResetApplicationSessionTimer {
                session_id: p.session_id.clone(),
                requested_session_duration: Some(60),
                extensions: None,
            },
        ))
        .await;
    assert_eq!(
        summary(&r),
        "ResetApplicationSessionTimerPosResponse actualSessionDuration=60"
    );
    let r = c
        .request(Message::ResetApplicationSessionTimer(
            ResetApplicationSessionTimer {
                session_id: "wrong".into(),
                requested_session_duration: None,
                extensions: None,
            },
        ))
        .await;
    assert_eq!(
        summary(&r),
        "ResetApplicationSessionTimerNegResponse errorCode=definedError:invalidSessionID"
    );
    // stop: answered, then the connection closes
    let r = c
        .request(Message::StopApplicationSession(StopApplicationSession {
            session_id: p.session_id,
            session_end_reason: Some(SessionEndReason::Defined("normal".into())),
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "StopApplicationSessionPosResponse");
    assert!(c.read_frame(WAIT).await.is_none(), "connection closed");
    sim.shutdown().await;
}

#[tokio::test]
async fn ecma354_negotiates_edition() {
    let sim = start(cfg(SessionMode::Ecma354)).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let r = c.request(start_session(&[Edition::Ed6.namespace()])).await;
    let Message::StartApplicationSessionPosResponse(p) = r else {
        panic!()
    };
    assert_eq!(
        p.actual_protocol_version.as_deref(),
        Some(Edition::Ed6.namespace())
    );
    // the sim now writes ed6
    c.next().await;
    c.send(9000, &rss()).await;
    let raw = c.read_raw(std::time::Duration::from_millis(300)).await;
    assert!(String::from_utf8_lossy(&raw).contains("csta/ed6"));
    let mut c2 = Client::connect(sim.csta_addr()).await;
    let r = c2.request(start_session(&["urn:unknown"])).await;
    assert_eq!(
        summary(&r),
        "StartApplicationSessionNegResponse errorCode=definedError:requestedProtocolVersionNotSupported"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn system_register_session() {
    let sim = start(cfg(SessionMode::SystemRegister)).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    // the Connector speaks first with invoke 0000
    let (inv, m) = c.next().await;
    assert_eq!(
        (inv.get(), summary(&m)),
        (0, "SystemStatus systemStatus=normal".to_string())
    );
    c.send(
        0,
        &Message::SystemStatusResponse(SystemStatusResponse { extensions: None }),
    )
    .await;
    let r = c
        .request(Message::SystemRegister(SystemRegister {
            request_types: Some(RequestTypes {
                system_status: Some(true),
                request_system_status: Some(false),
                switching_function_caps_changed: None,
                switching_function_devices_changed: None,
            }),
            extensions: None,
        }))
        .await;
    assert_eq!(
        summary(&r),
        "SystemRegisterResponse sysStatRegisterID=csta-sim-1"
    );
    c.monitor("1001").await;
    // a status change is reported on its own, with the register ID
    sim.set_system_status("disabled").await;
    let (inv, m) = c.next().await;
    assert_eq!(
        (inv.get(), summary(&m)),
        (
            1,
            "SystemStatus sysStatRegisterID=csta-sim-1 systemStatus=disabled".to_string()
        )
    );
    // while disabled, services are refused
    assert_eq!(
        summary(&c.request(make_call("1001", "1002")).await),
        "CSTAErrorCode systemResourceAvailibility=resourceOutOfService"
    );
    assert_eq!(
        summary(&c.request(rss()).await),
        "RequestSystemStatusResponse systemStatus=disabled"
    );
    sim.set_system_status("normal").await;
    assert_eq!(
        summary(&c.next().await.1),
        "SystemStatus sysStatRegisterID=csta-sim-1 systemStatus=normal"
    );
    // ECMA-354 messages are not part of this mode
    assert_eq!(
        summary(&c.request(start_session(&[])).await),
        "CSTAErrorCode operation=serviceNotSupported"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn none_session_polls() {
    let sim = start(cfg(SessionMode::None)).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    c.quiet(200).await; // the switch says nothing first
    assert_eq!(
        summary(&c.request(rss()).await),
        "RequestSystemStatusResponse systemStatus=normal"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn monitors_are_per_connection() {
    let sim = start(demo_none()).await;
    let mut a = Client::connect(sim.csta_addr()).await;
    let mut b = Client::connect(sim.csta_addr()).await;
    let xa = a.monitor("1001").await;
    let xb = b.monitor("1001").await;
    let xb2 = b.monitor("1002").await;
    assert_ne!(xa, xb);
    // errors
    let r = a
        .request(Message::MonitorStart(MonitorStart {
            monitor_object: MonitorObject::Device("4711".into()),
            monitor_type: None,
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "CSTAErrorCode operation=invalidDeviceID");
    let r = a
        .request(Message::MonitorStart(MonitorStart {
            monitor_object: MonitorObject::Call(conn("C1", "1001")),
            monitor_type: Some(MonitorType::Call),
            extensions: None,
        }))
        .await;
    assert_eq!(
        summary(&r),
        "CSTAErrorCode operation=invalidMonitorObjectType"
    );
    // b's monitor cannot be stopped from a
    let stop = |x: &str| {
        Message::MonitorStop(MonitorStop {
            monitor_cross_ref_id: x.into(),
            extensions: None,
        })
    };
    assert_eq!(
        summary(&a.request(stop(&xb)).await),
        "CSTAErrorCode operation=invalidMonitorCrossRefID"
    );
    sim.set_dnd("1001", true).await.unwrap();
    assert_eq!(
        a.event().await,
        format!("DoNotDisturbEvent device=1001 doNotDisturbOn=true monitorCrossRefID={xa}")
    );
    assert_eq!(
        b.event().await,
        format!("DoNotDisturbEvent device=1001 doNotDisturbOn=true monitorCrossRefID={xb}")
    );
    // after MonitorStop, a hears nothing more
    assert_eq!(summary(&a.request(stop(&xa)).await), "MonitorStopResponse");
    sim.set_dnd("1001", false).await.unwrap();
    sim.set_dnd("1002", true).await.unwrap();
    a.quiet(200).await;
    assert_eq!(
        b.event().await,
        format!("DoNotDisturbEvent device=1001 doNotDisturbOn=false monitorCrossRefID={xb}")
    );
    assert_eq!(
        b.event().await,
        format!("DoNotDisturbEvent device=1002 doNotDisturbOn=true monitorCrossRefID={xb2}")
    );
    // the switch may stop monitors itself
    assert_eq!(sim.stop_monitors().await, 2);
    let (inv, m) = b.next().await;
    assert!(!inv.is_event());
    assert!(summary(&m).starts_with("MonitorStop monitorCrossRefID="));
    let st = sim.snapshot().await;
    assert_eq!(st["connections"].as_array().unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn snapshot_device_reports_real_calls() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let snap = |d: &str| {
        Message::SnapshotDevice(SnapshotDevice {
            snapshot_object: d.into(),
            extensions: None,
        })
    };
    assert_eq!(
        summary(&c.request(snap("1001")).await),
        "SnapshotDeviceResponse crossRefIDorSnapshotData=snapshotData:[]"
    );
    let c1 = sim.dial("1001", "1002").await.unwrap();
    sim.answer("1002").await.unwrap();
    sim.hold("1001").await.unwrap();
    let c2 = sim.dial("1001", "1003").await.unwrap();
    assert_eq!(
        summary(&c.request(snap("1001")).await),
        format!("SnapshotDeviceResponse crossRefIDorSnapshotData=snapshotData:[{{connectionIdentifier={c1}@1001 localCallState=compoundCallState:[hold]}} {{connectionIdentifier={c2}@1001 localCallState=compoundCallState:[connected]}}]")
    );
    assert_eq!(
        summary(&c.request(snap("1003")).await),
        format!("SnapshotDeviceResponse crossRefIDorSnapshotData=snapshotData:[{{connectionIdentifier={c2}@1003 localCallState=compoundCallState:[alerting]}}]")
    );
    assert_eq!(
        summary(&c.request(snap("4711")).await),
        "CSTAErrorCode operation=invalidDeviceID"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn snapshot_in_segments() {
    let sim = start(SimConfig {
        snapshot_segment: 1,
        ..demo_none()
    })
    .await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let c1 = sim.dial("1001", "1002").await.unwrap();
    sim.answer("1002").await.unwrap();
    sim.hold("1001").await.unwrap();
    let c2 = sim.dial("1001", "1003").await.unwrap();
    let r = c
        .request(Message::SnapshotDevice(SnapshotDevice {
            snapshot_object: "1001".into(),
            extensions: None,
        }))
        .await;
    let Message::SnapshotDeviceResponse(SnapshotDeviceResponse {
        cross_ref_id_or_snapshot_data: SnapshotResult::ServiceCrossRefId(x),
        ..
    }) = r
    else {
        panic!("{}", summary(&r))
    };
    assert_eq!(
        c.events(2).await,
        [
            format!("SnapshotDeviceData lastSegment=false segmentID=1 serviceCrossRefID={x} snapshotData=[{{connectionIdentifier={c1}@1001 localCallState=compoundCallState:[hold]}}]"),
            format!("SnapshotDeviceData lastSegment=true segmentID=2 serviceCrossRefID={x} snapshotData=[{{connectionIdentifier={c2}@1001 localCallState=compoundCallState:[connected]}}]"),
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_frames_are_skipped_and_bad_requests_answered() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    // not well-formed XML: skipped, no answer
    let xml = b"<?xml version=\"1.0\"?><MakeCall><callingDevice>1001";
    let mut f = vec![0u8, 0, 0, (8 + xml.len()) as u8, b'0', b'0', b'0', b'7'];
    f.extend_from_slice(xml);
    c.send_raw(&f).await;
    // invoke ID not digits, and a SOAP format indicator: skipped
    let ok = ctid_csta::encode(&rss(), Edition::Ed3).unwrap();
    let mut f = vec![0u8, 0];
    f.extend_from_slice(&((8 + ok.len()) as u16).to_be_bytes());
    f.extend_from_slice(b"00x1");
    f.extend_from_slice(&ok);
    c.send_raw(&f).await;
    f[0] = 1;
    f[4..8].copy_from_slice(b"0002");
    c.send_raw(&f).await;
    c.quiet(200).await;
    // well-formed but missing a required element: refused, not silent
    let xml = b"<MakeCall xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"><callingDevice>1001</callingDevice></MakeCall>";
    let mut f = vec![0u8, 0];
    f.extend_from_slice(&((8 + xml.len()) as u16).to_be_bytes());
    f.extend_from_slice(b"0008");
    f.extend_from_slice(xml);
    c.send_raw(&f).await;
    assert_eq!(
        summary(&c.answer(8).await),
        "CSTAErrorCode operation=invalidParameterValue"
    );
    // an unknown service
    let xml = b"<ParkCall xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"><parking>1</parking></ParkCall>";
    let mut f = vec![0u8, 0];
    f.extend_from_slice(&((8 + xml.len()) as u16).to_be_bytes());
    f.extend_from_slice(b"0009");
    f.extend_from_slice(xml);
    c.send_raw(&f).await;
    assert_eq!(
        summary(&c.answer(9).await),
        "CSTAErrorCode operation=serviceNotSupported"
    );
    // still alive
    assert_eq!(
        summary(&c.request(rss()).await),
        "RequestSystemStatusResponse systemStatus=normal"
    );
    sim.shutdown().await;
}
