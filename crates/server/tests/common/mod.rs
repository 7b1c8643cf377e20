//! The rig shared by the end-to-end tests: csta-sim (demo switch) and ctid on 127.0.0.1:0 with
//! fast reconnects, and clients through the ctid-client library.
#![allow(dead_code)]

pub mod nats;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{ConnId, Event, EventName, Request, RequestName};
use ctid_server::demo::demo_config;
use ctid_server::{Config, Running};
use ctid_sim::{Sim, SimConfig};

/// How long a test waits for any one answer.
pub const T: Duration = Duration::from_secs(5);

pub struct Rig {
    pub sim: Sim,
    pub ctid: Running,
}

pub fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The demo switch and the demo configuration, edited by `edit`; returns once the link is up.
pub async fn rig_with(edit: impl FnOnce(&mut Config)) -> Rig {
    rig_with_sim(|_| {}, edit).await
}

/// [`rig_with`], the demo switch's configuration edited by `sim_edit` first.
pub async fn rig_with_sim(
    sim_edit: impl FnOnce(&mut SimConfig),
    edit: impl FnOnce(&mut Config),
) -> Rig {
    let mut sim_cfg = SimConfig::demo();
    sim_edit(&mut sim_cfg);
    let sim = Sim::start(sim_cfg, any(), None).await.unwrap();
    let mut cfg = demo_config(any(), sim.csta_addr());
    for l in &mut cfg.links {
        l.reconnect_min = Duration::from_millis(100);
        l.reconnect_max = Duration::from_millis(300);
        l.connect_timeout = Duration::from_millis(800);
    }
    edit(&mut cfg);
    let ctid = ctid_server::start(cfg).await.unwrap();
    let r = Rig { sim, ctid };
    r.wait_link("up").await;
    r
}

pub async fn rig() -> Rig {
    rig_with(|_| {}).await
}

impl Rig {
    /// Wait until ctid reports the link `state` ("up", "down", "syncing").
    pub async fn wait_link(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut rx = self.ctid.status.clone();
        while rx.borrow().link.as_str() != state {
            assert!(Instant::now() < deadline, "link never became {state}");
            let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
        }
    }

    /// A connected client, the link-status event it gets on connect consumed.
    pub async fn client(&self) -> Client {
        let mut c = Client::connect(&self.ctid.ws_url()).await.unwrap();
        let first = c
            .next_event(T)
            .await
            .unwrap()
            .expect("link status on connect");
        assert!(
            matches!(
                first.name,
                EventName::EventLinkConnected | EventName::EventLinkDisconnected
            ),
            "{first:?}"
        );
        c
    }

    /// A client registered on `dns`.
    pub async fn client_on(&self, dns: &[&str]) -> Client {
        let mut c = self.client().await;
        for d in dns {
            let ev = c.request(Request::register_address(*d), T).await.unwrap();
            assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
        }
        c
    }
}

/// Wait for the event `name` (on `dn` if given), skipping others (an EventError fails the test).
pub async fn until(c: &mut Client, name: EventName, dn: Option<&str>) -> Event {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c
            .next_event(left)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {name:?} on {dn:?}"));
        if ev.name == name && dn.is_none_or(|d| ev.this_dn.as_deref() == Some(d)) {
            return ev;
        }
        assert_ne!(
            ev.name,
            EventName::EventError,
            "while waiting for {name:?}: {ev:?}"
        );
    }
}

/// A request `name` on ThisDN `dn`.
pub fn req(name: RequestName, dn: &str) -> Request {
    Request::new(name).with_this_dn(dn)
}

/// `r` on the call `c`.
pub fn with_conn(mut r: Request, c: ConnId) -> Request {
    r.conn_id = Some(c);
    r
}

/// Send `r`; its answer must be `want`.
pub async fn answer_ok(c: &mut Client, r: Request, want: EventName) -> Event {
    let ev = c.request(r, T).await.unwrap();
    assert_eq!(ev.name, want, "{ev:?}");
    ev
}
