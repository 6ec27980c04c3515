//! The test broker, and removing what a test declared on it.
//!
//! [`delete_topology`] speaks just enough AMQP 0-9-1 to delete queues and
//! exchanges: the handshake, `channel.open`, `queue.delete`,
//! `exchange.delete` and the closes. Only the queue crate may depend on
//! lapin (see `scripts/check-walls.sh`), and test cleanup is not worth
//! breaching that wall for; eight frame types are.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use paysettle_queue::Topology;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The broker tests use: `PAYSETTLE_TEST_AMQP_URL`, else the local default.
pub fn amqp_url() -> String {
    std::env::var("PAYSETTLE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The `host:port` of an AMQP URL.
pub fn broker_addr(url: &str) -> String {
    Parsed::from_url(url).address
}

/// `url` with its host and port replaced by `addr` (a [`crate::Proxy`]).
pub fn url_via(url: &str, addr: SocketAddr) -> String {
    url.replacen(&broker_addr(url), &addr.to_string(), 1)
}

/// Why cleanup failed.
#[derive(Debug)]
pub struct AmqpError(String);

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "amqp cleanup: {}", self.0)
    }
}

impl std::error::Error for AmqpError {}

impl From<std::io::Error> for AmqpError {
    fn from(e: std::io::Error) -> Self {
        AmqpError(e.to_string())
    }
}

/// Deletes every queue and exchange the queue crate declares under `prefix`
/// (deleting what does not exist is not an error).
pub async fn delete_topology(url: &str, prefix: &str) -> Result<(), AmqpError> {
    let topology = Topology::new(prefix, true);
    let queues: Vec<String> = [
        Some(topology.callbacks),
        Some(topology.dead_letters),
        Some(topology.hints),
        topology.finance,
        Some(topology.shop),
    ]
    .into_iter()
    .flatten()
    .collect();
    let exchanges = [topology.events_exchange, topology.dead_letter_exchange];
    let work = async {
        let mut conn = Connection::open(&Parsed::from_url(url)).await?;
        for queue in &queues {
            conn.delete(Kind::Queue, queue).await?;
        }
        for exchange in &exchanges {
            conn.delete(Kind::Exchange, exchange).await?;
        }
        conn.close().await
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| AmqpError("the broker did not answer within 10 s".to_owned()))?
}

