//! A real nats-server for the export and hot-standby tests ([`ctid_sim::nats`]). When none can
//! be had, the test is skipped with a loud message — unless `CTID_REQUIRE_NATS` is set (CI sets
//! it), which makes that a failure.

use std::path::Path;

#[allow(unused_imports)]
pub use ctid_sim::nats::free_port;
use ctid_sim::nats::NatsServer;

/// A running nats-server with JetStream.
pub struct Nats(NatsServer);

impl Nats {
    /// Start nats-server (JetStream, store `store`) on `port`; `None`: skip the test.
    pub fn start(port: u16, store: &Path) -> Option<Nats> {
        match NatsServer::start(port, store) {
            Ok(n) => Some(Nats(n)),
            Err(msg) => {
                if std::env::var_os("CTID_REQUIRE_NATS").is_some() {
                    panic!("{msg}; CTID_REQUIRE_NATS is set, so this is a failure");
                }
                eprintln!("\n!!!!!!!! SKIPPING a NATS test: {msg} !!!!!!!!\n");
                None
            }
        }
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Kill it (no goodbye).
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// Start it again on the same port and store.
    pub fn restart(&mut self) {
        self.0.restart().expect("nats-server restarts");
    }
}
