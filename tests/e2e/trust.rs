//! Trust between the parts: callback messages and settled events are signed,
//! and no card number (nor a card token outside its one field) leaves
//! paysettle in anything it queues, stores or logs.

use hmac::Mac as _;
use paysettle_queue::DEAD_LETTER_REASON_HEADER;
use paysettle_sim::{PartnerNotifyRequest, PartnerNotifyStat};
use paysettle_testkit::SecretScanner;

use super::*;

/// The README's recipe, written from the primitives: HMAC-SHA256 of the
/// exact body bytes with the secret of the key the `paysettle-key-id` header
/// names, in lowercase hex, compared with `paysettle-signature`.
fn finance_verifies(
    keys: &[(&str, &str)],
    body: &[u8],
    headers: &BTreeMap<String, String>,
) -> bool {
    let Some(secret) = headers
        .get("paysettle-key-id")
        .and_then(|id| keys.iter().find(|(k, _)| k == id))
        .map(|(_, secret)| *secret)
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    headers.get("paysettle-signature") == Some(&expected)
}

const FINANCE_KEYS: &[(&str, &str)] = &[(
    paysettle_testkit::handoff::KEY_ID,
    paysettle_testkit::handoff::SECRET,
)];

async fn register_plutu(app: &App, reference: &str, minor: i64) {
    let response = app
        .http
        .post(format!("http://{}/v1/payments", app.shop))
        .json(&json!({"provider": "plutu", "reference": reference, "amount": minor, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_callback_published_straight_to_the_callbacks_queue_is_dead_lettered_and_changes_nothing()
 {
    let mut app = spawn_app(Options::default()).await;
    register_plutu(&app, "FORGED-1", 1250).await;
    // What someone allowed to publish to the broker could send: a well-formed
    // message saying the payment succeeded, unsigned or signed with a guess.
    let forged = paysettle_core::inbound::InboundCallback {
        format: paysettle_core::inbound::FORMAT_VERSION,
        id: "forged-1".into(),
        provider: Provider::Plutu,
        account: Account::default(),
        received_at: jiff::Timestamp::now(),
        client_addr: Some("10.0.0.66".into()),
        payload: paysettle_core::inbound::Payload::Observation(paysettle_core::Observation {
            provider: Provider::Plutu,
            account: Account::default(),
            reference: paysettle_core::Reference::parse("FORGED-1").unwrap(),
            provider_txn_id: Some(paysettle_core::ProviderTxnId::parse("T-FORGED").unwrap()),
            status: paysettle_core::ObservedStatus::Succeeded,
            money: Some(
                paysettle_core::Money::from_minor(1250, paysettle_core::Currency::Usd).unwrap(),
            ),
            provider_status: "approved".into(),
            provider_time: None,
            observed_at: jiff::Timestamp::now(),
            source: paysettle_core::Source::Callback,
            test: false,
            refund_part: None,
        }),
        raw: paysettle_core::inbound::RawRequest {
            method: "POST".into(),
            path: "/callbacks/plutu".into(),
            query: vec![],
            headers: vec![],
            body: None,
        },
    };
    let body = serde_json::to_vec(&forged).unwrap();
    let guess = paysettle_testkit::handoff::ring(
        &[(
            paysettle_testkit::handoff::KEY_ID,
            "a-guessed-secret-of-thirty-two-bytes-plus",
        )],
        paysettle_testkit::handoff::KEY_ID,
    );
    let unsigned = paysettle_queue::Message::json("forged-unsigned", body.clone())
        .with_header("provider", "plutu")
        .with_header("account", "default");
    let guessed = paysettle_testkit::handoff::sign_with(
        &guess,
        paysettle_queue::Message::json("forged-guessed", body.clone()),
    );
    for message in [unsigned, guessed] {
        app.queue.publish(&message).await.unwrap();
    }

    let mut dead = app.queue.consumer(QueueKind::DeadLetters).unwrap();
    let mut reasons = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reasons.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dead-lettered: {reasons:?}"
        );
        for delivery in dead
            .next_batch(10, Duration::from_millis(500))
            .await
            .unwrap()
        {
            reasons.insert(
                delivery.message_id().to_owned(),
                delivery.headers()[DEAD_LETTER_REASON_HEADER].clone(),
            );
            delivery.ack().await.unwrap();
        }
    }
    assert!(
        reasons["forged-unsigned"].contains("carries no paysettle-key-id"),
        "{reasons:?}"
    );
    assert!(
        reasons["forged-guessed"].contains("does not verify"),
        "{reasons:?}"
    );
    let payment = app.payment(Provider::Plutu, "FORGED-1").await.unwrap();
    assert_eq!(
        payment.status,
        paysettle_core::PaymentStatus::Created,
        "the ledger is unchanged"
    );
    assert_eq!(payment.version, 1, "the ledger is unchanged");
    let events = app.events().await;
    assert!(
        events.iter().all(|e| e["reference"] != "FORGED-1"),
        "nothing announced: {events:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_events_signature_verifies_with_the_documented_recipe_and_not_for_a_changed_byte()
{
    let mut app = spawn_app(Options::default()).await;
    app.pay(Pay::new(
        Provider::Plutu,
        "SIGNED-1",
        1250,
        Outcome::Success,
    ))
    .await;
    app.settled(&[(Provider::Plutu, "SIGNED-1")], Duration::from_secs(30))
        .await;
    paysettle_testkit::eventually(Duration::from_secs(20), "the outbox drained", || async {
        app.ledger.unpublished(1).await.unwrap().is_empty()
    })
    .await;
    let mut checked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while checked == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no event arrived");
        for delivery in app
            .finance
            .next_batch(64, Duration::from_millis(300))
            .await
            .unwrap()
        {
            let headers = delivery.headers().clone();
            let body = delivery.body().to_vec();
            assert!(
                finance_verifies(FINANCE_KEYS, &body, &headers),
                "{headers:?} {}",
                String::from_utf8_lossy(&body)
            );
            // One byte changed anywhere: refused.
            for at in [0, body.len() / 2, body.len() - 1] {
                let mut changed = body.clone();
                changed[at] ^= 0x01;
                assert!(
                    !finance_verifies(FINANCE_KEYS, &changed, &headers),
                    "byte {at}"
                );
            }
            // An unknown key id, or a key finance does not hold: refused.
            let mut other = headers.clone();
            other.insert("paysettle-key-id".into(), "someone-else".into());
            assert!(!finance_verifies(FINANCE_KEYS, &body, &other));
            assert!(!finance_verifies(
                &[(paysettle_testkit::handoff::KEY_ID, "not-the-secret")],
                &body,
                &headers
            ));
            checked += 1;
            delivery.ack().await.unwrap();
        }
    }
    app.stop().await;
}

const TOKEN: &str = "tok-7f3a9c1e5b2d4f6a8c0e";
const PAN_A: &str = "4111111111111111";
const PAN_B: &str = "5555555555554444";
const PAN_C: &str = "4012888888881881";

/// Card registrations and failed ones carrying card numbers everywhere
/// PaySys could put one.
async fn card_traffic(app: &App) {
    app.sim
        .send_partner_notify(&PartnerNotifyRequest {
            stat: PartnerNotifyStat::Success,
            card_id: Some(PAN_A.into()),
            token: Some(TOKEN.into()),
            pan: Some(PAN_B.into()),
            code: None,
            message: None,
        })
        .unwrap();
    app.sim
        .send_partner_notify(&PartnerNotifyRequest {
            stat: PartnerNotifyStat::Error,
            card_id: Some(format!("card-{PAN_B}")),
            token: None,
            pan: None,
            code: Some(PAN_C.into()),
            message: Some(format!("card {PAN_A} is blocked")),
        })
        .unwrap();
}

/// Every message of a queue, read and acknowledged until it stays empty.
async fn drain(consumer: &mut Consumer, want: usize) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let batch = consumer
            .next_batch(64, Duration::from_millis(500))
            .await
            .unwrap();
        if batch.is_empty() && got.len() >= want {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {want} messages arrived",
            got.len()
        );
        for delivery in batch {
            got.push((delivery.body().to_vec(), delivery.headers().clone()));
            delivery.ack().await.unwrap();
        }
    }
}

fn scanner() -> SecretScanner {
    SecretScanner::new().needle("card_token", TOKEN)
}

/// What a queued message shows: its headers and body, with the one field a
/// token may stand in (`token` of a `card.registered` message) left out.
fn outside_the_token_field(body: &[u8], headers: &BTreeMap<String, String>) -> String {
    let mut text = format!("{headers:?}\n");
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            if headers.get("event-type").map(String::as_str) == Some("card.registered") {
                assert_eq!(value["token"], TOKEN, "the shop gets its token");
                value.as_object_mut().unwrap().remove("token");
            }
            text.push_str(&value.to_string());
        }
        Err(_) => text.push_str(&String::from_utf8_lossy(body)),
    }
    text
}

