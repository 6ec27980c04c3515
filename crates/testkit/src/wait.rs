//! Waiting for something to become true, with a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] looks again. Short, because what tests wait for
/// (a queue draining, a connection dropping) usually takes milliseconds.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns true; fails the test naming `what` if
/// `within` passes first. The condition is the synchronisation: the poll
/// interval only bounds how late the test notices.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let mut calls = 0;
        eventually(Duration::from_secs(5), "third call", || {
            calls += 1;
            let done = calls >= 3;
            async move { done }
        })
        .await;
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: never")]
    async fn fails_naming_what_never_happened() {
        eventually(Duration::from_millis(50), "never", || async { false }).await;
    }
}
