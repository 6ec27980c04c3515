//! The operator's commands, run as the real binary against a real ledger
//! file, the simulator and the real RabbitMQ: every reconciliation class made
//! on purpose and reported, `--apply` fixing exactly what it can and
//! publishing the corrections, a resumed batch asking no provider twice, and
//! the other subcommands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use jiff::Timestamp;
use paysettle_core::money::Currency;
use paysettle_core::{Money, Observation, ObservedStatus, Reference, Source};
use paysettle_sim::ScenarioPatch;
use paysettle_sim::scenario::Latency;
use paysettle_store::{ApplyRequest, Registration};
use paysettle_testkit::eventually;

use super::*;

struct OpsEnv {
    sim: SimHandle,
    ledger: Ledger,
    config: PathBuf,
    // Dropped last: deletes the RabbitMQ topology and the files.
    queue: TestQueue,
}

impl OpsEnv {
    async fn start() -> OpsEnv {
        let queue = TestQueue::new(BackendKind::RabbitMq).unwrap();
        let mut sim_config = SimConfig::for_tests();
        // The ledger learns only what each test writes into it.
        sim_config.portmanat.callback_url = NOWHERE.into();
        sim_config.paysys.notify_url = NOWHERE.into();
        sim_config.plutu.callback_url = NOWHERE.into();
        sim_config.plutu.default_return_url = NOWHERE.into();
        let sim = Sim::start(sim_config).await.unwrap();
        let config = product_config(
            sim.base_url(),
            &queue.amqp_url,
            &queue.prefix,
            queue.dir.path(),
        );
        let ledger = Ledger::open(
            queue.dir.path().join("ledger.sqlite"),
            LedgerOptions::default(),
        )
        .unwrap();
        OpsEnv {
            sim,
            ledger,
            config,
            queue,
        }
    }

    /// The queue as the product's configuration declares it.
    fn queue_config(&self) -> paysettle_queue::QueueConfig {
        let mut config = self.queue.config();
        config.delivery_limit = 5;
        config.finance_queue = true;
        config
    }

