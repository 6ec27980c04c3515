//! Two workers on one PostgreSQL ledger (issue 20): each a ledger handle,
//! a status client and an applier of its own, as two processes would have,
//! sharing the queue and the simulator.

use paysettle_sim::scenario::Latency;
use paysettle_store::PgOptions;
use paysettle_testkit::TestDatabase;

use super::*;

struct Replica {
    ledger: Ledger,
    applier: Applier,
}

/// Two replicas on a database of the test's own, sharing `queue` and
/// `sim`, each taking one message a batch.
async fn two_replicas(
    sim: &SimHandle,
    queue: &Queue,
    database: &TestDatabase,
    clock: &Arc<TestClock>,
) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let settings = test_settings(sim, Duration::from_secs(20), clock, |s| {
            // One message a batch: each replica takes its own copy.
            s.batch_size = 1;
        });
        let ledger = Ledger::open_postgres(
            &PgOptions {
                url: database.url.clone(),
                ..PgOptions::default()
            },
            ledger_options(&settings),
        )
        .await
        .unwrap();
        let client = StatusClient::new(Arc::clone(&settings))
            .unwrap()
            .sharing_rate_with(ledger.clone());
        let relay = Relay::new(ledger.clone(), queue.clone(), 64);
        let applier = Applier::new(
            ledger.clone(),
            queue.clone(),
            client,
            Arc::clone(&settings),
            relay.waker(),
        )
        .unwrap();
        replicas.push(Replica { ledger, applier });
    }
    replicas
}

/// The soak with three replicas found one Portmanat payment asked twice at
/// once: copies of a return hint (a browser reloading its return page) for
/// a payment the ledger cannot check itself went to two workers, and each
/// asked `/check` directly; each worker's record of the hints in hand is
/// its own. A lease on the question in the shared ledger makes the copies
/// one `/check`, the other copy acknowledged and dropped.
#[tokio::test]
async fn copies_of_one_hint_on_two_workers_ask_check_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create().unwrap();
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    sim.set_scenario(
        Some(SimProvider::Portmanat),
        ScenarioPatch {
            latency: Some(Latency::Fixed { ms: 300 }),
            ..ScenarioPatch::default()
        },
    )
    .unwrap();
    let queue = Queue::start(QueueConfig {
        backend: BackendKind::Embedded,
        embedded_path: dir.path().join("queue.db"),
        spool_path: None,
        ..QueueConfig::default()
    })
    .await
    .unwrap();
    let clock = TestClock::new();
    let mut replicas = two_replicas(&sim, &queue, &database, &clock).await;
    // A payment the ledger has never seen, so only /check can say.
    let hint = ReturnHint {
        psp_rrn: Some(ProviderTxnId::parse("reloaded-twice").unwrap()),
        client_rrn: Some(Reference::parse("PM-RELOADED").unwrap()),
    };
    for _ in 0..2 {
        publish(
            &queue,
            &inbound(
                Provider::Portmanat,
                "default",
                Payload::PortmanatHint(hint.clone()),
            ),
        )
        .await;
    }
    let before = sim.stats().portmanat.requests;
    // Each replica takes one copy; both are handled at once.
    let (a, b) = replicas.split_at_mut(1);
    let (ra, rb) = tokio::join!(a[0].applier.run_once(), b[0].applier.run_once());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!((ra.received, rb.received), (1, 1), "{ra:?} {rb:?}");
    // Until every hint is settled.
    for replica in &mut replicas {
        replica.applier.finish().await;
    }
    let stats = sim.stats().portmanat;
    assert_eq!(stats.overlapping_checks, 0, "{stats:?}");
    assert_eq!(stats.requests - before, 1, "one /check for the two copies");
    assert_eq!(queue.message_count(QueueKind::Callbacks).await.unwrap(), 0);
    // Nothing was created from the unsigned hint, and the lease is gone:
    // a later copy is asked about again.
    assert!(
        replicas[0]
            .ledger
            .find(
                Provider::Portmanat,
                Account::default(),
                paysettle_store::PaymentKey::Reference(Reference::parse("PM-RELOADED").unwrap()),
            )
            .await
            .unwrap()
            .is_none()
    );
    publish(
        &queue,
        &inbound(
            Provider::Portmanat,
            "default",
            Payload::PortmanatHint(hint.clone()),
        ),
    )
    .await;
    let round = replicas[1].applier.run_once().await.unwrap();
    assert_eq!(round.received, 1);
    replicas[1].applier.finish().await;
    assert_eq!(sim.stats().portmanat.requests - before, 2);
    drop(replicas);
    queue.shutdown(Duration::from_secs(5)).await;
    sim.shutdown().await;
}
