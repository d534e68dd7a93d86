//! The TCP stream under lettre's SMTP connections (TLS or login). In: a connected
//! `tokio::net::TcpStream`. Out: a stream for lettre's `AsyncSmtpConnection` that
//! has TCP_NODELAY set and sends a message body and its closing `.` in one write.
//!
//! Why: lettre writes the body, flushes, then writes `\r\n.\r\n` and flushes again.
//! With Nagle's algorithm on, the second write waits for the server's delayed ACK
//! (~40 ms a message); with it off, it still costs a second segment and wake-up.
//! This stream holds back the flush that follows the body (recognised as the first
//! write after a `DATA` command) until the final dot arrives. Everything else is
//! flushed as lettre asks. Under TLS (after STARTTLS) the bytes are TLS records,
//! never match, and pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct JoinedStream {
    inner: TcpStream,
    pending: Vec<u8>,
    written: usize,
    /// The last flushed chunk was a `DATA` command: the next chunk is a body.
    after_data: bool,
}

impl JoinedStream {
    pub fn new(inner: TcpStream) -> io::Result<JoinedStream> {
        inner.set_nodelay(true)?;
        Ok(JoinedStream {
            inner,
            pending: Vec::with_capacity(64 * 1024),
            written: 0,
            after_data: false,
        })
    }

    /// Whether a flush now would split a body from its final dot.
    fn holding_body(&self) -> bool {
        self.after_data && !self.pending.ends_with(b"\r\n.\r\n")
    }
}

impl AsyncRead for JoinedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JoinedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.written == 0 && self.holding_body() {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        while this.written < this.pending.len() {
            let n =
                ready!(Pin::new(&mut this.inner).poll_write(cx, &this.pending[this.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.written += n;
        }
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.after_data = this.pending.eq_ignore_ascii_case(b"DATA\r\n");
        this.pending.clear();
        this.written = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.after_data = false;
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for JoinedStream {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_body_and_its_dot_leave_together_and_commands_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = JoinedStream::new(TcpStream::connect(addr).await.unwrap()).unwrap();
            s.write_all(b"DATA\r\n").await.unwrap();
            s.flush().await.unwrap();
            s.write_all(b"body line\r\n").await.unwrap();
            s.flush().await.unwrap();
            // The body is held: nothing more reaches the server until the dot.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            s.write_all(b"\r\n.\r\n").await.unwrap();
            s.flush().await.unwrap();
            s
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 6];
        server.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"DATA\r\n");
        let mut rest = Vec::new();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.unwrap();
        rest.extend_from_slice(&buf[..n]);
        assert_eq!(
            rest, b"body line\r\n\r\n.\r\n",
            "one read holds body and dot"
        );
        drop(client.await.unwrap());
    }
}
