//! The door under attack (issue 17), measured: `paysettle receive` (release
//! build, RabbitMQ backend, the product's default door limits) in its own
//! process, `paysettle-loadgen` in another sending genuine signed PaySys and
//! Plutu callbacks, and this process attacking from other loopback
//! addresses with the attacks of `tests/hostile/load.rs`, kept up for the
//! whole phase: 300 idle HTTP/2 connections and 200 stalled 64 KiB bodies
//! held (what the server closes is reopened), wrong PaySys credentials with
//! 64 KiB declared and random Portmanat hints at fixed rates
//! (`--refused-rate`, `--hint-rate`; 200/s and 500/s by default).
//!
//! The same figures with and without the attacks, in the same run: genuine
//! callbacks/s as fast as they are answered (the ratio is what the 80%
//! target applies to), their p99 at half the calm rate (open loop), CPU per
//! genuine callback by process, the receiver's peak RSS (against the 64 MiB
//! of `deploy/k8s/deployment.yaml`) and whether `/readyz` stayed up.
//! Prints one JSON line.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/bench_attack --paysettle target/release/paysettle \
//!   --loadgen target/release/paysettle-loadgen --seconds 5
//! ```
//!
//! The /proc helpers are those of `bench_ingest` (examples share no code).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/process.rs"]
mod support_process;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use paysettle_testkit::procfs::{broker_pid, machine_busy, memory_mib, process_cpu};
use serde_json::{Value, json};
use support_process::{free_port, readyz, terminate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const K8S_MEMORY_LIMIT_MIB: f64 = 64.0;

struct Args {
    paysettle: PathBuf,
    loadgen: PathBuf,
    amqp_url: String,
    seconds: f64,
    connections: usize,
    /// Random hints sent per second (from 200 addresses).
    hint_rate: f64,
    /// Requests with wrong PaySys credentials per second.
    refused_rate: f64,
    /// Connections (re)opened per second at most by each holding attack.
    reopen_rate: f64,
}

fn args() -> Args {
    let mut args = Args {
        paysettle: "target/release/paysettle".into(),
        loadgen: "target/release/paysettle-loadgen".into(),
        amqp_url: std::env::var("PAYSETTLE_BENCH_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        seconds: 5.0,
        connections: 32,
        hint_rate: 500.0,
        refused_rate: 200.0,
        reopen_rate: 50.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--paysettle" => args.paysettle = value.into(),
            "--loadgen" => args.loadgen = value.into(),
            "--seconds" => args.seconds = value.parse().unwrap(),
            "--connections" => args.connections = value.parse().unwrap(),
            "--hint-rate" => args.hint_rate = value.parse().unwrap(),
            "--refused-rate" => args.refused_rate = value.parse().unwrap(),
            "--reopen-rate" => args.reopen_rate = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// The product's defaults, but for one thing: the load generator stands for
/// every provider from one address, so that address may hold its
/// connections (as behind a proxy). The hint limits are the defaults: the
/// flood meets the real gate.
fn write_config(dir: &Path, port: u16, metrics_port: u16, url: &str, prefix: &str) -> PathBuf {
    let d = dir.display();
    let text = format!(
        r#"[ledger]
path = "{d}/ledger.sqlite"

[queue]
backend = "rabbitmq"
amqp_url = "{url}"
prefix = "{prefix}"
embedded_path = "{d}/queue.sqlite"
spool_path = "{d}/spool.sqlite"

[receiver]
listen = "127.0.0.1:{port}"
max_connections_per_client = 256

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

// --- the load generator -------------------------------------------------------

struct Window {
    report: Value,
    cpu: Value,
}

/// Runs the load generator (genuine PaySys and Plutu callbacks) to its end
/// and reads CPU over its measured window.
/// Empties the callbacks queue before a phase: nobody consumes it here, and
/// a queue grown by the phases before (a hundred thousand messages and
/// more) costs the broker differently from one phase to the next, whatever
/// the attack does.
fn empty_callbacks(args: &Args, prefix: &str) {
    let queue = paysettle_queue::Topology::new(prefix, true).callbacks;
    let purged = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(paysettle_testkit::amqp::purge_queue(&args.amqp_url, &queue));
    if let Err(e) = purged {
        eprintln!("bench_attack: emptying {queue}: {e}");
    }
}

fn genuine(args: &Args, target: SocketAddr, rate: Option<f64>, watched: &[(&str, u32)]) -> Window {
    let mut cmd = Command::new(&args.loadgen);
    cmd.arg("callbacks")
        .arg("--target")
        .arg(target.to_string())
        .arg("--connections")
        .arg(args.connections.to_string())
        .arg("--seconds")
        .arg(args.seconds.to_string())
        .arg("--warmup")
        .arg("1")
        .arg("--providers")
        .arg("paysys,plutu");
    if let Some(rate) = rate {
        cmd.arg("--rate").arg(format!("{rate:.0}"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let read = |watched: &[(&str, u32)]| {
        let mut v: Vec<(String, f64)> = watched
            .iter()
            .filter_map(|(n, p)| Some(((*n).to_owned(), process_cpu(*p)?)))
            .collect();
        if let Some(m) = machine_busy() {
            v.push(("machine".to_owned(), m));
        }
        v
    };
    let mut before = None;
    let mut last = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("\"window_start\"") {
            before = Some(read(watched));
        } else if line.starts_with('{') {
            last = Some(line);
        }
    }
    let after = read(watched);
    assert!(child.wait().unwrap().success(), "the load generator failed");
    let report: Value = serde_json::from_str(&last.expect("a JSON report")).unwrap();
    let before = before.expect("the window_start line");
    let completed = report["completed"].as_f64().unwrap_or(0.0).max(1.0);
    let mut cpu = serde_json::Map::new();
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        if name == "machine" {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            cpu.insert(
                "machine_busy_percent".to_owned(),
                json!(((a - b) / (args.seconds * cores) * 1000.0).round() / 10.0),
            );
        } else {
            cpu.insert(name.clone(), json!(((a - b) * 1e6 / completed).round()));
        }
    }
    if let Some(own) = report["cpu_seconds"].as_f64() {
        cpu.insert(
            "load generator".to_owned(),
            json!((own * 1e6 / completed).round()),
        );
    }
    Window {
        report,
        cpu: Value::Object(cpu),
    }
}

// --- the attacks ------------------------------------------------------------------

fn from(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

async fn connect_from(ip: IpAddr, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// What the attackers did, counted as they go.
#[derive(Default)]
struct Attacked {
    h2_held: AtomicU64,
    bodies_held: AtomicU64,
    refused_401: AtomicU64,
    hints_sent: AtomicU64,
}

/// A ticker at `per_sec`, skipping ticks it could not keep.
fn pace(per_sec: f64) -> tokio::time::Interval {
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec.max(0.001)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    every
}

/// Starts every attack; they go on until `stop`. The holding attacks keep
/// their connections up (reopening what the server closes, at most
/// `reopen_rate` a second each); the floods run at their rates.
fn attack(
    runtime: &tokio::runtime::Runtime,
    receiver: SocketAddr,
    stop: Arc<AtomicBool>,
    args: &Args,
) -> Arc<Attacked> {
    let counted = Arc::new(Attacked::default());
    let (reopen, hint_rate, refused_rate) = (args.reopen_rate, args.hint_rate, args.refused_rate);
    // 300 idle HTTP/2 connections (one /healthz each, then only pings), kept up.
    {
        let (stop, counted) = (stop.clone(), counted.clone());
        runtime.spawn(async move {
            let mut held = Vec::new();
            let mut every = pace(reopen);
            while !stop.load(Ordering::Relaxed) {
                held.retain(|(_, t): &(_, tokio::task::JoinHandle<()>)| !t.is_finished());
                if held.len() >= 300 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                every.tick().await;
                let Ok(stream) = connect_from(from(2), receiver).await else {
                    continue;
                };
                let Ok(Ok((mut send, conn))) = tokio::time::timeout(
                    Duration::from_secs(2),
                    hyper::client::conn::http2::handshake(
                        TokioExecutor::new(),
                        TokioIo::new(stream),
                    ),
                )
                .await
                else {
                    continue;
                };
                let conn = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let request = http::Request::get(format!("http://{receiver}/healthz"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), send.send_request(request)).await;
                counted.h2_held.fetch_add(1, Ordering::Relaxed);
                held.push((send, conn));
            }
        });
    }
    // 200 stalled 64 KiB bodies: the head, a few bytes, then nothing; one
    // the server gave up on (its body timeout) is sent again.
    {
        let (stop, counted) = (stop.clone(), counted.clone());
        runtime.spawn(async move {
            let mut held: Vec<tokio::net::TcpStream> = Vec::new();
            let mut every = pace(reopen);
            while !stop.load(Ordering::Relaxed) {
                // Readable means answered or closed by the server: room for another.
                held.retain(|s| {
                    let mut probe = [0u8; 1];
                    s.try_read(&mut probe).is_err()
                });
                if held.len() >= 200 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                every.tick().await;
                let Ok(mut stream) = connect_from(from(4), receiver).await else {
                    continue;
                };
                let head = "POST /callbacks/portmanat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\nExpect: 100-continue\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    let _ = stream.write_all(b"psp_rrn=").await;
                    counted.bodies_held.fetch_add(1, Ordering::Relaxed);
                    held.push(stream);
                }
            }
        });
    }
    // Wrong PaySys credentials with 64 KiB declared, at their rate.
    {
        let (stop, counted) = (stop.clone(), counted.clone());
        runtime.spawn(async move {
            let mut every = pace(refused_rate);
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = connect_from(from(5), receiver).await else {
                        return;
                    };
                    let head = "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: Basic d3Jvbmc6d3Jvbmc=\r\nContent-Length: 65536\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
                    let _ = stream.write_all(head.as_bytes()).await;
                    let mut answer = [0u8; 12];
                    if stream.read_exact(&mut answer).await.is_ok() && &answer[9..12] == b"401" {
                        counted.refused_401.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    // Random hints from 200 addresses, at their rate.
    {
        let (stop, counted) = (stop.clone(), counted.clone());
        runtime.spawn(async move {
            let mut every = pace(hint_rate);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                n += 1;
                let counted = counted.clone();
                tokio::spawn(async move {
                    let ip = from(10 + (n % 200) as u8);
                    let Ok(mut stream) = connect_from(ip, receiver).await else {
                        return;
                    };
                    let request = format!(
                        "GET /callbacks/portmanat?psp_rrn=forged-{n}&client_rrn=FORGED-{n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(request.as_bytes()).await;
                    let mut answer = [0u8; 12];
                    if stream.read_exact(&mut answer).await.is_ok() {
                        counted.hints_sent.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    counted
}

/// Waits until the broker uses under a tenth of a core over a second, or
/// `limit` has passed; says how long it waited and how busy it was last.
fn wait_for_quiet_broker(limit: Duration) -> Value {
    let Some(pid) = broker_pid() else {
        return json!({"measured": false});
    };
    let started = Instant::now();
    loop {
        let (before, at) = (process_cpu(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let busy = match (before, process_cpu(pid)) {
            (Some(a), Some(b)) => (b - a) / at.elapsed().as_secs_f64(),
            _ => return json!({"measured": false}),
        };
        let waited = started.elapsed();
        if busy < 0.1 || waited >= limit {
            return json!({
                "waited_s": waited.as_secs(),
                "busy_percent": (busy * 1000.0).round() / 10.0,
                "quiet": busy < 0.1,
            });
        }
    }
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("bench-attack-{}", uuid::Uuid::new_v4().simple());
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics_port = free_port();
    let config = write_config(dir.path(), port, metrics_port, &args.amqp_url, &prefix);
    let mut receiver = Command::new(&args.paysettle)
        .arg("receive")
        .arg("--config")
        .arg(&config)
        .env_remove("PAYSETTLE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", args.paysettle.display()));
    let started = Instant::now();
    while readyz(addr) != Some(200) {
        if let Some(status) = receiver.try_wait().unwrap() {
            panic!("the receiver exited before it was ready: {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = receiver.id();
    let mut watched: Vec<(&str, u32)> = broker_pid().map(|p| ("broker", p)).into_iter().collect();
    watched.push(("receiver", pid));
    watched.push(("attacker", std::process::id()));

    // A broker still digesting what ran before (a deleted queue of a
    // hundred thousand messages, say) would be counted against one phase
    // and not the other: wait, a minute at most, until it is quiet.
    let quiet = wait_for_quiet_broker(Duration::from_secs(60));

    // Warm-up, then the calm figures.
    empty_callbacks(&args, &prefix);
    let _ = genuine(&args, addr, None, &watched);
    empty_callbacks(&args, &prefix);
    let calm_max = genuine(&args, addr, None, &watched);
    let calm_rate = calm_max.report["ok_per_sec"].as_f64().unwrap_or(0.0);
    let half = (calm_rate / 2.0).max(1.0);
    empty_callbacks(&args, &prefix);
    let calm_half = genuine(&args, addr, Some(half), &watched);
    let calm_rss = memory_mib(pid, "VmHWM:");

    // The same, under attack.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let attacked = attack(&runtime, addr, stop.clone(), &args);
    // Let the attacks take hold (connections held, bodies stalled) first.
    std::thread::sleep(Duration::from_secs(3));
    let ready_probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut up, mut down) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                if readyz(addr) == Some(200) {
                    up += 1;
                } else {
                    down += 1;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            (up, down)
        })
    };
    empty_callbacks(&args, &prefix);
    let attack_max = genuine(&args, addr, None, &watched);
    empty_callbacks(&args, &prefix);
    let attack_half = genuine(&args, addr, Some(half), &watched);
    stop.store(true, Ordering::Relaxed);
    let (ready_up, ready_down) = ready_probe.join().unwrap();
    runtime.shutdown_timeout(Duration::from_secs(2));
    let peak_rss = memory_mib(pid, "VmHWM:");
    terminate(receiver);
    let cleanup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(paysettle_testkit::amqp::delete_topology(
            &args.amqp_url,
            &prefix,
        ));
    if let Err(e) = cleanup {
        eprintln!("cleanup of {prefix}: {e}");
    }

    let attack_rate = attack_max.report["ok_per_sec"].as_f64().unwrap_or(0.0);
    let p99 = |w: &Window| w.report["latency_ms"]["p99"].as_f64();
    let report = json!({
        "seconds_per_phase": args.seconds,
        "broker_before_start": quiet,
        "connections": args.connections,
        "attack_rates_per_sec": {"hints": args.hint_rate, "wrong_credentials": args.refused_rate, "reopened_per_holding_attack": args.reopen_rate},
        "calm": {
            "callbacks_per_sec": calm_rate.round(),
            "failed": calm_max.report["failed"],
            "cpu_us_per_callback": calm_max.cpu,
            "half_rate": {"offered_per_sec": half.round(), "latency_ms": calm_half.report["latency_ms"], "failed": calm_half.report["failed"], "cpu_us_per_callback": calm_half.cpu},
            "peak_rss_mib": calm_rss,
        },
        "attack": {
            "callbacks_per_sec": attack_rate.round(),
            "failed": attack_max.report["failed"],
            "cpu_us_per_callback": attack_max.cpu,
            "half_rate": {"offered_per_sec": half.round(), "latency_ms": attack_half.report["latency_ms"], "failed": attack_half.report["failed"], "cpu_us_per_callback": attack_half.cpu},
            "attackers": {
                "h2_connections_opened": attacked.h2_held.load(Ordering::Relaxed),
                "stalled_bodies_opened": attacked.bodies_held.load(Ordering::Relaxed),
                "wrong_credentials_refused_401": attacked.refused_401.load(Ordering::Relaxed),
                "hints_answered": attacked.hints_sent.load(Ordering::Relaxed),
            },
            "readyz_up_down": [ready_up, ready_down],
        },
        "attack_vs_calm": if calm_rate > 0.0 { ((attack_rate / calm_rate) * 1000.0).round() / 1000.0 } else { 0.0 },
        "p99_ms": {"calm": p99(&calm_half), "attack": p99(&attack_half)},
        "peak_rss_mib": peak_rss,
        "peak_rss_vs_limit": peak_rss.map(|r| ((r / K8S_MEMORY_LIMIT_MIB) * 1000.0).round() / 1000.0),
        "targets": {"attack_vs_calm_at_least": 0.8, "p99_ms_below": 50.0, "peak_rss_mib_below": K8S_MEMORY_LIMIT_MIB},
    });
    println!("{report}");
}
