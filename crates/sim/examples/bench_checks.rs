//! Throughput of the simulator's status APIs, the load paysettle's poller puts
//! on it: starts the simulator in-process with zero added latency, creates
//! payments at Portmanat and PaySys, then hammers Portmanat `/check` and PaySys
//! `paysys.check_payment` over many keep-alive connections for a few seconds
//! and prints one JSON object.
//!
//! `cargo run --release -p paysettle-sim --example bench_checks [-- SECONDS CONNECTIONS PAYMENTS]`
//!
//! Every answer is checked (status 200 and the expected shape), so a fast but
//! wrong simulator does not score. Not a test: nothing asserts a figure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use paysettle_sim::paysys::auth_header;
use paysettle_sim::{NewPayment, Provider, Sim, SimConfig};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::net::TcpStream;

#[derive(Debug, Default)]
struct Tally {
    portmanat: u64,
    paysys: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let seconds = arg(1, 5);
    let connections = arg(2, 32) as usize;
    let payments = arg(3, 1000) as usize;

    let mut config = SimConfig::for_tests();
    // Payments stay pending for the whole run and send no callbacks, so the
    // figure is the status APIs alone.
    config.scenario.pending.min_ms = 3_600_000;
    config.scenario.pending.max_ms = 3_600_000;
    config.paysys.notify_pending = false;
    let sim = Sim::start(config).await.expect("simulator starts");
    let addr = sim.addr();

    let mut psp_rrns = Vec::new();
    let mut partner_ids = Vec::new();
    for n in 0..payments {
        if n % 2 == 0 {
            let view = sim
                .create_payment(NewPayment::new(
                    Provider::Portmanat,
                    format!("B-{n}"),
                    1_990,
                ))
                .unwrap();
            psp_rrns.push(view.provider_txn_id.unwrap());
        } else {
            let reference = format!("B-{n}");
            sim.create_payment(NewPayment::new(
                Provider::Paysys,
                reference.clone(),
                1_139_000,
            ))
            .unwrap();
            partner_ids.push(reference);
        }
    }
    let paysys = sim.config().paysys.clone();
    let auth = auth_header(
        &paysys.service_id,
        paysys.secret_key.expose_secret(),
        jiff::Timestamp::now().as_millisecond(),
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for worker in 0..connections {
        let psp_rrns = psp_rrns.clone();
        let partner_ids = partner_ids.clone();
        let auth = auth.clone();
        workers.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let mut tally = Tally::default();
            let mut n = worker;
            while Instant::now() < deadline {
                n += 1;
                let portmanat = n % 2 == 0;
                let request = if portmanat {
                    let psp_rrn = &psp_rrns[n % psp_rrns.len()];
                    Request::post("/portmanat/check")
                        .header(header::HOST, "sim")
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(Full::new(Bytes::from(format!("psp_rrn={psp_rrn}"))))
                        .unwrap()
                } else {
                    let id = &partner_ids[n % partner_ids.len()];
                    let body = json!({"method": "paysys.check_payment", "params": {"partner_trans_id": id}, "id": n});
                    Request::post("/paysys/gateway")
                        .header(header::HOST, "sim")
                        .header(header::CONTENT_TYPE, "application/json")
                        .header("Auth", &auth)
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap()
                };
                let sent = Instant::now();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                let ok_status = response.status().is_success();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                tally.latencies_us.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                let expected: &[u8] = if portmanat { b"\"status\":\"OK\"" } else { b"\"error\":null" };
                let ok_body = body.windows(expected.len()).any(|w| w == expected);
                if !(ok_status && ok_body) {
                    tally.errors += 1;
                } else if portmanat {
                    tally.portmanat += 1;
                } else {
                    tally.paysys += 1;
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await.unwrap();
        total.portmanat += tally.portmanat;
        total.paysys += tally.paysys;
        total.errors += tally.errors;
        total.latencies_us.extend(tally.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let percentile = |p: f64| {
        let len = total.latencies_us.len();
        if len == 0 {
            return 0;
        }
        total.latencies_us[((len as f64 - 1.0) * p) as usize]
    };
    let checks = total.portmanat + total.paysys;
    println!(
        "{}",
        json!({
            "benchmark": "sim_status_checks",
            "checks_per_sec": (checks as f64 / elapsed).round(),
            "checks": checks,
            "portmanat_checks": total.portmanat,
            "paysys_checks": total.paysys,
            "errors": total.errors,
            "connections": connections,
            "payments": payments,
            "duration_secs": (elapsed * 100.0).round() / 100.0,
            "latency_us": {"p50": percentile(0.50), "p99": percentile(0.99), "max": percentile(1.0)},
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        })
    );
    sim.shutdown().await;
}
