//! STARTTLS sending, as a ratio to plain sending in the same run: gazette (the
//! release binary) sends the sample issue to N subscribers into a real SMTP
//! server on loopback (mailin-embedded, the integration tests' server), once
//! over a plain connection and once with STARTTLS and AUTH (a certificate made
//! here with rcgen, trusted through `[smtp] ca_file`). Prints both rates and
//! the ratio; every message must arrive.
//!
//!     cargo bench --bench starttls [-- SUBSCRIBERS]
//!
//! The plain run goes through gazette's own client, the TLS run through
//! lettre's (TLS and AUTH), so the ratio is what turning TLS on costs a user,
//! engine included. The server is the same in both and, being a test server
//! written for correctness, is slower than Postfix: compare the ratio, not the
//! rates, with `benches/send_smtp_sink.py`.

#[path = "../tests/mailserver.rs"]
#[allow(dead_code)]
mod mailserver;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mailserver::{Faults, MailServer};

const PASSWORD: &str = "bench-relay-password-0123";
const CONNECTIONS: usize = 8;

/// A copy of the sample site with `n` subscribers.
fn site(dir: &Path, n: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("sample")).unwrap();
    for entry in std::fs::read_dir(root.join("sample")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join("sample").join(entry.file_name())).unwrap();
    }
    std::fs::copy(root.join("config.toml"), dir.join("config.toml")).unwrap();
    let mut people = String::from("email,name\n");
    for i in 0..n {
        people += &format!("reader{i}@bench.example,Reader {i}\n");
    }
    std::fs::write(dir.join("people.csv"), people).unwrap();
}

/// Runs gazette on the site, its `[smtp]` keys set from the environment.
fn gazette(dir: &Path, smtp: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gazette"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(args)
        .envs(smtp.iter().map(|(k, v)| (format!("GAZETTE_SMTP__{k}"), v)))
        .env("GAZETTE_SMTP__CONCURRENCY", CONNECTIONS.to_string())
        .env("GAZETTE_SECRET", "benchmark-secret-0123456789-0123456789")
        .env("GAZETTE_SMTP__PASSWORD", PASSWORD)
        .env("GAZETTE_DATABASE__SEED_SUBSCRIBERS", dir.join("people.csv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gazette {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Messages per second sending to `n` subscribers with these `[smtp]` keys.
fn rate(n: usize, smtp: &[(&str, String)], server: &MailServer) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path(), n);
    gazette(dir.path(), smtp, &["fetch"]);
    gazette(dir.path(), smtp, &["build", "--week", "2026-W06"]);
    let before = server.received().len();
    let start = Instant::now();
    gazette(dir.path(), smtp, &["send", "--week", "2026-W06"]);
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(server.received().len() - before, n, "every message arrived");
    n as f64 / seconds
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let certs = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();

    let plain = MailServer::start(Faults::default());
    let tls = MailServer::start_tls(&cert, &key, "bench", PASSWORD);
    let plain_rate = rate(n, &[("URL", plain.url())], &plain);
    let tls_rate = rate(
        n,
        &[
            ("URL", format!("smtp://bench@localhost:{}", tls.port)),
            ("REQUIRE_TLS", "true".into()),
            ("CA_FILE", cert.display().to_string()),
        ],
        &tls,
    );
    println!(
        "starttls: {n} subscribers, {CONNECTIONS} connections into mailin-embedded on loopback"
    );
    println!("  plain                {plain_rate:9.0} msg/s");
    println!("  STARTTLS + AUTH      {tls_rate:9.0} msg/s");
    println!(
        "  ratio                {:9.3} x plain",
        tls_rate / plain_rate
    );
}
