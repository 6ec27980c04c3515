//! Ingest benchmark: authenticated callbacks made durable per second through
//! the receiver, beside raw confirmed publishes per second to the same queue
//! type, measured in the same run; latency at half the maximum rate; the
//! peak RSS of the process. A benchmark, not a test: it asserts nothing about
//! the figures, it reports them.
//!
//! `cargo run --release -p paysettle-receiver --example bench_ingest -- [--backend rabbitmq|embedded] [--connections 64] [--seconds 5] [--rounds 3]`
//!
//! Everything runs in this process on one runtime: the receiver, the load
//! generator and the queue client (RabbitMQ is its own process, on the same
//! cores). The load is genuine traffic for the three providers in turn: a
//! PaySys notification with Basic credentials, a Plutu MPGS callback signed
//! by the simulator's code (not the product's), a Portmanat return. The
//! requests are built and signed before measuring and written as raw
//! HTTP/1.1 over `--connections` keep-alive sockets, so the generator's own
//! cost is a write and a read per request.
//!
//! 1. raw: `Queue::publish` from `--connections` concurrent tasks, no HTTP,
//!    bodies the size of real callback messages (lapin is not used outside
//!    the queue crate, so this is the floor the receiver builds on);
//! 2. max: each connection sends its next callback as soon as the last is
//!    answered. Phases 1 and 2 alternate for `--rounds` rounds and the
//!    medians are reported, so a change in background load hits both alike;
//! 3. half: an open-loop schedule at half the median max rate, through the
//!    receiver and then through `Queue::publish` alone; latency is measured
//!    from each request's scheduled time, so waiting behind a slow request
//!    counts (no coordinated omission).
//!
//! Prints one JSON object. Targets: max ≥ 80 % of raw, p99 < 10 ms at half
//! the max rate, peak RSS < 50 MB.

// A benchmark program: failing loudly on a broken setup is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use paysettle_core::inbound::{FORMAT_VERSION, InboundCallback, Payload, RawRequest};
use paysettle_core::paysys::NotificationAuth;
use paysettle_core::plutu::CallbackVerifier;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_queue::{BackendKind, Message, Queue};
use paysettle_receiver::{
    PaysysAccount, PlutuAccount, PortmanatAccount, ReceiverSettings, ResultPage,
};
use paysettle_sim::PlutuGateway;
use paysettle_testkit::TestQueue;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PAYSYS_USER: &str = "demo-vendor";
const PAYSYS_SECRET: &str = "demo-vendor-secret";
const PLUTU_SECRET: &str = "sk_demo_plutu_secret";

struct Args {
    backend: BackendKind,
    connections: usize,
    seconds: u64,
    rounds: usize,
}

