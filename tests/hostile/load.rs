//! The door under attack (issue 17): `paysettle serve` (embedded queue) is
//! attacked from other loopback addresses while the provider simulator sends
//! genuine callbacks for all three providers from 127.0.0.1. Bounded in time:
//! every attack has a fixed size.
//!
//! Attacks: idle HTTP/2 connections (one `/healthz` each, then only pings),
//! stalled 64 KiB bodies, PaySys posts with wrong credentials declaring
//! 64 KiB, and a flood of random Portmanat hints.
//!
//! Shown: every genuine callback answered 2xx/3xx and its payment settled in
//! the ledger; `/readyz` up throughout; peak RSS under the k8s limit
//! (64 MiB); `/check` calls no more than the distinct `psp_rrn`s hinted;
//! nothing dead-lettered.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use paysettle_queue::{BackendKind, Queue, QueueConfig, QueueKind};
use paysettle_sim::model::{CallbackFate, Outcome, Provider as SimProvider};
use paysettle_sim::{NewPayment, Sim, SimConfig};
use paysettle_store::{Ledger, LedgerOptions, PaymentFilter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{DEADLINE, Pace, exchange, get};

const K8S_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

fn from(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

async fn connect_from(ip: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_callbacks_get_in_and_settle_while_the_door_is_attacked() {
    let dir = tempfile::tempdir().unwrap();
    let (port, shop, metrics) = (free_port(), free_port(), free_port());
    let receiver: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut sim_config = SimConfig::for_tests();
    sim_config.portmanat.callback_url = format!("http://{receiver}/callbacks/portmanat");
    sim_config.paysys.notify_url = format!("http://{receiver}/callbacks/paysys");
    sim_config.plutu.default_return_url = format!("http://{receiver}/callbacks/plutu");
    let sim = Sim::start(sim_config).await.unwrap();
    let polling = |name: &str| {
        format!(
            "[polling.{name}]\nconcurrency = 4\nrate_per_sec = 20.0\ntimeout_ms = 2000\nfirst_ms = 2000\nmultiplier = 2.0\n\
             max_interval_ms = 4000\njitter = 0.1\ndeadline_ms = 600000\n"
        )
    };
    let config = format!(
        r#"
[ledger]
path = "{ledger}"
synchronous = "normal"

[queue]
backend = "embedded"
embedded_path = "{queue}"

[receiver]
listen = "{receiver}"
body_timeout_ms = 5000

[shop_api]
listen = "127.0.0.1:{shop}"

[metrics]
listen = "127.0.0.1:{metrics}"

[worker]
paysys_confirm = false
poll_idle_ms = 50

[log]
level = "warn"

{pm}{ps}{pl}
{accounts}"#,
        ledger = dir.path().join("ledger.sqlite").display(),
        queue = dir.path().join("queue.sqlite").display(),
        pm = polling("portmanat"),
        ps = polling("paysys"),
        pl = polling("plutu"),
        accounts = paysettle_testkit::config::sim_accounts(sim.base_url()),
    );
    let path = dir.path().join("paysettle.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("serve.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paysettle"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("PAYSETTLE_CONFIG")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = std::time::Instant::now();
    let shop_api: SocketAddr = ([127, 0, 0, 1], shop).into();
    loop {
        if let Ok(reply) = exchange(receiver, &get("/readyz", &[]), Pace::AllAtOnce).await
            && reply.status == Some(200)
            && let Ok(reply) = exchange(shop_api, &get("/healthz", &[]), Pace::AllAtOnce).await
            && reply.status == Some(200)
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "not ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // ---- the attacks, each of a fixed size, all at once -----------------
    let mut attacks = Vec::new();
    // Idle HTTP/2 connections, held for the whole test.
    attacks.push(tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..300 {
            let Ok(stream) = connect_from(from(2), receiver).await else {
                continue;
            };
            let Ok(Ok((mut send, conn))) = tokio::time::timeout(
                Duration::from_secs(2),
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)),
            )
            .await
            else {
                continue;
            };
            let task = tokio::spawn(async move {
                let _ = conn.await;
            });
            let request = http::Request::get(format!("http://{receiver}/healthz"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(2), send.send_request(request)).await;
            held.push((send, task));
        }
        tokio::time::sleep(Duration::from_secs(8)).await;
        held.len()
    }));
    // Stalled 64 KiB bodies (Expect: 100-continue, then a few bytes).
    attacks.push(tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..200 {
            let Ok(mut stream) = connect_from(from(3), receiver).await else {
                continue;
            };
            let head = "POST /callbacks/portmanat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\nExpect: 100-continue\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_ok() {
                let _ = stream.write_all(b"psp_rrn=").await;
                held.push(stream);
            }
        }
        tokio::time::sleep(Duration::from_secs(8)).await;
        held.len()
    }));
    // Wrong PaySys credentials, 64 KiB declared: refused from the head.
    attacks.push(tokio::spawn(async move {
        let mut refused = 0;
        for _ in 0..200 {
            let Ok(mut stream) = connect_from(from(4), receiver).await else {
                continue;
            };
            let head = "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: Basic d3Jvbmc6d3Jvbmc=\r\nContent-Length: 65536\r\nExpect: 100-continue\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let mut answer = [0u8; 12];
            if stream.read_exact(&mut answer).await.is_ok() && &answer[9..12] == b"401" {
                refused += 1;
            }
        }
        refused
    }));
    // A flood of random hints, from many addresses.
    let hinted = 1000;
    attacks.push(tokio::spawn(async move {
        let mut redirected = 0;
        for n in 0..hinted {
            let ip = from(10 + (n % 200) as u8);
            let Ok(mut stream) = connect_from(ip, receiver).await else {
                continue;
            };
            let request = format!(
                "GET /callbacks/portmanat?psp_rrn=forged-{n}&client_rrn=FORGED-{n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(request.as_bytes()).await;
            let mut answer = [0u8; 12];
            if stream.read_exact(&mut answer).await.is_ok() && &answer[9..12] == b"200" {
                redirected += 1;
            }
        }
        redirected
    }));

    // ---- genuine traffic, from the simulator at 127.0.0.1 ---------------
    let http = reqwest::Client::new();
    let mut payments = Vec::new();
    for (provider, tag, minor) in [
        (SimProvider::Portmanat, "LOAD-PM", 1990),
        (SimProvider::Paysys, "LOAD-PS", 1_139_000),
        (SimProvider::Plutu, "LOAD-PL", 1250),
    ] {
        for n in 0..5 {
            let reference = format!("{tag}-{n}");
            let view = sim
                .create_payment(
                    NewPayment::new(provider, reference.clone(), minor)
                        .outcome(Outcome::Success)
                        .pending(Duration::from_millis(300)),
                )
                .unwrap();
            // Registered by the shop, as it does: a hint dropped at the
            // door only means the payment is checked on its schedule.
            let mut body = serde_json::json!({
                "provider": format!("{provider:?}").to_lowercase(),
                "reference": reference,
                "amount": minor,
                "currency": view.currency,
            });
            if provider == SimProvider::Portmanat {
                body["provider_transaction_id"] = serde_json::json!(view.provider_txn_id);
            }
            let response = http
                .post(format!("http://127.0.0.1:{shop}/v1/payments"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert_eq!(status, 201, "{}", response.text().await.unwrap());
            payments.push(view.id);
        }
    }
    // /readyz stays up while the callbacks arrive and are applied.
    let ledger = Ledger::open(dir.path().join("ledger.sqlite"), LedgerOptions::default()).unwrap();
    let settled_by = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = exchange(receiver, &get("/readyz", &[]), Pace::AllAtOnce)
            .await
            .unwrap();
        assert_eq!(ready.status, Some(200), "/readyz under attack");
        let delivered = payments.iter().all(|id| {
            let view = sim.payment(id).unwrap();
            !view.callbacks.is_empty()
                && view
                    .callbacks
                    .iter()
                    .all(|c| !matches!(c.fate, CallbackFate::Scheduled | CallbackFate::Held))
        });
        let settled = ledger
            .list(PaymentFilter {
                limit: 1000,
                ..PaymentFilter::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|p| p.reference.as_str().starts_with("LOAD-") && p.status.is_final())
            .count();
        if delivered && settled == payments.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < settled_by,
            "{settled} of {} settled; delivered: {delivered}",
            payments.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every genuine callback was taken: answered 2xx or 3xx.
    for id in &payments {
        let view = sim.payment(id).unwrap();
        for callback in &view.callbacks {
            match &callback.fate {
                CallbackFate::Delivered { http_status } => assert!(
                    (200..400).contains(http_status),
                    "{} {:?}: {http_status}",
                    view.reference,
                    callback.kind
                ),
                CallbackFate::Lost | CallbackFate::FollowedByBrowser => {}
                other => panic!("{}: {other:?}", view.reference),
            }
        }
    }
    let mut outcomes = Vec::new();
    for attack in attacks {
        outcomes.push(attack.await.unwrap());
    }
    println!("attacks: {outcomes:?} (h2 held, bodies held, 401s, hints answered)");
    assert_eq!(
        outcomes[2], 200,
        "every wrong-credential head refused with 401"
    );

    let peak = peak_rss(pid);
    println!("peak RSS under attack: {} KiB", peak / 1024);
    assert!(peak < K8S_MEMORY_LIMIT, "peak RSS {peak} bytes");
    let checks = sim.stats().portmanat.requests;
    assert!(
        checks <= hinted as u64 + 5,
        "{checks} /check calls for {} distinct psp_rrn hinted",
        hinted + 5
    );

    // Stop, then look at the queue file: nothing dead-lettered.
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("serve did not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
    let queue = Queue::start(QueueConfig {
        backend: BackendKind::Embedded,
        embedded_path: dir.path().join("queue.sqlite"),
        spool_path: None,
        ..QueueConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(
        queue.message_count(QueueKind::DeadLetters).await.unwrap(),
        0
    );
    queue.shutdown(Duration::from_secs(2)).await;
    sim.shutdown().await;
}
