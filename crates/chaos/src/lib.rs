//! ctid-chaos: the link-chaos test of ctid. [`check`] compares ctid's model, as a client sees it,
//! with csta-sim's state; `src/main.rs` drops the link at random moments under load and runs the
//! comparison after every recovery.
#![deny(unsafe_code)]

pub mod check;
