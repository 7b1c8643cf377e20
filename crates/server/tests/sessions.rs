//! Client sessions under bad clients: a client that vanishes without closing (ping/pong timeout:
//! its registrations go and, with `agent-logout-on-unregister`, the agent it logged in is logged
//! out at the switch), a request flood (per-client rate limit: closed with a reason), a frame over
//! `max-client-frame` (closed 1009) — and every other client carries on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{EventName, Request, RequestName};
use ctid_server::demo::demo_config;
use ctid_server::{Config, Running};
use ctid_sim::{Sim, SimConfig};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

async fn rig_with(edit: impl FnOnce(&mut Config)) -> (Sim, Running) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = Sim::start(SimConfig::demo(), any, None).await.unwrap();
    let mut cfg = demo_config(any, sim.csta_addr());
    edit(&mut cfg);
    let ctid = ctid_server::start(cfg).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctid.status.borrow().link.as_str() != "up" {
        assert!(Instant::now() < deadline, "link never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (sim, ctid)
}

async fn client(ctid: &Running) -> Client {
    let mut c = Client::connect(&ctid.ws_url()).await.unwrap();
    c.next_event(T).await.unwrap().unwrap();
    c
}

/// A well-behaved client answers pings and is answered.
async fn still_served(c: &mut Client) {
    let ev = c
        .request(Request::new(RequestName::RequestQueryServer), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventServerInfo, "{ev:?}");
}

/// The close frame a raw WebSocket gets, reading whatever comes before it.
async fn close_of(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (u16, String) {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("no close frame"),
            Ok(Some(Ok(Message::Close(Some(f))))) => return (f.code.into(), f.reason.to_string()),
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) => panic!("closed without a reason"),
            Ok(Some(Err(e))) => panic!("error before the close frame: {e}"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_and_its_agent_logged_out() {
    // Its session is kept for a resume (docs/protocol.md §6.9), here briefly: when the window
    // passes, the session ends as a disconnect ends it (agent-logout-on-unregister applies).
    let (sim, ctid) = rig_with(|c| {
        c.client.ping_interval = Duration::from_millis(200);
        c.client.ping_timeout = Duration::from_millis(300);
        c.engine.agent_logout_on_unregister = true;
        c.engine.resume_window_ms = 300;
    })
    .await;
    let mut desk = client(&ctid).await;
    let ev = desk
        .request(Request::register_address("2002"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered);
    let mut login = Request::new(RequestName::RequestAgentLogin).with_this_dn("2002");
    login.agent_id = Some("2002".into());
    let ev = desk.request(login, T).await.unwrap();
    assert_eq!(ev.name, EventName::EventAgentLogin, "{ev:?}");
    let mut obs = client(&ctid).await;
    let ev = obs
        .request(Request::register_address("2002"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered);
    // The desktop freezes: it never reads again, so it never answers a ping.
    let clients_before = ctid.status.borrow().clients;
    let t0 = Instant::now();
    let logged_out = loop {
        assert!(t0.elapsed() < T, "the silent client was never dropped");
        // The observer keeps reading (and so answers pings).
        if let Some(ev) = obs.next_event(Duration::from_millis(50)).await.unwrap() {
            if ev.name == EventName::EventAgentLogout {
                break ev;
            }
        }
    };
    assert_eq!(logged_out.this_dn.as_deref(), Some("2002"));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "dropped too early: {took:?}"
    );
    let snap = sim.snapshot().await;
    let agent = snap["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agentID"] == "2002")
        .unwrap();
    assert_eq!(agent["state"], "loggedOff", "{agent}");
    assert!(ctid.status.borrow().clients < clients_before);
    still_served(&mut obs).await;
    drop(desk);
}

#[tokio::test]
async fn a_request_flood_closes_that_client_only() {
    let (_sim, ctid) = rig_with(|c| {
        c.client.rate_limit = 20.0;
        c.client.rate_burst = 10.0;
    })
    .await;
    let mut calm = client(&ctid).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ctid.ws_url())
        .await
        .unwrap();
    for i in 1..=200 {
        let text = format!(r#"{{"request":"RequestQueryServer","ReferenceID":{i}}}"#);
        if ws.send(Message::text(text)).await.is_err() {
            break;
        }
    }
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("rate limit"), "{reason}");
    // Within the rate, a client is served as usual.
    for _ in 0..5 {
        still_served(&mut calm).await;
    }
}

#[tokio::test]
async fn a_frame_over_max_client_frame_closes_that_client_only() {
    let (_sim, ctid) = rig_with(|c| c.max_client_frame = 4096).await;
    let mut calm = client(&ctid).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ctid.ws_url())
        .await
        .unwrap();
    let big = format!(
        r#"{{"request":"RequestQueryServer","ReferenceID":1,"ApplicationName":"{}"}}"#,
        "x".repeat(10_000)
    );
    let _ = ws.send(Message::text(big)).await;
    let (code, _) = close_of(&mut ws).await;
    assert_eq!(code, 1009);
    still_served(&mut calm).await;
}
