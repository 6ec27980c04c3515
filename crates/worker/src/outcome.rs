//! How the worker reports what the ledger made of an observation: a flag
//! (the provider contradicts the registration) and a conflict (a final
//! answer against another final state) are WARN, because a person should
//! look; everything else is INFO, and an observation that changed nothing
//! says why (`already_in_state` for a pending answer to a pending payment).

use paysettle_store::ApplyOutcome;

/// The state machine's code for a final answer that contradicts a final state.
const CONFLICT: &str = "conflicts_with_final";

/// Whether a person should look at this outcome.
pub fn needs_attention(outcome: &ApplyOutcome) -> bool {
    match outcome {
        ApplyOutcome::Mismatch { .. } => true,
        ApplyOutcome::Ignored { reason, .. } => *reason == CONFLICT,
        ApplyOutcome::Applied { .. } | ApplyOutcome::Duplicate { .. } => false,
    }
}

/// Logs `outcome` of an observation that came as `what` ("callback
/// applied", "status checked", …) at the level it deserves.
pub fn log(outcome: &ApplyOutcome, what: &str) {
    match outcome {
        ApplyOutcome::Mismatch { .. } => crate::telemetry::attention("mismatch"),
        _ if needs_attention(outcome) => crate::telemetry::attention("conflict"),
        _ => {}
    }
    let payment = outcome.payment_id().0;
    let kind = outcome.kind();
    match outcome {
        ApplyOutcome::Mismatch { reason, detail, .. } => tracing::warn!(
            payment.id = payment,
            outcome = kind,
            reason = *reason,
            detail = %detail,
            "{what}: the provider contradicts the registration; payment flagged, finance told"
        ),
        ApplyOutcome::Ignored { reason, detail, .. } if *reason == CONFLICT => tracing::warn!(
            payment.id = payment,
            outcome = "conflict",
            reason = *reason,
            detail = %detail,
            "{what}: the provider's final answer contradicts the ledger's final status; kept in the history, status unchanged"
        ),
        ApplyOutcome::Ignored { reason, detail, .. } => tracing::info!(
            payment.id = payment,
            outcome = kind,
            reason = *reason,
            detail = %detail,
            "{what}: nothing to change"
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
