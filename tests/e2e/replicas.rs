//! Three workers on one PostgreSQL ledger, as three replicas of a shop run
//! them: one RabbitMQ, the simulator as the three providers with lost,
//! duplicated, delayed and reordered callbacks, and a worker killed with
//! SIGKILL at random moments and started again. At the end:
//!
//! - every payment ends with the simulator's truth;
//! - exactly one event per transition, by event id (resends keep the id),
//!   and finance sees each payment's events in `ledger_version` order;
//! - no two status checks of one payment overlapped (the simulator counts
//!   a check that arrives while another of the same payment is answered);
//! - together the workers never asked a provider faster than its configured
//!   rate (the simulator logs when each check began).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};

use paysettle_core::{Money, Reference};
use paysettle_sim::scenario::{CallbackFaults, Latency, ScenarioPatch};
use paysettle_store::{LedgerTarget, PgOptions, Registration};

use super::*;

const WORKERS: usize = 3;
/// Payments per provider.
const PER_PROVIDER: usize = 800;
/// Status checks per second allowed to each provider, for all the workers
/// together.
const CHECK_RATE: f64 = 40.0;

fn start_worker(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_paysettle"))
        .args(["work", "--config"])
        .arg(config)
        .env("PAYSETTLE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// The most checks that began within any `window`.
fn busiest(starts: &[Duration], window: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in starts.iter().enumerate() {
        while *at - starts[first] >= window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_postgres_ledger_settle_everything_once_through_kills() {
    let lossy = ScenarioPatch {
        callbacks: Some(CallbackFaults {
            lost: 0.2,
            duplicated: 0.2,
            delayed: 0.2,
            delay_ms: 400,
            out_of_order: 0.3,
            reorder_gap_ms: 200,
            ..CallbackFaults::default()
        }),
        // Checks take a while, so two at once would be seen.
        latency: Some(Latency::Uniform {
            min_ms: 5,
            max_ms: 40,
        }),
        ..ScenarioPatch::default()
    };
    // Plutu cannot be asked: its callbacks are duplicated and late, never lost.
    let plutu = ScenarioPatch {
        callbacks: Some(CallbackFaults {
            duplicated: 0.3,
            delayed: 0.3,
            delay_ms: 400,
            ..CallbackFaults::default()
        }),
        ..ScenarioPatch::default()
    };
    let mut app = spawn_app(Options {
        run_worker: false,
        sim: Box::new(move |config| {
            config.portmanat.scenario = lossy;
            config.paysys.scenario = lossy;
            config.plutu.scenario = plutu;
        }),
        ..Options::default()
    })
    .await;
    let database = paysettle_testkit::TestDatabase::create().unwrap();
    let ledger = Ledger::connect(
        &LedgerTarget::Postgres(PgOptions {
            url: database.url.clone(),
            ..PgOptions::default()
        }),
        LedgerOptions::default(),
    )
    .await
    .unwrap();

    let dirs: Vec<tempfile::TempDir> = (0..WORKERS).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs: Vec<std::path::PathBuf> = dirs
        .iter()
        .map(|dir| {
            product_config_with(
                app.sim.base_url(),
                app.amqp_url(),
                app.prefix(),
                dir.path(),
                &format!(
                    "backend = \"postgres\"\nurl = \"{}\"\npath = \"{}\"\n",
                    database.url,
                    dir.path().join("ledger.sqlite").display()
                ),
                CHECK_RATE,
                // A killed worker's claims come back soon (the shortest
                // lease a 2 s check timeout allows).
                "claim_lease_ms = 4000",
            )
        })
        .collect();
    let mut workers: Vec<Child> = configs.iter().map(|c| start_worker(c)).collect();

    // The shop registers each payment as it starts it (into the shared
    // ledger, as any replica's shop API would), then the customer pays.
    let mut references = Vec::new();
    for i in 0..PER_PROVIDER * 3 {
        let (provider, minor) = match i % 3 {
            0 => (Provider::Portmanat, 1000 + i as i64),
            1 => (Provider::Paysys, 100_000 + i as i64),
            _ => (Provider::Plutu, 2000 + i as i64),
        };
        let reference = format!("R-{i}");
        let outcome = if i % 7 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        // Spread over about twelve seconds, so the kills land mid-stream.
        let view = app
            .pay_unregistered(
                provider,
                &reference,
                minor,
                outcome,
                Duration::from_millis(50 + (i as u64 * 12_000) / (PER_PROVIDER as u64 * 3)),
            )
            .await;
        let currency: String = serde_json::from_value(json!(view.currency)).unwrap();
        let currency = paysettle_core::Currency::from_code(&currency).unwrap();
        let provider_txn_id = (provider == Provider::Portmanat)
            .then(|| view.provider_txn_id.clone())
            .flatten()
            .map(|t| paysettle_core::ProviderTxnId::parse(&t).unwrap());
        ledger
            .register(Registration {
                provider,
                account: Account::default(),
                reference: Reference::parse(&reference).unwrap(),
                money: Money::from_minor(minor, currency).unwrap(),
                provider_txn_id,
                registered_at: jiff::Timestamp::now(),
            })
            .await
            .unwrap();
        references.push((provider, reference));
    }

    // Kill one worker at a random moment, again and again, and start it
    // again at once (a replica rescheduled).
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut kills = 0;
    let mut killed_mid_work = 0;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300 + next(&mut seed) % 1_200)).await;
        let victim = (next(&mut seed) % WORKERS as u64) as usize;
        for (i, worker) in workers.iter_mut().enumerate() {
            assert!(
                worker.try_wait().unwrap().is_none(),
                "worker {i} exited on its own"
            );
        }
        let open = ledger
            .counts()
            .await
            .unwrap()
            .iter()
            .filter(|(s, _)| !s.is_final())
            .map(|(_, n)| *n)
            .sum::<i64>();
        if open > 0 {
            killed_mid_work += 1;
        }
        workers[victim].kill().unwrap(); // SIGKILL
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = start_worker(&configs[victim]);
    }
    assert!(
        killed_mid_work >= 3,
        "only {killed_mid_work} of {kills} kills found work in hand; the test proves nothing"
    );

    // Every payment final, every event sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let open = ledger
            .counts()
            .await
            .unwrap()
            .iter()
            .filter(|(s, _)| !s.is_final())
            .map(|(_, n)| *n)
            .sum::<i64>();
        let unsent = ledger.unpublished(1).await.unwrap().len();
        if open == 0 && unsent == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} payments not final and events unsent ({unsent}) after the kills"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for mut worker in workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }

    let problems = ledger.integrity_problems().await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");

    // The provider's truth.
    for (provider, reference) in &references {
        let view = app.sim.find(sim_provider(*provider), reference).unwrap();
        let record = ledger
            .payment(
                *provider,
                Account::default(),
                Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        let want = match view.status {
            paysettle_sim::model::Status::Succeeded => paysettle_core::PaymentStatus::Succeeded,
            paysettle_sim::model::Status::Failed => paysettle_core::PaymentStatus::Failed,
            paysettle_sim::model::Status::Canceled => paysettle_core::PaymentStatus::Canceled,
            other => panic!("{reference}: the simulator left it {other:?}"),
        };
        assert_eq!(record.status, want, "{reference}");
        assert!(
            record.flag.is_none(),
            "{reference} flagged: {:?}",
            record.flag
        );
    }

    // One event per transition, and each payment's in ledger_version order
    // as finance first saw them.
    let events = app.events().await;
    let mut ids: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    let mut first_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut seen_ids = BTreeSet::new();
    for event in &events {
        let reference = event["reference"].as_str().unwrap().to_owned();
        let version = event["ledger_version"].as_i64().unwrap();
        let id = event["event_id"].as_str().unwrap().to_owned();
        ids.entry((reference.clone(), version))
            .or_default()
            .insert(id.clone());
        if seen_ids.insert(id) {
            first_seen.entry(reference).or_default().push(version);
        }
    }
    for (transition, ids) in &ids {
        assert_eq!(
            ids.len(),
            1,
            "{transition:?} published under several ids: {ids:?}"
        );
    }
    for (reference, versions) in &first_seen {
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        assert_eq!(
            versions, &sorted,
            "{reference}: events out of ledger_version order"
        );
    }
    let mut written = 0;
    for (provider, reference) in &references {
        let record = ledger
            .payment(
                *provider,
                Account::default(),
                Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        let outbox = ledger.events_of(record.id).await.unwrap();
        written += outbox.len();
        let sent: BTreeSet<&String> = outbox.iter().map(|e| &e.event_id).collect();
        let received: BTreeSet<&String> = ids
            .iter()
            .filter(|((r, _), _)| r == reference)
            .flat_map(|(_, ids)| ids)
            .collect();
        assert_eq!(
            sent, received,
            "{reference}: finance's events differ from the ledger's"
        );
    }
    assert_eq!(
        ids.len(),
        written,
        "an event for a transition the ledger never made"
    );

    // No two checks of one payment at once, and the rate kept.
    let stats = app.sim.stats();
    assert_eq!(stats.portmanat.overlapping_checks, 0, "{stats:?}");
    assert_eq!(stats.paysys.overlapping_checks, 0, "{stats:?}");
    for provider in [SimProvider::Portmanat, SimProvider::Paysys] {
        let starts = app.sim.check_starts(provider);
        assert!(
            starts.len() > 100,
            "{provider:?}: only {} checks",
            starts.len()
        );
        // The bucket allows one at once and CHECK_RATE a second after; a
        // request's way to the simulator may bunch a few.
        let window = Duration::from_secs(2);
        let allowed = (CHECK_RATE * window.as_secs_f64()) as usize + 1 + 4;
        let most = busiest(&starts, window);
        assert!(
            most <= allowed,
            "{provider:?}: {most} checks began within {window:?}; the rate allows {allowed}"
        );
    }
    eprintln!(
        "replicas: {} payments, {kills} kills ({killed_mid_work} mid-work), {} events ({} deliveries), \
         checks: portmanat {}, paysys {}",
        references.len(),
        written,
        events.len(),
        app.sim.check_starts(SimProvider::Portmanat).len(),
        app.sim.check_starts(SimProvider::Paysys).len(),
    );
    drop(dirs);
    app.stop().await;
}

#[test]
fn busiest_counts_the_most_starts_in_any_window() {
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&m| Duration::from_millis(m))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        busiest(&ms(&[0, 100, 200, 1500, 1600]), Duration::from_secs(1)),
        3
    );
    assert_eq!(
        busiest(&ms(&[0, 999, 1000, 1001]), Duration::from_secs(1)),
        3
    );
    assert_eq!(busiest(&[], Duration::from_secs(1)), 0);
}
