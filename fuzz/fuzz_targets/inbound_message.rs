//! The queue message between receiver and worker, as the worker decodes it
//! (a message may come from an older or broken producer, or a spool file):
//! never a panic, what decodes encodes back to the same message, and the
//! money in it keeps the rules `Money`'s constructors enforce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paysettle_core::inbound::{InboundCallback, Payload};
use paysettle_core::{Money, ObservedStatus};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<InboundCallback>(data) else {
        return;
    };
    let encoded = serde_json::to_vec(&message).unwrap();
    let again: InboundCallback = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(again.id, message.id);
    assert_eq!(again.payload, message.payload);
    assert_eq!(again.received_at, message.received_at);
    if let Payload::Observation(observation) = &message.payload {
        // Money keeps its rules however it arrives: never negative, never
        // past the ledger's bound.
        let refund = match observation.status {
            ObservedStatus::Refunded { total } => total,
            _ => None,
        };
        for money in observation.money.iter().chain(refund.iter()) {
            assert!((0..=Money::MAX_MINOR).contains(&money.minor()), "{money:?}");
        }
        let _ = observation.dedupe_key();
    }
});
