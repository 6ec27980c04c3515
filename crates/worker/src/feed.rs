//! The shop API's feeds, for deployments without a broker (and beside one):
//! settled events for finance and card registrations for the shop, each read
//! with a cursor and a long poll.
//!
//! - `GET /v1/events?after=CURSOR&limit=N&wait=SECONDS` → `{"events": [...],
//!   "next": CURSOR}`: the ledger's outbox in ledger order, each event the
//!   exact JSON published on RabbitMQ.
//! - `GET /v1/cards?after=…&limit=…&wait=…` → `{"cards": [{"message_id",
//!   "routing_key", "registration"}], "next": CURSOR}`, authorised by its own
//!   token (`shop_api.card_token`): a card token is for the shop only.
//!
//! A cursor names the file it comes from and a position in it. It is opaque
//! to the client, stays valid across restarts, and a cursor of another file
//! (a ledger replaced by a fresh one) is refused with a 400 rather than
//! silently skipping or repeating events. With `wait`, an empty answer is
//! held until something arrives, the wait is over, or the server stops.

use std::time::Duration;

use paysettle_store::{CardFeed, EventFilter, Ledger};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The most entries one answer carries.
pub const MAX_LIMIT: usize = 1000;
/// Entries per answer when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The longest a client may ask an answer to be held.
pub const MAX_WAIT_SECONDS: u64 = 60;
/// How often a held answer looks again even when nothing woke it (another
/// process, such as `reconcile --apply`, may have written events).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// A feed parameter that is wrong, with the parameter's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> BadParameter {
    BadParameter {
        field,
        message: message.into(),
    }
}

/// What a feed request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    /// The position after which to read (0: from the beginning).
    pub after: i64,
    pub limit: usize,
    pub wait: Duration,
}

