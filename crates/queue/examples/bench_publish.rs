//! Confirmed publishes per second through `paysettle-queue`, beside raw lapin
//! pipelined publishes with confirms to a queue of the same type (quorum), in
//! the same run and with the same number of publishes in flight.
//!
//! `cargo run --release -p paysettle-queue --example bench_publish -- --messages 20000`
//! (`--concurrency N` publishes in flight, default 256; `--url` or
//! `PAYSETTLE_BENCH_AMQP_URL` for the broker). Prints one JSON object.
//!
//! Two more modes serve the ingest benchmark, which runs the receiver as a
//! process of its own and cannot reach lapin itself:
//!
//! - `--raw-seconds S --publishers P [--body-bytes B] [--warmup W]`: the
//!   ingest ceiling. `P` tasks share one confirm-mode channel, each publishing
//!   a persistent message with the receiver's four headers to a fresh quorum
//!   queue and waiting for its own confirm before the next, as the receiver's
//!   `P` connections do; confirmed publishes per second over `S` seconds,
//!   with the process's CPU time in that window. With `--rate R`, at a fixed
//!   rate instead, with latency percentiles.
//! - `--purge-prefix PREFIX` / `--delete-prefix PREFIX`: empty, or delete,
//!   the queues and exchanges of a topology (between and after rounds).

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use paysettle_queue::{BackendKind, Durable, Message, Queue, QueueConfig, Topology};
use tokio::sync::{Semaphore, mpsc};

type BoxError = Box<dyn Error + Send + Sync>;

struct Args {
    messages: usize,
    concurrency: usize,
    url: String,
    raw_seconds: Option<f64>,
    rate: Option<f64>,
    publishers: usize,
    body_bytes: usize,
    warmup: f64,
    purge_prefix: Option<String>,
    delete_prefix: Option<String>,
    raw_queue: Option<String>,
}

