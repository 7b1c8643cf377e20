//! `ctid --demo`: an embedded csta-sim running the built-in demo switch, and the matching
//! configuration (desks 1001–1010, guests 2001–2010, queue 3001, route point 3101).
//!
//! The simulator is behind the default-on cargo feature `demo`: `cargo build -p ctid-server
//! --no-default-features` builds a production `ctid` without it ([`demo_config`] stays, for
//! tests that start their own simulator).

use std::net::SocketAddr;

use crate::Config;
#[cfg(feature = "demo")]
use crate::{start, Running};

/// The demo configuration pointing at a simulator on `csta`.
pub fn demo_config(listen: SocketAddr, csta: SocketAddr) -> Config {
    let text = format!(
        r#"
listen = "{listen}"
server-name = "ctid-demo"

[[link]]
name = "csta-sim"
host = "{host}"
port = {port}
session = "ecma354"
edition = "ed3"
kpl-interval = 10
reconnect-min = 0.5
reconnect-max = 5

[[dn]]
range = "1001-1010"
type = "Extension"
register = true

[[dn]]
range = "2001-2010"
type = "Extension"
register = true

[[dn]]
number = "3001"
type = "ACDQueue"
register = true

[[dn]]
number = "3101"
type = "RoutingPoint"
register = true

[[agent-login]]
agent-id = "2001"
"#,
        host = csta.ip(),
        port = csta.port()
    );
    Config::parse(&text).expect("the demo configuration is valid")
}

/// A running demo: ctid and its simulator.
#[cfg(feature = "demo")]
pub struct Demo {
    pub ctid: Running,
    pub sim: ctid_sim::Sim,
}

/// Start the simulator (CSTA and control on 127.0.0.1, ephemeral ports) and ctid on `listen`.
#[cfg(feature = "demo")]
pub async fn start_demo(listen: SocketAddr) -> anyhow::Result<Demo> {
    start_demo_with(listen, |_| {}).await
}

/// [`start_demo`] with the demo configuration edited by `edit` first (e.g. `record_inputs`).
#[cfg(feature = "demo")]
pub async fn start_demo_with(
    listen: SocketAddr,
    edit: impl FnOnce(&mut Config),
) -> anyhow::Result<Demo> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let sim = ctid_sim::Sim::start(ctid_sim::SimConfig::demo(), any, Some(any)).await?;
    let mut cfg = demo_config(listen, sim.csta_addr());
    edit(&mut cfg);
    let ctid = start(cfg).await?;
    Ok(Demo { ctid, sim })
}

/// Built without the `demo` feature: what `ctid --demo` says.
pub const NO_DEMO: &str = "this ctid was built without the demo simulator (cargo feature `demo`, \
on by default): run it with --config FILE, or build it with default features for --demo";
