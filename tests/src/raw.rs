//! WebSockets spoken by hand over TCP, for tests that play an attacker: frames sent in part, from
//! a chosen loopback address, and the server's close frame read back whatever came before it.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to `addr` from the local address `from`.
pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// Sends the upgrade request for `path` and reads the answer's head; `Ok` with the stream once
/// the server switched protocols.
pub async fn upgrade(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<TcpStream> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    if head.starts_with(b"HTTP/1.1 101") {
        Ok(stream)
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&head).into_owned(),
        ))
    }
}

/// Connects from `from` and upgrades to `path`.
pub async fn websocket(addr: SocketAddr, from: IpAddr, path: &str) -> std::io::Result<TcpStream> {
    upgrade(connect_from(addr, from).await?, addr, path).await
}

/// The head of a client frame (masked, with a zero key, so the payload goes as it is) of
/// `opcode` with `len` payload bytes; `fin` false starts a fragmented message.
pub fn frame_head(opcode: u8, fin: bool, len: usize) -> Vec<u8> {
    let mut head = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        head.push(0x80 | len as u8);
    } else if len <= 0xffff {
        head.push(0x80 | 126);
        head.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        head.push(0x80 | 127);
        head.extend_from_slice(&(len as u64).to_be_bytes());
    }
    head.extend_from_slice(&[0, 0, 0, 0]);
    head
}

/// A whole binary client frame.
pub fn binary_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = frame_head(2, true, payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// Reads server frames until the close frame, answering its code and reason; `None` when the
/// stream ends (or fails) without one.
pub async fn read_close(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse whole frames at the start of `buf`.
        while buf.len() >= 2 {
            let opcode = buf[0] & 0x0f;
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(n) as usize, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < at + len {
                break;
            }
            if opcode == 8 {
                let payload = &buf[at..at + len];
                let code = payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                return Some((code, reason.into_owned()));
            }
            buf.drain(..at + len);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