fn args() -> Result<Args, BoxError> {
    let mut parsed = Args {
        messages: 20_000,
        concurrency: 256,
        url: std::env::var("PAYSETTLE_BENCH_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        raw_seconds: None,
        rate: None,
        publishers: 64,
        body_bytes: 900,
        warmup: 0.5,
        purge_prefix: None,
        delete_prefix: None,
        raw_queue: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--messages" => parsed.messages = value.parse()?,
            "--concurrency" => parsed.concurrency = value.parse()?,
            "--url" => parsed.url = value,
            "--raw-seconds" => parsed.raw_seconds = Some(value.parse()?),
            "--publishers" => parsed.publishers = value.parse()?,
            "--rate" => parsed.rate = Some(value.parse()?),
            "--body-bytes" => parsed.body_bytes = value.parse()?,
            "--warmup" => parsed.warmup = value.parse()?,
            "--purge-prefix" => parsed.purge_prefix = Some(value),
            "--delete-prefix" => parsed.delete_prefix = Some(value),
            "--raw-queue" => parsed.raw_queue = Some(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if parsed.messages == 0 || parsed.concurrency == 0 || parsed.publishers == 0 {
        return Err("--messages, --concurrency and --publishers must be positive".into());
    }
    Ok(parsed)
}

fn body(i: usize) -> Vec<u8> {
    // About the size of a callback message.
    format!(
        "{{\"provider\":\"plutu\",\"n\":{i},\"fields\":{{\"invoice_no\":\"INV-{i:08}\",\"amount\":\"12.50\",\"pad\":\"{}\"}}}}",
        "x".repeat(300)
    )
    .into_bytes()
}

/// Raw lapin: one task publishes back to back, another awaits the confirms in
/// order; a semaphore keeps `concurrency` in flight.
async fn raw_run(
    conn: &Connection,
    queue: &str,
    n: usize,
    concurrency: usize,
) -> Result<Duration, BoxError> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let window = Arc::new(Semaphore::new(concurrency));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let waiter = tokio::spawn(async move {
        let mut acked = 0_usize;
        while let Some((confirm, permit)) = rx.recv().await {
            let confirm: lapin::PublisherConfirm = confirm;
            if let Ok(Confirmation::Ack(None)) = confirm.await {
                acked += 1;
            }
            drop(permit);
        }
        acked
    });
    let started = Instant::now();
    for i in 0..n {
        let permit = window.clone().acquire_owned().await?;
        let mut headers = FieldTable::default();
        headers.insert(
            "provider".into(),
            AMQPValue::LongString(LongString::from("plutu")),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(format!("raw-{i}").into())
            .with_content_type("application/json".into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body(i),
                props,
            )
            .await?;
        tx.send((confirm, permit))
            .map_err(|_| "confirm waiter stopped")?;
    }
    drop(tx);
    let acked = waiter.await?;
    let elapsed = started.elapsed();
    if acked != n {
        return Err(format!("raw: only {acked} of {n} confirmed").into());
    }
    let _ = channel.close(200, "OK".into()).await;
    Ok(elapsed)
}

/// The queue crate: every publish is its own task calling `Queue::publish`,
/// as the receiver's request handlers do.
async fn queue_run(
    queue: &Queue,
    n: usize,
    concurrency: usize,
    tag: &str,
) -> Result<Duration, BoxError> {
    let window = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = window.clone().acquire_owned().await?;
        let queue = queue.clone();
        let message = Message::json(format!("{tag}-{i}"), body(i)).with_header("provider", "plutu");
        tasks.push(tokio::spawn(async move {
            let result = queue.publish(&message).await;
            drop(permit);
            result
        }));
    }
    for t in tasks {
        match t.await? {
            Ok(Durable::Broker) => {}
            other => {
                return Err(format!("queue publish was not broker-confirmed: {other:?}").into());
            }
        }
    }
    Ok(started.elapsed())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// A JSON body of `bytes` bytes, about what a callback message is.
fn padded_body(bytes: usize) -> Vec<u8> {
    let head = "{\"format\":1,\"provider\":\"plutu\",\"pad\":\"";
    let tail = "\"}";
    let pad = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad)).into_bytes()
}

/// This process's CPU time (user + system) in seconds, where `/proc` tells.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The ingest ceiling: `publishers` tasks share one confirm-mode channel,
/// each publishing a persistent message with the receiver's headers and
/// waiting for its own confirm before the next. Counts the publishes begun in
/// the measured window and confirmed; prints one JSON object.
///
/// With `--rate`, an open loop instead: publish `n` is due at
/// `start + n / rate` on task `n mod publishers`, and its latency runs from
/// when it was due if the task was still busy then, else from when it was
/// written (the same rule as `paysettle-loadgen`), so the receiver's latency
/// can be set beside the broker's own at the same rate.
async fn raw_publishers(
    conn: &Connection,
    queue: &str,
    args: &Args,
    seconds: f64,
) -> Result<(), BoxError> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = Arc::new(padded_body(args.body_bytes));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(seconds);
    let (confirmed, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let cpu_at_window = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        println!("{{\"event\":\"window_start\"}}");
        cpu_seconds()
    });
    let every = args.publishers as u64;
    let rate = args.rate;
    let mut tasks = Vec::with_capacity(args.publishers);
    for t in 0..every {
        let (channel, body, queue) = (channel.clone(), body.clone(), queue.to_owned());
        let (confirmed, failed) = (confirmed.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut n = t;
            loop {
                let due = rate.map(|r| start + Duration::from_secs_f64(n as f64 / r));
                let free_at_due = due.is_some_and(|due| Instant::now() <= due);
                if let Some(due) = due.filter(|_| free_at_due) {
                    tokio::time::sleep_until(due.into()).await;
                }
                let begun = Instant::now();
                let scheduled = due.unwrap_or(begun);
                if scheduled >= end {
                    return Ok::<_, lapin::Error>(latencies_us);
                }
                let mut headers = FieldTable::default();
                for (k, v) in [
                    ("provider", "plutu"),
                    ("account", "default"),
                    ("kind", "observation"),
                    ("format", "1"),
                ] {
                    headers.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
                }
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("raw-{n}").into())
                    .with_content_type("application/json".into())
                    .with_headers(headers);
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        &body,
                        props,
                    )
                    .await?
                    .await?;
                let counter = match confirm {
                    Confirmation::Ack(None) => &confirmed,
                    _ => &failed,
                };
                if scheduled >= measure_from {
                    counter.fetch_add(1, Ordering::Relaxed);
                    if rate.is_some() {
                        let from = if free_at_due { begun } else { scheduled };
                        latencies_us.push(from.elapsed().as_micros() as u64);
                    }
                }
                n += every;
            }
        }));
    }
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await??);
    }
    let cpu = match (cpu_at_window.await?, cpu_seconds()) {
        (Some(before), Some(after)) => format!("{:.3}", after - before),
        _ => "null".to_owned(),
    };
    let _ = channel.close(200, "OK".into()).await;
    let confirmed = confirmed.load(Ordering::Relaxed);
    latencies_us.sort_unstable();
    let ms = |q: f64| match latencies_us.len() {
        0 => "null".to_owned(),
        len => format!(
            "{:.3}",
            latencies_us[((len as f64 * q) as usize).min(len - 1)] as f64 / 1000.0
        ),
    };
    println!(
        "{{\"mode\":\"raw_publishers\",\"publishers\":{},\"body_bytes\":{},\"seconds\":{seconds},\"offered_rate\":{},\"confirmed\":{confirmed},\"failed\":{},\"rate\":{:.0},\"latency_ms\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{}}},\"cpu_seconds\":{cpu}}}",
        args.publishers,
        body.len(),
        rate.map_or("null".to_owned(), |r| format!("{r:.0}")),
        failed.load(Ordering::Relaxed),
        confirmed as f64 / seconds,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
    );
    Ok(())
}

