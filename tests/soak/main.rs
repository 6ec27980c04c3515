//! The chaos soak: the whole product under a bad day, then an audit.
//!
//! The provider simulator runs payments across Portmanat, PaySys and Plutu
//! with lost, duplicated, delayed, out-of-order, wrongly signed and forged
//! callbacks, and with provider 500s, 429s, garbage and timeouts. paysettle
//! runs as two child processes of the real binary (`receive` and `work`)
//! reaching RabbitMQ through a proxy the harness cuts. Meanwhile the harness
//! SIGKILLs the worker and the receiver at random moments and starts them
//! again, cuts the broker connection, and (long mode, when allowed) restarts
//! RabbitMQ itself. A finance consumer reads every settled event.
//!
//! When the traffic stops and everything has settled, the checker
//! ([`check`]) compares the simulator's truth, the ledger and what finance
//! read, and prints its counts. Any lost, duplicated or wrong finding fails
//! the run, and the run's directory (configs, logs, ledger) is kept.
//!
//! - `cargo test --test soak`: the short soak (about a minute of traffic and
//!   chaos), part of `make test`.
//! - `PAYSETTLE_SOAK_SECS=600 cargo test --release --test soak`: the long one
//!   (`make soak`, via scripts/soak.sh). `PAYSETTLE_SOAK_BROKER_RESTART=1`
//!   lets it restart the shared broker; `PAYSETTLE_SOAK_RATE` sets payments
//!   per second; `PAYSETTLE_SOAK_SEED` repeats a run's random choices;
//!   `PAYSETTLE_SOAK_REPORT` names a file to write the report to;
//!   `PAYSETTLE_SOAK_KEEP=1` keeps the run's files (configs, logs, ledger).
//! - `PAYSETTLE_SOAK_REPLICAS=3`: the same soak with three `work` processes
//!   (each with its own configuration, log, spool and shop API port) on one
//!   PostgreSQL ledger, a database of the run's own made and dropped on the
//!   test server. The chaos kills a worker picked at random; the shop
//!   registers each payment through any replica. The checker adds two
//!   invariants: no two status checks of one payment overlapped at the
//!   provider, and the workers together never asked Portmanat or PaySys
//!   faster than the configured rate ([`REPLICA_CHECK_RATE`]). Default 1:
//!   one worker on a SQLite ledger, as always.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod broker;
mod check;
mod finance;
mod procs;
mod traffic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use paysettle_queue::BackendKind;
use paysettle_sim::model::{CallbackFate, PaymentView, Provider, Status};
use paysettle_sim::scenario::{CallbackFaults, Faults, Latency, OutcomeMix, Pending};
use paysettle_sim::{Outcome, Sim, SimConfig, SimHandle};
use paysettle_store::{Ledger, LedgerOptions, LedgerTarget, PaymentFilter, PgOptions};
use paysettle_testkit::{Proxy, TestDatabase, TestQueue, amqp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use broker::Broker;
use check::{ChaosCounts, Kind, LedgerPayment, Snapshot};
use finance::Finance;
use procs::{LedgerSpec, Proc, Role, Setup};
use traffic::Traffic;

/// How hard and how long.
#[derive(Debug, Clone)]
struct Settings {
    /// How long payments keep being created (and chaos keeps happening).
    traffic: Duration,
    /// Payments started per second.
    rate: f64,
    /// The pause between two chaos actions is drawn from this range.
    chaos_every: (Duration, Duration),
    broker_restarts: bool,
    seed: u64,
    plutu_deadline: Duration,
    deadline: Duration,
    long: bool,
    /// `work` processes: 1 on SQLite, more on one PostgreSQL ledger.
    replicas: usize,
}

/// Status checks per second each of Portmanat and PaySys allows, for all the
/// replicas together. Low enough that the workers meet it (the soak's
/// traffic needs about this many checks), so the shared rate bucket is
/// tested, not idle; the single-worker soak keeps its 200 a second.
const REPLICA_CHECK_RATE: f64 = 10.0;

/// `worker.claim_lease_ms` among replicas: short, so a killed worker's claims
/// come back soon, yet longer than a check may take (its wait for the
/// deployment's rate, at most half the lease, then `timeout_ms` = 2000), as
/// src/defaults.toml asks.
const REPLICA_CLAIM_LEASE_MS: u64 = 5_000;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} does not parse")),
    )
}

