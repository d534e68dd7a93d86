//! How one worker hands messages over: into the file outbox, or over one SMTP
//! connection to one relay (gazette's pipelining client on plain connections
//! that need neither TLS nor a login, lettre's otherwise). In: an envelope and
//! the message's bytes. Out: the server's reply, or a [`Failure`] classified for
//! the retry policy (transient? the mailbox refused? the connection broken? the
//! server asking us to slow down?).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::smtp;
use crate::config::{Config, Pipelining, SmtpServer, Transport};

/// What a failed delivery means for the retry policy.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) reply: Option<String>,
    /// Worth trying again later (4xx, network, timeout).
    pub(crate) transient: bool,
    /// The server refused the mailbox itself: the subscriber bounced.
    pub(crate) bounce: bool,
    /// The connection is unusable; reconnect before the next message.
    pub(crate) broken: bool,
    /// 421, or an enhanced code 4.7.x: the server wants fewer messages.
    pub(crate) slow_down: bool,
}

impl Failure {
    /// A server's refusal (or a failure reading its reply), classified.
    fn from_reply(code: Option<u16>, text: String, permanent: bool, broken: bool) -> Failure {
        Failure {
            slow_down: code == Some(421) || text.contains(" 4.7.") || text.starts_with("4.7."),
            reply: code.map(|c| format!("{c} {text}")),
            bounce: permanent && code.is_some_and(|c| is_mailbox_refusal(c, &text)),
            transient: !permanent,
            broken,
            message: text,
        }
    }

    /// What gazette's own client's error means for the retry policy.
    pub(crate) fn from_smtp(e: smtp::SmtpError) -> Failure {
        Failure::from_reply(
            e.reply.as_ref().map(|r| r.code),
            e.message.replace('\n', " "),
            e.is_permanent(),
            e.broken,
        )
    }

    /// A transient failure on our side of the wire (no server reply).
    pub(crate) fn local(message: String, broken: bool) -> Failure {
        Failure {
            message,
            reply: None,
            transient: true,
            bounce: false,
            broken,
            slow_down: false,
        }
    }
}

/// A server's reply as the ledger records it: one line.
pub(crate) fn reply_text(reply: &smtp::Reply) -> String {
    reply.to_string().replace('\n', " ")
}

