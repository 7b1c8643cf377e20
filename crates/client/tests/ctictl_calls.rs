//! `ctictl call ...` and `ctictl agent ...` end to end: the built ctictl against ctid and the
//! csta-sim demo switch (`ctid_server::demo::start_demo`, in-process on 127.0.0.1:0) over real
//! sockets. A library client registered on the same DNs checks what the other parties see.

use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{parse_event, CallState, ConnId, Event, EventName, Request};
use ctid_server::demo::{start_demo, Demo};

const T: Duration = Duration::from_secs(5);

async fn demo() -> Demo {
    let d = start_demo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rx = d.ctid.status.clone();
    while rx.borrow().link.as_str() != "up" {
        assert!(Instant::now() < deadline, "the demo link never came up");
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
    d
}

async fn ctictl(d: &Demo, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctictl"))
        .arg("--server")
        .arg(d.ctid.ws_url())
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs ctictl, expects exit 0 and one line starting with `prefix`; returns the line.
async fn ok_line(d: &Demo, args: &[&str], prefix: &str) -> String {
    let (rc, out, err) = ctictl(d, args).await;
    assert_eq!(rc, 0, "ctictl {args:?}: {out}{err}");
    assert_eq!(out.lines().count(), 1, "ctictl {args:?}: {out}");
    assert!(out.starts_with(prefix), "ctictl {args:?}: {out}");
    out.trim_end().to_owned()
}

/// The `Key=value` of a ctictl event line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

async fn watcher(d: &Demo, dns: &[&str]) -> Client {
    let mut c = Client::connect(&d.ctid.ws_url()).await.unwrap();
    for dn in dns {
        let ev = c.request(Request::register_address(*dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }
    c
}

/// The next event `name` on `dn`, skipping others.
async fn until(c: &mut Client, name: EventName, dn: &str) -> Event {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c
            .next_event(left)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {name:?} on {dn}"));
        if ev.name == name && ev.this_dn.as_deref() == Some(dn) {
            return ev;
        }
    }
}

#[tokio::test]
async fn make_answer_hold_retrieve_release() {
    let d = demo().await;
    let mut w = watcher(&d, &["1001", "1002"]).await;

    let dial = ok_line(
        &d,
        &["call", "make", "--from", "1001", "--to", "1002"],
        "EventDialing ThisDN=1001 OtherDN=1002 ConnID=",
    )
    .await;
    let conn = field(&dial, "ConnID").unwrap().to_owned();
    assert!(ConnId::parse(&conn).is_some(), "{dial}");
    let ring = until(&mut w, EventName::EventRinging, "1002").await;
    assert_eq!(ring.conn_id.unwrap().to_string(), conn);

    // no --conn: the ringing call, found with RequestQueryAddress
    let est = ok_line(
        &d,
        &["call", "answer", "--dn", "1002"],
        "EventEstablished ThisDN=1002 OtherDN=1001 ",
    )
    .await;
    assert_eq!(field(&est, "ConnID"), Some(conn.as_str()));
    until(&mut w, EventName::EventEstablished, "1001").await;

    let held = ok_line(
        &d,
        &["call", "hold", "--dn", "1001"],
        "EventHeld ThisDN=1001 ",
    )
    .await;
    assert_eq!(field(&held, "ConnID"), Some(conn.as_str()));
    // nothing active on 1001 any more
    let (rc, out, err) = ctictl(&d, &["call", "hold", "--dn", "1001"]).await;
    assert_eq!((rc, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("no active call on 1001"), "{err}");

    let back = ok_line(
        &d,
        &["call", "retrieve", "--dn", "1001"],
        "EventRetrieved ThisDN=1001 ",
    )
    .await;
    assert_eq!(field(&back, "ConnID"), Some(conn.as_str()));

    // --json: the answer exactly as received, with its ReferenceID
    let (rc, out, err) = ctictl(&d, &["--json", "call", "release", "--dn", "1002"]).await;
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let rel = parse_event(out.trim_end()).unwrap();
    assert_eq!(rel.name, EventName::EventReleased);
    assert!(rel.reference_id.is_some());
    assert_eq!(rel.this_dn.as_deref(), Some("1002"));
    assert_eq!(rel.conn_id.unwrap().to_string(), conn);
    assert_eq!(rel.call_state, Some(CallState::Ok));
    let other = until(&mut w, EventName::EventReleased, "1001").await;
    assert_eq!(other.reference_id, None);

    // the call is gone: nothing to answer, and its ConnID is refused with 56
    let (rc, out, err) = ctictl(&d, &["call", "answer", "--dn", "1002"]).await;
    assert_eq!((rc, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("no ringing call on 1002"), "{err}");
    let (rc, out, _) = ctictl(&d, &["call", "release", "--dn", "1001", "--conn", &conn]).await;
    assert_eq!(rc, 1);
    assert!(out.starts_with("EventError ThisDN=1001 "), "{out}");
    assert_eq!(field(&out, "ErrorCode"), Some("56"), "{out}");
}

#[tokio::test]
async fn explicit_conn_and_errors() {
    let d = demo().await;
    let dial = ok_line(
        &d,
        &["call", "make", "--from", "1003", "--to", "1004"],
        "EventDialing ThisDN=1003 OtherDN=1004 ",
    )
    .await;
    let conn = field(&dial, "ConnID").unwrap().to_owned();
    ok_line(
        &d,
        &["call", "answer", "--dn", "1004", "--conn", &conn],
        "EventEstablished ThisDN=1004 ",
    )
    .await;
    // the caller releases with an upper-case ConnID (accepted either way)
    let rel = ok_line(
        &d,
        &[
            "call",
            "release",
            "--dn",
            "1003",
            "--conn",
            &conn.to_uppercase(),
        ],
        "EventReleased ThisDN=1003 ",
    )
    .await;
    assert_eq!(field(&rel, "CallState"), Some("CallStateOk"));

    // the switch refuses: EventError with the CSTA error, exit 1
    let (rc, out, _) = ctictl(&d, &["call", "make", "--from", "1003", "--to", "1003"]).await;
    assert_eq!(rc, 1, "{out}");
    assert!(out.starts_with("EventError ThisDN=1003 "), "{out}");
    assert!(
        out.contains("CSTAError=operation/notDifferentDevices"),
        "{out}"
    );
    // ctid refuses: an invalid number is 71
    let (rc, out, _) = ctictl(&d, &["call", "make", "--from", "1003", "--to", "10 04"]).await;
    assert_eq!((rc, field(&out, "ErrorCode")), (1, Some("71")), "{out}");
    // no call at all on the DN
    let (rc, _, err) = ctictl(&d, &["call", "release", "--dn", "1005"]).await;
    assert_eq!(rc, 1);
    assert!(err.contains("no call on 1005"), "{err}");
    // usage errors: exit 2
    let (rc, _, err) = ctictl(&d, &["call", "hold", "--dn", "1003", "--conn", "xyz"]).await;
    assert_eq!(rc, 2);
    assert!(err.contains("not a ConnID"), "{err}");
    let (rc, _, _) = ctictl(&d, &["call", "make", "--from", "1003"]).await;
    assert_eq!(rc, 2);
}

#[tokio::test]
async fn agent_login_ready_call_notready_logout() {
    let d = demo().await;
    let login = ok_line(
        &d,
        &[
            "agent", "login", "--dn", "2002", "--agent", "2002", "--queue", "3001",
        ],
        "EventAgentLogin ThisDN=2002 ",
    )
    .await;
    assert_eq!(field(&login, "AgentID"), Some("2002"));
    assert_eq!(field(&login, "ThisQueue"), Some("3001"));
    // another agent on the occupied DN: the switch decides (the demo switch refuses agent 2003
    // at 2002, and its CSTA error comes back mapped)
    let (rc, out, _) = ctictl(&d, &["agent", "login", "--dn", "2002", "--agent", "2003"]).await;
    assert_eq!((rc, field(&out, "ErrorCode")), (1, Some("1140")), "{out}");
    assert_eq!(
        field(out.trim_end(), "CSTAError"),
        Some("operation/invalidAgentIdentifier"),
        "{out}"
    );

    let ready = ok_line(
        &d,
        &["agent", "ready", "--dn", "2002"],
        "EventAgentReady ThisDN=2002 ",
    )
    .await;
    assert_eq!(field(&ready, "AgentWorkMode"), Some("AgentManualIn"));

    // a call to the queue is distributed to the ready agent, who answers it with ctictl
    ok_line(
        &d,
        &["call", "make", "--from", "1006", "--to", "3001"],
        "EventDialing ThisDN=1006 OtherDN=3001 ",
    )
    .await;
    let mut answered = None;
    for _ in 0..20 {
        let (rc, out, _) = ctictl(&d, &["call", "answer", "--dn", "2002"]).await;
        if rc == 0 {
            answered = Some(out.trim_end().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let est = answered.expect("the queued call never rang at 2002");
    assert!(
        est.starts_with("EventEstablished ThisDN=2002 OtherDN=1006 "),
        "{est}"
    );
    assert_eq!(field(&est, "ThisQueue"), Some("3001"), "{est}");
    ok_line(
        &d,
        &["call", "release", "--dn", "2002"],
        "EventReleased ThisDN=2002 ",
    )
    .await;

    let acw = ok_line(
        &d,
        &["agent", "notready", "--dn", "2002", "--acw"],
        "EventAgentNotReady ThisDN=2002 ",
    )
    .await;
    assert_eq!(field(&acw, "AgentWorkMode"), Some("AgentAfterCallWork"));
    let aux = ok_line(
        &d,
        &["agent", "notready", "--dn", "2002"],
        "EventAgentNotReady ThisDN=2002 ",
    )
    .await;
    assert_eq!(field(&aux, "AgentWorkMode"), Some("AgentAuxWork"));
    let (rc, out, err) = ctictl(&d, &["--json", "agent", "logout", "--dn", "2002"]).await;
    assert_eq!(rc, 0, "{err}");
    let ev = parse_event(out.trim_end()).unwrap();
    assert_eq!(ev.name, EventName::EventAgentLogout);
    assert_eq!(ev.agent_id.as_deref(), Some("2002"));
    // logged out: the switch refuses ready
    let (rc, out, _) = ctictl(&d, &["agent", "ready", "--dn", "2002"]).await;
    assert_eq!(rc, 1, "{out}");
    assert!(out.starts_with("EventError ThisDN=2002 "), "{out}");
    assert!(out.contains("CSTAError=stateIncompatibility/"), "{out}");
}

/// The short forms of the issue (`call make A B`, `call answer DN`, ...), two-step transfer and
/// conference, and user data.
#[tokio::test]
async fn positional_forms_transfer_conference_userdata() {
    let d = demo().await;
    let line = ok_line(&d, &["call", "make", "1004", "1005"], "EventDialing").await;
    let conn = field(&line, "ConnID").unwrap().to_string();
    ok_line(&d, &["call", "answer", "1005"], "EventEstablished").await;
    let line = ok_line(
        &d,
        &["userdata", "attach", "1004", "--set", "Case=77"],
        "EventAttachedDataChanged",
    )
    .await;
    assert_eq!(field(&line, "ConnID"), Some(conn.as_str()));
    ok_line(
        &d,
        &["userdata", "update", "1004", "--set", "Case=78"],
        "EventAttachedDataChanged",
    )
    .await;
    // Two-step transfer from 1004 to 1006: 1006 answers at the phone meanwhile.
    let sim = d.sim.clone();
    let answer = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if sim.answer("1006").await.is_ok() {
                return;
            }
        }
    });
    let (rc, out, err) = ctictl(&d, &["call", "transfer", "1004", "--to", "1006"]).await;
    answer.await.unwrap();
    assert_eq!(rc, 0, "{out}{err}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("EventReleased"), "{out}");
    // 1005 and 1006 now talk on the original ConnID; conference 1007 in from 1005.
    let sim = d.sim.clone();
    let answer = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if sim.answer("1007").await.is_ok() {
                return;
            }
        }
    });
    let (rc, out, err) = ctictl(&d, &["call", "conference", "1005", "--to", "1007"]).await;
    answer.await.unwrap();
    assert_eq!(rc, 0, "{out}{err}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("EventPartyAdded"), "{out}");
    assert_eq!(field(last, "ConnID"), Some(conn.as_str()), "{out}");
    ok_line(&d, &["call", "release", "1005"], "EventReleased").await;
    // Single-step transfer.
    ok_line(&d, &["call", "make", "1008", "1009"], "EventDialing").await;
    ok_line(&d, &["call", "answer", "1009"], "EventEstablished").await;
    ok_line(
        &d,
        &["call", "transfer", "1008", "--to", "1002", "--single-step"],
        "EventReleased",
    )
    .await;
    // Usage errors exit 2.
    let (rc, _, _) = ctictl(&d, &["call", "answer"]).await;
    assert_eq!(rc, 2);
}