fn args() -> Args {
    let mut args = Args {
        backend: BackendKind::RabbitMq,
        connections: 64,
        seconds: 5,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => {
                args.backend = match value.as_str() {
                    "rabbitmq" => BackendKind::RabbitMq,
                    "embedded" => BackendKind::Embedded,
                    other => panic!("unknown backend {other}"),
                }
            }
            "--connections" => args.connections = value.parse().expect("a number"),
            "--seconds" => args.seconds = value.parse().expect("a number"),
            "--rounds" => args.rounds = value.parse().expect("a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.connections > 0 && args.seconds > 0 && args.rounds > 0);
    args
}

fn settings() -> ReceiverSettings {
    let secret = |s: &str| SecretString::from(s.to_owned());
    ReceiverSettings {
        paysys: BTreeMap::from([(
            Account::default(),
            PaysysAccount {
                auth: NotificationAuth::new(&[(secret(PAYSYS_USER), secret(PAYSYS_SECRET))])
                    .unwrap(),
            },
        )]),
        plutu: BTreeMap::from([(
            Account::default(),
            PlutuAccount {
                verifier: CallbackVerifier::new(secret(PLUTU_SECRET)).unwrap(),
                result_page: Some(ResultPage::parse("https://shop.example/plutu").unwrap()),
            },
        )]),
        portmanat: BTreeMap::from([(
            Account::default(),
            PortmanatAccount {
                result_page: Some(ResultPage::parse("https://shop.example/thanks").unwrap()),
            },
        )]),
        max_connections: 4096,
        ..ReceiverSettings::default()
    }
}

/// The n-th genuine callback as the bytes of an HTTP/1.1 request: the
/// three providers in turn, each signed or authenticated as its provider
/// does (Plutu by the simulator's code, not the product's).
fn callback(n: u64) -> Bytes {
    let reference = format!("B-{n:010}");
    let text = match n % 3 {
        0 => {
            let body = serde_json::json!({"id": format!("{n}"), "account": reference,
                "amount": 150_000, "card_masked": "860049******1234", "currency": 860,
                "currency_name": "uzs", "status": 2, "date": "24.06.2022 07:49:16"})
            .to_string();
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{PAYSYS_USER}:{PAYSYS_SECRET}"));
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        1 => {
            let txn = format!("{n}");
            let pairs = [
                ("gateway", "mpgs"),
                ("approved", "1"),
                ("amount", "12.50"),
                ("currency", "USD"),
                ("invoice_no", reference.as_str()),
                ("transaction_id", txn.as_str()),
            ];
            let message = paysettle_sim::plutu::callback_message(PlutuGateway::Mpgs, &pairs);
            let hashed = paysettle_sim::plutu::callback_hash(PLUTU_SECRET, &message);
            let query = paysettle_sim::form::http_build_query(&pairs);
            format!("GET /callbacks/plutu?{query}&hashed={hashed} HTTP/1.1\r\nHost: bench\r\n\r\n")
        }
        _ => format!(
            "GET /callbacks/portmanat?psp_rrn=P-{n}-lfI7yG&client_rrn={reference} HTTP/1.1\r\nHost: bench\r\n\r\n"
        ),
    };
    Bytes::from(text)
}

/// Requests built before measuring, so the generator spends its time on
/// sockets, not on signing. Reused round robin (the receiver does not
/// dedupe; every request becomes a message of its own).
struct Requests(Vec<Bytes>);

impl Requests {
    fn build(count: u64) -> Arc<Requests> {
        Arc::new(Requests((0..count).map(callback).collect()))
    }

    fn get(&self, n: u64) -> &Bytes {
        &self.0[(n % self.0.len() as u64) as usize]
    }
}

/// A message body the size and shape of what the receiver publishes.
fn raw_body(n: u64) -> Bytes {
    let reference = Reference::parse(&format!("B-{n:010}")).unwrap();
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
            provider_txn_id: Some(ProviderTxnId::parse(&n.to_string()).unwrap()),
            status: ObservedStatus::Succeeded,
            money: Some(Money::from_minor(1250, Currency::Usd).unwrap()),
            provider_status: "mpgs:approved".into(),
            provider_time: None,
            observed_at: jiff::Timestamp::now(),
            source: Source::Callback,
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
                ("transaction_id", "200431"),
                (
                    "hashed",
                    "F1BC626CFDC4E6A5A464570053B42F5673F431950BDE64665EC3A56B33A2F681",
                ),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
            headers: vec![("host".into(), "bench".into())],
            body: None,
        },
    };
    Bytes::from(serde_json::to_vec(&callback).unwrap())
}

async fn raw_publishes(
    server: &Handle,
    queue: &Queue,
    tasks: usize,
    for_how_long: Duration,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let (queue, done, stop) = (queue.clone(), done.clone(), stop.clone());
            server.spawn(async move {
                let mut n = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = raw_body(n);
                    let id = uuid::Uuid::now_v7().to_string();
                    queue
                        .publish(&Message::json(id, body))
                        .await
                        .expect("durable");
                    done.fetch_add(1, Ordering::Relaxed);
                    n += tasks as u64;
                }
            })
        })
        .collect();
    tokio::time::sleep(for_how_long).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

/// One keep-alive connection of the load generator: writes a request,
/// reads exactly one response (head, then `Content-Length` bytes).
struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Sends `request`; true for an answer that means "durable" (200, 303).
    async fn exchange(&mut self, request: &[u8]) -> bool {
        self.stream.write_all(request).await.unwrap();
        self.buffer.clear();
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end]).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.1 303");
                while self.buffer.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed mid-answer");
                    self.buffer.extend_from_slice(&chunk[..n]);
                }
                assert_eq!(
                    self.buffer.len(),
                    end + 4 + length,
                    "one answer per request"
                );
                return ok;
            }
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before answering");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Closed loop: every connection sends back to back.
async fn max_rate(
    addr: SocketAddr,
    requests: Arc<Requests>,
    connections: usize,
    for_how_long: Duration,
) -> (u64, u64, Duration) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(Conn::open(addr).await);
    }
    let started = Instant::now();
    let workers: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (ok, failed, next, stop) = (ok.clone(), failed.clone(), next.clone(), stop.clone());
            let requests = requests.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if conn.exchange(requests.get(n)).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(for_how_long).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed(),
    )
}

