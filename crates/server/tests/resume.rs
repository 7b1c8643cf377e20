//! Client sessions that outlive their connection (docs/protocol.md §6.9): a connection lost
//! without a clean close keeps the session; RequestResumeSession on a new connection gets every
//! event it missed, once; each refusal; a clean close (1000) ends the session at once.

use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{ErrorCode, Event, EventName, Request, RequestName};

mod common;
use common::*;

/// Connect; the first frame's SessionID and EventSequenceNumber.
async fn open(r: &Rig) -> (Client, String, u64) {
    let mut c = Client::connect(&r.ctid.ws_url()).await.unwrap();
    let first = c.next_event(T).await.unwrap().expect("the first frame");
    let id = first
        .session_id
        .clone()
        .expect("SessionID on the first frame");
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    (c, id, first.event_sequence_number)
}

/// Read events for `wait` (the answer to nothing in particular); everything read.
async fn drain(c: &mut Client, wait: Duration) -> Vec<Event> {
    let mut v = Vec::new();
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left).await {
            Ok(Some(e)) => v.push(e),
            _ => return v,
        }
    }
}

/// Read until an event named `name` on `dn` arrives; everything read, it last.
async fn read_until(c: &mut Client, name: EventName, dn: &str) -> Vec<Event> {
    let mut v = Vec::new();
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = c
            .next_event(left)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {name:?} on {dn}; saw {v:?}"));
        let hit = e.name == name && e.this_dn.as_deref() == Some(dn);
        v.push(e);
        if hit {
            return v;
        }
    }
}

fn key(e: &Event) -> String {
    e.to_json()
}

