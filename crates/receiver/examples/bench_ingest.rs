//! The ingest benchmark, run as a deployment runs: the real `paysettle
//! receive` binary in a process of its own on the RabbitMQ backend,
//! `paysettle-loadgen` in another sending genuine signed callbacks of the
//! three providers, and the machine's own ceilings measured in the same
//! run, round by round:
//!
//! 1. raw: `bench_publish --raw-seconds`, raw lapin with as many publishers
//!    as the receiver has connections, each waiting for its own confirm, to
//!    a quorum queue, messages the size of a callback message;
//! 2. ingest: the load generator as fast as the receiver answers, over
//!    `--connections` keep-alive connections; an answer (200 or 303) means
//!    the callback was confirmed by the broker;
//! 3. bare: the same load against a bare hyper server that only reads the
//!    body (`paysettle-loadgen bare`), the cost of HTTP alone.
//!
//! Medians of the rounds are reported. Then latency at a fixed rate of half
//! the median maximum (as many rounds, each beside raw publishes at the same
//! rate, medians reported and every round shown), peak and idle RSS of the receiver, start-up to ready
//! (embedded queue, fresh directory, several runs) and the binary's size.
//! CPU time is read per process from `/proc` over each measured window
//! (receiver, broker, load generator, the rest of the machine), so the
//! report can say what bounded a figure. A benchmark, not a test: it asserts
//! nothing about the figures.
//!
//! ```text
//! bench_ingest --paysettle target/release/paysettle \
//!   --loadgen target/release/paysettle-loadgen \
//!   --publish target/release/examples/bench_publish \
//!   [--connections 64] [--seconds 5] [--rounds 3] [--startups 5] [--pin]
//! ```
//!
//! `--pin` runs the receiver (and the raw publisher and the bare server in
//! its place) on CPU 1 and the load generator on CPU 0 with `taskset`; the
//! broker is left where the system put it. Prints one JSON object.

// A benchmark program: failing loudly on a broken setup is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/process.rs"]
mod support_process;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paysettle_core::inbound::{FORMAT_VERSION, InboundCallback, Payload, RawRequest};
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_testkit::procfs::{broker_pid, load_average, machine_busy, memory_mib, process_cpu};
use serde_json::{Value, json};
use support_process::{free_port, readyz, terminate};

struct Args {
    paysettle: PathBuf,
    loadgen: PathBuf,
    publish: PathBuf,
    connections: usize,
    seconds: f64,
    rounds: usize,
    startups: usize,
    pin: bool,
    amqp_url: String,
}