/// Open loop at `rate`: request i is due at start + i / rate; its latency
/// runs from then until its answer.
async fn fixed_rate(
    addr: SocketAddr,
    requests: Arc<Requests>,
    connections: usize,
    rate: f64,
    for_how_long: Duration,
) -> (Histogram<u64>, u64, u64) {
    let total = (rate * for_how_long.as_secs_f64()) as u64;
    let mut queues = Vec::new();
    let mut workers = Vec::new();
    let failed = Arc::new(AtomicU64::new(0));
    for _ in 0..connections {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
        queues.push(tx);
        let mut conn = Conn::open(addr).await;
        let (failed, requests) = (failed.clone(), requests.clone());
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            while let Some((n, due)) = rx.recv().await {
                if !conn.exchange(requests.get(n)).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
            histogram
        }));
    }
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        // Round robin: a connection busy with a slow request delays only
        // its own share, and that delay is counted from `due`.
        let _ = queues[(i as usize) % connections].send((i, due));
    }
    drop(queues);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for w in workers {
        histogram.add(w.await.unwrap()).unwrap();
    }
    (histogram, total, failed.load(Ordering::Relaxed))
}

/// The same open-loop schedule through `Queue::publish` alone: the latency
/// floor the receiver builds on.
async fn raw_fixed_rate(
    server: &Handle,
    queue: &Queue,
    workers_n: usize,
    rate: f64,
    for_how_long: Duration,
) -> Histogram<u64> {
    let total = (rate * for_how_long.as_secs_f64()) as u64;
    let mut queues = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..workers_n {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
        queues.push(tx);
        let queue = queue.clone();
        workers.push(server.spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            while let Some((n, due)) = rx.recv().await {
                let message = Message::json(uuid::Uuid::now_v7().to_string(), raw_body(n));
                queue.publish(&message).await.expect("durable");
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
            histogram
        }));
    }
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let _ = queues[(i as usize) % workers_n].send((i, due));
    }
    drop(queues);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for w in workers {
        histogram.add(w.await.unwrap()).unwrap();
    }
    histogram
}

fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds used so far by this process's threads, grouped by thread
/// name prefix (`receiver`, `loadgen`, the queue's own threads...).
fn thread_cpu() -> BTreeMap<String, f64> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return groups;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(ticks) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|stat| cpu_ticks(&stat))
        else {
            continue;
        };
        let group = comm.trim().split('-').next().unwrap_or("other").to_owned();
        *groups.entry(group).or_insert(0.0) += ticks as f64 / 100.0;
    }
    groups
}

/// utime + stime of a `/proc/.../stat` line, in clock ticks (100 Hz).
fn cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the parenthesised command; utime and stime are the 12th
    // and 13th of those.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds of the RabbitMQ broker process, when it runs on this machine.
fn broker_cpu() -> Option<f64> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "beam.smp" {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            return cpu_ticks(&stat).map(|t| t as f64 / 100.0);
        }
    }
    None
}

/// CPU seconds spent between two readings, per group, plus the broker.
fn cpu_between(
    before: &(BTreeMap<String, f64>, Option<f64>),
    after: &(BTreeMap<String, f64>, Option<f64>),
) -> BTreeMap<String, f64> {
    let mut spent: BTreeMap<String, f64> = after
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    if let (Some(a), Some(b)) = (before.1, after.1) {
        spent.insert("broker (beam.smp)".to_owned(), b - a);
    }
    spent
}

fn cpu_now() -> (BTreeMap<String, f64>, Option<f64>) {
    (thread_cpu(), broker_cpu())
}