/// A SQLite file and its log, raw bytes, free pages included.
fn file_text(path: &std::path::Path) -> String {
    let mut text = String::new();
    for suffix in ["", "-wal", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(std::path::PathBuf::from(name)) {
            // Lines, so a finding names where it is; NULs split nothing.
            text.push_str(&String::from_utf8_lossy(&bytes).replace('\0', "\n"));
        }
    }
    text
}

async fn card_data_is_masked_everywhere(backend: BackendKind) {
    let logs = paysettle_testkit::capture_logs("debug").unwrap();
    let mut app = spawn_app(Options {
        backend,
        ..Options::default()
    })
    .await;
    // A payment beside them, so finance's queue has events to scan too.
    app.pay(Pay::new(Provider::Plutu, "CARDS-1", 990, Outcome::Failure))
        .await;
    card_traffic(&app).await;

    let mut shop = app.queue.consumer(QueueKind::Shop).unwrap();
    let shop_messages = drain(&mut shop, 2).await;
    let kinds: Vec<_> = shop_messages
        .iter()
        .map(|(_, h)| h.get("event-type").cloned().unwrap_or_default())
        .collect();
    assert!(kinds.contains(&"card.registered".to_owned()), "{kinds:?}");
    assert!(
        kinds.contains(&"card.registration_failed".to_owned()),
        "{kinds:?}"
    );
    app.settled(&[(Provider::Plutu, "CARDS-1")], Duration::from_secs(30))
        .await;
    let events = app.events().await;
    assert!(!events.is_empty());
    let scanner = scanner();
    for (body, headers) in &shop_messages {
        let text = outside_the_token_field(body, headers);
        assert_eq!(scanner.scan(&text), vec![], "shop message: {text}");
        assert!(
            finance_verifies(FINANCE_KEYS, body, headers),
            "signed: {headers:?}"
        );
    }
    for event in &events {
        let text = event.to_string();
        assert_eq!(scanner.scan(&text), vec![], "finance event: {text}");
    }
    // Dead letters (none expected, but whatever is there is scanned).
    let mut dead = app.queue.consumer(QueueKind::DeadLetters).unwrap();
    for (body, headers) in drain(&mut dead, 0).await {
        let text = outside_the_token_field(&body, &headers);
        assert_eq!(scanner.scan(&text), vec![], "dead letter: {text}");
    }
    // The files on disk: the spool (RabbitMQ) or the embedded queue file,
    // raw, once the worker has acknowledged every message.
    let dir = app._queue_dir.dir.path().to_owned();
    let files = [dir.join("spool.sqlite"), dir.join("queue.sqlite")];
    let on_disk = || -> Vec<_> {
        files
            .iter()
            .flat_map(|f| scanner.scan(&file_text(f)))
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !on_disk().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(on_disk(), vec![], "on disk");
    app.stop().await;
    let findings = scanner.scan(&logs.contents());
    assert_eq!(findings, vec![], "in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_card_number_or_stray_token_in_queues_spool_or_logs_on_rabbitmq() {
    card_data_is_masked_everywhere(BackendKind::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_card_number_or_stray_token_in_the_embedded_queue_file_free_pages_included() {
    card_data_is_masked_everywhere(BackendKind::Embedded).await;
}
