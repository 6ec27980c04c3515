//! Confirmed publishes per second through `paysettle-queue`, beside raw lapin
//! pipelined publishes with confirms to a queue of the same type (quorum), in
//! the same run and with the same number of publishes in flight.
//!
//! `cargo run --release -p paysettle-queue --example bench_publish -- --messages 20000`
//! (`--concurrency N` publishes in flight, default 256; `--url` or
//! `PAYSETTLE_BENCH_AMQP_URL` for the broker). Prints one JSON object.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
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
}

fn args() -> Result<Args, BoxError> {
    let mut parsed = Args {
        messages: 20_000,
        concurrency: 256,
        url: std::env::var("PAYSETTLE_BENCH_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--messages" => parsed.messages = value.parse()?,
            "--concurrency" => parsed.concurrency = value.parse()?,
            "--url" => parsed.url = value,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if parsed.messages == 0 || parsed.concurrency == 0 {
        return Err("--messages and --concurrency must be positive".into());
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

async fn cleanup(conn: &Connection, prefix: &str, raw_queue: &str) {
    let t = Topology::new(prefix, true);
    for q in [
        Some(t.callbacks),
        Some(t.dead_letters),
        t.finance,
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
    let raw_queue = format!("{prefix}.raw");
    let dir = tempfile::tempdir()?;
    let conn = Connection::connect(&args.url, ConnectionProperties::default()).await?;
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