/// Codes that say the mailbox is bad (not that we are, or the message is).
fn is_mailbox_refusal(code: u16, text: &str) -> bool {
    // The enhanced code (RFC 3463) wherever the reply's text holds it: "5.1.1"
    // is a bad mailbox, whatever the basic code.
    let enhanced_5_1 = text.split_whitespace().any(|word| {
        word.strip_prefix("5.1.")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    matches!(code, 550 | 551 | 553) || enhanced_5_1
}

/// An open SMTP connection.
pub(crate) enum Conn {
    Lettre(Box<AsyncSmtpConnection>),
    Fast(Box<smtp::Client>),
}

impl Conn {
    fn has_broken(&self) -> bool {
        match self {
            Conn::Lettre(c) => c.has_broken(),
            Conn::Fast(_) => false,
        }
    }
}

/// How the connection to a server is made.
#[derive(Clone)]
pub(crate) struct Dial {
    server: SmtpServer,
    require_tls: bool,
    allow_plaintext_auth: bool,
    /// A certificate authority trusted besides the web roots (`[smtp] ca_file`).
    ca_file: Option<crate::config::CaFile>,
    timeout: Duration,
    pipelining: Pipelining,
}

pub(crate) enum Channel {
    Outbox(PathBuf),
    Smtp { dial: Dial, conn: Option<Conn> },
}

impl Channel {
    /// The configured transport: the outbox (files into `outbox`) or `[smtp] url`.
    pub(crate) fn new(config: &Config, outbox: &Path) -> Channel {
        match &config.smtp.transport {
            Transport::Outbox(_) => Channel::Outbox(outbox.to_path_buf()),
            Transport::Smtp(server) => Channel::to_server(config, server),
        }
    }

    /// One relay of several.
    pub(crate) fn to_server(config: &Config, server: &SmtpServer) -> Channel {
        Channel::Smtp {
            dial: Dial {
                server: server.clone(),
                require_tls: config.smtp.require_tls,
                allow_plaintext_auth: config.smtp.allow_plaintext_auth,
                ca_file: config.smtp.ca_file.clone(),
                timeout: Duration::from_secs(config.smtp.timeout_secs),
                pipelining: config.smtp.pipelining,
            },
            conn: None,
        }
    }

    /// Makes sure a connection is open; the error says why not.
    pub(crate) async fn ready(&mut self) -> Result<(), DialError> {
        let Channel::Smtp { dial, conn } = self else {
            return Ok(());
        };
        if conn.as_ref().is_some_and(|c| !c.has_broken()) {
            return Ok(());
        }
        *conn = None;
        let c = tokio::time::timeout(dial.timeout, connect(dial))
            .await
            .map_err(|_| {
                DialError::Unreachable(format!("no answer within {} s", dial.timeout.as_secs()))
            })??;
        *conn = Some(c);
        Ok(())
    }

    /// Gazette's own client, when it is open and pipelines: messages can then
    /// follow one another with one round trip each ([`smtp::Client::exchange`]).
    pub(crate) fn pipelining_client(&mut self) -> Option<&mut smtp::Client> {
        match self {
            Channel::Smtp {
                conn: Some(Conn::Fast(c)),
                ..
            } if c.pipelining => Some(c),
            _ => None,
        }
    }

    /// Drops the connection (it broke); the next [`Channel::ready`] opens another.
    pub(crate) fn disconnect(&mut self) {
        if let Channel::Smtp { conn, .. } = self {
            *conn = None;
        }
    }

    /// Whether the open connection takes a message as DATA carries it
    /// (gazette's own client), so it can be written in that form at once.
    pub(crate) fn takes_data(&self) -> bool {
        matches!(
            self,
            Channel::Smtp {
                conn: Some(Conn::Fast(_)),
                ..
            }
        )
    }

    /// Hands one message over; `name` is its file name in the outbox;
    /// `stuffed`: `bytes` are in DATA's form (only when [`Channel::takes_data`]).
    pub(crate) async fn deliver(
        &mut self,
        envelope: &Envelope,
        bytes: &[u8],
        name: &str,
        stuffed: bool,
    ) -> Result<String, Failure> {
        let (dial, conn) = match self {
            Channel::Outbox(dir) => {
                let path = dir.join(name);
                crate::files::write_atomic(&path, bytes)
                    .map_err(|e| Failure::local(format!("{:#}", anyhow::Error::new(e)), false))?;
                return Ok(format!("written to {}", path.display()));
            }
            Channel::Smtp { dial, conn } => (dial, conn),
        };
        let outcome = match conn.as_mut() {
            None => return Err(Failure::local("not connected".into(), true)),
            Some(Conn::Fast(client)) => {
                let from = envelope.from().map(|a| a.to_string()).unwrap_or_default();
                let to = envelope
                    .to()
                    .first()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                client
                    .send(&from, &to, bytes, stuffed)
                    .await
                    .map(|reply| reply_text(&reply))
                    .map_err(Failure::from_smtp)
            }
            Some(Conn::Lettre(c)) => {
                match tokio::time::timeout(dial.timeout, c.send(envelope, bytes)).await {
                    Err(_) => Err(Failure::local(
                        format!("no reply within {} s", dial.timeout.as_secs()),
                        true,
                    )),
                    Ok(Ok(response)) => Ok(format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    )),
                    Ok(Err(e)) => {
                        let code: Option<u16> =
                            e.status().map(|s| s.to_string().parse().unwrap_or(0));
                        Err(Failure::from_reply(
                            code,
                            e.to_string(),
                            e.is_permanent(),
                            c.has_broken(),
                        ))
                    }
                }
            }
        };
        if outcome.as_ref().is_err_and(|f| f.broken) {
            *conn = None;
        }
        outcome
    }

    pub(crate) async fn close(&mut self) {
        let two_seconds = Duration::from_secs(2);
        match self {
            Channel::Smtp {
                conn: Some(Conn::Lettre(c)),
                ..
            } => {
                let _ = tokio::time::timeout(two_seconds, c.quit()).await;
            }
            Channel::Smtp {
                conn: Some(Conn::Fast(c)),
                ..
            } => {
                let _ = tokio::time::timeout(two_seconds, c.quit()).await;
            }
            _ => {}
        }
    }
}

/// Why no connection is open: the server could not be reached (worth trying
/// again), or it answered and refused what gazette needs (TLS, the login): a
/// setting to fix, not a network to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialError {
    Unreachable(String),
    Refused(String),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Unreachable(why) | DialError::Refused(why) => f.write_str(why),
        }
    }
}