/// Reads `after`, `limit` and `wait` from the query's pairs; `file_id` is
/// the id the cursor must carry. Anything else, or any of them twice, is a
/// 400 naming it.
pub fn parse_query(pairs: &[(String, String)], file_id: &str) -> Result<FeedQuery, BadParameter> {
    let mut query = FeedQuery {
        after: 0,
        limit: DEFAULT_LIMIT,
        wait: Duration::ZERO,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in pairs {
        let field: &'static str = match key.as_str() {
            "after" => "after",
            "limit" => "limit",
            "wait" => "wait",
            other => {
                return Err(bad(
                    "query",
                    format!(
                        "unknown parameter {} (after, limit and wait are known)",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
        };
        if seen.contains(&field) {
            return Err(bad(field, format!("{field} is given more than once")));
        }
        seen.push(field);
        match field {
            "after" => query.after = parse_cursor(value, file_id)?,
            "limit" => {
                query.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit", format!("must be 1 to {MAX_LIMIT}")))?;
            }
            _ => {
                let seconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= MAX_WAIT_SECONDS)
                    .ok_or_else(|| {
                        bad(
                            "wait",
                            format!("must be a whole number of seconds, 0 to {MAX_WAIT_SECONDS}"),
                        )
                    })?;
                query.wait = Duration::from_secs(seconds);
            }
        }
    }
    Ok(query)
}

/// The cursor of position `seq` in the file `file_id`.
pub fn cursor(file_id: &str, seq: i64) -> String {
    format!("{file_id}.{seq}")
}

/// The position a cursor names, if it is one of this file's.
pub fn parse_cursor(text: &str, file_id: &str) -> Result<i64, BadParameter> {
    let malformed = || {
        bad(
            "after",
            "is not a cursor this feed gave (pass the \"next\" of an answer, as it is)",
        )
    };
    let (id, seq) = text.split_once('.').ok_or_else(malformed)?;
    let seq = seq
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(malformed)?;
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    if id != file_id {
        return Err(bad(
            "after",
            "the cursor belongs to another ledger (was the data directory replaced?); \
             read again from the start, without after, and dedupe on the ids",
        ));
    }
    Ok(seq)
}

/// Waits until `changes` moves, `LOOK_AGAIN` or the deadline passes, or the
/// server stops; `false` when there is no more time to wait.
async fn nap(
    changes: &mut watch::Receiver<u64>,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> bool {
    let now = Instant::now();
    if now >= deadline || shutdown.is_cancelled() {
        return false;
    }
    let nap = (deadline - now).min(LOOK_AGAIN);
    tokio::select! {
        changed = changes.changed() => {
            if changed.is_err() {
                // The writer is gone: nothing will wake us, only time.
                tokio::time::sleep(nap).await;
            }
        }
        () = tokio::time::sleep(nap) => {}
        () = shutdown.cancelled() => return false,
    }
    true
}

/// The settled-events answer's body: the events as published, in ledger
/// order, and the cursor to pass next.
pub async fn events(
    ledger: &Ledger,
    query: &FeedQuery,
    shutdown: &CancellationToken,
) -> Result<String, paysettle_store::StoreError> {
    let deadline = Instant::now() + query.wait;
    let mut commits = ledger.commits();
    loop {
        // Seen before reading, so a commit between the read and the wait
        // still wakes us.
        commits.borrow_and_update();
        let found = ledger
            .events(EventFilter {
                after_seq: Some(query.after),
                limit: query.limit,
                ..EventFilter::default()
            })
            .await?;
        if !found.is_empty() || !nap(&mut commits, deadline, shutdown).await {
            let next = found.last().map_or(query.after, |e| e.seq);
            // The bodies are spliced in as stored: byte for byte what
            // RabbitMQ carries (each is one JSON object).
            let bodies: Vec<&str> = found.iter().map(|e| e.body.as_str()).collect();
            return Ok(format!(
                "{{\"events\":[{}],\"next\":{}}}",
                bodies.join(","),
                json!(cursor(ledger.id(), next))
            ));
        }
    }
}

/// The card registrations answer's body.
pub async fn cards(
    feed: &CardFeed,
    query: &FeedQuery,
    shutdown: &CancellationToken,
) -> Result<String, paysettle_store::StoreError> {
    let deadline = Instant::now() + query.wait;
    let mut changes = feed.changes();
    loop {
        changes.borrow_and_update();
        let found = feed.after(query.after, query.limit).await?;
        if !found.is_empty() || !nap(&mut changes, deadline, shutdown).await {
            let next = found.last().map_or(query.after, |e| e.seq);
            let items: Vec<String> = found
                .iter()
                .map(|e| {
                    format!(
                        "{{\"message_id\":{},\"routing_key\":{},\"registration\":{}}}",
                        json!(e.message_id),
                        json!(e.routing_key),
                        e.body
                    )
                })
                .collect();
            return Ok(format!(
                "{{\"cards\":[{}],\"next\":{}}}",
                items.join(","),
                json!(cursor(feed.id(), next))
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef";

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_cursor_round_trips_and_another_files_cursor_is_refused() {
        assert_eq!(parse_cursor(&cursor(ID, 42), ID), Ok(42));
        assert_eq!(parse_cursor(&cursor(ID, 0), ID), Ok(0));
        let other = parse_cursor(&cursor("fedcba9876543210", 42), ID).unwrap_err();
        assert_eq!(other.field, "after");
        assert!(other.message.contains("another ledger"), "{other:?}");
        for wrong in [
            "",
            "42",
            "abc.1",
            &format!("{ID}.-1"),
            &format!("{ID}.x"),
            ID,
        ] {
            let err = parse_cursor(wrong, ID).unwrap_err();
            assert!(err.message.contains("not a cursor"), "{wrong}: {err:?}");
        }
    }

    #[test]
    fn every_bad_parameter_gets_its_own_400() {
        let ok = parse_query(&pairs(&[("limit", "5"), ("wait", "30")]), ID).unwrap();
        assert_eq!(
            ok,
            FeedQuery {
                after: 0,
                limit: 5,
                wait: Duration::from_secs(30)
            }
        );
        assert_eq!(parse_query(&[], ID).unwrap().limit, DEFAULT_LIMIT);
        let cases = [
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "1001")], "limit"),
            (vec![("limit", "ten")], "limit"),
            (vec![("wait", "61")], "wait"),
            (vec![("wait", "1.5")], "wait"),
            (vec![("wait", "-1")], "wait"),
            (vec![("after", "nope")], "after"),
            (vec![("limit", "1"), ("limit", "2")], "limit"),
            (vec![("since", "2026-01-01")], "query"),
        ];
        for (query, field) in cases {
            let err = parse_query(&pairs(&query), ID).unwrap_err();
            assert_eq!(err.field, field, "{query:?}: {err:?}");
        }
    }
}
