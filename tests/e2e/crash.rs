//! The worker killed with SIGKILL mid-work, again and again: nothing is lost
//! and no event is published twice under different ids.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};

use super::*;

fn worker_config(app: &App, dir: &std::path::Path) -> std::path::PathBuf {
    product_config(app.sim.base_url(), app.amqp_url(), app.prefix(), dir)
}

async fn settled_count(ledger: &Ledger, references: &[(Provider, String)]) -> usize {
    let mut settled = 0;
    for (provider, reference) in references {
        let payment = ledger
            .payment(
                *provider,
                Account::default(),
                paysettle_core::Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap();
        settled += usize::from(payment.is_some_and(|p| p.status.is_final()));
    }
    settled
}

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

#[tokio::test]
async fn killing_the_worker_mid_batch_loses_nothing_and_never_changes_an_event_id() {
    // This test's app runs no worker of its own: the worker is a child process.
    let mut app = spawn_app(Options {
        run_worker: false,
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = worker_config(&app, dir.path());

    let mut references = Vec::new();
    for i in 0..90 {
        let (provider, minor) = match i % 3 {
            0 => (Provider::Portmanat, 1000 + i),
            1 => (Provider::Paysys, 100_000 + i),
            _ => (Provider::Plutu, 2000 + i),
        };
        let reference = format!("K-{i}");
        let outcome = if i % 5 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        // Callbacks spread over two seconds, so the kills land mid-stream.
        app.pay_unregistered(
            provider,
            &reference,
            minor,
            outcome,
            Duration::from_millis(50 + 40 * i as u64),
        )
        .await;
        references.push((provider, reference));
    }

    let ledger = Ledger::open(dir.path().join("ledger.sqlite"), LedgerOptions::default()).unwrap();
    let mut killed_mid_work = 0;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    for round in 0..4 {
        let mut child = start_worker(&config);
        // Let it get into its work, then kill it at a random moment.
        let started = tokio::time::Instant::now();
        loop {
            let applied = ledger
                .counts()
                .await
                .map(|c| c.iter().map(|(_, n)| n).sum::<i64>())
                .unwrap_or(0);
            if applied > round * 12 || started.elapsed() > Duration::from_secs(10) {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the worker exited on its own"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 250)).await;
        // Work in hand at the moment of the kill: payments the provider has
        // reported or will report that the ledger has not settled yet.
        if settled_count(&ledger, &references).await < references.len() {
            killed_mid_work += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(
        killed_mid_work >= 2,
        "only {killed_mid_work} of 4 kills found work in hand; the test proves nothing"
    );

    // A last run, left to finish.
    let mut child = start_worker(&config);
    let names: Vec<(Provider, &str)> = references.iter().map(|(p, r)| (*p, r.as_str())).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut open = 0;
        for (provider, reference) in &names {
            let status = ledger
                .payment(
                    *provider,
                    Account::default(),
                    paysettle_core::Reference::parse(reference).unwrap(),
                )
                .await
                .unwrap()
                .map(|p| p.status);
            if !matches!(status, Some(s) if s.is_final()) {
                open += 1;
            }
        }
        if open == 0 && ledger.unpublished(1).await.unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} payments never settled after the crashes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let problems = ledger.integrity_problems().await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    let events = app.events().await;
    // Each transition has one id, however often it was sent.
    let mut ids_by_transition: BTreeMap<(String, i64, String), BTreeSet<String>> = BTreeMap::new();
    for event in &events {
        let key = (
            event["reference"].as_str().unwrap().to_owned(),
            event["ledger_version"].as_i64().unwrap(),
            event["type"].as_str().unwrap().to_owned(),
        );
        ids_by_transition
            .entry(key)
            .or_default()
            .insert(event["event_id"].as_str().unwrap().to_owned());
    }
    for (transition, ids) in &ids_by_transition {
        assert_eq!(
            ids.len(),
            1,
            "{transition:?} was published under several ids: {ids:?}"
        );
    }
    // And every payment's settlement reached finance, matching the provider's truth.
    let settled: BTreeMap<String, String> = ids_by_transition
        .keys()
        .map(|(r, _, t)| (r.clone(), t.clone()))
        .collect();
    for (provider, reference) in &references {
        let view = app.sim.find(sim_provider(*provider), reference).unwrap();
        let want = match view.status {
            paysettle_sim::model::Status::Succeeded => "payment.succeeded",
            _ => "payment.failed",
        };
        assert_eq!(
            settled.get(reference).map(String::as_str),
            Some(want),
            "{reference}"
        );
    }
    assert_eq!(
        settled.len(),
        references.len(),
        "no event for a payment that did not happen"
    );
    app.stop().await;
}