impl Settings {
    fn from_env() -> Settings {
        let seed = env("PAYSETTLE_SOAK_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        let replicas = env::<usize>("PAYSETTLE_SOAK_REPLICAS").unwrap_or(1);
        assert!(
            (1..=9).contains(&replicas),
            "PAYSETTLE_SOAK_REPLICAS={replicas}: 1 to 9 workers"
        );
        match env::<u64>("PAYSETTLE_SOAK_SECS") {
            Some(secs) => Settings {
                traffic: Duration::from_secs(secs),
                rate: env("PAYSETTLE_SOAK_RATE").unwrap_or(10.0),
                chaos_every: (Duration::from_secs(3), Duration::from_secs(10)),
                broker_restarts: env::<u8>("PAYSETTLE_SOAK_BROKER_RESTART") == Some(1),
                seed,
                plutu_deadline: Duration::from_secs(15),
                deadline: Duration::from_secs(300),
                long: true,
                replicas,
            },
            None => Settings {
                traffic: Duration::from_secs(35),
                rate: env("PAYSETTLE_SOAK_RATE").unwrap_or(8.0),
                chaos_every: (Duration::from_secs(3), Duration::from_secs(6)),
                // Never in the suite: other tests share the broker.
                broker_restarts: false,
                seed,
                plutu_deadline: Duration::from_secs(8),
                deadline: Duration::from_secs(300),
                long: false,
                replicas,
            },
        }
    }
}

/// The simulator on a bad day.
fn sim_config(settings: &Settings, receiver: &str) -> SimConfig {
    let mut config = SimConfig::for_tests();
    config.seed = settings.seed;
    config.portmanat.callback_url = format!("http://{receiver}/callbacks/portmanat");
    config.paysys.notify_url = format!("http://{receiver}/callbacks/paysys");
    config.plutu.callback_url = format!("http://{receiver}/callbacks/plutu");
    config.plutu.default_return_url = format!("http://{receiver}/callbacks/plutu");
    config.callbacks.timeout_ms = 3_000;
    config.scenario.latency = Latency::Uniform {
        min_ms: 0,
        max_ms: 20,
    };
    config.scenario.pending = Pending {
        min_ms: 100,
        max_ms: 2_000,
    };
    config.scenario.outcomes = OutcomeMix {
        success: 70,
        failure: 12,
        cancel: 10,
        refund: 8,
    };
    config.scenario.callbacks = CallbackFaults {
        lost: 0.05,
        duplicated: 0.1,
        delayed: 0.1,
        delay_ms: 3_000,
        out_of_order: 0.2,
        reorder_gap_ms: 500,
        wrongly_signed: 0.03,
        forged: 0.05,
    };
    config.scenario.faults = Faults {
        http_500: 0.05,
        timeout: 0.01,
        garbage: 0.02,
        too_many_requests: 0.08,
        retry_after_secs: 1,
        timeout_hold_ms: 3_000,
    };
    config
}

/// What the chaos loop may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    KillWorker,
    KillReceiver,
    KillBoth,
    CutBroker,
    /// Cut the broker, let callbacks spool, kill the receiver holding the
    /// spool, start it again, heal: the spool must survive the kill.
    CutAndKillReceiver,
    RestartBroker,
}

/// The first actions are fixed, so even the short run does each kind.
const OPENING: [Action; 5] = [
    Action::KillWorker,
    Action::CutBroker,
    Action::KillReceiver,
    Action::CutAndKillReceiver,
    Action::KillBoth,
];

struct Chaos {
    /// One, or the replicas.
    workers: Vec<Proc>,
    receiver: Proc,
    proxy: Proxy,
    broker: Broker,
    http: reqwest::Client,
    counts: ChaosCounts,
    /// The last broker restart, or the start of the run.
    last_restart: Instant,
}