/// CPU microseconds per message, per group.
fn per_message(spent: &BTreeMap<String, f64>, messages: u64) -> serde_json::Value {
    let n = messages.max(1) as f64;
    spent
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!((v * 1e6 / n).round())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn main() {
    let args = args();
    // Two runtimes, so the CPU of the receiver (and the queue client) and
    // of the load generator can be told apart by thread name.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("receiver")
        .enable_all()
        .build()
        .unwrap();
    let loadgen = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .unwrap();
    loadgen.block_on(bench(args, server.handle().clone()));
}

async fn bench(args: Args, server: Handle) {
    let mut env = TestQueue::new(args.backend).unwrap();
    // Its own names, deleted from RabbitMQ when `env` drops.
    env.prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut config = env.config();
    config.confirm_timeout = Duration::from_secs(5);
    let prefix = config.prefix.clone();
    let queue = server.spawn(Queue::start(config)).await.unwrap().unwrap();
    let window = Duration::from_secs(args.seconds);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let receiver = server.spawn(paysettle_receiver::run(
        listener,
        Arc::new(settings()),
        queue.clone(),
        shutdown.clone(),
    ));
    let requests = Requests::build(3_000);
    let load_before = load_average();

    // Warm the broker connection, the file and the connections first.
    let _ = raw_publishes(
        &server,
        &queue,
        args.connections,
        Duration::from_millis(500),
    )
    .await;
    let _ = max_rate(
        addr,
        requests.clone(),
        args.connections,
        Duration::from_millis(500),
    )
    .await;
    // Alternate the two, so a change in background load hits both alike;
    // report medians.
    let (mut raw_rates, mut max_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut max_failed = 0;
    let (mut raw_cpu, mut http_cpu) = (BTreeMap::new(), BTreeMap::new());
    let (mut raw_total, mut http_total) = (0, 0);
    for _ in 0..args.rounds {
        let before = cpu_now();
        let (raw_n, raw_took) = raw_publishes(&server, &queue, args.connections, window).await;
        let middle = cpu_now();
        let raw_rate = raw_n as f64 / raw_took.as_secs_f64();
        let (ok, failed, took) = max_rate(addr, requests.clone(), args.connections, window).await;
        let after = cpu_now();
        for (k, v) in cpu_between(&before, &middle) {
            *raw_cpu.entry(k).or_insert(0.0) += v;
        }
        for (k, v) in cpu_between(&middle, &after) {
            *http_cpu.entry(k).or_insert(0.0) += v;
        }
        raw_total += raw_n;
        http_total += ok;
        let max = ok as f64 / took.as_secs_f64();
        max_failed += failed;
        raw_rates.push(raw_rate);
        max_rates.push(max);
        ratios.push(max / raw_rate);
    }
    let raw_rate = median(&mut raw_rates.clone());
    let max_rate_per_sec = median(&mut max_rates.clone());
    let ratio = median(&mut ratios.clone());

    let half = max_rate_per_sec / 2.0;
    let (histogram, sent, half_failed) =
        fixed_rate(addr, requests, args.connections, half, window).await;
    let raw_histogram = raw_fixed_rate(&server, &queue, args.connections, half, window).await;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let load_after = load_average();

    shutdown.cancel();
    receiver.await.unwrap().unwrap();
    queue.shutdown(Duration::from_secs(5)).await;
    let peak_rss_mb = peak_rss_kib().map(|k| k as f64 / 1024.0);
    let backend = match args.backend {
        BackendKind::RabbitMq => "rabbitmq",
        BackendKind::Embedded => "embedded",
    };
    let report = serde_json::json!({
        "backend": backend,
        "queue_prefix": prefix,
        "connections": args.connections,
        "seconds_per_phase": args.seconds,
        "rounds": args.rounds,
        "raw_publishes_per_sec": raw_rate.round(),
        "raw_publishes_per_sec_each_round": raw_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "raw_note": "Queue::publish from `connections` concurrent tasks, no HTTP, same process and queue type (lapin is not used outside the queue crate)",
        "callbacks_durable_per_sec": max_rate_per_sec.round(),
        "callbacks_durable_per_sec_each_round": max_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "callbacks_vs_raw": (ratio * 1000.0).round() / 1000.0,
        "max_phase_failed": max_failed,
        "half_rate_target_per_sec": half.round(),
        "half_rate_sent": sent,
        "half_rate_failed": half_failed,
        "latency_ms_at_half_rate": {
            "p50": ms(&histogram, 0.50), "p90": ms(&histogram, 0.90), "p99": ms(&histogram, 0.99),
            "p999": ms(&histogram, 0.999), "max": histogram.max() as f64 / 1000.0,
        },
        "raw_publish_latency_ms_at_half_rate": {
            "p50": ms(&raw_histogram, 0.50), "p99": ms(&raw_histogram, 0.99),
        },
        "load_average_before_after": [load_before, load_after],
        "cpu_us_per_message": {
            "raw_publish": per_message(&raw_cpu, raw_total),
            "http_callback": per_message(&http_cpu, http_total),
            "note": "CPU per message by thread group during the throughput phases: `receiver` = the receiver's runtime (HTTP, verification, publishing), `loadgen` = the load generator's, `paysettle` = the queue's own threads, broker = RabbitMQ's process",
        },
        "peak_rss_mb": peak_rss_mb.map(|m| (m * 10.0).round() / 10.0),
        "peak_rss_note": "VmHWM of this process: receiver, queue client and load generator together",
        "targets": {
            "callbacks_vs_raw_at_least": 0.8,
            "p99_ms_below": 10.0,
            "peak_rss_mb_below": 50.0,
        },
    });
    println!("{report}");
    // `env` drops here: the benchmark's queues are deleted from RabbitMQ.
    drop(env);
}