/// A failed STARTTLS or login, classified: a certificate refused or a permanent
/// (5xx) answer is a refusal to fix; a 4xx answer ("454 try again later") or a
/// broken connection may pass.
fn lettre_dial_error(step: &str, e: lettre::transport::smtp::Error) -> DialError {
    let why = format!("{step}: {e}");
    // A certificate refused arrives as a connection error wrapping rustls's.
    let mut certificate = false;
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = source {
        certificate |= err.to_string().to_ascii_lowercase().contains("certificate");
        source = err.source();
    }
    if e.is_permanent() || e.is_tls() || certificate {
        DialError::Refused(why)
    } else {
        DialError::Unreachable(why)
    }
}

async fn connect(dial: &Dial) -> Result<Conn, DialError> {
    use DialError::{Refused, Unreachable};
    let Dial {
        server,
        require_tls,
        allow_plaintext_auth,
        ca_file,
        timeout,
        pipelining,
    } = dial;
    let no_starttls =
        || Refused("the server does not offer STARTTLS and [smtp] require_tls is set".into());
    // Plain, no login: gazette's own client, unless the server offers STARTTLS.
    if !server.implicit_tls && server.user.is_none() {
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| Unreachable(e.to_string()))?;
        let forced = match pipelining {
            Pipelining::Auto => None,
            Pipelining::Always => Some(true),
            Pipelining::Never => Some(false),
        };
        let client = smtp::Client::connect(tcp, &super::hostname(), *timeout, forced)
            .await
            .map_err(|e| {
                // A permanent (5xx) answer is a refusal; a 421 "too busy" or a
                // dropped connection is worth trying again.
                if e.is_permanent() {
                    Refused(e.message)
                } else {
                    Unreachable(e.message)
                }
            })?;
        if !client.starttls {
            if *require_tls {
                return Err(no_starttls());
            }
            return Ok(Conn::Fast(Box::new(client)));
        }
    }
    let hello = ClientId::default();
    let tls = || {
        let mut builder = TlsParameters::builder(server.host.clone());
        if let Some(ca) = ca_file {
            // Read and checked when the config was loaded.
            let cert = lettre::transport::smtp::client::Certificate::from_pem(&ca.pem)
                .map_err(|e| Refused(format!("[smtp] ca_file {}: {e}", ca.path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| Refused(format!("TLS: {e}")))
    };
    let mut conn = if server.implicit_tls {
        AsyncSmtpConnection::connect_tokio1(
            (server.host.as_str(), server.port),
            Some(*timeout),
            &hello,
            Some(tls()?),
            None,
        )
        .await
        // A certificate refused is a setting; a server not there, the network.
        .map_err(|e| lettre_dial_error("TLS connection", e))?
    } else {
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| Unreachable(e.to_string()))?;
        // TCP_NODELAY, and a body leaves with its final dot: see `wire`.
        let stream = super::wire::JoinedStream::new(tcp).map_err(|e| Unreachable(e.to_string()))?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
            .await
            .map_err(|e| Unreachable(e.to_string()))?;
        if conn.can_starttls() {
            // A certificate or handshake refused is a setting, not the network.
            conn.starttls(tls()?, &hello)
                .await
                .map_err(|e| lettre_dial_error("STARTTLS", e))?;
        } else if *require_tls {
            return Err(no_starttls());
        } else if let (Some(user), false) = (&server.user, allow_plaintext_auth) {
            return Err(Refused(format!(
                "the server does not offer STARTTLS, so logging in as {user} would send the password in clear text; use a relay with TLS, or set [smtp] allow_plaintext_auth = true for one on a network you trust"
            )));
        }
        conn
    };
    if let Some(user) = &server.user {
        let password = server
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        conn.auth(
            &[Mechanism::Plain, Mechanism::Login],
            &Credentials::new(user.clone(), password),
        )
        .await
        .map_err(|e| lettre_dial_error(&format!("login as {user}"), e))?;
    }
    Ok(Conn::Lettre(Box::new(conn)))
}

/// How a server is named in messages: `host:port`, or "the outbox".
pub(crate) fn server_label(server: Option<&SmtpServer>) -> String {
    match server {
        Some(s) => format!("{}:{}", s.host, s.port),
        None => "the outbox".into(),
    }
}