/// Empties the queue `queue` (its messages gone, the queue kept): between a
/// benchmark's phases, so each starts from the same empty queue.
pub async fn purge_queue(url: &str, queue: &str) -> Result<(), AmqpError> {
    let work = async {
        let mut conn = Connection::open(&Parsed::from_url(url)).await?;
        conn.delete(Kind::Messages, queue).await?;
        conn.close().await
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .map_err(|_| AmqpError("the broker did not answer within 30 s".to_owned()))?
}

struct Parsed {
    address: String,
    user: String,
    password: String,
    vhost: String,
}

impl Parsed {
    fn from_url(url: &str) -> Parsed {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, address) = authority
            .rsplit_once('@')
            .unwrap_or(("guest:guest", authority));
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let vhost = match percent_decode(path) {
            v if v.is_empty() => "/".to_owned(),
            v => v,
        };
        let address = if address.contains(':') {
            address.to_owned()
        } else {
            format!("{address}:5672")
        };
        Parsed {
            address,
            user: percent_decode(user),
            password: percent_decode(password),
            vhost,
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Copy)]
enum Kind {
    Queue,
    Exchange,
    /// A queue's messages, the queue kept.
    Messages,
}

const FRAME_METHOD: u8 = 1;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;

struct Connection {
    stream: TcpStream,
    next_channel: u16,
}

/// The argument encoding AMQP uses, just the types these methods need.
#[derive(Default)]
struct Args(Vec<u8>);

impl Args {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn short(mut self, s: &str) -> Self {
        let len = u8::try_from(s.len()).unwrap_or(u8::MAX);
        self.0.push(len);
        self.0.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
        self
    }
    fn long(mut self, s: &[u8]) -> Self {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
}

impl Connection {
    async fn open(target: &Parsed) -> Result<Connection, AmqpError> {
        let stream = TcpStream::connect(&target.address).await?;
        let mut conn = Connection {
            stream,
            next_channel: 1,
        };
        conn.stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        conn.expect(0, (10, 10)).await?; // connection.start
        let response = format!("\0{}\0{}", target.user, target.password);
        let start_ok = Args::default()
            .u32(0) // empty client-properties table
            .short("PLAIN")
            .long(response.as_bytes())
            .short("en_US");
        conn.send(0, (10, 11), start_ok).await?;
        let tune = conn.expect(0, (10, 30)).await?;
        let channel_max = tune
            .get(0..2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let frame_max = tune
            .get(2..6)
            .map_or(131_072, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        // Heartbeats off: this connection lives for a few round trips.
        let tune_ok = Args::default().u16(channel_max).u32(frame_max).u16(0);
        conn.send(0, (10, 31), tune_ok).await?;
        let open = Args::default().short(&target.vhost).short("").u8(0);
        conn.send(0, (10, 40), open).await?;
        conn.expect(0, (10, 41)).await?;
        Ok(conn)
    }

    /// Deletes one queue or exchange on a fresh channel, closing it after:
    /// a refused delete closes its channel, and the next one must not care.
    async fn delete(&mut self, kind: Kind, name: &str) -> Result<(), AmqpError> {
        let channel = self.next_channel;
        self.next_channel += 1;
        self.send(channel, (20, 10), Args::default().short(""))
            .await?;
        self.expect(channel, (20, 11)).await?;
        let (method, ok) = match kind {
            Kind::Queue => ((50, 40), (50, 41)),
            Kind::Exchange => ((40, 20), (40, 21)),
            // queue.purge: the same arguments as queue.delete's.
            Kind::Messages => ((50, 30), (50, 31)),
        };
        let args = Args::default().u16(0).short(name).u8(0);
        self.send(channel, method, args).await?;
        let (_, id, _) = self.read_method().await?;
        if id == (20, 40) {
            // The broker closed the channel instead: acknowledge and move on.
            self.send(channel, (20, 41), Args::default()).await?;
            return Err(AmqpError(format!("the broker refused to delete {name}")));
        }
        if id != ok {
            return Err(AmqpError(format!(
                "unexpected method {id:?} deleting {name}"
            )));
        }
        let close = Args::default().u16(200).short("").u16(0).u16(0);
        self.send(channel, (20, 40), close).await?;
        self.expect(channel, (20, 41)).await?;
        Ok(())
    }

    async fn close(mut self) -> Result<(), AmqpError> {
        let close = Args::default().u16(200).short("").u16(0).u16(0);
        self.send(0, (10, 50), close).await?;
        self.expect(0, (10, 51)).await?;
        Ok(())
    }

    async fn send(
        &mut self,
        channel: u16,
        (class, method): (u16, u16),
        args: Args,
    ) -> Result<(), AmqpError> {
        let mut payload = Vec::with_capacity(4 + args.0.len());
        payload.extend_from_slice(&class.to_be_bytes());
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(&args.0);
        let size = u32::try_from(payload.len()).map_err(|_| AmqpError("frame too large".into()))?;
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.push(FRAME_METHOD);
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(FRAME_END);
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// The next method frame: its channel, (class, method) and arguments.
    async fn read_method(&mut self) -> Result<(u16, (u16, u16), Vec<u8>), AmqpError> {
        loop {
            let mut header = [0u8; 7];
            self.stream.read_exact(&mut header).await?;
            let kind = header[0];
            let channel = u16::from_be_bytes([header[1], header[2]]);
            let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
            let mut payload = vec![0u8; usize::try_from(size).unwrap_or(0) + 1];
            self.stream.read_exact(&mut payload).await?;
            if payload.pop() != Some(FRAME_END) {
                return Err(AmqpError("a frame without its end marker".to_owned()));
            }
            match kind {
                FRAME_HEARTBEAT => continue,
                FRAME_METHOD if payload.len() >= 4 => {
                    let class = u16::from_be_bytes([payload[0], payload[1]]);
                    let method = u16::from_be_bytes([payload[2], payload[3]]);
                    if (class, method) == (10, 50) {
                        return Err(AmqpError(format!(
                            "the broker closed the connection: {}",
                            String::from_utf8_lossy(payload.get(6..).unwrap_or_default())
                        )));
                    }
                    return Ok((channel, (class, method), payload[4..].to_vec()));
                }
                other => return Err(AmqpError(format!("unexpected frame type {other}"))),
            }
        }
    }

    async fn expect(&mut self, channel: u16, id: (u16, u16)) -> Result<Vec<u8>, AmqpError> {
        let (got_channel, got, args) = self.read_method().await?;
        if (got_channel, got) != (channel, id) {
            return Err(AmqpError(format!(
                "expected method {id:?} on channel {channel}, got {got:?} on {got_channel}"
            )));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_like_the_queue_crate_reads_them() {
        let p = Parsed::from_url("amqp://us%40er:p%3Ass@broker:5673/%2f");
        assert_eq!(p.address, "broker:5673");
        assert_eq!(p.user, "us@er");
        assert_eq!(p.password, "p:ss");
        assert_eq!(p.vhost, "/");
        let p = Parsed::from_url("amqp://guest:guest@127.0.0.1/tests");
        assert_eq!(p.address, "127.0.0.1:5672");
        assert_eq!(p.vhost, "tests");
        assert_eq!(
            url_via(
                "amqp://g:g@127.0.0.1:5672/%2f",
                "127.0.0.1:9".parse().unwrap()
            ),
            "amqp://g:g@127.0.0.1:9/%2f"
        );
    }
}

#[cfg(test)]
mod broker_tests {
    use paysettle_queue::{BackendKind, Message, Queue, QueueError};

    use super::*;
    use crate::TestQueue;

    /// Needs the test broker. Proves the deletion really happened: a publish
    /// to the deleted callbacks queue comes back unroutable.
    #[tokio::test]
    async fn a_tests_topology_is_deleted() {
        let env = TestQueue::new(BackendKind::RabbitMq).unwrap();
        let mut config = env.config();
        config.spool_path = None;
        let queue = Queue::start(config).await.unwrap();
        queue.publish(&Message::json("before", "{}")).await.unwrap();
        delete_topology(&env.amqp_url, &env.prefix).await.unwrap();
        let after = queue.publish(&Message::json("after", "{}")).await;
        assert!(
            matches!(after, Err(QueueError::Unroutable { .. })),
            "{after:?}"
        );
        // Deleting again is not an error: cleanup runs after tests that
        // may never have declared anything.
        delete_topology(&env.amqp_url, &env.prefix).await.unwrap();
        queue.shutdown(Duration::from_secs(2)).await;
    }
}