/// Wait (with a deadline) until ctid counts `n` detached sessions.
async fn detached(r: &Rig, n: usize) {
    let deadline = Instant::now() + T;
    loop {
        let body = reqwest_state(r).await;
        if body["counts"]["detached"].as_u64() == Some(n as u64) {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} detached: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/api/state` as JSON (a plain HTTP/1.0 GET over TCP).
async fn reqwest_state(r: &Rig) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(r.ctid.addr).await.unwrap();
    s.write_all(b"GET /api/state HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn a_lost_connection_resumes_with_every_missed_event_once() {
    let r = rig().await;
    let mut twin = r.client_on(&["1001", "1002"]).await;
    let (mut c, id, _) = open(&r).await;
    for d in ["1001", "1002"] {
        let ev = c.request(Request::register_address(d), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered);
    }
    // a call rings; both see it
    r.sim.dial("1001", "1002").await.unwrap();
    let seen = read_until(&mut c, EventName::EventRinging, "1002").await;
    let last = seen.last().unwrap().event_sequence_number;
    read_until(&mut twin, EventName::EventRinging, "1002").await;
    // the connection drops without a close frame
    drop(c);
    detached(&r, 1).await;
    // meanwhile the call is answered and released
    r.sim.answer("1002").await.unwrap();
    r.sim.hangup("1001").await.unwrap();
    let missed = read_until(&mut twin, EventName::EventReleased, "1002").await;
    assert!(missed.len() >= 4, "{missed:?}");
    // a new connection resumes
    let (mut c2, id2, _) = open(&r).await;
    assert_ne!(id, id2);
    let ans = c2
        .request(Request::resume_session(id.clone(), last), T)
        .await
        .unwrap();
    assert_eq!(ans.name, EventName::EventSessionResumed, "{ans:?}");
    assert_eq!(ans.session_id.as_deref(), Some(id.as_str()));
    assert_eq!(ans.event_sequence_number, last);
    let n = ans
        .extensions
        .as_ref()
        .and_then(|e| e.get_int("Replayed"))
        .unwrap();
    assert_eq!(n as usize, missed.len(), "{missed:?}");
    let replayed = drain(&mut c2, Duration::from_millis(300)).await;
    assert_eq!(
        replayed.iter().map(key).collect::<Vec<_>>(),
        missed.iter().map(key).collect::<Vec<_>>(),
        "the same events, with their original numbers and times"
    );
    // and it is live again: registrations kept
    r.sim.dial("1002", "1001").await.unwrap();
    let a = read_until(&mut c2, EventName::EventRinging, "1001").await;
    let b = read_until(&mut twin, EventName::EventRinging, "1001").await;
    assert_eq!(
        a.iter().map(key).collect::<Vec<_>>(),
        b.iter().map(key).collect::<Vec<_>>()
    );
    detached(&r, 0).await;
}

#[tokio::test]
async fn a_resume_while_the_old_connection_looks_alive_takes_it_over() {
    let r = rig().await;
    let (mut c, id, first) = open(&r).await;
    let ev = c
        .request(Request::register_address("1003"), T)
        .await
        .unwrap();
    let last = ev.event_sequence_number.max(first);
    // ctid has not noticed anything: the same token resumes from a second connection
    let (mut c2, _, _) = open(&r).await;
    let ans = c2
        .request(Request::resume_session(id, last), T)
        .await
        .unwrap();
    assert_eq!(ans.name, EventName::EventSessionResumed, "{ans:?}");
    // the old connection is closed
    let mut closed = false;
    for _ in 0..10 {
        match c.next_event(Duration::from_millis(200)).await {
            Ok(Some(e)) if e.name == EventName::EventServerDisconnected => {
                closed = true;
                break;
            }
            Err(_) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the old connection stays open");
    r.sim.dial("1004", "1003").await.unwrap();
    read_until(&mut c2, EventName::EventRinging, "1003").await;
}

async fn refused(c: &mut Client, req: Request, code: ErrorCode) -> Event {
    let ev = c.request(req, T).await.unwrap();
    assert_eq!(ev.name, EventName::EventError, "{ev:?}");
    assert_eq!(ev.error_code, Some(code), "{ev:?}");
    ev
}

#[tokio::test]
async fn resume_refusals_each_have_their_code_and_the_connection_lives() {
    let r = rig_with(|c| {
        c.engine.resume_window_ms = 400;
        c.engine.resume_buffer_bytes = 1024;
    })
    .await;
    // unknown
    let (mut c, _, _) = open(&r).await;
    refused(
        &mut c,
        Request::resume_session("00000000000000000000000000000000", 0),
        ErrorCode::SESSION_UNKNOWN,
    )
    .await;
    // the connection lives on its own fresh session
    let ev = c
        .request(Request::register_address("1005"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered);
    // not the first request
    refused(
        &mut c,
        Request::resume_session("00000000000000000000000000000000", 0),
        ErrorCode::SESSION_NOT_FIRST,
    )
    .await;
    // missing attributes
    let (mut c, _, _) = open(&r).await;
    refused(
        &mut c,
        Request::new(RequestName::RequestResumeSession),
        ErrorCode::INVALID_ATTR,
    )
    .await;

    // expired: the window passes
    let (mut a, id, seq) = open(&r).await;
    a.request(Request::register_address("1006"), T)
        .await
        .unwrap();
    drop(a);
    detached(&r, 1).await;
    detached(&r, 0).await;
    let (mut c, _, _) = open(&r).await;
    refused(
        &mut c,
        Request::resume_session(id, seq),
        ErrorCode::SESSION_EXPIRED,
    )
    .await;

    // overflowed: more events than resume-buffer-bytes while detached
    let (mut a, id, _) = open(&r).await;
    let ev = a
        .request(Request::register_address("1007"), T)
        .await
        .unwrap();
    let seq = ev.event_sequence_number;
    drop(a);
    detached(&r, 1).await;
    for _ in 0..4 {
        r.sim.dial("1008", "1007").await.unwrap();
        r.sim.hangup("1008").await.unwrap();
    }
    detached(&r, 0).await; // it ended at once, before its window
    let (mut c, _, _) = open(&r).await;
    refused(
        &mut c,
        Request::resume_session(id, seq),
        ErrorCode::SESSION_EVENTS_LOST,
    )
    .await;
}

#[tokio::test]
async fn a_clean_close_ends_the_session_at_once() {
    let r = rig().await;
    let (mut a, id, seq) = open(&r).await;
    a.request(Request::register_address("1009"), T)
        .await
        .unwrap();
    let st = reqwest_state(&r).await;
    assert!(
        st["sessions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|s| s["dns"].as_u64() == Some(1))),
        "{st}"
    );
    a.close().await.unwrap();
    // ended, not detached: the session is gone at once, nothing waits for a resume
    let deadline = Instant::now() + T;
    loop {
        let st = reqwest_state(&r).await;
        let listed = st["sessions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|s| s["dns"].as_u64() == Some(1)));
        if !listed && st["counts"]["detached"].as_u64() == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session is still there: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut c, _, _) = open(&r).await;
    refused(
        &mut c,
        Request::resume_session(id, seq),
        ErrorCode::SESSION_UNKNOWN,
    )
    .await;
}
