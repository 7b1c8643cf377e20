//! placeholder
#![deny(unsafe_code)]
