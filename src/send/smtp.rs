//! A small SMTP client for the fast path: plain TCP to a relay that offers no
//! STARTTLS and needs no login (a local Postfix, a relay on a private network).
//! In: a connected stream, an envelope and an encoded message. Out: the server's
//! reply, or an [`SmtpError`] that says whether to retry, whether the mailbox was
//! refused, and whether the connection is still usable.
//!
//! Where the server advertises PIPELINING (RFC 2920), MAIL, RCPT and DATA go in
//! one write and their replies are read together; the dot-stuffed body and the
//! final dot go in another. Otherwise it sends one command at a time. Anything
//! else (TLS, AUTH) goes through lettre's client instead.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One reply: its code and its text (lines joined by spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpError {
    /// The reply that refused, if the server gave one.
    pub reply: Option<Reply>,
    pub message: String,
    /// The connection cannot carry another message.
    pub broken: bool,
}

impl SmtpError {
    fn io(e: std::io::Error) -> SmtpError {
        SmtpError {
            reply: None,
            message: format!("connection: {e}"),
            broken: true,
        }
    }

    fn refused(reply: Reply, during: &str) -> SmtpError {
        SmtpError {
            message: format!("{during}: {reply}"),
            broken: reply.code == 421,
            reply: Some(reply),
        }
    }

    /// 5xx: the server will never take this message.
    pub fn is_permanent(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| r.code >= 500)
    }
}

pub struct Client {
    stream: BufReader<TcpStream>,
    pub pipelining: bool,
    pub starttls: bool,
    smtputf8: bool,
    timeout: Duration,
    line: String,
    out: Vec<u8>,
}

