//! `paysettle ledger migrate --to postgres`, run as the real binary: a
//! settled SQLite ledger (payments of the three providers, their history and
//! events) copied into an empty PostgreSQL ledger that then holds the same
//! payments, the same events with the same ids and positions, and continues
//! after them; a second run is refused and writes nothing; a configuration
//! still on SQLite is told what to set.

use std::process::{Command, Output};

use paysettle_core::{Money, Reference};
use paysettle_store::{EventFilter, LedgerTarget, PgOptions, Registration};

use super::*;

/// Runs the migration at the debug level: whatever that logs is checked.
fn migrate(config: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paysettle"))
        .args(["ledger", "migrate", "--to", "postgres", "--config"])
        .arg(config)
        .env_remove("PAYSETTLE_CONFIG")
        .env("PAYSETTLE_LOG", "debug")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn all_events(ledger: &Ledger) -> Vec<paysettle_store::OutboxEvent> {
    ledger
        .events(EventFilter {
            limit: 100_000,
            ..EventFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_settled_sqlite_ledger_moves_to_an_empty_postgres_ledger_whole_and_only_once() {
    let mut app = spawn_app(Options::default()).await;
    let mut references = Vec::new();
    for (i, provider) in Provider::ALL.into_iter().enumerate() {
        for n in 0..4 {
            let reference = format!("MIG-{i}-{n}");
            let outcome = if n == 3 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let minor = match provider {
                Provider::Paysys => 150_000 + n,
                _ => 1500 + n,
            };
            app.pay(Pay::new(provider, &reference, minor, outcome))
                .await;
            references.push((provider, reference));
        }
    }
    let names: Vec<(Provider, &str)> = references.iter().map(|(p, r)| (*p, r.as_str())).collect();
    app.settled(&names, Duration::from_secs(30)).await;
    let events = app.events().await;
    assert!(events.len() >= references.len(), "{events:?}");

    let database = paysettle_testkit::TestDatabase::create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_path = app._queue_dir.dir.path().join("ledger.sqlite");
    let config = product_config_with(
        app.sim.base_url(),
        app.amqp_url(),
        app.prefix(),
        dir.path(),
        &format!(
            "backend = \"postgres\"\nurl = \"{}\"\npath = \"{}\"\n",
            database.url,
            sqlite_path.display()
        ),
        500.0,
        "",
    );

    let out = migrate(&config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let said = text(&out.stdout);
    assert!(
        said.contains("copied") && said.contains("12 payments"),
        "{said}"
    );
    assert!(
        !said.contains("postgres@") || !said.contains("password"),
        "{said}"
    );
    // Even at debug, no statement with its parameters (every history row's
    // raw callback went through them) reaches the log.
    let logged = text(&out.stderr);
    assert!(logged.contains("DEBUG"), "the debug level is on: {logged}");
    assert!(
        !logged.contains("executing statement") && !logged.contains("tokio_postgres"),
        "{logged}"
    );

    let pg = Ledger::connect(
        &LedgerTarget::Postgres(PgOptions {
            url: database.url.clone(),
            ..PgOptions::default()
        }),
        LedgerOptions::default(),
    )
    .await
    .unwrap();
    // The same ledger: its id (event feed cursors read on), every payment,
    // its history and every event, with the same ids and positions.
    assert_eq!(pg.id(), app.ledger.id());
    assert!(pg.integrity_problems().await.unwrap().is_empty());
    for (provider, reference) in &references {
        let reference = Reference::parse(reference).unwrap();
        let old = app
            .ledger
            .payment(*provider, Account::default(), reference.clone())
            .await
            .unwrap()
            .unwrap();
        let new = pg
            .payment(*provider, Account::default(), reference)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(new, old);
        assert_eq!(
            pg.history(new.id).await.unwrap(),
            app.ledger.history(old.id).await.unwrap()
        );
    }
    let old_events = all_events(&app.ledger).await;
    assert_eq!(all_events(&pg).await, old_events);

    // It continues after what was copied.
    let max_id = references.len() as i64;
    let outcome = pg
        .register(Registration {
            provider: Provider::Plutu,
            account: Account::default(),
            reference: Reference::parse("MIG-after").unwrap(),
            money: Money::from_minor(777, paysettle_core::Currency::from_code("LYD").unwrap())
                .unwrap(),
            provider_txn_id: None,
            registered_at: jiff::Timestamp::now(),
        })
        .await
        .unwrap();
    assert!(outcome.payment_id().0 > max_id, "{outcome:?}");

    // A second run meets a ledger that is not empty: refused, nothing written.
    let out = migrate(&config);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(all_events(&pg).await, old_events);

    // A configuration still on SQLite says what to set.
    let on_sqlite = product_config(app.sim.base_url(), app.amqp_url(), app.prefix(), dir.path());
    let out = migrate(&on_sqlite);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ledger.backend = \"postgres\""),
        "{}",
        text(&out.stderr)
    );
    drop(pg);
    app.stop().await;
}