/// Empties the queues of a topology, so every round starts the broker from
/// the same state.
async fn purge(conn: &Connection, prefix: &str) -> Result<(), BoxError> {
    let t = Topology::new(prefix, true);
    let mut purged = 0;
    for q in [
        Some(t.callbacks),
        Some(t.dead_letters),
        Some(t.hints),
        t.finance,
        Some(t.shop),
    ]
    .into_iter()
    .flatten()
    {
        // A missing queue closes the channel it was asked on: one each.
        let ch = conn.create_channel().await?;
        if let Ok(n) = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
        {
            purged += n;
        }
        let _ = ch.close(200, "OK".into()).await;
    }
    println!("{{\"mode\":\"purge\",\"purged\":{purged}}}");
    Ok(())
}

async fn cleanup(conn: &Connection, prefix: &str, raw_queue: &str) {
    let t = Topology::new(prefix, true);
    for q in [
        Some(t.callbacks),
        Some(t.dead_letters),
        Some(t.hints),
        t.finance,
        Some(t.shop),
        Some(raw_queue.to_owned()),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for x in [t.events_exchange, t.dead_letter_exchange] {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args()?;
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    // A named raw queue is kept (emptied first) for the caller to delete
    // at its end: deleting a quorum queue mid-benchmark can crash RabbitMQ
    // 3.10's segment writer, which restarts every quorum queue (a stall of
    // hundreds of milliseconds in whatever is measured next).
    let keep_raw_queue = args.raw_queue.is_some();
    let raw_queue = args
        .raw_queue
        .clone()
        .unwrap_or_else(|| format!("{prefix}.raw"));
    let dir = tempfile::tempdir()?;
    let conn = Connection::connect(&args.url, ConnectionProperties::default()).await?;
    if let Some(target) = &args.purge_prefix {
        let result = purge(&conn, target).await;
        let _ = conn.close(200, "OK".into()).await;
        return result;
    }
    if let Some(target) = &args.delete_prefix {
        // Nothing named `.raw` under someone else's prefix: only the topology goes.
        cleanup(&conn, target, &format!("{target}.raw")).await;
        let _ = conn.close(200, "OK".into()).await;
        println!("{{\"mode\":\"delete\",\"prefix\":\"{target}\"}}");
        return Ok(());
    }
    let setup = conn.create_channel().await?;
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    setup
        .queue_declare(
            raw_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            quorum,
        )
        .await?;
    if let Some(seconds) = args.raw_seconds {
        if keep_raw_queue {
            setup
                .queue_purge(raw_queue.as_str().into(), QueuePurgeOptions::default())
                .await?;
        }
        let result = raw_publishers(&conn, &raw_queue, &args, seconds).await;
        if !keep_raw_queue {
            let _ = setup
                .queue_delete(raw_queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "OK".into()).await;
        return result;
    }
    let queue = Queue::start(QueueConfig {
        backend: BackendKind::RabbitMq,
        amqp_url: args.url.clone(),
        prefix: prefix.clone(),
        spool_path: Some(dir.path().join("spool.sqlite")),
        embedded_path: dir.path().join("queue.sqlite"),
        confirm_timeout: Duration::from_secs(30),
        ..QueueConfig::default()
    })
    .await?;

    let result = async {
        // Warm both paths up, then alternate so neither gets the quieter broker.
        let warm = (args.messages / 10).max(100);
        raw_run(&conn, &raw_queue, warm, args.concurrency).await?;
        queue_run(&queue, warm, args.concurrency, "warm").await?;
        let mut raw_best = Duration::MAX;
        let mut queue_best = Duration::MAX;
        for round in 0..2 {
            raw_best =
                raw_best.min(raw_run(&conn, &raw_queue, args.messages, args.concurrency).await?);
            queue_best = queue_best.min(
                queue_run(
                    &queue,
                    args.messages,
                    args.concurrency,
                    &format!("r{round}"),
                )
                .await?,
            );
        }
        Ok::<_, BoxError>((raw_best, queue_best))
    }
    .await;

    queue.shutdown(Duration::from_secs(5)).await;
    cleanup(&conn, &prefix, &raw_queue).await;
    let _ = conn.close(200, "OK".into()).await;
    let (raw_best, queue_best) = result?;
    let (raw_rate, queue_rate) = (
        rate(args.messages, raw_best),
        rate(args.messages, queue_best),
    );
    let spooled = queue.stats().published_spooled;
    println!(
        "{{\"messages\":{},\"concurrency\":{},\"queue_rate\":{:.0},\"raw_rate\":{:.0},\"ratio\":{:.3},\"spooled\":{}}}",
        args.messages,
        args.concurrency,
        queue_rate,
        raw_rate,
        queue_rate / raw_rate,
        spooled
    );
    Ok(())
}
