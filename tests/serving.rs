//! `gazette serve` over real HTTP on loopback: one-click unsubscribe, double
//! opt-in through a real SMTP server, the archive, the preview's guard, the
//! schedule on an injected clock, and a graceful stop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gazette::store::Status;
use reqwest::blocking::Client;

use crate::mailserver::{Faults, MailServer};
use crate::util::{fixture, stderr, FeedServer, Site};

pub const SECRET: &str = "serve-secret-0123456789-0123456789";

/// A running server, in this process, on its own thread and runtime.
pub struct Serving {
    pub base: String,
    pub clock: Arc<Mutex<DateTime<Utc>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    pub fn start(site: &Site, env: &[(&str, &str)], now: &str) -> Serving {
        let mut vars: Vec<(String, String)> = vec![("GAZETTE_SECRET".into(), SECRET.into())];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = gazette::config::Config::parse(
            &std::fs::read_to_string(site.path("config.toml")).unwrap(),
            "config.toml",
            site.dir.path(),
            vars,
        )
        .unwrap();
        let clock = Arc::new(Mutex::new(now.parse::<DateTime<Utc>>().unwrap()));
        let shared = clock.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let clock: gazette::web::Clock = Arc::new(move || *shared.lock().unwrap());
                gazette::serve::serve(config, clock, listener, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        Serving {
            base: format!("http://{addr}"),
            clock,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn set_now(&self, now: &str) {
        *self.clock.lock().unwrap() = now.parse().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The body of a GET.
fn text_of(http: &Client, url: &str) -> String {
    http.get(url).send().unwrap().text().unwrap()
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A site on the fixture feed with `n` subscribers whose 2026-W06 issue went out
/// to the file outbox.
pub fn sent_site(n: usize, extra: &str) -> Site {
    let feed = fixture("site.rss");
    let site = Site::new(&[feed.to_str().unwrap()], extra);
    site.import_people("person", n);
    site.ok_signed(&["run", "--week", "2026-W06"], SECRET);
    site
}

/// The unsubscribe token in the message sent to subscriber `id` (file outbox).
pub fn token_of(site: &Site, id: i64) -> String {
    let eml = std::fs::read_to_string(site.path(&format!("digests/2026-W06/outbox/{id:010}.eml")))
        .unwrap();
    let start = eml.find("/u/").unwrap() + 3;
    eml[start..].split('>').next().unwrap().to_string()
}

#[test]
fn the_one_click_post_unsubscribes_and_a_get_does_not() {
    let site = sent_site(3, "");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let token = token_of(&site, 1);
    let http = client();

    let page = http.get(server.url(&format!("/u/{token}"))).send().unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().unwrap();
    assert!(
        body.contains("person1@example.com")
            && body.contains("Test Weekly")
            && body.contains("method=\"post\"")
    );
    assert_eq!(
        site.status("person1@example.com"),
        Status::Active,
        "a GET must not unsubscribe"
    );

    // Exactly what Gmail sends (RFC 8058).
    for _ in 0..2 {
        let r = http
            .post(server.url(&format!("/u/{token}")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(site.status("person1@example.com"), Status::Unsubscribed);
    assert_eq!(
        site.count("SELECT count(*) FROM unsubscribe_events WHERE method = 'one-click'"),
        1
    );

    // The page's button.
    let r = http
        .post(server.url(&format!("/u/{}", token_of(&site, 2))))
        .form(&[("confirm", "page")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(site.status("person2@example.com"), Status::Unsubscribed);
    assert_eq!(
        site.count("SELECT count(*) FROM unsubscribe_events WHERE method = 'page'"),
        1
    );
}

/// RFC 8058 allows the one-click POST as multipart/form-data too: recorded as
/// one-click, like the url-encoded one.
#[test]
fn a_multipart_one_click_post_is_recorded_as_one_click() {
    let site = sent_site(1, "");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let token = token_of(&site, 1);
    let boundary = "----gazette-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    let r = client()
        .post(server.url(&format!("/u/{token}")))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(site.status("person1@example.com"), Status::Unsubscribed);
    assert_eq!(
        site.count("SELECT count(*) FROM unsubscribe_events WHERE method = 'one-click'"),
        1
    );
}

#[test]
fn forged_truncated_and_borrowed_tokens_fail_and_change_nothing() {
    let site = sent_site(3, "");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let http = client();
    let token = token_of(&site, 1);
    let (_, mac) = token.split_once('.').unwrap();
    let forged = format!("1.{}", "A".repeat(mac.len()));
    let truncated = token[..token.len() - 3].to_string();
    let borrowed = format!("3.{mac}");
    let mut bodies = Vec::new();
    for bad in [forged, truncated, borrowed, "nonsense".into()] {
        for post in [false, true] {
            let url = server.url(&format!("/u/{bad}"));
            let r = if post {
                http.post(url).body("List-Unsubscribe=One-Click").send()
            } else {
                http.get(url).send()
            }
            .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
            let body = r.text().unwrap();
            assert!(
                !body.contains("@example.com"),
                "a bad token revealed an address"
            );
            bodies.push(body);
        }
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every bad token gets the same page"
    );
    assert_eq!(
        site.count("SELECT count(*) FROM subscribers WHERE status = 'active'"),
        3
    );
    assert_eq!(site.count("SELECT count(*) FROM unsubscribe_events"), 0);
}

#[test]
fn subscribe_confirm_by_mail_and_the_same_answer_twice() {
    let mail = MailServer::start(Faults::default());
    let site = sent_site(1, "");
    let server = Serving::start(
        &site,
        &[("GAZETTE_SMTP__URL", &mail.url())],
        crate::util::NOW,
    );
    let http = client();
    let home = http.get(server.url("/")).send().unwrap().text().unwrap();
    // base_url is https://news.test/letter/: a proxy serves gazette below /letter/.
    assert!(
        home.contains("action=\"/letter/subscribe\""),
        "the archive has the form, under base_url's path"
    );

    let subscribe = |email: &str, name: &str| {
        let r = http
            .post(server.url("/subscribe"))
            .form(&[("email", email), ("name", name)])
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let pending = |email: &str| {
        site.count(&format!(
            "SELECT count(*) FROM subscribers WHERE email_key = lower('{email}') AND status = 'pending'"
        ))
    };
    // A stranger asks first, with a name meant to deceive.
    let first = subscribe(
        "nadia@example.com",
        "Your account is suspended, verify at evil.example",
    );
    assert_eq!(first.0, 200);
    assert!(wait_for(|| pending("nadia@example.com") == 1, 10));
    // A pending request stores nothing a stranger typed on the subscriber.
    assert_eq!(
        site.count("SELECT count(*) FROM subscribers WHERE email = 'nadia@example.com' AND name IS NOT NULL"),
        0
    );
    // Known, unknown, active: one answer. Then the owner asks, with their name.
    assert_eq!(subscribe("person1@example.com", "Nadia"), first);
    assert_eq!(subscribe("NADIA@example.com", "Nadia"), first);

    assert!(wait_for(
        || mail
            .per_recipient()
            .get("nadia@example.com")
            .copied()
            .unwrap_or(0)
            >= 2,
        10
    ));
    assert!(
        !mail.per_recipient().contains_key("person1@example.com"),
        "an active subscriber gets no confirmation"
    );
    let links: Vec<String> = mail
        .received()
        .iter()
        .filter(|r| r.to == vec!["nadia@example.com".to_string()])
        .map(|r| {
            let m = mail_parser::MessageParser::default()
                .parse(&r.data)
                .unwrap();
            let text = m.body_text(0).unwrap().to_string();
            let link = text
                .split_whitespace()
                .find(|w| w.starts_with("https://news.test/letter/confirm/"))
                .unwrap()
                .to_string();
            link.trim_start_matches("https://news.test/letter")
                .to_string()
        })
        .collect();
    let (strangers, owners) = (&links[0], &links[1]);

    // A tampered link does nothing.
    let r = http.get(server.url(&format!("{owners}x"))).send().unwrap();
    assert_eq!(r.status(), 400);
    // A GET or HEAD (a link scanner) shows the button and changes nothing.
    assert_eq!(http.head(server.url(owners)).send().unwrap().status(), 200);
    let page = http.get(server.url(owners)).send().unwrap().text().unwrap();
    assert!(page.contains("Confirm my subscription"), "{page}");
    assert!(page.contains("value=\"Nadia\""), "{page}");
    assert_eq!(site.status("nadia@example.com"), Status::Pending);
    // The button confirms, with the owner's request's name.
    let r = http.post(server.url(owners)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("You are subscribed"));
    assert_eq!(site.status("nadia@example.com"), Status::Active);
    let name = || -> Option<String> {
        site.db()
            .query_row(
                "SELECT name FROM subscribers WHERE email = 'nadia@example.com'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(name().as_deref(), Some("Nadia"));
    // A link confirms once: the stranger's, pressed with its name changed by
    // the owner, sets what the owner typed.
    let r = http
        .post(server.url(strangers))
        .form(&[("name", "Nadia K.")])
        .send()
        .unwrap();
    assert!(r.text().unwrap().contains("You are subscribed"));
    assert_eq!(name().as_deref(), Some("Nadia K."));
    let again = http
        .post(server.url(owners))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(again.contains("used already"), "{again}");

    // Back after unsubscribing: only a new request's confirmation makes them
    // active again, and an old link replayed never does.
    site.ok(&["unsubscribe", "nadia@example.com"]);
    assert_eq!(subscribe("nadia@example.com", "Nadia"), first);
    for old in [owners, strangers] {
        http.get(server.url(old)).send().unwrap();
        http.post(server.url(old)).send().unwrap();
    }
    assert_eq!(site.status("nadia@example.com"), Status::Unsubscribed);
    assert!(wait_for(
        || mail
            .per_recipient()
            .get("nadia@example.com")
            .copied()
            .unwrap_or(0)
            >= 3,
        10
    ));
}

/// The answer cannot tell known addresses from unknown by its timing: it comes
/// before the database is touched, so even a database locked by another writer
/// does not delay it, for any address.
#[test]
fn the_subscribe_answer_does_not_wait_for_the_database() {
    let site = sent_site(1, "");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let http = Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    // Opens the server's connection before the lock is taken.
    assert_eq!(
        http.get(server.url("/healthz")).send().unwrap().status(),
        200
    );
    let lock = site.db();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let answers: Vec<(u16, String)> = ["person1@example.com", "new@example.com"]
        .iter()
        .map(|email| {
            let r = http
                .post(server.url("/subscribe"))
                .form(&[("email", *email)])
                .send()
                .expect("answered while the database is locked");
            (r.status().as_u16(), r.text().unwrap())
        })
        .collect();
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[0], answers[1]);
    lock.execute_batch("COMMIT").unwrap();
    assert!(wait_for(
        || site.count("SELECT count(*) FROM subscribers WHERE email = 'new@example.com'") == 1,
        10
    ));
}

/// The confirmation mails written to the file outbox, oldest first.
fn confirmation_mails(site: &Site) -> Vec<String> {
    let dir = site.path("digests/confirmations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().replace("=\r\n", ""))
        .collect()
}

/// The `/confirm/…` path in a confirmation mail.
fn confirm_path(mail: &str) -> String {
    let start = mail.find("/confirm/").unwrap();
    mail[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect()
}

/// `confirm_hours` (48 by default): a link works at 47 h 59 min and is refused
/// at 48 h 01 min, by GET and POST alike.
#[test]
fn confirmation_links_work_for_their_hours_and_not_a_minute_more() {
    let site = sent_site(1, "");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let http = client();
    http.post(server.url("/subscribe"))
        .form(&[("email", "late@example.com")])
        .send()
        .unwrap();
    assert!(
        wait_for(|| confirmation_mails(&site).len() == 1, 10),
        "no confirmation mail"
    );
    let path = confirm_path(&confirmation_mails(&site)[0]);
    let at = |minutes: i64| {
        let now: DateTime<Utc> = crate::util::NOW.parse().unwrap();
        (now + chrono::Duration::minutes(minutes)).to_rfc3339()
    };
    server.set_now(&at(47 * 60 + 59));
    let page = http.get(server.url(&path)).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("Confirm my subscription"));
    server.set_now(&at(48 * 60 + 1));
    assert_eq!(http.get(server.url(&path)).send().unwrap().status(), 400);
    assert_eq!(http.post(server.url(&path)).send().unwrap().status(), 400);
    assert_eq!(site.status("late@example.com"), Status::Pending);
}

/// However many clients ask for one address, at most 3 confirmation mails an
/// hour go to it.
#[test]
fn an_address_gets_at_most_three_confirmation_mails_an_hour() {
    let site = sent_site(1, "\n[server]\nsubscribe_per_hour = 50\n");
    let server = Serving::start(&site, &[], crate::util::NOW);
    for _ in 0..6 {
        let r = client()
            .post(server.url("/subscribe"))
            .form(&[("email", "target@example.com")])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(wait_for(|| confirmation_mails(&site).len() >= 3, 10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(confirmation_mails(&site).len(), 3);
}

#[test]
fn the_subscribe_form_is_rate_limited_per_client() {
    let site = sent_site(1, "\n[server]\nsubscribe_per_hour = 3\n");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let http = client();
    let codes: Vec<u16> = (0..5)
        .map(|i| {
            http.post(server.url("/subscribe"))
                .form(&[("email", format!("x{i}@example.com"))])
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(codes, vec![200, 200, 200, 429, 429]);
}

#[test]
fn the_archive_and_feed_list_a_sent_issue() {
    let site = sent_site(2, "");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let http = client();
    // base_url itself, where every footer's links point, is the archive too.
    assert_eq!(
        http.get(server.url("/letter/")).send().unwrap().status(),
        200
    );
    let home = http.get(server.url("/")).send().unwrap();
    let header = |name: &str| {
        home.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(header("content-security-policy").contains("frame-ancestors 'self'"));
    assert!(header("content-security-policy").contains("default-src 'none'"));
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-frame-options"), "SAMEORIGIN");
    let home = home.text().unwrap();
    assert!(home.contains("href=\"/letter/issues/2026-W06\""), "{home}");
    let issue = http.get(server.url("/issues/2026-W06")).send().unwrap();
    assert_eq!(issue.status(), 200);
    let html = issue.text().unwrap();
    assert!(html.contains("Central bank cuts policy rate"));
    assert!(
        !html.contains("{{gazette:") && !html.contains("/u/"),
        "personal links removed"
    );
    let feed = http.get(server.url("/feed.xml")).send().unwrap();
    assert!(feed.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/atom+xml"));
    let feed = feed.text().unwrap();
    assert!(
        feed.contains("<entry>") && feed.contains("https://news.test/letter/issues/2026-W06"),
        "{feed}"
    );
    assert_eq!(
        http.get(server.url("/issues/2026-W05"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(server.url("/healthz")).send().unwrap().status(),
        200
    );
}

/// Behind a reverse proxy on this machine: without `trusted_proxies`, a
/// forwarded request is never an editor's; with it, the client named by the
/// proxy is who counts, for the preview and for the subscribe rate limit. Every
/// link is under base_url's path.
#[test]
fn behind_a_proxy_the_forwarded_client_counts_and_links_keep_the_prefix() {
    let site = sent_site(1, "");
    let http = client();
    let undeclared = Serving::start(&site, &[], crate::util::NOW);
    let forwarded = |server: &Serving, path: &str, from: &str| {
        http.get(server.url(path))
            .header("X-Forwarded-For", from)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        forwarded(&undeclared, "/preview/2026-W06", "203.0.113.9"),
        403
    );
    assert_eq!(
        forwarded(&undeclared, "/preview/2026-W06", "127.0.0.1"),
        403
    );
    drop(undeclared);

    std::fs::write(
        site.path("config.toml"),
        std::fs::read_to_string(site.path("config.toml")).unwrap()
            + "\n[server]\nsubscribe_per_hour = 2\ntrusted_proxies = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let proxied = Serving::start(&site, &[], crate::util::NOW);
    assert_eq!(forwarded(&proxied, "/preview/2026-W06", "203.0.113.9"), 403);
    // The client's own claim (left-most) does not count; the proxy's does.
    assert_eq!(
        forwarded(&proxied, "/preview/2026-W06", "127.0.0.1, 203.0.113.9"),
        403
    );
    // A Forwarded header the proxy does not set is the client's own: ignored.
    let forged = http
        .get(proxied.url("/preview/2026-W06"))
        .header("Forwarded", "for=127.0.0.1")
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .unwrap();
    assert_eq!(forged.status(), 403);
    // The proxy saying nothing is not local either.
    assert_eq!(
        http.get(proxied.url("/preview/2026-W06"))
            .send()
            .unwrap()
            .status(),
        403
    );
    // An editor on the proxy's machine.
    let page = http
        .get(proxied.url("/preview/2026-W06"))
        .header("X-Forwarded-For", "127.0.0.1")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("src=\"/letter/preview/2026-W06/digest.html"),
        "{page}"
    );
    // Two clients behind one proxy have a limit each.
    let subscribe = |from: &str, i: usize| {
        http.post(proxied.url("/subscribe"))
            .header("X-Forwarded-For", from)
            .form(&[("email", format!("p{i}@example.com"))])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let a: Vec<u16> = (0..3).map(|i| subscribe("198.51.100.1", i)).collect();
    let b: Vec<u16> = (3..6).map(|i| subscribe("198.51.100.2", i)).collect();
    assert_eq!(a, vec![200, 200, 429]);
    assert_eq!(b, vec![200, 200, 429]);
}

/// A broken issue.toml, or a pin of a story never fetched, is shown on the
/// preview with where it is, not as a server error.
#[test]
fn the_preview_shows_what_is_wrong_with_issue_toml() {
    let feed = fixture("site.rss");
    let site = Site::new(&[feed.to_str().unwrap()], "");
    site.ok(&["fetch"]);
    site.ok(&["build", "--week", "2026-W06"]);
    let http = client();
    let open = Serving::start(&site, &[], crate::util::NOW);
    // The editor breaks issue.toml: the page says what and where.
    let issue_toml = site.path("digests/2026-W06/issue.toml");
    std::fs::write(&issue_toml, "pin = [\n  \"https://unclosed\n").unwrap();
    let page = http.get(open.url("/preview/2026-W06")).send().unwrap();
    assert_eq!(page.status(), 422);
    let body = page.text().unwrap();
    assert!(
        body.contains("issue.toml") && body.contains("line 2"),
        "{body}"
    );
    std::fs::write(
        &issue_toml,
        "pin = [\"https://nowhere.example/never-fetched\"]\n",
    )
    .unwrap();
    let body = text_of(&http, &open.url("/preview/2026-W06"));
    assert!(
        body.contains("never-fetched") && body.contains("not a stored story"),
        "{body}"
    );
}

#[test]
fn the_preview_needs_the_admin_token_when_one_is_set() {
    let site = sent_site(1, "");
    let http = client();
    let open = Serving::start(&site, &[], crate::util::NOW);
    let page = http.get(open.url("/preview/2026-W06")).send().unwrap();
    assert_eq!(page.status(), 200, "loopback without a token configured");
    let body = page.text().unwrap();
    assert!(
        body.contains("Stories")
            && body.contains("Gmail")
            && body.contains("Central bank cuts policy rate")
    );
    drop(open);

    let guarded = Serving::start(
        &site,
        &[("GAZETTE_SERVER__ADMIN_TOKEN", "editor-token-0123456")],
        crate::util::NOW,
    );
    assert_eq!(
        http.get(guarded.url("/preview")).send().unwrap().status(),
        403
    );
    assert_eq!(
        http.get(guarded.url("/preview/2026-W06?token=wrong"))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        http.get(guarded.url("/preview/2026-W06/digest.html"))
            .send()
            .unwrap()
            .status(),
        403
    );
    // The token in a URL becomes an HttpOnly, SameSite=Strict cookie, and the
    // address loses it.
    let r = http
        .get(guarded.url("/preview/2026-W06?token=editor-token-0123456"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/letter/preview/2026-W06");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("gazette_admin=editor-token-0123456;")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/letter/"),
        "{cookie}"
    );
    let r = http
        .get(guarded.url("/letter/preview/2026-W06"))
        .header("Cookie", "gazette_admin=editor-token-0123456")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(guarded.url("/preview/2026-W06"))
        .bearer_auth("editor-token-0123456")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A site whose weekly send is scheduled for Monday 08:00 UTC, mailing `n`
/// subscribers through `mail`.
fn scheduled_site(mail: &MailServer, n: usize, max_lateness: &str) -> Site {
    let feed = fixture("site.rss");
    let site = Site::new(
        &[feed.to_str().unwrap()],
        &format!("\n[smtp]\nurl = {:?}\n\n[schedule]\nsend = \"0 8 * * MON\"\nmax_lateness = {max_lateness:?}\n", mail.url()),
    );
    site.import_people("person", n);
    site
}

fn wait_for(what: impl Fn() -> bool, seconds: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !what() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn the_schedule_sends_once_even_when_cron_races_it() {
    let mail = MailServer::start(Faults::default());
    let site = scheduled_site(&mail, 30, "1d");
    // Sunday evening: nothing due (last Monday's send is long past: skipped).
    let server = Serving::start(&site, &[], "2026-02-08T20:00:00Z");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(mail.received().is_empty());
    // Monday 08:00: the scheduler fires, and a system cron's `gazette run` too.
    let mut cron = site.command(&["run"]);
    cron.arg("--now")
        .arg("2026-02-09T08:00:00Z")
        .env("GAZETTE_SECRET", SECRET)
        .env("GAZETTE_SMTP__URL", mail.url());
    server.set_now("2026-02-09T08:00:00Z");
    let cron_out = cron.output().unwrap();
    assert!(
        wait_for(|| mail.received().len() >= 30, 20),
        "the schedule did not send"
    );
    std::thread::sleep(Duration::from_millis(1500));
    server.set_now("2026-02-09T08:30:00Z");
    std::thread::sleep(Duration::from_millis(1500));
    let counts = mail.per_recipient();
    assert_eq!(counts.len(), 30);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    // The cron run either sent (some or all), or found the issue locked by
    // the schedule's send (exit 1, naming the holder).
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&cron_out.stdout),
        stderr(&cron_out)
    );
    match cron_out.status.code() {
        Some(0) => assert!(said.contains("2026-W06: sent"), "{said}"),
        Some(1) => assert!(said.contains("is being sent by"), "{said}"),
        other => panic!("cron exited {other:?}: {said}"),
    }
}

#[test]
fn a_send_missed_by_more_than_max_lateness_is_skipped() {
    let mail = MailServer::start(Faults::default());
    let site = scheduled_site(&mail, 3, "1h");
    // Up again on Monday at 10:00: the 08:00 send is two hours late.
    let server = Serving::start(&site, &[], "2026-02-09T10:00:00Z");
    std::thread::sleep(Duration::from_millis(2000));
    assert!(mail.received().is_empty());
    assert_eq!(site.count("SELECT count(*) FROM deliveries"), 0);
    drop(server);
    // Within max_lateness it catches up once.
    let site = scheduled_site(&mail, 3, "4h");
    let _server = Serving::start(&site, &[], "2026-02-09T10:00:00Z");
    assert!(wait_for(|| mail.received().len() >= 3, 20));
}

#[test]
fn sigterm_finishes_and_records_the_deliveries_in_flight() {
    let mail = MailServer::start(Faults {
        delay: Duration::from_millis(30),
        ..Default::default()
    });
    let site = scheduled_site(&mail, 60, "1d");
    let mut child = site
        .command(&["serve"])
        .arg("--now")
        .arg("2026-02-09T08:00:00Z")
        .env("GAZETTE_SECRET", SECRET)
        .env("GAZETTE_SERVER__LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(|| mail.received().len() >= 5, 20),
        "the scheduled send did not start"
    );
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert_eq!(
        site.count("SELECT count(*) FROM deliveries WHERE state = 'sending'"),
        0,
        "nothing left in flight"
    );
    let sent = site.count("SELECT count(*) FROM deliveries WHERE state = 'sent'") as usize;
    assert_eq!(
        sent,
        mail.received().len(),
        "every message the server took is recorded"
    );
    assert!(sent < 60, "the send stopped early");
}

#[test]
fn the_schedule_fetches_once_per_occurrence_on_a_real_clock() {
    // `gazette serve` with its own clock (the pretended start plus real, unrounded
    // time elapsed): an hourly fetch is due once at start, then not again within
    // the hour, however often the loop wakes.
    let server = FeedServer::start(&["site.rss"]);
    let site = Site::new(
        &[&server.url("site.rss")],
        "\n[server]\nlisten = \"127.0.0.1:0\"\n\n[schedule]\nfetch = \"0 * * * *\"\nsend = \"0 8 * * MON\"\n",
    );
    let mut child = site
        .command(&["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(4500));
    child.kill().unwrap();
    child.wait().unwrap();
    let fetches = server.statuses("site.rss").len();
    assert_eq!(fetches, 1, "fetched {fetches} times in 4.5 s of real time");
}

#[test]
fn unconfirmed_subscriptions_expire_and_names_are_bounded() {
    let site = sent_site(1, "\n[server]\nconfirm_hours = 1\n");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let http = client();
    let long_name = "n".repeat(100_000);
    http.post(server.url("/subscribe"))
        .form(&[("email", "first@example.com"), ("name", long_name.as_str())])
        .send()
        .unwrap();
    assert!(wait_for(
        || site.count("SELECT count(*) FROM subscribe_requests") == 1,
        10
    ));
    let name: String = site
        .db()
        .query_row("SELECT name FROM subscribe_requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name.chars().count(), gazette::text::MAX_NAME_CHARS);
    // Two hours on, another request: the first, never confirmed, is gone.
    server.set_now("2026-02-12T11:00:01Z");
    http.post(server.url("/subscribe"))
        .form(&[("email", "second@example.com")])
        .send()
        .unwrap();
    assert!(wait_for(
        || site.count("SELECT count(*) FROM subscribers WHERE email = 'second@example.com'") == 1,
        10
    ));
    assert_eq!(
        site.count("SELECT count(*) FROM subscribers WHERE email = 'first@example.com'"),
        0
    );
    assert_eq!(
        site.count("SELECT count(*) FROM subscribers WHERE email = 'second@example.com'"),
        1
    );
}

/// The editor's desk over real HTTP: the token once, then a cookie; pin, intro
/// and approval saved into issue.toml and the database; forged forms refused;
/// and with require_approval, cron sends nothing until the issue is approved,
/// then exactly the approved issue.
#[test]
fn the_desk_edits_approves_and_cron_waits_for_the_approval() {
    let mail = MailServer::start(Faults::default());
    let feed = fixture("site.rss");
    let site = Site::new(
        &[feed.to_str().unwrap()],
        &format!(
            "\n[smtp]\nurl = {:?}\n\n[schedule]\nrequire_approval = true\n",
            mail.url()
        ),
    );
    site.import_people("person", 2);
    site.ok(&["fetch"]);
    let run = || site.ok_signed(&["run", "--week", "2026-W06"], SECRET);
    // Cron before approval: nothing sent, and it says why; nor does `send`.
    assert!(run().contains("waiting for an editor's approval"));
    let out = site
        .command(&["send", "--week", "2026-W06"])
        .env("GAZETTE_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not approved"), "{}", stderr(&out));
    assert!(mail.received().is_empty());

    let token = "editor-token-0123456";
    // Served over plain HTTP here, so no Secure cookies (which https gets).
    let server = Serving::start(
        &site,
        &[
            ("GAZETTE_SERVER__ADMIN_TOKEN", token),
            ("GAZETTE_NEWSLETTER__BASE_URL", "http://news.test/letter/"),
        ],
        crate::util::NOW,
    );
    let http = Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // The token once: it becomes a cookie and leaves the address. (Under
    // base_url's path, as behind a proxy that passes the prefix on.)
    let r = http
        .get(server.url(&format!("/letter/preview/2026-W06?token={token}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.url().as_str().contains("token"), "{}", r.url());
    let page = r.text().unwrap();
    assert!(!page.contains(token), "the token is never in the page");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let desk = server.url("/letter/preview/2026-W06");
    let post = |fields: &[(&str, &str)]| {
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let r = http.post(&desk).form(&form).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let issue_toml = || std::fs::read_to_string(site.path("digests/2026-W06/issue.toml")).unwrap();

    // A story to pin: one the page lists with a Pin button.
    let url = "https://news.test/economy/rate-cut";
    let (status, page) = post(&[("action", "pin"), ("url", url)]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("pin: {url}")), "{page}");
    assert!(
        issue_toml().contains(&format!("pin = [\"{url}\"]")),
        "{}",
        issue_toml()
    );
    let intro = "A **quiet** week:\n\n- rates\n- wallets";
    let (_, page) = post(&[
        ("action", "save"),
        ("subject", "Rates, and a wallet"),
        ("preheader", ""),
        ("intro", intro),
    ]);
    assert!(page.contains("Saved the subject"), "{page}");
    let choices = gazette::digest::read_choices(&site.path("digests/2026-W06")).unwrap();
    assert_eq!(choices.intro.as_deref(), Some(intro));
    assert_eq!(choices.subject.as_deref(), Some("Rates, and a wallet"));
    assert_eq!(choices.pin, vec![url]);
    // The live preview of the intro.
    let r = http
        .post(server.url("/letter/preview/2026-W06/intro"))
        .form(&[("csrf", csrf.as_str()), ("intro", "*hi* <b>x</b>")])
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(r.trim(), "<p><em>hi</em> &lt;b&gt;x&lt;/b&gt;</p>");

    // Forged forms change nothing: a wrong token, or no desk session at all.
    let before = issue_toml();
    let r = http
        .post(&desk)
        .form(&[("csrf", "forged"), ("action", "drop"), ("url", url)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let stranger = Client::new()
        .post(&desk)
        .bearer_auth(token)
        .form(&[("csrf", csrf.as_str()), ("action", "drop"), ("url", url)])
        .send()
        .unwrap();
    assert_eq!(stranger.status(), 403, "a form from another browser");
    assert_eq!(issue_toml(), before);

    // An approval vouches for what the editor saw: not for an issue that
    // changed since.
    let (_, page) = post(&[
        ("action", "approve"),
        ("by", "Amina the editor"),
        ("seen", "0000000000000000"),
    ]);
    assert!(page.contains("changed since you looked"), "{page}");
    let seen = page
        .split("name=\"seen\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (_, page) = post(&[
        ("action", "approve"),
        ("by", "Amina the editor"),
        ("seen", seen.as_str()),
    ]);
    assert!(page.contains("approved by Amina the editor"), "{page}");
    assert!(page.contains("Unapprove"), "{page}");
    // Approved: frozen for the desk and for build.
    let (_, page) = post(&[("action", "drop"), ("url", url)]);
    assert!(page.contains("Not done"), "{page}");
    assert!(!site.run(&["build", "--week", "2026-W06"]).status.success());
    drop(server);

    // Cron after approval: exactly the approved issue goes out.
    assert!(run().contains("sent 2"));
    let received = mail.received();
    assert_eq!(received.len(), 2);
    let m = mail_parser::MessageParser::default()
        .parse(&received[0].data)
        .unwrap();
    assert_eq!(m.subject().unwrap(), "Rates, and a wallet");
    let text = m.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(
        text.contains("A quiet week:\n\n- rates\n- wallets"),
        "{text}"
    );
    assert_eq!(
        site.count("SELECT count(*) FROM approvals WHERE week = '2026-W06' AND approved_by = 'Amina the editor'"),
        1
    );
}

/// A week without stories: the desk says so and writes nothing.
#[test]
fn the_desk_writes_nothing_for_an_empty_week() {
    let site = sent_site(1, "");
    let server = Serving::start(&site, &[], crate::util::NOW);
    let page = text_of(&client(), &server.url("/preview/2026-W01"));
    assert!(page.contains("No stories were published"), "{page}");
    // A page whose domain re-resolves to 127.0.0.1 names its own host: refused.
    let rebound = client()
        .get(server.url("/preview/2026-W06"))
        .header("Host", "rebind.attacker.example")
        .send()
        .unwrap();
    assert_eq!(rebound.status(), 403);
    // Words on the desk come only from the desk's own redirects.
    let page = text_of(
        &client(),
        &server.url("/preview/2026-W06?done=Session+expired%2C+log+in+at+evil.example&sig=x"),
    );
    assert!(!page.contains("evil.example"), "{page}");
    assert!(!site.path("digests/2026-W01").exists());
    // /preview opens on the week that goes out next: W06 went out, so W07.
    let r = client().get(server.url("/preview")).send().unwrap();
    assert_eq!(r.headers()["location"], "/letter/preview/2026-W07");
}