/// How often the long soak restarts the broker, when allowed.
const BROKER_RESTART_EVERY: Duration = Duration::from_secs(110);

/// Startup and restart allowance: generous, for a machine shared with builds.
const READY_WITHIN: Duration = Duration::from_secs(60);

impl Chaos {
    fn pick(&self, n: usize, rng: &mut StdRng, settings: &Settings) -> Action {
        if let Some(action) = OPENING.get(n) {
            return *action;
        }
        // A broker restart every couple of minutes, not at random: the
        // broker is shared, and each restart should count.
        if settings.broker_restarts && self.last_restart.elapsed() > BROKER_RESTART_EVERY {
            return Action::RestartBroker;
        }
        match rng.random_range(0..10) {
            0..=2 => Action::KillWorker,
            3..=5 => Action::KillReceiver,
            6 => Action::KillBoth,
            7..=8 => Action::CutBroker,
            _ => Action::CutAndKillReceiver,
        }
    }

    /// A worker picked at random (the only one, without replicas).
    fn victim(&mut self, rng: &mut StdRng) -> usize {
        let n = self.workers.len();
        let i = if n == 1 { 0 } else { rng.random_range(0..n) };
        self.counts.worker_kills += 1;
        self.counts.replica_kills[i] += 1;
        i
    }

    async fn restart(&mut self, role: Role, rng: &mut StdRng) {
        let proc = match role {
            Role::Worker => {
                let i = self.victim(rng);
                if self.workers.len() > 1 {
                    eprintln!("soak: killing {}", self.workers[i].name);
                }
                &mut self.workers[i]
            }
            Role::Receiver => &mut self.receiver,
        };
        proc.kill();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        proc.start();
        proc.ready(&self.http, READY_WITHIN).await;
    }

    async fn act(&mut self, action: Action, rng: &mut StdRng) {
        for worker in &mut self.workers {
            worker.assert_running();
        }
        self.receiver.assert_running();
        eprintln!("soak: {action:?}");
        match action {
            Action::KillWorker => {
                self.restart(Role::Worker, rng).await;
            }
            Action::KillReceiver => {
                self.counts.receiver_kills += 1;
                self.restart(Role::Receiver, rng).await;
            }
            Action::KillBoth => {
                let i = self.victim(rng);
                if self.workers.len() > 1 {
                    eprintln!("soak: killing {} and the receiver", self.workers[i].name);
                }
                self.counts.receiver_kills += 1;
                let worker = &mut self.workers[i];
                worker.kill();
                self.receiver.kill();
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
                self.receiver.start();
                worker.start();
                self.receiver.ready(&self.http, READY_WITHIN).await;
                worker.ready(&self.http, READY_WITHIN).await;
            }
            Action::CutBroker => {
                self.counts.proxy_cuts += 1;
                self.proxy.cut();
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..4_000))).await;
                self.proxy.heal();
            }
            Action::CutAndKillReceiver => {
                self.counts.proxy_cuts += 1;
                self.counts.receiver_kills += 1;
                self.proxy.cut();
                tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..2_500))).await;
                self.restart(Role::Receiver, rng).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
                self.proxy.heal();
            }
            Action::RestartBroker => {
                self.counts.broker_restarts += 1;
                self.last_restart = Instant::now();
                self.broker.stop().await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..6_000))).await;
                self.broker.start().await;
            }
        }
    }
}

/// Whether the simulator has nothing left to do: every payment final (a
/// planned refund done too) and every callback sent or dropped.
fn sim_done(payments: &[PaymentView]) -> Result<(), String> {
    for p in payments {
        let refund_due = p.planned_outcome == Outcome::Refund && p.status == Status::Succeeded;
        if !p.status.is_final() || refund_due {
            return Err(format!("{}/{} is {:?}", p.provider, p.reference, p.status));
        }
        if let Some(c) = p
            .callbacks
            .iter()
            .find(|c| matches!(c.fate, CallbackFate::Scheduled | CallbackFate::Held))
        {
            return Err(format!(
                "{}/{} still has a {:?} callback to send",
                p.provider, p.reference, c.kind
            ));
        }
    }
    Ok(())
}