fn args() -> Args {
    let mut args = Args {
        paysettle: "target/release/paysettle".into(),
        loadgen: "target/release/paysettle-loadgen".into(),
        publish: "target/release/examples/bench_publish".into(),
        connections: 64,
        seconds: 5.0,
        rounds: 3,
        startups: 5,
        pin: false,
        amqp_url: std::env::var("PAYSETTLE_BENCH_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--pin" {
            args.pin = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--paysettle" => args.paysettle = value.into(),
            "--loadgen" => args.loadgen = value.into(),
            "--publish" => args.publish = value.into(),
            "--connections" => args.connections = value.parse().expect("a number"),
            "--seconds" => args.seconds = value.parse().expect("a number"),
            "--rounds" => args.rounds = value.parse().expect("a number"),
            "--startups" => args.startups = value.parse().expect("a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.connections > 0 && args.seconds > 0.0 && args.rounds > 0 && args.startups > 0);
    args
}

/// Where a role runs when `--pin` is given.
#[derive(Clone, Copy)]
enum Cpu {
    /// The receiver's core (also the raw publisher's and the bare server's).
    Server,
    /// The load generator's core.
    Load,
}

fn command(program: &Path, pin: Option<Cpu>) -> Command {
    match pin {
        None => Command::new(program),
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c")
                .arg(match cpu {
                    Cpu::Server => "1",
                    Cpu::Load => "0",
                })
                .arg(program);
            c
        }
    }
}

/// CPU readings of the processes that matter, taken together.
#[derive(Clone)]
struct CpuReading {
    processes: BTreeMap<&'static str, f64>,
    machine: Option<f64>,
}

fn read_cpu(watched: &[(&'static str, u32)]) -> CpuReading {
    CpuReading {
        processes: watched
            .iter()
            .filter_map(|(name, pid)| Some((*name, process_cpu(*pid)?)))
            .collect(),
        machine: machine_busy(),
    }
}

/// CPU microseconds per message by process over a window, with the rest of
/// the machine (other work on the box) and how busy the machine was.
fn cpu_per_message(
    before: &CpuReading,
    after: &CpuReading,
    self_reported: &[(&'static str, Option<f64>)],
    messages: f64,
    seconds: f64,
) -> Value {
    let mut spent: BTreeMap<&str, f64> = after
        .processes
        .iter()
        .filter_map(|(k, v)| Some((*k, v - before.processes.get(k)?)))
        .collect();
    for (name, cpu) in self_reported {
        if let Some(cpu) = cpu {
            spent.insert(name, *cpu);
        }
    }
    let known: f64 = spent.values().sum();
    let mut out = serde_json::Map::new();
    let per = |cpu: f64| (cpu * 1e6 / messages.max(1.0)).round();
    for (name, cpu) in &spent {
        out.insert((*name).to_owned(), json!(per(*cpu)));
    }
    if let (Some(b), Some(a)) = (before.machine, after.machine) {
        out.insert(
            "rest of the machine".to_owned(),
            json!(per((a - b - known).max(0.0))),
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        out.insert(
            "machine_busy_percent".to_owned(),
            json!(((a - b) / (seconds * cores) * 1000.0).round() / 10.0),
        );
    }
    Value::Object(out)
}

// --- processes ---------------------------------------------------------------

/// Runs a measuring program (the load generator or the raw publisher) to
/// its end, reading CPU when it announces its measured window and when it
/// finishes. Returns its last JSON line and the two readings.
fn run_measured(
    mut cmd: Command,
    watched: &[(&'static str, u32)],
) -> (Value, CpuReading, CpuReading) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut window = None;
    let mut last = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.contains("\"window_start\"") {
            window = Some(read_cpu(watched));
        } else if line.starts_with('{') {
            last = Some(line);
        }
    }
    let after = read_cpu(watched);
    let status = child.wait().unwrap();
    assert!(status.success(), "{cmd:?} failed: {status}");
    let report: Value = serde_json::from_str(&last.expect("a JSON report")).unwrap();
    (report, window.expect("the window_start line"), after)
}

/// A figure from the receiver's `/metrics` page (on its own listener) (the first sample of a
/// metric whose line starts with `metric`).
fn metric(addr: SocketAddr, metric: &str) -> Option<f64> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut page = String::new();
    stream.read_to_string(&mut page).ok()?;
    page.lines()
        .find(|l| l.starts_with(metric))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

const SPOOLED: &str = "paysettle_queue_events_total{counter=\"published_spooled\"}";

/// Waits until the receiver publishes to the broker (not to its spool).
fn wait_broker(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(addr, "paysettle_queue_broker_healthy") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the receiver did not reach RabbitMQ within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `/readyz` answers 200; the time it took from `spawned`.
fn wait_ready(child: &mut Child, addr: SocketAddr, spawned: Instant) -> Duration {
    loop {
        if readyz(addr) == Some(200) {
            return spawned.elapsed();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the receiver exited before it was ready: {status}");
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(30),
            "the receiver was not ready within 30 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The receiver's configuration: the demo credentials, the RabbitMQ
/// backend (or the embedded one), JSON logs at info as
/// `deploy/paysettle.example.toml` has them (one access-log line per
/// request), everything else the product's defaults.
fn write_config(dir: &Path, port: u16, metrics_port: u16, rabbit: Option<(&str, &str)>) -> PathBuf {
    let queue = match rabbit {
        Some((url, prefix)) => {
            format!("backend = \"rabbitmq\"\namqp_url = \"{url}\"\nprefix = \"{prefix}\"\n")
        }
        None => "backend = \"embedded\"\n".to_owned(),
    };
    let d = dir.display();
    let text = format!(
        r#"[ledger]
path = "{d}/ledger.sqlite"

[queue]
{queue}embedded_path = "{d}/queue.sqlite"
spool_path = "{d}/spool.sqlite"

[receiver]
listen = "127.0.0.1:{port}"
max_connections = 4096
# The load generator is one client address with many connections.
max_connections_per_client = 4096
body_budget_per_client_bytes = 8388608
hints_per_sec = 1000000.0
hints_per_client_per_sec = 1000000.0
hint_dedupe_window_ms = 1

[metrics]
listen = "127.0.0.1:{metrics_port}"

[log]
format = "json"
level = "info"

[portmanat.default]
base_url = "http://127.0.0.1:9/portmanat"
result_page = "https://shop.example/thanks"

[paysys.default]
gateway_url = "http://127.0.0.1:9/paysys/gateway"
service_id = "2001"
secret_key = "demo-paysys-secret"

[[paysys.default.notify_credentials]]
user = "demo-vendor"
password = "demo-vendor-secret"

[plutu.default]
secret_key = "sk_demo_plutu_secret"
result_page = "https://shop.example/plutu"

{handoff}"#,
        handoff = paysettle_testkit::config::handoff(),
    );
    let path = dir.join("paysettle.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_receiver(args: &Args, config: &Path) -> (Child, Instant) {
    let log = match std::env::var_os("PAYSETTLE_BENCH_RECEIVER_LOG") {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let mut cmd = command(&args.paysettle, args.pin.then_some(Cpu::Server));
    cmd.arg("receive")
        .arg("--config")
        .arg(config)
        .env_remove("PAYSETTLE_CONFIG")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(Stdio::inherit());
    let spawned = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", args.paysettle.display()));
    (child, spawned)
}

/// The size of the message the receiver publishes for a Plutu callback
/// (built with the product's own types), for the raw publisher's bodies.
fn message_bytes() -> usize {
    let reference = Reference::parse("LG-0000000001").unwrap();
    let callback = InboundCallback {
        format: FORMAT_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        provider: Provider::Plutu,
        account: Account::default(),
        received_at: jiff::Timestamp::now(),
        client_addr: Some("127.0.0.1".into()),
        payload: Payload::Observation(Observation {
            provider: Provider::Plutu,
            account: Account::default(),
            reference: reference.clone(),
            provider_txn_id: Some(ProviderTxnId::parse("700000001").unwrap()),
            status: ObservedStatus::Succeeded,
            money: Some(Money::from_minor(1250, Currency::Usd).unwrap()),
            provider_status: "mpgs:approved".into(),
            provider_time: None,
            observed_at: jiff::Timestamp::now(),
            source: Source::Callback,
            test: false,
            refund_part: None,
        }),
        raw: RawRequest {
            method: "GET".into(),
            path: "/callbacks/plutu".into(),
            query: [
                ("gateway", "mpgs"),
                ("approved", "1"),
                ("amount", "12.50"),
                ("currency", "USD"),
                ("invoice_no", reference.as_str()),
                ("transaction_id", "700000001"),
                (
                    "hashed",
                    "F1BC626CFDC4E6A5A464570053B42F5673F431950BDE64665EC3A56B33A2F681",
                ),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
            headers: vec![("host".into(), "127.0.0.1:8080".into())],
            body: None,
        },
    };
    serde_json::to_vec(&callback).unwrap().len()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn number(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

// --- the phases ----------------------------------------------------------------

fn loadgen(args: &Args, target: SocketAddr, rate: Option<f64>, seconds: f64) -> Command {
    let mut cmd = command(&args.loadgen, args.pin.then_some(Cpu::Load));
    cmd.arg("callbacks")
        .arg("--target")
        .arg(target.to_string())
        .arg("--connections")
        .arg(args.connections.to_string())
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--warmup")
        .arg("1");
    if let Some(rate) = rate {
        cmd.arg("--rate").arg(format!("{rate:.0}"));
    }
    cmd
}

fn publish_tool(args: &Args) -> Command {
    let mut cmd = command(&args.publish, args.pin.then_some(Cpu::Server));
    cmd.env("PAYSETTLE_BENCH_AMQP_URL", &args.amqp_url);
    cmd
}

/// Empties the receiver's queues between rounds, so the broker does the
/// same work in every round.
fn purge(args: &Args, prefix: &str) {
    let status = publish_tool(args)
        .arg("--purge-prefix")
        .arg(prefix)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "purging {prefix} failed");
}

fn raw_round(
    args: &Args,
    broker: &[(&'static str, u32)],
    body: usize,
    raw_queue: &str,
) -> (f64, Value) {
    let mut cmd = publish_tool(args);
    cmd.arg("--raw-queue")
        .arg(raw_queue)
        .arg("--raw-seconds")
        .arg(args.seconds.to_string())
        .arg("--publishers")
        .arg(args.connections.to_string())
        .arg("--body-bytes")
        .arg(body.to_string())
        .arg("--warmup")
        .arg("1");
    let (report, before, after) = run_measured(cmd, broker);
    let rate = number(&report, "rate");
    let cpu = cpu_per_message(
        &before,
        &after,
        &[("raw publisher", report["cpu_seconds"].as_f64())],
        number(&report, "confirmed"),
        args.seconds,
    );
    (rate, cpu)
}

fn http_round(
    args: &Args,
    target: SocketAddr,
    watched: &[(&'static str, u32)],
    rate: Option<f64>,
) -> (Value, Value) {
    let (report, before, after) = run_measured(loadgen(args, target, rate, args.seconds), watched);
    let cpu = cpu_per_message(
        &before,
        &after,
        &[("load generator", report["cpu_seconds"].as_f64())],
        number(&report, "completed"),
        args.seconds,
    );
    (report, cpu)
}

fn bare_round(args: &Args, broker: &[(&'static str, u32)]) -> (Value, Value) {
    let mut cmd = command(&args.loadgen, args.pin.then_some(Cpu::Server));
    let mut bare = cmd
        .arg("bare")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the bare server");
    let mut line = String::new();
    BufReader::new(bare.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on ADDR")
        .parse()
        .unwrap();
    let mut watched = broker.to_vec();
    watched.push(("bare server", bare.id()));
    let result = http_round(args, addr, &watched, None);
    let _ = bare.kill();
    let _ = bare.wait();
    result
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    // One raw queue for every raw round, deleted with the rest at the end:
    // deleting a quorum queue mid-run can crash RabbitMQ 3.10's segment
    // writer and stall every quorum queue, the receiver's included.
    let raw_queue = format!("{prefix}.raw");
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = write_config(
        dir.path(),
        port,
        metrics_addr.port(),
        Some((&args.amqp_url, &prefix)),
    );
    let body = message_bytes();
    let load_before = load_average();

    let (mut receiver, spawned) = spawn_receiver(&args, &config);
    let ready_rabbit = wait_ready(&mut receiver, addr, spawned);
    wait_broker(metrics_addr);
    std::thread::sleep(Duration::from_secs(5));
    let idle_rss = memory_mib(receiver.id(), "VmRSS:");

    let broker: Vec<(&'static str, u32)> =
        broker_pid().map(|p| ("broker", p)).into_iter().collect();
    let mut with_receiver = broker.clone();
    with_receiver.push(("receiver", receiver.id()));

    // Warm the receiver's connection and the broker's queue first.
    let _ = http_round(&args, addr, &with_receiver, None);
    purge(&args, &prefix);
    let spooled_before = metric(metrics_addr, SPOOLED);

    let (mut raw_rates, mut ingest_rates, mut bare_rates, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        let (raw, raw_cpu) = raw_round(&args, &broker, body, &raw_queue);
        wait_broker(metrics_addr);
        let (ingest, ingest_cpu) = http_round(&args, addr, &with_receiver, None);
        purge(&args, &prefix);
        let (bare, bare_cpu) = bare_round(&args, &broker);
        let ingest_rate = number(&ingest, "ok_per_sec");
        let bare_rate = number(&bare, "ok_per_sec");
        raw_rates.push(raw);
        ingest_rates.push(ingest_rate);
        bare_rates.push(bare_rate);
        ratios.push(ingest_rate / raw);
        rounds.push(json!({
            "raw_publishes_per_sec": raw,
            "callbacks_per_sec": ingest_rate,
            "bare_http_per_sec": bare_rate,
            "ingest_failed": ingest["failed"],
            "ingest_connection_errors": ingest["connection_errors"],
            "ingest_latency_ms": ingest["latency_ms"],
            "cpu_us_per_message": {"raw": raw_cpu, "ingest": ingest_cpu, "bare": bare_cpu},
        }));
    }
    let (raw, ingest, bare) = (
        median(raw_rates),
        median(ingest_rates.clone()),
        median(bare_rates),
    );

    // Latency at half the maximum, `rounds` times, each beside the broker's
    // own latency at the same rate with no HTTP (the floor): a stall of the
    // broker shows in both, and one round cannot decide the verdict alone.
    let half = ingest / 2.0;
    let mut half_rounds = Vec::new();
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        wait_broker(metrics_addr);
        let (fixed, fixed_cpu) = http_round(&args, addr, &with_receiver, Some(half));
        let mut raw_fixed = publish_tool(&args);
        raw_fixed
            .arg("--raw-queue")
            .arg(&raw_queue)
            .arg("--raw-seconds")
            .arg(args.seconds.to_string())
            .arg("--publishers")
            .arg(args.connections.to_string())
            .arg("--body-bytes")
            .arg(body.to_string())
            .arg("--warmup")
            .arg("1")
            .arg("--rate")
            .arg(format!("{half:.0}"));
        let (raw_fixed, _, _) = run_measured(raw_fixed, &broker);
        p50s.push(number(&fixed["latency_ms"], "p50"));
        p99s.push(number(&fixed["latency_ms"], "p99"));
        half_rounds.push(json!({
            "ok_per_sec": fixed["ok_per_sec"],
            "failed": fixed["failed"],
            "connection_errors": fixed["connection_errors"],
            "latency_ms": fixed["latency_ms"],
            "cpu_us_per_message": fixed_cpu,
            "raw_publish_latency_ms": raw_fixed["latency_ms"],
        }));
    }
    purge(&args, &prefix);
    let spooled = match (spooled_before, metric(metrics_addr, SPOOLED)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let peak_rss = memory_mib(receiver.id(), "VmHWM:");
    let load_after = load_average();
    terminate(receiver);
    let _ = publish_tool(&args)
        .arg("--delete-prefix")
        .arg(&prefix)
        .stdout(Stdio::null())
        .status();

    // Start-up to ready: the embedded queue in a fresh directory each time.
    let mut startups = Vec::new();
    for _ in 0..args.startups {
        let fresh = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write_config(fresh.path(), port, free_port(), None);
        let (mut child, spawned) = spawn_receiver(&args, &config);
        let took = wait_ready(&mut child, ([127, 0, 0, 1], port).into(), spawned);
        startups.push(took.as_secs_f64() * 1000.0);
        terminate(child);
    }
    let startup_each: Vec<f64> = startups
        .iter()
        .map(|ms| (ms * 10.0).round() / 10.0)
        .collect();
    let binary_bytes = std::fs::metadata(&args.paysettle).map(|m| m.len()).ok();

    let report = json!({
        "queue_prefix": prefix,
        "connections": args.connections,
        "seconds_per_phase": args.seconds,
        "rounds": args.rounds,
        "pinned": args.pin,
        "message_bytes": body,
        "raw_publishes_per_sec": raw.round(),
        "callbacks_durable_per_sec": ingest.round(),
        "callbacks_durable_per_sec_each_round": ingest_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "callbacks_vs_raw": (median(ratios) * 1000.0).round() / 1000.0,
        "bare_http_per_sec": bare.round(),
        "callbacks_vs_bare": ((ingest / bare) * 1000.0).round() / 1000.0,
        "each_round": rounds,
        "half_rate": {
            "offered_per_sec": half.round(),
            "p50_ms_median": median(p50s),
            "p99_ms_median": median(p99s),
            "failed": half_rounds.iter().map(|r| r["failed"].as_u64().unwrap_or(0)).sum::<u64>(),
            "each_round": half_rounds,
        },
        "spooled_during_run": spooled,
        "receiver_rss_mb": {"idle_after_5s": idle_rss, "peak": peak_rss},
        "startup_to_ready_ms": {
            "median": (median(startups.clone()) * 10.0).round() / 10.0,
            "each": startup_each,
            "rabbitmq_backend": (ready_rabbit.as_secs_f64() * 10000.0).round() / 10.0,
        },
        "binary_bytes": binary_bytes,
        "load_average_before_after": [load_before, load_after],
        "targets": {
            "callbacks_vs_raw_at_least": 0.8,
            "p99_ms_below": 10.0,
            "peak_rss_mb_below": 50.0,
            "startup_ms_below": 200.0,
        },
    });
    println!("{report}");
}
