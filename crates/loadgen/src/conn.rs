//! One keep-alive HTTP/1.1 client connection, as cheap as a client can be:
//! it writes a request built beforehand and reads exactly one response (the
//! head, then `Content-Length` bytes). The generator's own CPU competes with
//! the server's on the same machine, so it does nothing else.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The parts of a response head the generator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes up to and including the blank line.
    pub head_len: usize,
    pub body_len: usize,
    /// The server said `Connection: close`.
    pub close: bool,
}

/// A response head, `Ok(None)` while incomplete, or why it cannot be read
/// (chunked bodies are not supported: the servers measured here send a
/// `Content-Length`).
pub fn parse_head(buffer: &[u8]) -> Result<Option<Head>, &'static str> {
    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buffer[..end]).map_err(|_| "a head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or("a status line that is not HTTP/1.x")?;
    let (mut body_len, mut close) = (0, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value
                .parse()
                .map_err(|_| "a Content-Length that is not a number")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("a chunked body");
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Some(Head {
        status,
        head_len: end + 4,
        body_len,
        close,
    }))
}

/// A connection that reconnects when the server closes it.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> io::Result<Conn> {
        Ok(Conn {
            addr,
            stream: Some(connect(addr).await?),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and returns the answer's status. An error means the
    /// connection broke (it is reopened on the next call).
    pub async fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        let result = self.try_exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn try_exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            empty => empty.insert(connect(self.addr).await?),
        };
        stream.write_all(request).await?;
        self.buffer.clear();
        loop {
            match parse_head(&self.buffer) {
                Err(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
                Ok(Some(head)) => {
                    let total = head.head_len + head.body_len;
                    while self.buffer.len() < total {
                        if stream.read_buf(&mut self.buffer).await? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    if self.buffer.len() > total {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "more than one answer to one request",
                        ));
                    }
                    if head.close {
                        self.stream = None;
                    }
                    return Ok(head.status);
                }
                Ok(None) => {
                    if stream.read_buf(&mut self.buffer).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_read_once_complete() {
        let answer =
            b"HTTP/1.1 303 See Other\r\nlocation: /x\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200";
        assert_eq!(
            parse_head(answer).unwrap(),
            Some(Head {
                status: 303,
                head_len: 59,
                body_len: 0,
                close: false
            })
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        let closing = b"HTTP/1.1 503 x\r\nConnection: close\r\nContent-Length: 15\r\n\r\n";
        let head = parse_head(closing).unwrap().unwrap();
        assert_eq!((head.status, head.body_len, head.close), (503, 15, true));
    }

    #[test]
    fn what_cannot_be_read_is_an_error() {
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }
}
