//! The embedded default, as a one-box shop runs it: no broker, and finance
//! and the shop read settled events and card registrations from the shop
//! API's feeds. The real binary, restarted (killed) mid-run; a consumer that
//! keeps its cursor and opens a new connection for every request.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use paysettle_sim::{PartnerNotifyRequest, PartnerNotifyStat};
use paysettle_store::EventFilter;

use super::*;

pub(super) const SHOP_TOKEN: &str = "shop-token-for-the-feed-test-0001";
pub(super) const CARD_TOKEN: &str = "card-token-for-the-feed-test-0002";

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) fn embedded_config(
    dir: &std::path::Path,
    sim_base: &str,
    receiver: u16,
    shop: u16,
) -> std::path::PathBuf {
    let polling = |name: &str| {
        format!(
            "[polling.{name}]\nconcurrency = 8\nrate_per_sec = 500.0\ntimeout_ms = 2000\nfirst_ms = 50\nmultiplier = 2.0\n\
             max_interval_ms = 300\njitter = 0.1\ndeadline_ms = 60000\n"
        )
    };
    let text = format!(
        r#"
[ledger]
path = "{dir}/ledger.sqlite"

[queue]
backend = "embedded"
embedded_path = "{dir}/queue.sqlite"
spool_path = "{dir}/spool.sqlite"

[receiver]
listen = "127.0.0.1:{receiver}"
# The simulator's browser returns all come from one address, as through a
# proxy: genuine traffic, not one client flooding.
hints_per_sec = 10000.0
hints_per_client_per_sec = 10000.0

[shop_api]
listen = "127.0.0.1:{shop}"
token = "{SHOP_TOKEN}"
card_token = "{CARD_TOKEN}"

[worker]
batch_size = 16
batch_wait_ms = 5
relay_interval_ms = 50
poll_idle_ms = 25

{portmanat}{paysys}{plutu}
{accounts}"#,
        dir = dir.display(),
        accounts = paysettle_testkit::config::sim_accounts(sim_base),
        portmanat = polling("portmanat"),
        paysys = polling("paysys"),
        plutu = polling("plutu"),
    );
    let path = dir.join("paysettle.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(super) fn start(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_paysettle"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A client that never reuses a connection: every poll reconnects.
pub(super) fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub(super) async fn ready(shop: u16) {
    paysettle_testkit::eventually(
        Duration::from_secs(30),
        "paysettle's shop API answers",
        || async {
            fresh_client()
                .get(format!("http://127.0.0.1:{shop}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
}

/// One feed consumer: keeps its cursor, survives paysettle going away, and
/// stops once told to and the feed has nothing more.
async fn consume(
    url: String,
    token: &'static str,
    key: &'static str,
    stop: Arc<AtomicBool>,
) -> (Vec<Value>, usize) {
    let mut cursor: Option<String> = None;
    let mut items = Vec::new();
    let mut failures = 0;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut request = fresh_client()
            .get(&url)
            .bearer_auth(token)
            .query(&[("limit", "7"), ("wait", if stopping { "0" } else { "1" })]);
        if let Some(after) = &cursor {
            request = request.query(&[("after", after)]);
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(_) => {
                // paysettle is restarting.
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
        let Ok(body) = answer.json::<Value>().await else {
            // Cut off mid-answer by the kill: ask again from the same cursor.
            failures += 1;
            continue;
        };
        let page = body[key].as_array().unwrap().clone();
        cursor = Some(body["next"].as_str().unwrap().to_owned());
        if page.is_empty() && stopping {
            return (items, failures);
        }
        items.extend(page);
    }
}

#[tokio::test]
async fn the_embedded_default_serves_every_settled_event_and_card_registration_on_its_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, shop) = (free_port(), free_port());
    let mut sim_config = SimConfig::for_tests();
    sim_config.portmanat.callback_url = format!("http://127.0.0.1:{receiver}/callbacks/portmanat");
    sim_config.paysys.notify_url = format!("http://127.0.0.1:{receiver}/callbacks/paysys");
    sim_config.plutu.callback_url = format!("http://127.0.0.1:{receiver}/callbacks/plutu");
    sim_config.plutu.default_return_url = format!("http://127.0.0.1:{receiver}/callbacks/plutu");
    let sim = Sim::start(sim_config).await.unwrap();
    let config = embedded_config(dir.path(), sim.base_url(), receiver, shop);
    let mut child = start(&config);
    ready(shop).await;

    let stop = Arc::new(AtomicBool::new(false));
    let events = tokio::spawn(consume(
        format!("http://127.0.0.1:{shop}/v1/events"),
        SHOP_TOKEN,
        "events",
        Arc::clone(&stop),
    ));
    let cards = tokio::spawn(consume(
        format!("http://127.0.0.1:{shop}/v1/cards"),
        CARD_TOKEN,
        "cards",
        Arc::clone(&stop),
    ));

    // The feeds are authorised apart: neither token opens the other feed.
    let http = fresh_client();
    let status = |url: String, token: &'static str| {
        let http = http.clone();
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(format!("http://127.0.0.1:{shop}/v1/cards"), SHOP_TOKEN).await,
        401
    );
    assert_eq!(
        status(format!("http://127.0.0.1:{shop}/v1/events"), CARD_TOKEN).await,
        401
    );
    assert_eq!(
        status(format!("http://127.0.0.1:{shop}/v1/payments"), CARD_TOKEN).await,
        401
    );
    assert_eq!(
        status(
            format!("http://127.0.0.1:{shop}/v1/events?wait=61"),
            SHOP_TOKEN
        )
        .await,
        400
    );

    let mut references = Vec::new();
    let mut pay = |round: usize| {
        for i in 0..24 {
            let (provider, minor) = match i % 3 {
                0 => (SimProvider::Portmanat, 1000 + i),
                1 => (SimProvider::Paysys, 100_000 + i),
                _ => (SimProvider::Plutu, 2000 + i),
            };
            let reference = format!("FEED-{round}-{i}");
            let outcome = if i % 4 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            sim.create_payment(
                NewPayment::new(provider, reference.clone(), minor as i64)
                    .outcome(outcome)
                    .pending(Duration::from_millis(50 + 20 * i as u64)),
            )
            .unwrap();
            references.push(reference);
        }
    };
    let notify = |stat: PartnerNotifyStat, token: Option<&str>| PartnerNotifyRequest {
        stat,
        card_id: None,
        token: token.map(str::to_owned),
        pan: None,
        code: None,
        message: None,
    };

    pay(1);
    sim.send_partner_notify(&notify(PartnerNotifyStat::Success, Some("tok_feed_first")))
        .unwrap();
    sim.send_partner_notify(&notify(PartnerNotifyStat::Error, None))
        .unwrap();
    let ledger_path = dir.path().join("ledger.sqlite");
    let settled = |count: usize| {
        let path = ledger_path.clone();
        async move {
            let ledger = Ledger::open(&path, LedgerOptions::default()).unwrap();
            paysettle_testkit::eventually(
                Duration::from_secs(60),
                "every payment settles",
                || async {
                    let final_count: i64 = ledger
                        .counts()
                        .await
                        .unwrap()
                        .iter()
                        .filter(|(s, _)| s.is_final())
                        .map(|(_, n)| n)
                        .sum();
                    final_count as usize == count
                },
            )
            .await;
        }
    };
    settled(24).await;

    // paysettle dies mid-run (while the consumers are polling) and comes back.
    child.kill().unwrap();
    child.wait().unwrap();
    child = start(&config);
    ready(shop).await;
    pay(2);
    sim.send_partner_notify(&notify(PartnerNotifyStat::Success, Some("tok_feed_second")))
        .unwrap();
    settled(48).await;

    // Everything the ledger holds has been written; now drain the feeds.
    let ledger = Ledger::open(&ledger_path, LedgerOptions::default()).unwrap();
    paysettle_testkit::eventually(
        Duration::from_secs(30),
        "the card registrations are kept",
        || async {
            let answer: Value = fresh_client()
                .get(format!("http://127.0.0.1:{shop}/v1/cards"))
                .bearer_auth(CARD_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["cards"].as_array().unwrap().len() == 3
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let (events, failures) = tokio::time::timeout(Duration::from_secs(60), events)
        .await
        .expect("the event consumer finished")
        .unwrap();
    let (cards, _) = tokio::time::timeout(Duration::from_secs(60), cards)
        .await
        .expect("the card consumer finished")
        .unwrap();
    assert!(
        failures > 0,
        "the consumer never saw paysettle go away: the restart proved nothing"
    );

    // Every event of the ledger, once each, in ledger order, byte for byte
    // the JSON RabbitMQ would carry.
    let outbox = ledger
        .events(EventFilter {
            limit: 100_000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event came twice");
    assert_eq!(
        ids,
        outbox
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        "the feed is the outbox, in order, without gaps"
    );
    for (seen, stored) in events.iter().zip(&outbox) {
        assert_eq!(seen, &serde_json::from_str::<Value>(&stored.body).unwrap());
    }
    // And every payment of the run is in it with its final event.
    let settled_refs: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["status"] != "pending")
        .map(|e| e["reference"].as_str().unwrap())
        .collect();
    for reference in &references {
        assert!(
            settled_refs.contains(reference.as_str()),
            "{reference} has no settled event on the feed"
        );
    }

    // The card registrations, once each, with the token only on this feed.
    assert_eq!(cards.len(), 3, "{cards:#?}");
    let ids: BTreeSet<&str> = cards
        .iter()
        .map(|c| c["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let by_token = |token: &str| {
        cards
            .iter()
            .find(|c| c["registration"]["token"] == token)
            .unwrap_or_else(|| panic!("no registration with {token}: {cards:#?}"))
    };
    assert_eq!(
        by_token("tok_feed_first")["routing_key"],
        "card.registered.paysys"
    );
    assert_eq!(
        by_token("tok_feed_first")["registration"]["kind"],
        "card_registered"
    );
    assert_eq!(
        by_token("tok_feed_second")["routing_key"],
        "card.registered.paysys"
    );
    let failed: Vec<&Value> = cards
        .iter()
        .filter(|c| c["routing_key"] == "card.registration_failed.paysys")
        .collect();
    assert_eq!(failed.len(), 1, "{cards:#?}");
    assert_eq!(
        failed[0]["registration"]["kind"],
        "card_registration_failed"
    );
    let ledger_bytes = std::fs::read(&ledger_path).unwrap();
    assert!(
        !String::from_utf8_lossy(&ledger_bytes).contains("tok_feed_"),
        "a card token never reaches the ledger"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    sim.shutdown().await;
}
