//! A small SMTP client for the fast path: plain TCP to a relay that offers no
//! STARTTLS and needs no login (a local Postfix, a relay on a private network).
//! In: a connected stream, an envelope and an encoded message. Out: the server's
//! reply, or an [`SmtpError`] that says whether to retry, whether the mailbox was
//! refused, and whether the connection is still usable.
//!
//! Where the server advertises PIPELINING (RFC 2920), MAIL, RCPT and DATA go in
//! one write and their replies are read together, and the dot-stuffed body and
//! final dot of one message go in the same write as the next message's
//! commands ([`Client::exchange`]): one round trip a message. Otherwise it
//! sends one command at a time. Anything else (TLS, AUTH) goes through
//! lettre's client instead.

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
        let mut commands = Vec::with_capacity(128);
        self.commands(from, to, &mut commands);
        if self.pipelining {
            self.write(&commands).await?;
            let (m, r, d) = self.three_replies().await?;
            self.accepted(m, Some(r), Some(d)).await?;
        } else {
            // One command at a time: MAIL, RCPT, DATA are the three lines.
            let mut lines = commands.split_inclusive(|b| *b == b'\n');
            let mut next = || lines.next().expect("three commands").to_vec();
            let (mail, rcpt, data) = (next(), next(), next());
            self.write(&mail).await?;
            let m = self.reply().await?;
            if m.code != 250 {
                return Err(self.accepted(m, None, None).await.expect_err("refused"));
            }
            self.write(&rcpt).await?;
            let r = self.reply().await?;
            if r.code != 250 && r.code != 251 {
                return Err(self.accepted(m, Some(r), None).await.expect_err("refused"));
            }
            self.write(&data).await?;
            let d = self.reply().await?;
            self.accepted(m, Some(r), Some(d)).await?;
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

    /// One round trip of a pipelined session (RFC 2920): the end of the
    /// message whose DATA was accepted (`body`, in DATA's form, final dot
    /// included) and the next message's MAIL, RCPT and DATA leave in one write;
    /// then the first's final reply and the next's three replies are read.
    /// Returns what became of each: the first's reply, and whether the next
    /// may send its body now (its DATA was answered 354). A refused next is
    /// ended and the session reset, as [`Client::send`] does.
    pub async fn exchange(
        &mut self,
        body: Option<&[u8]>,
        next: Option<(&str, &str)>,
    ) -> (
        Option<Result<Reply, SmtpError>>,
        Option<Result<(), SmtpError>>,
    ) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if let Some(body) = body {
            out.extend_from_slice(body);
        }
        if let Some((from, to)) = next {
            self.commands(from, to, &mut out);
        }
        let written = self.write(&out).await;
        self.out = out;
        if let Err(e) = written {
            return (body.map(|_| Err(e.clone())), next.map(|_| Err(e)));
        }
        let first = match body {
            None => None,
            Some(_) => Some(match self.reply().await {
                Ok(done) if done.code == 250 => Ok(done),
                Ok(done) => Err(SmtpError::refused(done, "end of DATA")),
                Err(e) => Err(e),
            }),
        };
        let Some(_) = next else {
            return (first, None);
        };
        // The server is closing, or the connection broke: no replies follow.
        if let Some(Err(e)) = first
            .as_ref()
            .filter(|f| f.as_ref().is_err_and(|e| e.broken))
        {
            let e = e.clone();
            return (first, Some(Err(e)));
        }
        let (mail, rcpt, data) = match self.three_replies().await {
            Ok(replies) => replies,
            Err(e) => return (first, Some(Err(e))),
        };
        (
            first,
            Some(self.accepted(mail, Some(rcpt), Some(data)).await),
        )
    }

    /// MAIL, RCPT and DATA for one message, appended to `out`.
    fn commands(&self, from: &str, to: &str, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let utf8 = if self.smtputf8 && !(from.is_ascii() && to.is_ascii()) {
            " SMTPUTF8"
        } else {
            ""
        };
        write!(
            out,
            "MAIL FROM:<{from}>{utf8}\r\nRCPT TO:<{to}>\r\nDATA\r\n"
        )
        .expect("writing to a Vec");
    }

    /// The replies to pipelined MAIL, RCPT and DATA (a 421 ends the reading:
    /// the server is closing, the other replies will not come).
    async fn three_replies(&mut self) -> Result<(Reply, Reply, Reply), SmtpError> {
        let m = self.reply().await?;
        if m.code == 421 {
            return Err(SmtpError::refused(m, "MAIL FROM"));
        }
        let r = self.reply().await?;
        if r.code == 421 {
            return Err(SmtpError::refused(r, "RCPT TO"));
        }
        let d = self.reply().await?;
        Ok((m, r, d))
    }

    /// Whether a transaction may send its body: `Ok` when DATA was answered
    /// 354; else the refusal, after ending a DATA the server accepted anyway
    /// and resetting the session.
    async fn accepted(
        &mut self,
        mail_reply: Reply,
        rcpt_reply: Option<Reply>,
        data_reply: Option<Reply>,
    ) -> Result<(), SmtpError> {
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
        Ok(())
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