impl Client {
    /// Reads the greeting and says EHLO. `pipelining`: `None` pipelines where the
    /// server advertises PIPELINING; `Some` forces it on or off (`[smtp] pipelining`).
    pub async fn connect(
        tcp: TcpStream,
        hello: &str,
        timeout: Duration,
        pipelining: Option<bool>,
    ) -> Result<Client, SmtpError> {
        // Commands and the body each leave in one write already; with no delayed
        // ACK to wait for, no buffering stream is needed (and no extra copy).
        tcp.set_nodelay(true).map_err(SmtpError::io)?;
        let mut client = Client {
            stream: BufReader::new(tcp),
            pipelining: false,
            starttls: false,
            smtputf8: false,
            timeout,
            line: String::new(),
            out: Vec::with_capacity(64 * 1024),
        };
        let greeting = client.reply().await?;
        if greeting.code != 220 {
            return Err(SmtpError::refused(greeting, "greeting"));
        }
        client.write(format!("EHLO {hello}\r\n").as_bytes()).await?;
        let ehlo = client.reply().await?;
        if ehlo.code != 250 {
            return Err(SmtpError::refused(ehlo, "EHLO"));
        }
        let keywords: Vec<String> = ehlo
            .text
            .split('\n')
            .map(|l| {
                l.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase()
            })
            .collect();
        client.pipelining =
            pipelining.unwrap_or_else(|| keywords.iter().any(|k| k == "PIPELINING"));
        client.starttls = keywords.iter().any(|k| k == "STARTTLS");
        client.smtputf8 = keywords.iter().any(|k| k == "SMTPUTF8");
        Ok(client)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        let stream = self.stream.get_mut();
        tokio::time::timeout(self.timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| SmtpError::io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(SmtpError::io)
    }

    /// Reads one (possibly multi-line) reply; lines are joined by '\n'.
    async fn reply(&mut self) -> Result<Reply, SmtpError> {
        let mut text = String::new();
        loop {
            self.line.clear();
            let n = tokio::time::timeout(self.timeout, self.stream.read_line(&mut self.line))
                .await
                .map_err(|_| SmtpError::io(std::io::ErrorKind::TimedOut.into()))?
                .map_err(SmtpError::io)?;
            if n == 0 {
                return Err(SmtpError::io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let line = self.line.trim_end_matches(['\r', '\n']);
            let code: u16 =
                line.get(..3)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| SmtpError {
                        reply: None,
                        message: format!("not an SMTP reply: {line:?}"),
                        broken: true,
                    })?;
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, text });
            }
        }
    }

    /// Sends one message to one recipient; `stuffed`: the message is already
    /// as DATA carries it ([`dot_stuff`]ed, with its final "."). After a
    /// refused transaction the session is reset (RSET), so the connection
    /// carries the next message.
    pub async fn send(
        &mut self,
        from: &str,
        to: &str,
        message: &[u8],
        stuffed: bool,
    ) -> Result<Reply, SmtpError> {
        let utf8 = if self.smtputf8 && !(from.is_ascii() && to.is_ascii()) {
            " SMTPUTF8"
        } else {
            ""
        };
        let mail = format!("MAIL FROM:<{from}>{utf8}\r\n");
        let rcpt = format!("RCPT TO:<{to}>\r\n");
        let (mail_reply, rcpt_reply, data_reply) = if self.pipelining {
            self.write(format!("{mail}{rcpt}DATA\r\n").as_bytes())
                .await?;
            let m = self.reply().await?;
            // 421: the server is closing; the other replies will not come.
            if m.code == 421 {
                return Err(SmtpError::refused(m, "MAIL FROM"));
            }
            let r = self.reply().await?;
            if r.code == 421 {
                return Err(SmtpError::refused(r, "RCPT TO"));
            }
            let d = self.reply().await?;
            (m, Some(r), Some(d))
        } else {
            self.write(mail.as_bytes()).await?;
            let m = self.reply().await?;
            if m.code != 250 {
                (m, None, None)
            } else {
                self.write(rcpt.as_bytes()).await?;
                let r = self.reply().await?;
                if r.code != 250 && r.code != 251 {
                    (m, Some(r), None)
                } else {
                    self.write(b"DATA\r\n").await?;
                    let d = self.reply().await?;
                    (m, Some(r), Some(d))
                }
            }
        };
        let refusal = if mail_reply.code != 250 {
            Some(SmtpError::refused(mail_reply, "MAIL FROM"))
        } else {
            rcpt_reply
                .filter(|r| r.code != 250 && r.code != 251)
                .map(|r| SmtpError::refused(r, "RCPT TO"))
        };
        let data_ok = data_reply.as_ref().is_some_and(|d| d.code == 354);
        if let Some(mut e) = refusal {
            if data_ok {
                // Pipelined DATA was accepted although the transaction failed:
                // end it with an empty message, as RFC 2920 asks.
                self.write(b".\r\n").await?;
                let _ = self.reply().await?;
            }
            self.reset(&mut e).await;
            return Err(e);
        }
        let data_reply = data_reply.expect("read when MAIL and RCPT succeed");
        if !data_ok {
            let mut e = SmtpError::refused(data_reply, "DATA");
            self.reset(&mut e).await;
            return Err(e);
        }
        let written = if stuffed {
            self.write(message).await
        } else {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            dot_stuff(message, &mut out);
            let written = self.write(&out).await;
            self.out = out;
            written
        };
        written?;
        let done = self.reply().await?;
        if done.code != 250 {
            let mut e = SmtpError::refused(done, "end of DATA");
            self.reset(&mut e).await;
            return Err(e);
        }
        Ok(done)
    }

    async fn reset(&mut self, e: &mut SmtpError) {
        if e.broken {
            return;
        }
        let ok = match self.write(b"RSET\r\n").await {
            Ok(()) => self.reply().await.map(|r| r.code == 250).unwrap_or(false),
            Err(_) => false,
        };
        e.broken = !ok;
    }

    pub async fn quit(&mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }
}

/// The message as DATA carries it: lines starting with "." get another, line
/// ends are CRLF (the message already uses CRLF), then the final "\r\n.\r\n".
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + 64);
    append_stuffed(message, out);
    if !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// Appends `lines` (starting at the start of a line) to `out` with every
/// line that starts with "." given another.
pub fn append_stuffed(lines: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    if lines.first() == Some(&b'.') {
        out.push(b'.');
    }
    for nl in memchr::memchr_iter(b'\n', lines) {
        if lines.get(nl + 1) == Some(&b'.') {
            out.extend_from_slice(&lines[start..=nl]);
            out.push(b'.');
            start = nl + 1;
        }
    }
    out.extend_from_slice(&lines[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_the_message() {
        let mut out = Vec::new();
        dot_stuff(b".first\r\nmiddle\r\n.second\r\n..third", &mut out);
        assert_eq!(out, b"..first\r\nmiddle\r\n..second\r\n...third\r\n.\r\n");
        out.clear();
        dot_stuff(b"plain\r\n", &mut out);
        assert_eq!(out, b"plain\r\n.\r\n");
    }
}
