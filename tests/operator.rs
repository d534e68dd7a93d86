//! What an operator sees at the command line: logs worth reading at each level,
//! bad arguments and settings refused with a clear error (never a panic), and
//! `--json` output that is one document.

use std::os::unix::ffi::OsStrExt;

use crate::util::{stderr, Site};

#[test]
fn debug_logs_are_gazettes_own_and_info_has_a_line_per_stage() {
    let site = Site::sample();
    let out = site
        .command(&["run", "--week", "2026-W06"])
        .env("GAZETTE_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    // html5ever alone wrote hundreds of lines per run at debug.
    for noisy in ["html5ever", "selectors", "markup5ever", "hyper"] {
        assert!(!log.contains(noisy), "{noisy} in:\n{log}");
    }
    for own in ["issue built", "deliveries to make", "handled in this run"] {
        assert!(log.contains(own), "no {own:?} in:\n{log}");
    }
    let delivered = log
        .lines()
        .filter(|l| l.contains("DEBUG") && l.contains("delivered"))
        .count();
    assert_eq!(delivered, 3, "one debug line per delivery:\n{log}");
    assert!(log.lines().count() < 40, "{log}");
    // Times are in the newsletter's zone (the sample's is Asia/Karachi).
    let stamped = log.lines().find(|l| l.contains("issue built")).unwrap();
    assert!(
        stamped
            .split_whitespace()
            .next()
            .unwrap()
            .ends_with("+05:00"),
        "{stamped}"
    );
    let explain = site.ok(&["explain", "--week", "2026-W06"]);
    assert!(
        explain
            .lines()
            .next()
            .unwrap()
            .ends_with("2026-02-09 00:00 PKT"),
        "{explain}"
    );
}

#[test]
fn an_invalid_log_filter_is_an_error_that_names_it() {
    let site = Site::sample();
    let out = site
        .command(&["subscribers", "count"])
        .env("GAZETTE_LOG", "info,gazette=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("GAZETTE_LOG"), "{}", stderr(&out));
}

#[test]
fn arguments_that_are_not_utf8_or_contradict_are_refused_not_a_panic() {
    let site = Site::sample();
    let bad = std::ffi::OsStr::from_bytes(b"a\xff@example.com");
    let out = site
        .command(&["subscribers", "add"])
        .arg(bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid UTF-8"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    let out = site.run(&["send", "--dry-run", "--test", "me@example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_argument_in_help_has_a_description() {
    let site = Site::sample();
    for command in [
        &["build"][..],
        &["explain"],
        &["send"],
        &["run"],
        &["unsubscribe"],
        &["backup"],
        &["restore"],
        &["bounces", "import"],
        &["subscribers", "add"],
        &["subscribers", "import"],
        &["subscribers", "list"],
        &["subscribers", "count"],
        &["subscribers", "remove"],
        &["subscribers", "export"],
        &["subscribers", "wipe"],
        &["views", "import"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = site.ok(&args);
        let mut in_lists = false;
        for line in help.lines() {
            if line.ends_with(':') {
                in_lists = line == "Arguments:" || line == "Options:";
                continue;
            }
            let entry = line.trim_start();
            if !in_lists || entry.is_empty() || !(entry.starts_with('-') || entry.starts_with('<'))
            {
                continue;
            }
            // "  --week <YYYY-Www>  The ISO week…": a name, two spaces, words.
            assert!(
                entry.contains("  "),
                "{command:?}: {entry:?} has no description:\n{help}"
            );
        }
    }
}

#[test]
fn json_output_is_one_document() {
    let site = Site::sample();
    site.ok(&["init"]);
    let list = site.ok(&["subscribers", "list", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&list).expect("one JSON document");
    assert_eq!(value.as_array().map(Vec::len), Some(3), "{list}");
    let list = site.ok(&["subscribers", "list", "--json", "--status", "bounced"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list).unwrap(),
        serde_json::json!([])
    );
    let count = site.ok(&["subscribers", "count", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&count).unwrap()["active"],
        3
    );
}

#[test]
fn an_address_that_cannot_be_sent_to_is_refused_by_name() {
    let site = Site::sample();
    for bad in [
        "\"john doe\"@example.com",
        "\"j\"@example.com",
        "a..b@example.com",
        ".a@example.com",
        "é@example.com",
        "x@localhost",
    ] {
        let out = site.run(&["subscribers", "add", bad]);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(stderr(&out).contains(bad), "{bad}: {}", stderr(&out));
    }
    site.ok(&["subscribers", "add", "o'brien+news@example.com"]);
    site.ok(&["subscribers", "add", "jose+news@mail.example.co.uk"]);
}

#[test]
fn the_database_backups_and_outbox_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::sample();
    site.ok(&["run", "--week", "2026-W06"]);
    site.ok(&["backup", "copy.db"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut checked = vec![site.path("gazette.db"), site.path("copy.db")];
    for entry in std::fs::read_dir(site.path("digests/2026-W06/outbox")).unwrap() {
        checked.push(entry.unwrap().path());
    }
    assert_eq!(checked.len(), 5);
    for wal in ["gazette.db-wal", "gazette.db-shm"] {
        if site.path(wal).exists() {
            checked.push(site.path(wal));
        }
    }
    for path in checked {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn serve_refuses_the_development_secret_beyond_loopback() {
    let site = Site::sample();
    let out = site
        .command(&["serve"])
        .env("GAZETTE_SERVER__LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("GAZETTE_SECRET is not set") && err.contains("development secret"),
        "{err}"
    );
}

#[test]
fn a_missing_seed_file_creates_no_database() {
    let site = Site::sample();
    let config = std::fs::read_to_string(site.path("config.toml"))
        .unwrap()
        .replace("sample/subscribers.csv", "sample/nope.csv");
    std::fs::write(site.path("config.toml"), config).unwrap();
    let out = site.run(&["subscribers", "count"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("seed_subscribers") && stderr(&out).contains("nope.csv"),
        "{}",
        stderr(&out)
    );
    assert!(
        !site.path("gazette.db").exists(),
        "no empty database left behind"
    );
}
