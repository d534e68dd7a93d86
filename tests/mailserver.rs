//! A real SMTP server on loopback for the sending tests: mailin-embedded, in this
//! process, recording every message it accepts, with scripted faults (421 on
//! connect-time commands, 451 after DATA, 550 for chosen mailboxes, a slow
//! server) and a TCP proxy that cuts connections in the middle of DATA.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::response::{
    AUTH_OK, INTERNAL_ERROR, INVALID_CREDENTIALS, NO_MAILBOX, NO_SERVICE, OK,
};
use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig};

#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (MAIL FROM).
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

/// What the server does wrong, and how often.
#[derive(Default)]
pub struct Faults {
    /// Answer the next N MAIL commands with 421 and close the connection.
    pub mail_421: usize,
    /// Answer the next N ends of DATA with 451.
    pub data_451: usize,
    /// Refuse these mailboxes with 550, always.
    pub refuse: Vec<String>,
    /// Answer RCPT for these mailboxes with this code and text, always.
    pub replies: Vec<(String, u16, String)>,
    /// Answer every RCPT with this code and text (a server that refuses us).
    pub refuse_all: Option<(u16, String)>,
    /// Answer every end of DATA with this code and text (a content filter).
    pub refuse_data: Option<(u16, String)>,
    /// Wait this long before accepting each message.
    pub delay: Duration,
}

#[derive(Default)]
pub struct State {
    /// The user and password AUTH accepts (a TLS server only).
    pub credentials: Mutex<Option<(String, String)>>,
    /// Users who logged in, by mechanism.
    pub logins: Mutex<Vec<(String, String)>>,
    pub received: Mutex<Vec<Received>>,
    pub faults: Mutex<Faults>,
    pub rcpt_attempts: Mutex<HashMap<String, usize>>,
}

#[derive(Clone)]
struct Recorder {
    state: Arc<State>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Recorder {
    fn login(&self, mechanism: &str, user: &str, password: &str) -> Response {
        let ok = self
            .state
            .credentials
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|(u, p)| u == user && p == password);
        if !ok {
            return INVALID_CREDENTIALS;
        }
        self.state
            .logins
            .lock()
            .unwrap()
            .push((mechanism.to_string(), user.to_string()));
        AUTH_OK
    }
}

impl Handler for Recorder {
    fn auth_plain(&mut self, _authorization: &str, user: &str, password: &str) -> Response {
        self.login("PLAIN", user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.login("LOGIN", user, password)
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        let mut faults = self.state.faults.lock().unwrap();
        if faults.mail_421 > 0 {
            faults.mail_421 -= 1;
            return NO_SERVICE;
        }
        OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let to = to.trim_matches(|c| c == '<' || c == '>').to_lowercase();
        *self
            .state
            .rcpt_attempts
            .lock()
            .unwrap()
            .entry(to.clone())
            .or_default() += 1;
        let faults = self.state.faults.lock().unwrap();
        if faults.refuse.contains(&to) {
            return NO_MAILBOX;
        }
        if let Some((code, text)) = &faults.refuse_all {
            return Response::custom(*code, text.clone());
        }
        if let Some((_, code, text)) = faults.replies.iter().find(|(a, _, _)| *a == to) {
            return Response::custom(*code, text.clone());
        }
        OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.trim_matches(|c| c == '<' || c == '>').to_string();
        self.to = to
            .iter()
            .map(|t| t.trim_matches(|c| c == '<' || c == '>').to_lowercase())
            .collect();
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let delay = {
            let mut faults = self.state.faults.lock().unwrap();
            if faults.data_451 > 0 {
                faults.data_451 -= 1;
                return INTERNAL_ERROR;
            }
            if let Some((code, text)) = &faults.refuse_data {
                return Response::custom(*code, text.clone());
            }
            faults.delay
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        self.state.received.lock().unwrap().push(Received {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        });
        OK
    }
}

pub struct MailServer {
    pub port: u16,
    pub state: Arc<State>,
}

impl MailServer {
    pub fn start(faults: Faults) -> MailServer {
        MailServer::start_with(faults, None)
    }

    /// A server that offers STARTTLS with this certificate and key (PEM files)
    /// and, after it, AUTH PLAIN and LOGIN for `user` with `password`.
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        user: &str,
        password: &str,
    ) -> MailServer {
        MailServer::start_with(
            Faults::default(),
            Some((cert, key, user.to_string(), password.to_string())),
        )
    }

    fn start_with(
        faults: Faults,
        tls: Option<(&std::path::Path, &std::path::Path, String, String)>,
    ) -> MailServer {
        let state = Arc::new(State {
            faults: Mutex::new(faults),
            ..Default::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = Server::new(Recorder {
            state: state.clone(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        });
        server
            .with_name("mail.test")
            .with_num_threads(24)
            .with_tcp_listener(listener);
        if let Some((cert, key, user, password)) = tls {
            // mailin-embedded's rustls has two crypto providers in this test
            // build (its default and gazette's ring): name the process's one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            server
                .with_ssl(SslConfig::SelfSigned {
                    cert_path: cert.display().to_string(),
                    key_path: key.display().to_string(),
                })
                .unwrap()
                .with_auth(AuthMechanism::Plain)
                .with_auth(AuthMechanism::Login);
            *state.credentials.lock().unwrap() = Some((user, password));
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        MailServer { port, state }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many messages each address received.
    pub fn per_recipient(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.received() {
            for to in r.to {
                *counts.entry(to).or_default() += 1;
            }
        }
        counts
    }
}

/// A TCP proxy in front of `target` that cuts the first `cuts` connections once
/// more than `after_bytes` have gone from client to server: mid-DATA for a digest.
pub struct CuttingProxy {
    pub port: u16,
    pub cut: Arc<AtomicUsize>,
}

impl CuttingProxy {
    pub fn start(target: u16, cuts: usize, after_bytes: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicUsize::new(0));
        let counter = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                let cutting = counter.fetch_add(1, Ordering::SeqCst) < cuts;
                pipe(
                    server.try_clone().unwrap(),
                    client.try_clone().unwrap(),
                    None,
                );
                pipe(client, server, cutting.then_some(after_bytes));
            }
        });
        CuttingProxy { port, cut }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            total += n;
            if limit.is_some_and(|l| total > l) {
                break;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// Implicit TLS (smtps, port 465 style) in front of a plain server: TLS with
/// the given certificate from the first byte, then every byte passed on.
pub struct TlsFront {
    pub port: u16,
}

impl TlsFront {
    pub fn start(target: u16, cert: &std::path::Path, key: &std::path::Path) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut plain) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsFront { port }
    }
}
