//! How the worker reports what the ledger made of an observation: a flag
//! (the provider contradicts the registration: `payment.mismatch`, or a
//! final status: `payment.conflict`) is WARN, because a person should look;
//! everything else is INFO, and an observation that changed nothing says why
//! (`already_in_state` for a pending answer to a pending payment).

use paysettle_store::ApplyOutcome;

/// The flag code of a conflict with a final status (core's `FlagKind`).
const CONFLICT: &str = "conflict";

/// Whether a person should look at this outcome.
pub fn needs_attention(outcome: &ApplyOutcome) -> bool {
    matches!(outcome, ApplyOutcome::Mismatch { .. })
}

/// Logs `outcome` of an observation that came as `what` ("callback
/// applied", "status checked", …) at the level it deserves.
pub fn log(outcome: &ApplyOutcome, what: &str) {
    let payment = outcome.payment_id().0;
    let kind = outcome.kind();
    match outcome {
        ApplyOutcome::Mismatch {
            reason,
            detail,
            event,
            ..
        } => {
            let conflict = *reason == CONFLICT;
            crate::telemetry::attention(if conflict { "conflict" } else { "mismatch" });
            tracing::warn!(
                payment.id = payment,
                outcome = if conflict { "conflict" } else { "mismatch" },
                reason = *reason,
                detail = %detail,
                announced = event.is_some(),
                "{what}: the provider contradicts {}; payment flagged, finance told",
                if conflict { "the ledger's final status" } else { "the registration" }
            );
        }
        ApplyOutcome::Ignored { reason, detail, .. } => tracing::info!(
            payment.id = payment,
            outcome = kind,
            reason = *reason,
            detail = %detail,
            "{what}: nothing to change"
        ),
        ApplyOutcome::Held { reason, .. } => tracing::info!(
            payment.id = payment,
            outcome = kind,
            reason = *reason,
            "{what}: the payment is flagged; recorded, not applied"
        ),
        ApplyOutcome::Recheck { .. } => tracing::info!(
            payment.id = payment,
            outcome = kind,
            "{what}: contradicts a final status; asking the provider once more before flagging"
        ),
        ApplyOutcome::Applied { from, to, .. } => tracing::info!(
            payment.id = payment,
            outcome = kind,
            from = %from,
            to = %to,
            "{what}"
        ),
        ApplyOutcome::Duplicate { .. } => {
            tracing::info!(payment.id = payment, outcome = kind, "{what}: seen before")
        }
    }
}