    fn dir(&self) -> &Path {
        self.queue.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paysettle"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("PAYSETTLE_CONFIG")
            .env("PAYSETTLE_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// A payment the simulator has settled with `outcome`.
    async fn settled_at_sim(
        &self,
        provider: SimProvider,
        reference: &str,
        amount: i64,
        outcome: Outcome,
    ) -> PaymentView {
        let view = self
            .sim
            .create_payment(
                NewPayment::new(provider, reference, amount)
                    .outcome(outcome)
                    .pending(Duration::ZERO),
            )
            .unwrap();
        self.sim.run_until_idle().await.unwrap();
        self.sim.payment(&view.id).unwrap()
    }

    async fn register(&self, provider: Provider, reference: &str, money: Money, txn: Option<&str>) {
        self.ledger
            .register(Registration {
                provider,
                account: Account::default(),
                reference: Reference::parse(reference).unwrap(),
                money,
                provider_txn_id: txn.map(|t| paysettle_core::ProviderTxnId::parse(t).unwrap()),
                registered_at: Timestamp::now(),
            })
            .await
            .unwrap();
    }

    /// What a status check would have written: the payment succeeded.
    async fn succeed(&self, provider: Provider, reference: &str, money: Money, txn: Option<&str>) {
        self.ledger
            .apply(ApplyRequest {
                observation: Observation {
                    provider,
                    account: Account::default(),
                    reference: Reference::parse(reference).unwrap(),
                    provider_txn_id: txn.map(|t| paysettle_core::ProviderTxnId::parse(t).unwrap()),
                    status: ObservedStatus::Succeeded,
                    money: Some(money),
                    provider_status: "test".into(),
                    provider_time: None,
                    observed_at: Timestamp::now(),
                    source: Source::Check,
                },
                raw: None,
            })
            .await
            .unwrap();
    }

    /// Marks every recorded event published, as the relay would have.
    async fn publish_all(&self) {
        let seqs = self
            .ledger
            .unpublished(10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        self.ledger.mark_published(seqs).await.unwrap();
    }

    async fn status(&self, provider: Provider, reference: &str) -> PaymentRecord {
        self.ledger
            .payment(
                provider,
                Account::default(),
                Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap()
            .unwrap()
    }
}

fn money(minor: i64, currency: Currency) -> Money {
    Money::from_minor(minor, currency).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON report's findings by reference.
fn findings_by_reference(out: &Output) -> BTreeMap<String, Value> {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["reference"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

fn class_of(findings: &BTreeMap<String, Value>, reference: &str) -> String {
    findings[reference]["class"].as_str().unwrap().to_owned()
}

const RECONCILE_JSON: &[&str] = &[
    "reconcile",
    "--format",
    "json",
    "--stuck-after",
    "0s",
    "--publish-grace",
    "0s",
    "--since",
    "1h",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_every_class_and_apply_fixes_exactly_those_and_publishes_them() {
    let env = OpsEnv::start().await;
    let azn = |minor| money(minor, Currency::Azn);
    let uzs = |minor| money(minor, Currency::Uzs);

    // ok: the ledger, the provider and finance agree.
    let ok = env
        .settled_at_sim(SimProvider::Portmanat, "OK-1", 1000, Outcome::Success)
        .await;
    let ok_rrn = ok.provider_txn_id.clone().unwrap();
    env.register(Provider::Portmanat, "OK-1", azn(1000), Some(&ok_rrn))
        .await;
    env.succeed(Provider::Portmanat, "OK-1", azn(1000), Some(&ok_rrn))
        .await;
    env.publish_all().await;
    // status_mismatch: paid at PaySys, the ledger never heard.
    env.settled_at_sim(SimProvider::Paysys, "STATUS-1", 100_000, Outcome::Success)
        .await;
    env.register(Provider::Paysys, "STATUS-1", uzs(100_000), None)
        .await;
    // amount_mismatch: Portmanat took 15.00, the shop expected 10.00.
    let amount = env
        .settled_at_sim(SimProvider::Portmanat, "AMOUNT-1", 1500, Outcome::Success)
        .await;
    env.register(
        Provider::Portmanat,
        "AMOUNT-1",
        azn(1000),
        amount.provider_txn_id.as_deref(),
    )
    .await;
    // currency_mismatch: the shop registered dollars, Portmanat took manats.
    // (PaySys's check_payment gives no amount: its amounts are compared
    // against its report.)
    let currency = env
        .settled_at_sim(SimProvider::Portmanat, "CURRENCY-1", 1000, Outcome::Success)
        .await;
    env.register(
        Provider::Portmanat,
        "CURRENCY-1",
        money(1000, Currency::Usd),
        currency.provider_txn_id.as_deref(),
    )
    .await;
    // missing_at_provider: a psp_rrn Portmanat never issued.
    env.register(
        Provider::Portmanat,
        "MISSING-1",
        azn(700),
        Some("999999999"),
    )
    .await;
    // unpublished_event: settled in the ledger, never confirmed by the broker.
    let unpublished = env
        .settled_at_sim(SimProvider::Portmanat, "UNPUB-1", 2000, Outcome::Success)
        .await;
    let unpublished_rrn = unpublished.provider_txn_id.clone().unwrap();
    env.register(
        Provider::Portmanat,
        "UNPUB-1",
        azn(2000),
        Some(&unpublished_rrn),
    )
    .await;
    env.succeed(
        Provider::Portmanat,
        "UNPUB-1",
        azn(2000),
        Some(&unpublished_rrn),
    )
    .await;
    // stuck_pending: the customer never finished at PaySys.
    env.sim
        .create_payment(
            NewPayment::new(SimProvider::Paysys, "STUCK-1", 100_000)
                .pending(Duration::from_secs(3600)),
        )
        .unwrap();
    env.register(Provider::Paysys, "STUCK-1", uzs(100_000), None)
        .await;

    // A dry run reports every class and changes nothing.
    let out = env.run(RECONCILE_JSON);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let findings = findings_by_reference(&out);
    for (reference, class) in [
        ("OK-1", "ok"),
        ("STATUS-1", "status_mismatch"),
        ("AMOUNT-1", "amount_mismatch"),
        ("CURRENCY-1", "currency_mismatch"),
        ("MISSING-1", "missing_at_provider"),
        ("UNPUB-1", "unpublished_event"),
        ("STUCK-1", "stuck_pending"),
    ] {
        assert_eq!(
            class_of(&findings, reference),
            class,
            "{reference}: {}",
            findings[reference]
        );
    }
    assert_eq!(findings.len(), 7);
    assert_eq!(findings["AMOUNT-1"]["provider_amount"], 1500);
    assert_eq!(findings["AMOUNT-1"]["ledger_amount"], 1000);
    assert_eq!(findings["STATUS-1"]["provider_status"], "succeeded");
    assert_eq!(
        env.status(Provider::Paysys, "STATUS-1").await.status,
        paysettle_core::PaymentStatus::Created
    );
    assert_eq!(env.ledger.unpublished(100).await.unwrap().len(), 1);

    // The JSON's shape is a contract: keys in a fixed order, every class counted.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = report["findings"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "key",
            "class",
            "classes",
            "payment_id",
            "provider",
            "account",
            "reference",
            "provider_transaction_id",
            "ledger_status",
            "ledger_amount",
            "ledger_currency",
            "provider_status",
            "provider_said",
            "provider_amount",
            "provider_currency",
            "checked",
            "unpublished_events",
            "detail",
            "fix",
            "applied"
        ]
    );
    let summary = &report["summary"];
    assert_eq!(summary["payments"], 7);
    assert_eq!(summary["discrepancies"], 6);
    assert_eq!(summary["by_class"].as_object().unwrap().len(), 10);
    assert_eq!(summary["by_class"]["status_mismatch"], 1);
    assert_eq!(summary["money"]["amount_mismatch"]["AZN"], 1500);

    // --apply without --yes and without a terminal refuses, changing nothing.
    let out = env.run(&[
        "reconcile",
        "--apply",
        "--stuck-after",
        "0s",
        "--since",
        "1h",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("add --yes"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        env.status(Provider::Paysys, "STATUS-1").await.status,
        paysettle_core::PaymentStatus::Created
    );

    // --apply --yes corrects what can be corrected and publishes it.
    let listener = Queue::start(env.queue_config()).await.unwrap();
    let mut finance = listener.consumer(QueueKind::Finance).unwrap();
    let mut args = RECONCILE_JSON.to_vec();
    args.extend(["--apply", "--yes", "--fresh"]);
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let applied = findings_by_reference(&out);
    assert!(
        applied["STATUS-1"]["applied"]
            .as_str()
            .unwrap()
            .starts_with("applied: created -> succeeded"),
        "{}",
        applied["STATUS-1"]
    );
    assert!(
        applied["AMOUNT-1"]["applied"]
            .as_str()
            .unwrap()
            .contains("amount_mismatch"),
        "{}",
        applied["AMOUNT-1"]
    );
    assert!(
        applied["CURRENCY-1"]["applied"]
            .as_str()
            .unwrap()
            .contains("currency_mismatch"),
        "{}",
        applied["CURRENCY-1"]
    );
    for untouched in ["OK-1", "MISSING-1", "STUCK-1", "UNPUB-1"] {
        assert!(
            applied[untouched]["applied"].is_null(),
            "{untouched}: {}",
            applied[untouched]
        );
    }
    let status = env.status(Provider::Paysys, "STATUS-1").await;
    assert_eq!(status.status, paysettle_core::PaymentStatus::Succeeded);
    let history = env.ledger.history(status.id).await.unwrap();
    assert_eq!(history.last().unwrap().source, "reconcile");
    assert!(
        env.status(Provider::Portmanat, "AMOUNT-1")
            .await
            .mismatch
            .is_some()
    );
    assert_eq!(
        env.status(Provider::Paysys, "STUCK-1").await.status,
        paysettle_core::PaymentStatus::Created
    );
    assert!(
        env.ledger.unpublished(100).await.unwrap().is_empty(),
        "the outbox was published"
    );

    // Finance heard of each correction, and of the event that was stuck.
    let mut heard: BTreeMap<String, Value> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while heard.len() < 4 && tokio::time::Instant::now() < deadline {
        for delivery in finance
            .next_batch(16, Duration::from_millis(500))
            .await
            .unwrap()
        {
            let event: Value = serde_json::from_slice(delivery.body()).unwrap();
            delivery.ack().await.unwrap();
            heard.insert(event["reference"].as_str().unwrap().to_owned(), event);
        }
    }
    assert_eq!(heard["STATUS-1"]["type"], "payment.succeeded");
    assert_eq!(heard["STATUS-1"]["source"], "reconcile");
    assert_eq!(heard["AMOUNT-1"]["type"], "payment.mismatch");
    assert_eq!(heard["CURRENCY-1"]["type"], "payment.mismatch");
    assert_eq!(heard["UNPUB-1"]["type"], "payment.succeeded");
    assert_eq!(heard.len(), 4, "{heard:?}");

    // Again: what was fixed is ok now; what needs a person still shows.
    let out = env.run(RECONCILE_JSON);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let after = findings_by_reference(&out);
    assert_eq!(class_of(&after, "STATUS-1"), "ok");
    assert_eq!(class_of(&after, "UNPUB-1"), "ok");
    // Flagged now: only an operator's resolution clears it.
    assert_eq!(class_of(&after, "AMOUNT-1"), "flagged");
    assert!(
        after["AMOUNT-1"]["classes"]
            .as_array()
            .unwrap()
            .contains(&json!("amount_mismatch"))
    );
    assert_eq!(class_of(&after, "MISSING-1"), "missing_at_provider");
    // --apply never clears a flag, nor settles the flagged payment.
    let mut args = RECONCILE_JSON.to_vec();
    args.extend(["--apply", "--yes", "--fresh"]);
    let out = env.run(&args);
    let again = findings_by_reference(&out);
    assert!(
        again["AMOUNT-1"]["applied"].is_null(),
        "{}",
        again["AMOUNT-1"]
    );
    let amount = env.status(Provider::Portmanat, "AMOUNT-1").await;
    assert!(amount.mismatch.is_some());
    assert!(!amount.status.is_final(), "{amount:?}");

    // The operator's way out: refused without a flag or a reason, then the
    // provider's word is accepted, kept in the history and announced.
    let out = env.run(&[
        "payments",
        "resolve",
        "paysys",
        "STATUS-1",
        "--keep-ledger",
        "--reason",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not flagged"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&[
        "payments",
        "resolve",
        "portmanat",
        "AMOUNT-1",
        "--accept-provider",
        "--reason",
        " ",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = env.run(&[
        "payments",
        "resolve",
        "portmanat",
        "AMOUNT-1",
        "--accept-provider",
        "--reason",
        "the bank statement shows 15.00 AZN",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let resolved = env.status(Provider::Portmanat, "AMOUNT-1").await;
    assert!(
        resolved.mismatch.is_none() && resolved.flag.is_none(),
        "{resolved:?}"
    );
    let history = env.ledger.history(resolved.id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.outcome, "resolved");
    assert_eq!(last.reason.as_deref(), Some("accept_provider"));
    let events = env.ledger.events_of(resolved.id).await.unwrap();
    assert!(
        events.iter().any(|e| e.event_type == "payment.resolved"),
        "{events:?}"
    );
    assert_eq!(class_of(&after, "STUCK-1"), "stuck_pending");

    // Only ok payments: exit 0.
    let out = env.run(&[
        "reconcile",
        "--status",
        "succeeded",
        "--provider",
        "paysys",
        "--since",
        "1h",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("No discrepancies."),
        "{}",
        text(&out.stdout)
    );

    // The ledger is whole after all of it.
    let out = env.run(&["ledger", "check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("is whole"),
        "{}",
        text(&out.stdout)
    );
    listener.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plutu_is_reconciled_against_its_exported_report() {
    let env = OpsEnv::start().await;
    let lyd = |minor| money(minor, Currency::Lyd);
    env.register(Provider::Plutu, "P-OK", lyd(19_900), None)
        .await;
    env.succeed(Provider::Plutu, "P-OK", lyd(19_900), None)
        .await;
    env.publish_all().await;
    env.register(Provider::Plutu, "P-GONE", lyd(5_000), None)
        .await;
    env.register(Provider::Plutu, "P-LATE", lyd(1_000), None)
        .await;
    let report = env.dir().join("plutu-export.csv");
    std::fs::write(
        &report,
        "invoice_no,transaction_id,state,amount\nP-OK,T1,Approved,19.900\nP-NEW,T2,approved,7.500\nP-LATE,T3,approved,1.000\n",
    )
    .unwrap();
    let report_arg = report.to_str().unwrap();
    let base = [
        "reconcile",
        "--format",
        "json",
        "--provider",
        "plutu",
        "--against",
        report_arg,
        "--column",
        "reference=invoice_no",
        "--column",
        "provider_transaction_id=transaction_id",
        "--column",
        "status=state",
        "--currency",
        "LYD",
        "--since",
        "1h",
    ];
    let out = env.run(&base);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let findings = findings_by_reference(&out);
    assert_eq!(class_of(&findings, "P-OK"), "ok");
    assert_eq!(class_of(&findings, "P-NEW"), "unknown_locally");
    assert_eq!(class_of(&findings, "P-GONE"), "missing_at_provider");
    assert_eq!(class_of(&findings, "P-LATE"), "status_mismatch");
    assert_eq!(findings["P-NEW"]["provider_amount"], 7500);

    let mut apply = base.to_vec();
    apply.extend(["--apply", "--yes"]);
    let out = env.run(&apply);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let created = env.status(Provider::Plutu, "P-NEW").await;
    assert_eq!(created.status, paysettle_core::PaymentStatus::Succeeded);
    assert!(!created.registered, "created from what the provider said");
    assert_eq!(
        env.status(Provider::Plutu, "P-LATE").await.status,
        paysettle_core::PaymentStatus::Succeeded
    );
    assert_eq!(
        env.status(Provider::Plutu, "P-GONE").await.status,
        paysettle_core::PaymentStatus::Created
    );

    // A report that cannot be read is refused before anything starts.
    let bad = env.dir().join("bad.csv");
    std::fs::write(&bad, "invoice_no,state,amount\nP-OK,approved,19.9999\n").unwrap();
    let out = env.run(&[
        "reconcile",
        "--provider",
        "plutu",
        "--against",
        bad.to_str().unwrap(),
        "--column",
        "reference=invoice_no",
        "--column",
        "status=state",
        "--currency",
        "LYD",
        "--fresh",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.csv line 2") && err.contains("\"amount\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_batch_resumes_without_asking_about_any_payment_twice() {
    let env = OpsEnv::start().await;
    let count = 24;
    for i in 0..count {
        let view = env
            .sim
            .create_payment(
                NewPayment::new(SimProvider::Portmanat, format!("R-{i}"), 1000)
                    .outcome(Outcome::Success)
                    .pending(Duration::ZERO),
            )
            .unwrap();
        env.register(
            Provider::Portmanat,
            &format!("R-{i}"),
            money(1000, Currency::Azn),
            view.provider_txn_id.as_deref(),
        )
        .await;
    }
    env.sim.run_until_idle().await.unwrap();
    env.sim
        .set_scenario(
            Some(SimProvider::Portmanat),
            ScenarioPatch {
                latency: Some(Latency::Fixed { ms: 150 }),
                ..ScenarioPatch::default()
            },
        )
        .unwrap();
    let before = env.sim.stats().portmanat.requests;
    let journal = env.dir().join("batch.jsonl");
    let journal_arg = journal.to_str().unwrap();

    let child = env
        .command(&[
            "reconcile",
            "--concurrency",
            "2",
            "--journal",
            journal_arg,
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once some, not all, are judged.
    let judged = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| {
                t.lines()
                    .filter(|l| l.contains("\"kind\":\"finding\""))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while judged(&journal) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--resume"),
        "{}",
        text(&out.stderr)
    );
    let first = judged(&journal);
    assert!(first < count, "interrupted after all {first}");
    let first_report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first_report["summary"]["interrupted"], true);

    // A new batch is refused while the interrupted one waits.
    let out = env.run(&["reconcile", "--journal", journal_arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("resume it with --resume"),
        "{}",
        text(&out.stderr)
    );

    let out = env.run(&[
        "reconcile",
        "--resume",
        "--journal",
        journal_arg,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let findings = findings_by_reference(&out);
    assert_eq!(findings.len(), count);
    assert!(
        findings.values().all(|f| f["class"] == "status_mismatch"),
        "{findings:?}"
    );
    assert_eq!(
        env.sim.stats().portmanat.requests - before,
        count as u64,
        "every payment asked about exactly once across both runs"
    );
    // Finished: nothing left to resume.
    let out = env.run(&["reconcile", "--resume", "--journal", journal_arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nothing to resume"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_events_and_ledger_commands_answer_an_operator() {
    let env = OpsEnv::start().await;
    let azn = money(1250, Currency::Azn);
    env.register(Provider::Portmanat, "SHOW-1", azn, Some("123456789"))
        .await;
    env.succeed(Provider::Portmanat, "SHOW-1", azn, Some("123456789"))
        .await;
    env.register(Provider::Portmanat, "SHOW-2", azn, None).await;

    let out = env.run(&["payments", "list", "--status", "succeeded"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("SHOW-1") && !listed.contains("SHOW-2"),
        "{listed}"
    );
    assert!(listed.contains("12.50 AZN"), "{listed}");

    let out = env.run(&[
        "payments",
        "show",
        "--provider",
        "portmanat",
        "SHOW-1",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["payment"]["status"], "succeeded");
    assert_eq!(shown["history"].as_array().unwrap().len(), 2);
    let event_id = shown["events"][0]["event_id"].as_str().unwrap().to_owned();
    let out = env.run(&["payments", "show", "--provider", "portmanat", "NOPE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such payment"));

    // Replay publishes the recorded event again, under its own event_id.
    let listener = Queue::start(env.queue_config()).await.unwrap();
    let mut finance = listener.consumer(QueueKind::Finance).unwrap();
    let out = env.run(&[
        "events",
        "replay",
        "--provider",
        "portmanat",
        "--reference",
        "SHOW-1",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&event_id));
    assert_eq!(
        listener.message_count(QueueKind::Finance).await.unwrap(),
        0,
        "a dry run publishes nothing"
    );
    let out = env.run(&["events", "replay", "--since", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut replayed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while replayed.is_empty() && tokio::time::Instant::now() < deadline {
        for delivery in finance
            .next_batch(8, Duration::from_millis(500))
            .await
            .unwrap()
        {
            replayed.push(delivery.message_id().to_owned());
            delivery.ack().await.unwrap();
        }
    }
    assert_eq!(replayed, [event_id]);
    let out = env.run(&[
        "events",
        "replay",
        "--since",
        "2001-01-01",
        "--until",
        "2001-01-02",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no recorded event matches"));

    let out = env.run(&["ledger", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 payment(s)"),
        "{}",
        text(&out.stdout)
    );
    listener.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_to_the_worker() {
    let env = OpsEnv::start().await;
    let queue = Queue::start(env.queue_config()).await.unwrap();
    // Two callbacks the worker could not apply.
    for id in ["dead-1", "dead-2"] {
        let message = paysettle_queue::Message::json(id, br#"{"not":"a callback"}"#.to_vec())
            .with_header("provider", "plutu")
            .with_header("account", "default");
        queue.publish(&message).await.unwrap();
    }
    let mut callbacks = queue.consumer(QueueKind::Callbacks).unwrap();
    let mut taken = Vec::new();
    while taken.len() < 2 {
        taken.extend(
            callbacks
                .next_batch(2, Duration::from_secs(2))
                .await
                .unwrap(),
        );
    }
    for delivery in taken {
        delivery
            .dead_letter("unreadable callback: test")
            .await
            .unwrap();
    }
    drop(callbacks);
    eventually(
        Duration::from_secs(10),
        "the dead letters to settle",
        || async { queue.message_count(QueueKind::DeadLetters).await.unwrap() == 2 },
    )
    .await;

    let out = env.run(&["dlq", "list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let letters: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: BTreeSet<&str> = letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["dead-1", "dead-2"]));
    assert_eq!(letters[0]["reason"], "unreadable callback: test");
    assert_eq!(letters[0]["kind"], "unreadable");
    eventually(
        Duration::from_secs(10),
        "the dead letters to settle",
        || async { queue.message_count(QueueKind::DeadLetters).await.unwrap() == 2 },
    )
    .await;

    let out = env.run(&["dlq", "replay", "--id", "dead-2", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("replayed 1"));
    let mut callbacks = queue.consumer(QueueKind::Callbacks).unwrap();
    let back = callbacks
        .next_batch(4, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message_id(), "dead-2");
    assert!(
        !back[0]
            .headers()
            .contains_key(paysettle_queue::DEAD_LETTER_REASON_HEADER)
    );
    back[0].ack().await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the dead letters to settle",
        || async { queue.message_count(QueueKind::DeadLetters).await.unwrap() == 1 },
    )
    .await;

    let out = env.run(&["dlq", "replay", "--id", "no-such-id", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no dead-lettered callback matches"));
    drop(callbacks);
    queue.shutdown(Duration::from_secs(2)).await;
}

#[test]
fn every_operator_command_explains_itself_and_refuses_bad_input_in_one_line() {
    for command in [
        vec!["reconcile"],
        vec!["payments", "list"],
        vec!["payments", "show"],
        vec!["events", "replay"],
        vec!["dlq", "list"],
        vec!["dlq", "replay"],
        vec!["ledger", "check"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let out = Command::new(env!("CARGO_BIN_EXE_paysettle"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}");
        let help = text(&out.stdout);
        assert!(
            help.contains("Example"),
            "{command:?} has no example:\n{help}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{}\"\n",
            dir.path().join("none.sqlite").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["reconcile", "--provider", "visa"],
            "\"visa\" is not a provider",
        ),
        (vec!["reconcile", "--since", "yesterday"], "is not a time"),
        (
            vec!["reconcile", "--stuck-after", "5 minutes"],
            "is not a duration",
        ),
        (
            vec!["reconcile", "--status", "paid"],
            "\"paid\" is not a status",
        ),
        (
            vec!["reconcile", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            vec!["reconcile", "--config", config],
            "there is no ledger at",
        ),
        (
            vec!["payments", "list", "--config", config],
            "there is no ledger at",
        ),
        (
            vec![
                "reconcile",
                "--against",
                "/no/such.csv",
                "--provider",
                "plutu",
                "--config",
                config,
            ],
            "/no/such.csv: cannot read it",
        ),
        (
            vec!["reconcile", "--against", "x.csv", "--config", config],
            "--against needs --provider",
        ),
        (
            vec![
                "reconcile",
                "--resume",
                "--journal",
                "/no/such.jsonl",
                "--config",
                config,
            ],
            "there is no batch to resume",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_paysettle"))
            .args(&args)
            .env_remove("PAYSETTLE_CONFIG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{args:?}: {err}"
        );
        assert!(
            !dir.path().join("none.sqlite").exists(),
            "{args:?} created a ledger"
        );
    }
}
