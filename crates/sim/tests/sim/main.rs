//! Integration tests: every provider's whole flow and every scenario control,
//! over real HTTP through real sockets, with a real local listener receiving
//! the callbacks. Tests move the simulator's clock instead of sleeping.

// The workspace denies these outside tests; clippy only recognises `#[test]`
// functions as tests, not the helpers of an integration-test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod callbacks;
mod common;
mod control;
mod faults;
mod paysys;
mod plutu;
mod portmanat;
