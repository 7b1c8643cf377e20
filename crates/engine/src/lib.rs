//! ctid-engine: the T-Server brain, sans-IO and deterministic.
//!
//! [`Engine::handle`] takes the time ([`Now`]) and one [`Input`] (a client connected or sent a
//! request, the link came up or went down, a CSTA answer/event/request arrived, time passed)
//! and appends the [`Output`]s to act on: events for clients (stamped with
//! `EventSequenceNumber` and `time`, to be encoded once and sent to every listed client) and CSTA
//! messages for the link. [`Engine::poll_timeout`] says when it next needs time. No clock, no
//! sockets, no tokio, no map with a random order: the same inputs give the same outputs in any
//! process, which is what recording, replay and replication rely on.
//!
//! The engine is owned parts under one orchestrator (`docs/architecture.md` draws it):
//!
//! | file | part |
//! |---|---|
//! | [`engine`] | the orchestrator: routes inputs, the only code that calls across parts |
//! | [`io`] | inputs, outputs, time, and their JSON (recordings) |
//! | [`requests`] | the table of client requests, their guard, `SupportedRequests` |
//! | [`clients`] | connected clients and their registrations |
//! | [`dns`] | DNs, registrations, switch monitors |
//! | [`hotdesk`] | hot desking: table, private services, queries, agent-login hot desks |
//! | [`calls`] | the call model: calls, parties, CSTA call events, merges, resync |
//! | [`call_control`] | call requests made CSTA services |
//! | [`answers`] | how a request sent to the switch gets its one answer |
//! | [`agents`] | agents: state, events, GetAgentState, SetAgentState |
//! | [`features`] | forwarding, DND, service state |
//! | [`userdata`] | user data of calls |
//! | [`status`] | DN-status keys and the web monitor's views |
//! | [`link`] | the link phase (down, syncing, up) and link events |
//! | [`window`] | the CSTA request window: invoke IDs, `max-outstanding`, deadlines |
//! | [`outbox`] | sequence numbers, stamping, refusals |
//! | [`snapshot`] | the engine's whole state as JSON and back (hot standby) |
//! | [`errors`] | CSTA errors made T-Library codes |
//! | [`config`] | the engine's configuration |
//! | [`det`] | a hash map with a fixed hasher (lookups on the per-event path) |
#![deny(unsafe_code)]

pub mod agents;
pub mod answers;
pub mod call_control;
pub mod calls;
pub mod clients;
pub mod config;
pub mod det;
pub mod dns;
pub mod engine;
pub mod errors;
pub mod features;
pub mod hotdesk;
pub mod io;
pub mod link;
pub mod outbox;
pub mod requests;
pub mod sessions;
pub mod snapshot;
pub mod status;
pub mod testkit;
pub mod userdata;
pub mod window;

pub use config::{DnConfig, EngineConfig, RegisterFlag};
pub use engine::{Counters, Engine};
pub use io::{ClientId, Input, Now, Output, RecordError, Tag};
pub use link::LinkState;
pub use sessions::SessionCounters;
pub use status::{CallView, DnView, SessionView};
