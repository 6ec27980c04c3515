//! A TCP forwarder a test can cut: the way to make RabbitMQ unreachable for
//! one test while the broker keeps serving every other test.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards every connection made to [`Proxy::addr`] to `upstream`.
///
/// [`Proxy::cut`] drops every open connection and turns new ones away
/// (accepts and closes them at once, as a host whose service is down does);
/// [`Proxy::heal`] lets them through again. Dropping the proxy stops it.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Cancelled to drop every connection made since the last cut.
    generation: Arc<Mutex<CancellationToken>>,
    connections: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on 127.0.0.1 at a free port and forwards to `upstream`
    /// (`host:port`).
    pub async fn start(upstream: impl Into<String>) -> io::Result<Proxy> {
        let upstream = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (o, g, c, s) = (
            open.clone(),
            generation.clone(),
            connections.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = s.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let cut = g.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let upstream = upstream.clone();
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pipe(client, server, cut).await;
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            open,
            generation,
            connections,
            stop,
        })
    }

    /// Where to connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut token = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
    }
}

async fn pipe(mut client: TcpStream, mut server: TcpStream, cut: CancellationToken) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        () = cut.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
    // Dropping both ends closes them: each side sees its connection die.
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_until_cut_and_again_after_heal() {
        let proxy = Proxy::start(echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        proxy.cut();
        // The open connection dies: the read sees EOF or a reset.
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest).await;
        assert!(read.is_err() || rest.is_empty());
        // New ones are accepted and closed at once.
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut one = [0u8; 1];
        assert!(matches!(refused.read(&mut one).await, Ok(0) | Err(_)));

        proxy.heal();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(proxy.connections(), 2);
    }
}
