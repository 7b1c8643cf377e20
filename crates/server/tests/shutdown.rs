//! Graceful shutdown: every client session is closed (with a close frame) within a bounded time,
//! no new client is accepted, and the link goes away (the simulator sees the connection close).

use std::time::{Duration, Instant};

use ctid_client::{Client, Error};
use ctid_protocol::EventName;

mod common;
use common::*;

#[tokio::test]
async fn shutdown_closes_clients_and_stops_within_the_grace() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["2001"]).await;
    let url = r.ctid.ws_url();
    let Rig { sim, ctid } = r;
    let t0 = Instant::now();
    ctid.shutdown(Duration::from_millis(300)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "bounded: {:?}",
        t0.elapsed()
    );
    for c in [&mut a, &mut b] {
        // The client library reports the close as EventServerDisconnected, then Closed.
        let mut saw_close = false;
        for _ in 0..5 {
            match c.next_event(Duration::from_secs(2)).await {
                Ok(Some(e)) if e.name == EventName::EventServerDisconnected => saw_close = true,
                Ok(Some(_)) => continue,
                Ok(None) | Err(Error::Closed) => break,
                Err(_) => break,
            }
        }
        assert!(saw_close, "the session was closed");
    }
    // Nobody is accepted any more.
    assert!(
        Client::connect(&url).await.is_err(),
        "connect after shutdown"
    );
    // The CSTA connection is gone: the simulator has no client left.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s = sim.snapshot().await;
        let conns = s
            .get("connections")
            .and_then(|v| v.as_array())
            .map(|a| a.len())
            .expect("the simulator lists its CSTA connections");
        if conns == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the link is still open: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
