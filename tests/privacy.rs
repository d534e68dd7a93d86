//! What we hold about a subscriber: export, erase (with suppression), the "your
//! data" link, and backups that can be restored (and files that cannot).

use crate::serving::{sent_site, Serving};
use crate::util::stderr;

#[test]
fn export_shows_everything_held_and_wipe_leaves_only_a_hash() {
    let site = sent_site(3, "");
    site.ok(&["unsubscribe", "person2@example.com"]);
    let json: serde_json::Value =
        serde_json::from_str(&site.ok(&["subscribers", "export", "person2@example.com"])).unwrap();
    assert_eq!(json["subscriber"]["email"], "person2@example.com");
    assert_eq!(json["subscriber"]["status"], "unsubscribed");
    assert_eq!(json["deliveries"][0]["issue"], "2026-W06");
    assert_eq!(json["deliveries"][0]["state"], "sent");
    assert_eq!(json["unsubscribe_events"][0]["how"], "cli");

    // A test copy sent to the address is kept on disk too.
    site.ok(&[
        "send",
        "--week",
        "2026-W06",
        "--test",
        "person2@example.com",
    ]);
    let outbox = site.path("digests/2026-W06/outbox");
    let holding = || {
        let mut dirs = vec![outbox.clone()];
        let mut n = 0;
        while let Some(dir) = dirs.pop() {
            for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
                if path.is_dir() {
                    dirs.push(path);
                } else if std::fs::read_to_string(&path)
                    .unwrap()
                    .contains("person2@example.com")
                {
                    n += 1;
                }
            }
        }
        n
    };
    assert_eq!(holding(), 2, "the issue and the test copy");
    let out = site.ok(&["subscribers", "wipe", "person2@example.com"]);
    assert!(out.contains("erased person2@example.com"), "{out}");
    assert!(out.contains("2 kept messages to it deleted"), "{out}");
    assert_eq!(holding(), 0, "no copy left in the outbox");
    assert!(
        outbox.join("0000000001.eml").exists(),
        "others' copies stay"
    );
    let out = site.run(&["subscribers", "export", "person2@example.com"]);
    assert!(!out.status.success() && stderr(&out).contains("not on the list"));
    // Nothing of the address is left in the database file, free pages included.
    site.db()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    for file in ["gazette.db", "gazette.db-wal"] {
        if let Ok(bytes) = std::fs::read(site.path(file)) {
            let needle = b"person2@example.com";
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{file} still holds the address"
            );
        }
    }
    // No import or add brings it back.
    let out = site.run(&["subscribers", "import", "people.csv"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("person2@example.com was erased"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = site.run(&["subscribers", "add", "Person2@Example.com"]);
    assert!(
        !out.status.success() && stderr(&out).contains("erased"),
        "{}",
        stderr(&out)
    );
    assert!(site
        .store()
        .subscriber_by_email("person2@example.com")
        .unwrap()
        .is_none());
}

#[test]
fn the_your_data_link_in_every_email_returns_the_export() {
    let site = sent_site(2, "");
    let eml = std::fs::read_to_string(site.path("digests/2026-W06/outbox/0000000001.eml")).unwrap();
    let text = eml.replace("=\r\n", "");
    let start = text.find("/letter/data/").unwrap() + "/letter".len();
    let path: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    let server = Serving::start(&site, &[], crate::util::NOW);
    let http = reqwest::blocking::Client::new();
    let r = http.get(server.url(&path)).send().unwrap();
    assert_eq!(r.status(), 200);
    let json: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(json["subscriber"]["email"], "person1@example.com");
    let other = path.replacen("/data/1.", "/data/2.", 1);
    assert_eq!(http.get(server.url(&other)).send().unwrap().status(), 400);
}

#[test]
fn a_backup_restores_and_bad_files_are_refused() {
    let site = sent_site(3, "");
    let out = site.ok(&["backup", "backup.db"]);
    assert!(out.contains("3 subscribers, integrity ok"), "{out}");
    assert!(
        !site.run(&["backup", "backup.db"]).status.success(),
        "never overwrites"
    );

    site.ok(&["subscribers", "remove", "person3@example.com"]);
    let out = site.ok(&["restore", "backup.db"]);
    assert!(out.contains("restored"), "{out}");
    assert!(site
        .store()
        .subscriber_by_email("person3@example.com")
        .unwrap()
        .is_some());

    // Each bad file is refused with exit 1, naming why, and the live database
    // is untouched.
    let refused = |file: &str, why: &str| {
        let out = site.run(&["restore", file]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let err = stderr(&out);
        assert!(
            err.contains("refusing to restore") && err.contains(why),
            "{file}: {err}"
        );
        assert_eq!(
            site.store().count_by_status().unwrap(),
            vec![("active".to_string(), 3)],
            "{file} changed the database"
        );
    };
    std::fs::write(site.path("notes.txt"), "not a database at all").unwrap();
    refused("notes.txt", "not an SQLite database");
    let other = rusqlite::Connection::open(site.path("other.db")).unwrap();
    other
        .execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
        .unwrap();
    drop(other);
    refused("other.db", "not a gazette database");
    // A database from a later gazette: one more migration applied.
    std::fs::copy(site.path("backup.db"), site.path("newer.db")).unwrap();
    let newer = rusqlite::Connection::open(site.path("newer.db")).unwrap();
    let version: i64 = newer
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    newer
        .execute_batch(&format!(
            "CREATE TABLE a_later_feature (x); PRAGMA user_version = {};",
            version + 1
        ))
        .unwrap();
    drop(newer);
    refused("newer.db", "newer than this gazette knows");
    // A damaged backup: pages overwritten in the middle of the file.
    let mut bytes = std::fs::read(site.path("backup.db")).unwrap();
    let page = 4096;
    assert!(bytes.len() > 4 * page, "the backup has pages to damage");
    for b in &mut bytes[2 * page..3 * page] {
        *b = 0xA5;
    }
    std::fs::write(site.path("damaged.db"), bytes).unwrap();
    refused("damaged.db", "integrity_check");
}

#[test]
fn a_feed_cannot_have_personal_links_spliced_into_its_urls() {
    let feed = crate::util::fixture("handmade/harvest.xml");
    let site = crate::util::Site::new(&[feed.to_str().unwrap()], "");
    site.import_people("reader", 2);
    site.ok(&["fetch"]);
    site.ok(&["send", "--week", "2026-W06"]);
    let outbox = site.path("digests/2026-W06/outbox");
    let mut checked = 0;
    for entry in std::fs::read_dir(outbox).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let html = message.body_html(0).unwrap().into_owned();
        let text = message.body_text(0).unwrap().into_owned();
        for part in [&html, &text] {
            // Every personal link is gazette's own: none sits in a feed's URL.
            for line in part.lines() {
                if line.contains("evil.example") || line.contains("tracker.example") {
                    assert!(!line.contains("/u/") && !line.contains("/data/"), "{line}");
                }
            }
            assert!(
                !part.contains("{{gazette:"),
                "a placeholder was left unfilled"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}
