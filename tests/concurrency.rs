//! Under load: 1,000 one-click unsubscribes against `gazette serve` while `gazette
//! send` delivers to 10,000 subscribers through a real SMTP server on loopback,
//! and a backup taken meanwhile. Every unsubscribe is recorded, and nobody gets a
//! message whose delivery was claimed after their unsubscribe was acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gazette::config::Secret;
use gazette::token::Signer;

use crate::mailserver::{Faults, MailServer};
use crate::serving::Serving;
use crate::util::{fixture, stderr, Site};

const SECRET: &str = "concurrency-secret-0123456789-012345";
const SUBSCRIBERS: usize = 10_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn unsubscribes_during_a_large_send_are_honoured_and_a_backup_is_whole() {
    let mail = MailServer::start(Faults::default());
    let feed = fixture("site.rss");
    let site = Site::new(
        &[feed.to_str().unwrap()],
        &format!("\n[smtp]\nurl = {:?}\nconcurrency = 8\n", mail.url()),
    );
    site.import_people("reader", SUBSCRIBERS);
    site.ok(&["fetch"]);
    site.ok(&["build", "--week", "2026-W06"]);
    let server = Serving::start(&site, &[("GAZETTE_SECRET", SECRET)], crate::util::NOW);
    let signer = Signer::new(Secret::new(SECRET), "weekly.news.test");

    let send = site
        .command(&["send", "--week", "2026-W06"])
        .env("GAZETTE_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while mail.received().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }

    // Every tenth subscriber, from four clients at once.
    let acks: Arc<Mutex<HashMap<i64, i64>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (acks, base, signer) = (acks.clone(), server.base.clone(), signer.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                for k in (t..1000).step_by(4) {
                    let id = (k as i64) * 10 + 7;
                    let r = http
                        .post(format!("{base}/u/{}", signer.unsubscribe_token(id)))
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body("List-Unsubscribe=One-Click")
                        .send()
                        .unwrap();
                    let status = r.status();
                    assert_eq!(status, 200, "{}", r.text().unwrap_or_default());
                    acks.lock().unwrap().insert(id, now_ms());
                }
            })
        })
        .collect();
    // A backup while both run.
    let backup = site.run(&["backup", "during.db"]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    for c in clients {
        c.join().unwrap();
    }
    let out = send.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let acks = acks.lock().unwrap();
    assert_eq!(acks.len(), 1000);
    let db = site.db();
    let events: i64 = db
        .query_row(
            "SELECT count(*) FROM unsubscribe_events WHERE method = 'one-click'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, 1000, "every unsubscribe recorded");
    let received = mail.per_recipient();
    let mut claimed_before = 0;
    for (&id, &ack) in acks.iter() {
        let (state, claimed): (String, Option<i64>) = db
            .query_row(
                "SELECT state, claimed_at_ms FROM deliveries WHERE subscriber_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let email = format!("reader{id}@example.com");
        match received.get(&email) {
            Some(_) => {
                let claimed = claimed.expect("a message went out, so it was claimed");
                assert!(claimed <= ack, "{email}: delivery claimed at {claimed}, after the unsubscribe was acknowledged at {ack}");
                claimed_before += 1;
            }
            None => assert_eq!(state, "skipped", "{email}"),
        }
    }
    assert!(
        claimed_before < 1000,
        "the unsubscribes came too late to test anything"
    );
    eprintln!("{claimed_before} of 1000 were already claimed when they unsubscribed; the rest got nothing");
    assert_eq!(received.len(), SUBSCRIBERS - (1000 - claimed_before));

    let copy = rusqlite::Connection::open(site.path("during.db")).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let n: i64 = copy
        .query_row("SELECT count(*) FROM subscribers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, SUBSCRIBERS);
}

#[test]
fn logs_never_hold_secrets_or_whole_tokens() {
    let site = crate::serving::sent_site(2, "");
    let token = crate::serving::token_of(&site, 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = site
        .command(&["serve"])
        .env("GAZETTE_SECRET", crate::serving::SECRET)
        .env("GAZETTE_SMTP__PASSWORD", "hunter2-password")
        .env("GAZETTE_SERVER__ADMIN_TOKEN", "admin-token-secret")
        .env("GAZETTE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("GAZETTE_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    http.get(format!("{base}/u/{token}")).send().unwrap();
    http.post(format!("{base}/u/{token}"))
        .body("List-Unsubscribe=One-Click")
        .send()
        .unwrap();
    http.get(format!("{base}/preview?token=admin-token-secret"))
        .send()
        .unwrap();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("/u/") && logs.contains("unsubscribed"),
        "{logs}"
    );
    for secret in [
        crate::serving::SECRET,
        "hunter2-password",
        "admin-token-secret",
        token.as_str(),
    ] {
        assert!(!logs.contains(secret), "the logs hold {secret:?}:\n{logs}");
    }
}
