//! The CSTA link: everything between the core and the CSTA Connector's TCP port. It turns
//! frames into engine inputs and engine outputs into frames; it owns no model.
//!
//! * [`session`] — one link session without IO: session start (`ecma354`, `system-register`,
//!   `none`), waiting for system status normal, keepalive, session timer, system status,
//!   the monitors held on the session. Time is an argument; it is tested without sockets.
//! * [`own_requests`] — the invoke IDs of the session's own requests (9000–9998) and the table
//!   of those awaiting an answer; the engine numbers its own (1–8999) and holds their timeout.
//! * [`keepalive`] — when a RequestSystemStatus is due and when the link counts as lost.
//! * [`error`] — [`LinkError`], why a session could not start or ended.
//! * `driver` — the tokio side of one link: TCP connect, reads, batched writes, timers,
//!   reconnect with backoff, reloaded settings.
//! * `manager` — [`run_links`]: several links, the best operational one active, fail-over and
//!   switch-back (docs/configuration.md, `[[link]]`).

use ctid_csta::{InvokeId, Message};

mod driver;
pub mod error;
pub mod keepalive;
mod manager;
pub mod own_requests;
pub mod session;

pub use error::LinkError;
pub use manager::run_links;
pub use own_requests::SESSION_INVOKE_IDS;
pub use session::{ResyncReason, Session, SessionEvent};

/// What the core asks the link to do.
#[derive(Debug)]
pub enum LinkCmd {
    /// An engine request, sent with the engine's invoke ID.
    Request {
        invoke_id: InvokeId,
        message: Message,
    },
    /// The engine's answer to a Connector request, with the request's invoke ID.
    Answer {
        invoke_id: InvokeId,
        message: Message,
    },
}