async fn all_payments(ledger: &Ledger) -> Vec<paysettle_store::PaymentRecord> {
    ledger
        .list(PaymentFilter {
            limit: 100_000,
            ..PaymentFilter::default()
        })
        .await
        .unwrap()
}

/// Waits until every payment is where the evidence allows and the outbox is
/// empty; returns the payments still elsewhere if the time runs out (the
/// checker then names them).
async fn ledger_settled(ledger: &Ledger, truth: &[PaymentView], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut said = Instant::now();
    loop {
        let held: BTreeMap<_, _> = all_payments(ledger)
            .await
            .into_iter()
            .map(|p| ((p.provider, p.reference.as_str().to_owned()), p.status))
            .collect();
        let open = truth
            .iter()
            .filter(|view| {
                let status =
                    held.get(&(check::core_provider(view.provider), view.reference.clone()));
                !status.is_some_and(|s| check::acceptable(view).contains(s))
            })
            .count();
        let unpublished = ledger.unpublished(1).await.unwrap().len();
        if open == 0 && unpublished == 0 {
            return 0;
        }
        if Instant::now() >= deadline {
            return open;
        }
        if said.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "soak: waiting for {open} payments to settle (outbox empty: {})",
                unpublished == 0
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The run's ledger, as the harness reads it: the SQLite file, or the
/// replicas' PostgreSQL database.
async fn open_ledger(spec: &LedgerSpec) -> Ledger {
    let target = match spec {
        LedgerSpec::Sqlite(path) => LedgerTarget::Sqlite(path.clone()),
        LedgerSpec::Postgres { url } => LedgerTarget::Postgres(PgOptions {
            url: url.clone(),
            ..PgOptions::default()
        }),
    };
    Ledger::connect(&target, LedgerOptions::default())
        .await
        .unwrap()
}

async fn read_ledger(spec: &LedgerSpec) -> (Vec<LedgerPayment>, Vec<String>) {
    let ledger = open_ledger(spec).await;
    let mut payments = Vec::new();
    for record in all_payments(&ledger).await {
        let history = ledger.history(record.id).await.unwrap();
        let events = ledger.events_of(record.id).await.unwrap();
        payments.push(LedgerPayment {
            record,
            history,
            events,
        });
    }
    let integrity = ledger.integrity_problems().await.unwrap();
    (payments, integrity)
}

/// What a run leaves for a post-mortem: its directory and, with replicas,
/// its PostgreSQL database (both removed on a clean run).
struct RunFiles {
    dir: tempfile::TempDir,
    database: Option<TestDatabase>,
}

/// Runs the whole soak and returns the snapshot the checker judges, with the
/// run's files.
async fn soak(settings: &Settings) -> (Snapshot, RunFiles) {
    eprintln!("soak: {settings:?}");
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let dir = tempfile::tempdir().unwrap();
    let test_queue = TestQueue::new(BackendKind::RabbitMq).unwrap();
    let proxy = Proxy::start(amqp::broker_addr(&test_queue.amqp_url))
        .await
        .unwrap();
    let receiver_port = procs::free_port(&mut rng);
    let mut shop_ports: Vec<u16> = Vec::new();
    while shop_ports.len() < settings.replicas {
        let port = procs::free_port(&mut rng);
        if port != receiver_port && !shop_ports.contains(&port) {
            shop_ports.push(port);
        }
    }
    let database = (settings.replicas > 1).then(|| TestDatabase::create().unwrap());
    let ledger_spec = match &database {
        None => LedgerSpec::Sqlite(dir.path().join("ledger.sqlite")),
        Some(database) => {
            eprintln!(
                "soak: {} workers on PostgreSQL ({})",
                settings.replicas, database.name
            );
            LedgerSpec::Postgres {
                url: database.url.clone(),
            }
        }
    };
    let receiver_addr = format!("127.0.0.1:{receiver_port}");
    let sim = Arc::new(
        Sim::start(sim_config(settings, &receiver_addr))
            .await
            .unwrap(),
    );

    // Finance first: it declares the topology the processes then find.
    let mut finance_config = test_queue.config();
    finance_config.finance_queue = true;
    finance_config.delivery_limit = 5;
    finance_config.spool_path = None;
    let finance = Finance::start(finance_config).await;

    let setup = Setup {
        dir: dir.path(),
        amqp_url: amqp::url_via(&test_queue.amqp_url, proxy.addr()),
        prefix: &test_queue.prefix,
        sim_base: sim.base_url(),
        receiver_port,
        ledger: ledger_spec.clone(),
        check_rate: if settings.replicas > 1 {
            REPLICA_CHECK_RATE
        } else {
            200.0
        },
        claim_lease_ms: (settings.replicas > 1).then_some(REPLICA_CLAIM_LEASE_MS),
        plutu_deadline: settings.plutu_deadline,
        deadline: settings.deadline,
    };
    let http = reqwest::Client::new();
    let workers = shop_ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let name = if settings.replicas == 1 {
                Role::Worker.name().to_owned()
            } else {
                format!("{}-{}", Role::Worker.name(), i + 1)
            };
            let config = procs::write_config(&setup, &name, port);
            Proc::new(Role::Worker, &name, config, dir.path(), port)
        })
        .collect();
    let receiver_name = Role::Receiver.name();
    let mut chaos = Chaos {
        workers,
        receiver: Proc::new(
            Role::Receiver,
            receiver_name,
            procs::write_config(&setup, receiver_name, shop_ports[0]),
            dir.path(),
            receiver_port,
        ),
        proxy,
        broker: Broker::default(),
        http: http.clone(),
        counts: ChaosCounts::default(),
        last_restart: Instant::now(),
    };
    if settings.broker_restarts {
        assert!(
            Broker::available(),
            "PAYSETTLE_SOAK_BROKER_RESTART=1 but rabbitmqctl does not answer"
        );
    }
    chaos.receiver.start();
    for worker in &mut chaos.workers {
        worker.start();
    }
    chaos.receiver.ready(&http, READY_WITHIN).await;
    for worker in &mut chaos.workers {
        worker.ready(&http, READY_WITHIN).await;
    }

    // Traffic in its own task, so payments keep coming while the chaos loop
    // waits for a process to come back.
    let stop_traffic = CancellationToken::new();
    let traffic = {
        let (sim, stop, rate, seed) = (
            Arc::clone(&sim),
            stop_traffic.clone(),
            settings.rate,
            settings.seed,
        );
        let run = format!("S{}", seed % 100_000);
        // The shop's replicas: each registers through any of them.
        let shops: Vec<_> = chaos.workers.iter().map(Proc::addr).collect();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
            let mut traffic = Traffic::new(sim, shops, &run);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => traffic.pay(&mut rng),
                }
            }
            traffic
        })
    };

    let started = Instant::now();
    let mut actions = 0;
    // The opening actions always run, however slow the machine is.
    while started.elapsed() < settings.traffic || actions < OPENING.len() {
        let (low, high) = settings.chaos_every;
        let pause = rng.random_range(low.as_millis() as u64..high.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let action = chaos.pick(actions, &mut rng, settings);
        chaos.act(action, &mut rng).await;
        actions += 1;
        if settings.long {
            eprintln!(
                "soak: {:>4}s, {} payments so far",
                started.elapsed().as_secs(),
                sim.payments().len()
            );
        }
    }
    stop_traffic.cancel();
    let traffic = traffic.await.unwrap();
    let created = traffic.created;
    let (retries, mut harness) = traffic.finish().await;
    chaos.counts.registration_retries = retries;
    eprintln!("soak: traffic stopped after {created} payments; settling");

    // Everything healthy again, then let it all settle.
    chaos.proxy.heal();
    for worker in &mut chaos.workers {
        worker.assert_running();
    }
    chaos.receiver.assert_running();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match sim_done(&sim.payments()) {
            Ok(()) => break,
            Err(why) if Instant::now() >= deadline => {
                panic!("the simulator did not finish within a minute: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    {
        let ledger = open_ledger(&ledger_spec).await;
        let open = ledger_settled(&ledger, &sim.payments(), Duration::from_secs(120)).await;
        if open > 0 {
            eprintln!("soak: {open} payments never settled; the checker will name them");
        }
        // Finance has read everything once it holds as many events as the outbox.
        let mut outbox = 0;
        for record in all_payments(&ledger).await {
            outbox += ledger.events_of(record.id).await.unwrap().len();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while finance.distinct() < outbox && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Room for a redelivery still on its way, to be counted.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for proc in chaos.workers.iter_mut().chain([&mut chaos.receiver]) {
        harness.extend(proc.panics());
        if let Some(problem) = proc.stop(Duration::from_secs(20)).await {
            harness.push(problem);
        }
    }

    let (ledger, integrity) = read_ledger(&ledger_spec).await;
    let (finance, dead_letters) = finance.finish().await;
    let truth = sim.payments();
    let sim_stats = sim.stats();
    let checks = check::Checks {
        replicas: settings.replicas,
        rate_per_sec: setup.check_rate,
        portmanat: sim.check_starts(Provider::Portmanat),
        paysys: sim.check_starts(Provider::Paysys),
    };
    let sim: SimHandle =
        Arc::try_unwrap(sim).unwrap_or_else(|_| panic!("the simulator is still shared"));
    sim.shutdown().await;
    let counts = chaos.counts;
    drop(chaos);
    drop(test_queue);
    (
        Snapshot {
            truth,
            sim_stats,
            checks,
            ledger,
            integrity,
            finance,
            dead_letters,
            chaos: counts,
            harness,
        },
        RunFiles { dir, database },
    )
}

/// Writes the report where scripts/soak.sh asked for it, and beside the run.
fn save(report: &str, dir: &std::path::Path) {
    let _ = std::fs::write(dir.join("report.txt"), report);
    if let Some(path) = std::env::var_os("PAYSETTLE_SOAK_REPORT") {
        std::fs::write(&path, report).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_loses_duplicates_and_misreports_nothing() {
    let settings = Settings::from_env();
    // Every wait inside is bounded; this bounds their sum, so a hang fails
    // with a message instead of holding CI. Dropping the run kills the
    // children and starts the broker again if it was stopped.
    let limit = settings.traffic + Duration::from_secs(900);
    let (snapshot, files) = tokio::time::timeout(limit, soak(&settings))
        .await
        .unwrap_or_else(|_| panic!("the soak did not finish within {limit:?}"));
    let report = check::check(&snapshot);
    let text = format!("seed {}\n{report}", settings.seed);
    eprintln!("{text}");
    save(&text, files.dir.path());
    if !report.is_clean() || std::env::var_os("PAYSETTLE_SOAK_KEEP").is_some() {
        let kept = files.dir.keep();
        eprintln!("soak: configs, logs and ledger kept in {}", kept.display());
        if let Some(database) = files.database {
            eprintln!(
                "soak: the PostgreSQL ledger kept: {} (drop it with DROP DATABASE {} WITH (FORCE))",
                database.name, database.name
            );
            // Not dropped: the post-mortem reads it.
            std::mem::forget(database);
        }
        assert!(
            report.is_clean(),
            "the soak found violations (seed {}); its files are in {}",
            settings.seed,
            kept.display()
        );
    }

    // The run was as hostile as it claims: each kind of chaos happened.
    let counts = snapshot.chaos;
    assert!(counts.worker_kills >= 2, "{counts:?}");
    assert!(counts.receiver_kills >= 2, "{counts:?}");
    assert!(counts.proxy_cuts >= 2, "{counts:?}");
    let callbacks: Vec<_> = snapshot.truth.iter().flat_map(|p| &p.callbacks).collect();
    let rejected = |forged: bool| {
        callbacks
            .iter()
            .filter(|c| c.wrongly_signed && c.forged == forged)
            .filter(|c| matches!(c.fate, CallbackFate::Delivered { http_status: 401 }))
            .count()
    };
    assert!(
        rejected(true) > 0,
        "no forged callback was sent and refused"
    );
    assert!(
        rejected(false) > 0,
        "no wrongly signed callback was sent and refused"
    );
    for (what, seen) in [
        (
            "lost",
            callbacks.iter().any(|c| c.fate == CallbackFate::Lost),
        ),
        ("duplicated", callbacks.iter().any(|c| c.duplicate)),
        ("delayed", callbacks.iter().any(|c| c.delayed_ms > 0)),
        ("out of order", callbacks.iter().any(|c| c.out_of_order)),
    ] {
        assert!(seen, "no {what} callback in the run");
    }
    let stats = snapshot.sim_stats;
    assert!(
        stats.portmanat.too_many_requests + stats.paysys.too_many_requests > 0,
        "no 429 was answered: {stats:?}"
    );
    for provider in Provider::ALL {
        assert!(
            snapshot.truth.iter().any(|p| p.provider == provider),
            "no {provider} payment"
        );
    }

    checker_notices_every_kind_of_violation(&snapshot);
}

/// The checker is only worth its clean verdict if it fails on a bad run: the
/// clean snapshot, doctored one way at a time, must be caught each time.
fn checker_notices_every_kind_of_violation(clean: &Snapshot) {
    let expect = |what: &str, kind: Kind, doctor: &dyn Fn(&mut Snapshot)| {
        let mut snapshot = clean.clone();
        doctor(&mut snapshot);
        let report = check::check(&snapshot);
        assert!(
            report.count(kind) > 0,
            "the checker missed {what}: {report}"
        );
    };
    expect("an event finance never read", Kind::Lost, &|s| {
        let id = s.finance.events.keys().next().cloned().unwrap();
        s.finance.events.remove(&id);
    });
    expect(
        "a transition announced under a second id",
        Kind::Duplicated,
        &|s| {
            let (_, event) = s
                .finance
                .events
                .iter()
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap();
            let mut copy = event;
            copy["event_id"] = serde_json::json!("019a0000-0000-7000-8000-000000000000");
            s.finance
                .events
                .insert("019a0000-0000-7000-8000-000000000000".into(), copy);
        },
    );
    expect("a wrong amount in an event", Kind::Wrong, &|s| {
        let event = s.finance.events.values_mut().next().unwrap();
        event["amount"] = serde_json::json!(event["amount"].as_i64().unwrap() + 1);
    });
    expect("a wrong final status", Kind::Wrong, &|s| {
        let payment = s
            .ledger
            .iter_mut()
            .find(|p| p.record.status == paysettle_core::PaymentStatus::Succeeded)
            .unwrap();
        payment.record.status = paysettle_core::PaymentStatus::Failed;
    });
    expect("a forged callback accepted", Kind::Wrong, &|s| {
        let forged = s
            .truth
            .iter_mut()
            .flat_map(|p| p.callbacks.iter_mut())
            .find(|c| c.forged && matches!(c.fate, CallbackFate::Delivered { .. }))
            .unwrap();
        forged.fate = CallbackFate::Delivered { http_status: 200 };
    });
    expect(
        "an accepted callback missing from the history",
        Kind::Lost,
        &|s| {
            let plutu = s
                .ledger
                .iter_mut()
                .find(|p| {
                    p.record.provider == paysettle_core::Provider::Plutu
                        && p.history.iter().any(|h| h.source == "callback")
                })
                .unwrap();
            plutu.history.retain(|h| h.source != "callback");
        },
    );
    expect("a payment missing from the ledger", Kind::Lost, &|s| {
        s.ledger.remove(0);
    });
    // The replicas' limits, judged as in a run of three workers.
    expect("two checks of one payment at once", Kind::Limit, &|s| {
        s.checks.replicas = 3;
        s.sim_stats.paysys.overlapping_checks += 1;
    });
    expect("checks faster than the rate", Kind::Limit, &|s| {
        s.checks.replicas = 3;
        let at = s.checks.portmanat.last().copied().unwrap_or_default();
        let burst = s.checks.allowed() + 1;
        s.checks.portmanat.extend(std::iter::repeat_n(at, burst));
    });
}
