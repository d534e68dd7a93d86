//! Bounces and complaints read from mail: realistic reports from Postfix, Exim,
//! Gmail, Exchange Online and Yahoo's feedback loop (see fixtures/bounces/README.md),
//! filled with what gazette really sent, change subscribers as the policy says;
//! malformed ones are reported; reading them again changes nothing.

use std::collections::HashMap;

use gazette::store::Status;
use mail_parser::MessageParser;

use crate::mailserver::{Faults, MailServer};
use crate::util::{fixture, stderr, Site};

const SECRET: &str = "bounce-secret-0123456789-0123456789";

struct Sent {
    verp: String,
    message_id: String,
    list_unsubscribe: String,
}

/// Sends weeks 2026-W05 and 2026-W06 to six subscribers with VERP on, and
/// returns what each address received, by week.
fn sent_site(mail: &MailServer) -> (Site, HashMap<(String, String), Sent>) {
    let feed = fixture("site.rss");
    let site = Site::new(
        &[feed.to_str().unwrap()],
        &format!("\n[smtp]\nurl = {:?}\nbounce_domain = \"bounces.news.test\"\n\n[bounces]\nsoft_limit = 2\n", mail.url()),
    );
    site.import_people("person", 6);
    for week in ["2026-W05", "2026-W06"] {
        let out = site
            .command(&["run", "--week", week])
            .env("GAZETTE_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut sent = HashMap::new();
    for r in mail.received() {
        let m = MessageParser::default().parse(&r.data).unwrap();
        let week = m
            .message_id()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_string();
        assert!(
            r.from.starts_with("bounce+") && r.from.ends_with("@bounces.news.test"),
            "VERP sender: {}",
            r.from
        );
        sent.insert(
            (r.to[0].clone(), week),
            Sent {
                verp: r.from.clone(),
                message_id: format!("<{}>", m.message_id().unwrap()),
                list_unsubscribe: m
                    .header_raw("List-Unsubscribe")
                    .unwrap()
                    .trim()
                    .replace("\r\n", ""),
            },
        );
    }
    (site, sent)
}

fn fill(name: &str, email: &str, sent: &Sent, dir: &std::path::Path) {
    let text = std::fs::read_to_string(fixture(&format!("bounces/{name}")))
        .unwrap()
        .replace("{VERP}", &sent.verp)
        .replace("{MESSAGE_ID}", &sent.message_id)
        .replace("{EMAIL}", email)
        .replace("{LIST_UNSUBSCRIBE}", &sent.list_unsubscribe);
    std::fs::write(dir.join(format!("{email}-{name}")), text).unwrap();
}

/// `gazette bounces import PATH`, which must succeed; what it printed.
fn import_mail(site: &Site, path: &str) -> String {
    let out = site
        .command(&["bounces", "import", path])
        .env("GAZETTE_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn reports_from_real_servers_change_subscribers_as_the_policy_says() {
    let mail = MailServer::start(Faults::default());
    let (site, sent) = sent_site(&mail);
    let w6 = |i: usize| &sent[&(format!("person{i}@example.com"), "2026-W06".to_string())];
    let w5 = |i: usize| &sent[&(format!("person{i}@example.com"), "2026-W05".to_string())];
    let inbox = site.path("bounce-mail");
    std::fs::create_dir(&inbox).unwrap();
    fill("postfix-hard.eml", "person1@example.com", w6(1), &inbox);
    fill("gmail-hard.eml", "person2@example.com", w6(2), &inbox);
    fill("microsoft-hard.eml", "person3@example.com", w6(3), &inbox);
    fill("exim-delayed.eml", "person4@example.com", w6(4), &inbox);
    fill("yahoo-arf.eml", "person5@example.com", w6(5), &inbox);
    for name in ["not-a-report.eml", "report-without-status.eml"] {
        std::fs::copy(fixture(&format!("bounces/{name}")), inbox.join(name)).unwrap();
    }
    let run = |path: &str| import_mail(&site, path);
    let out = run("bounce-mail");
    assert!(
        out.starts_with("5 applied, 0 already read, 2 not recognised or not matched"),
        "{out}"
    );
    assert!(out.contains("not-a-report.eml: not recognised"), "{out}");
    assert!(
        out.contains("report-without-status.eml: not recognised"),
        "{out}"
    );
    for i in 1..=3 {
        assert_eq!(
            site.status(&format!("person{i}@example.com")),
            Status::Bounced,
            "person{i}"
        );
    }
    // One soft bounce is counted, not acted on.
    assert_eq!(site.status("person4@example.com"), Status::Active);
    assert_eq!(site.status("person5@example.com"), Status::Complained);
    assert_eq!(site.status("person6@example.com"), Status::Active);
    assert_eq!(
        site.count("SELECT count(*) FROM unsubscribe_events WHERE method = 'complaint'"),
        1
    );
    assert_eq!(
        site.count("SELECT count(*) FROM unsubscribe_events WHERE method = 'bounce'"),
        3
    );
    assert_eq!(site.count("SELECT count(*) FROM bounce_events WHERE kind = 'hard' AND status IN ('5.1.1', '5.1.10') AND issue_id IS NOT NULL"), 3);

    // Reading the same mail again changes nothing.
    let before = site.count("SELECT count(*) FROM bounce_events");
    let out = run("bounce-mail");
    assert!(out.starts_with("0 applied, 5 already read"), "{out}");
    assert_eq!(site.count("SELECT count(*) FROM bounce_events"), before);

    // A second soft bounce, from another issue, in an mbox: now bounced.
    let mbox_dir = site.path("second");
    std::fs::create_dir(&mbox_dir).unwrap();
    fill("exim-delayed.eml", "person4@example.com", w5(4), &mbox_dir);
    let eml =
        std::fs::read_to_string(mbox_dir.join("person4@example.com-exim-delayed.eml")).unwrap();
    let eml = eml.replace("E1vQxyz-0003Ab-2k", "E1vQzzz-0009Zz-9z");
    std::fs::write(
        site.path("bounces.mbox"),
        format!("From MAILER-DAEMON Tue Feb 10 08:05:00 2026\n{eml}\n"),
    )
    .unwrap();
    let out = run("bounces.mbox");
    assert!(out.contains("soft bounce 2 of 2: marked bounced"), "{out}");
    assert_eq!(site.status("person4@example.com"), Status::Bounced);
}

#[test]
fn a_maildir_is_read_and_a_report_matching_nobody_is_reported() {
    let mail = MailServer::start(Faults::default());
    let (site, sent) = sent_site(&mail);
    let maildir = site.path("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let mut stranger = Sent {
        verp: "someone@else.test".into(),
        message_id: "<nothing@else.test>".into(),
        list_unsubscribe: "<https://else.test/u/1.x>".into(),
    };
    fill(
        "postfix-hard.eml",
        "stranger@example.com",
        &stranger,
        &maildir.join("new"),
    );
    stranger.verp = sent[&("person6@example.com".to_string(), "2026-W06".to_string())]
        .verp
        .clone();
    // A VERP address matches even when the report names some other address.
    fill(
        "postfix-hard.eml",
        "alias@example.com",
        &stranger,
        &maildir.join("cur"),
    );
    // Another report has another Message-Id.
    let second = maildir.join("cur/alias@example.com-postfix-hard.eml");
    let text = std::fs::read_to_string(&second)
        .unwrap()
        .replace("4F1A2B3C5D@mail", "5A6B7C8D9E@mail");
    std::fs::write(&second, text).unwrap();
    let text = import_mail(&site, "Maildir");
    assert!(text.contains("matches no subscriber"), "{text}");
    assert!(text.starts_with("1 applied"), "{text}");
    assert_eq!(site.status("person6@example.com"), Status::Bounced);
}

#[test]
fn forged_reports_change_nobody_and_an_unsubscribe_mail_applies_by_its_token() {
    let mail = MailServer::start(Faults::default());
    let (site, sent) = sent_site(&mail);
    let w6 = |i: usize| &sent[&(format!("person{i}@example.com"), "2026-W06".to_string())];
    let inbox = site.path("forged");
    std::fs::create_dir(&inbox).unwrap();
    // Reports anyone could write: from MAILER-DAEMON@attacker, naming our
    // subscribers' addresses, with a Message-ID in our format but never sent.
    let forged = Sent {
        verp: "mailer-daemon@attacker.example".into(),
        message_id: "<2026-W06.1.aaaaaaaaaaaa@bounces.news.test>".into(),
        list_unsubscribe: "<https://attacker.example/u/1.forged>".into(),
    };
    fill("postfix-hard.eml", "person1@example.com", &forged, &inbox);
    fill("yahoo-arf.eml", "person2@example.com", &forged, &inbox);
    // Yahoo redacts the complainer; a forger names them.
    let arf = inbox.join("person2@example.com-yahoo-arf.eml");
    let text = std::fs::read_to_string(&arf)
        .unwrap()
        .replace("redacted@yahoo.com", "person2@example.com");
    std::fs::write(&arf, text).unwrap();

    // What a mail client sends for the mailto: of List-Unsubscribe. With no
    // unsubscribe_mailto configured it goes to the bounce domain.
    let header = &w6(3).list_unsubscribe;
    let mailto = header
        .split(['<', '>'])
        .find(|p| p.starts_with("mailto:"))
        .unwrap_or_else(|| panic!("no mailto in {header}"));
    let (to, query) = mailto["mailto:".len()..].split_once('?').unwrap();
    assert_eq!(to, "unsubscribe@bounces.news.test");
    let subject: String = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "subject")
        .unwrap()
        .1
        .into_owned();
    std::fs::write(
        inbox.join("unsubscribe.eml"),
        format!("From: person3@example.com\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <u1@mail.example.com>\r\n\r\n\r\n"),
    )
    .unwrap();
    // The same with a forged token unsubscribes nobody.
    std::fs::write(
        inbox.join("unsubscribe-forged.eml"),
        format!("From: x@attacker.example\r\nTo: {to}\r\nSubject: unsubscribe 4.AAAAAAAAAAAAAAAAAAAAAA\r\nMessage-ID: <u2@attacker.example>\r\n\r\n\r\n"),
    )
    .unwrap();

    let text = import_mail(&site, "forged");
    assert!(text.starts_with("1 applied"), "{text}");
    assert!(text.contains("3 unverified (not applied)"), "{text}");
    assert!(
        text.contains("unsubscribe request by mail for subscriber 3: unsubscribed"),
        "{text}"
    );
    for i in [1, 2, 4] {
        assert_eq!(
            site.status(&format!("person{i}@example.com")),
            Status::Active,
            "person{i}"
        );
    }
    assert_eq!(site.status("person3@example.com"), Status::Unsubscribed);
    assert_eq!(
        site.count("SELECT count(*) FROM unsubscribe_events WHERE method = 'mail'"),
        1
    );
    assert_eq!(site.count("SELECT count(*) FROM bounce_events"), 0);

    // They come back (a confirmed new request); the mailbox is read again: the
    // old request is not applied a second time.
    site.db()
        .execute(
            "UPDATE subscribers SET status = 'active' WHERE email = 'person3@example.com'",
            [],
        )
        .unwrap();
    let text = import_mail(&site, "forged");
    assert!(text.starts_with("0 applied, 1 already read"), "{text}");
    assert_eq!(site.status("person3@example.com"), Status::Active);
}

/// Real delivery reports (flufl.bounce's corpus, fixtures/bounces/flufl): every
/// DSN is read with the recipient flufl.bounce expects and classified as it
/// says (delays as soft); mail that is no DSN is reported, never guessed at.
#[test]
fn real_dsns_are_read_with_the_recipient_their_corpus_names() {
    use gazette::bounce::{read, Kind};
    // (file, failed address, temporary), from flufl.bounce's tests.
    let dsns = [
        ("dsn_01.txt", "userx@example.com", false),
        // 4.4.7: the remote server gave up retrying. flufl.bounce counts it a
        // bounce; gazette counts it soft, towards [bounces] soft_limit.
        ("dsn_02.txt", "zzzzz@example.uk", true),
        ("dsn_03.txt", "userx@example.be", false),
        ("dsn_04.txt", "userx@example.ch", false),
        ("dsn_05.txt", "userx@example.cz", true),
        ("dsn_06.txt", "userx@example.com", true),
        ("dsn_07.txt", "userx@example.nz", true),
        ("dsn_08.txt", "userx@example.de", true),
        ("dsn_09.txt", "userx@example.com", false),
        ("dsn_10.txt", "anne.person@dom.ain", false),
        ("dsn_11.txt", "joem@example.com", false),
        ("dsn_12.txt", "userx@example.jp", false),
        ("dsn_13.txt", "userx@example.com", false),
        ("dsn_14.txt", "userx@example.com.dk", false),
        ("dsn_15.txt", "userx@example.com", false),
        ("dsn_16.txt", "userx@example.com", false),
        ("dsn_17.txt", "userx@example.fi", true),
        ("dsn_18.txt", "email@replaced.net", false),
    ];
    let mut problems = Vec::new();
    for (file, address, temporary) in dsns {
        let raw = std::fs::read(fixture(&format!("bounces/flufl/{file}"))).unwrap();
        let raw = gazette::bounce::messages_at(&fixture(&format!("bounces/flufl/{file}")))
            .map(|m| m.into_iter().next().unwrap().1)
            .unwrap_or(raw);
        match read(&raw).kind {
            Kind::Bounce(recipients) => {
                match recipients
                    .iter()
                    .find(|r| r.address.as_deref() == Some(address))
                {
                    Some(r) if temporary && !r.is_soft() => {
                        problems.push(format!("{file}: {address} {} not soft", r.status))
                    }
                    Some(r) if !temporary && r.is_soft() => {
                        problems.push(format!("{file}: {address} {} not hard", r.status))
                    }
                    Some(_) => {}
                    None => problems.push(format!("{file}: {address} not among {recipients:?}")),
                }
            }
            other => problems.push(format!("{file}: {other:?}")),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // Older servers' reports in prose, without a machine-readable part:
    // listed as not recognised, never guessed at.
    for file in ["postfix_01.txt", "exim_01.txt"] {
        let raw = std::fs::read(fixture(&format!("bounces/flufl/{file}"))).unwrap();
        let kind = read(&raw).kind;
        assert!(
            matches!(&kind, Kind::Unrecognised(why) if why.contains("no message/delivery-status")),
            "{file}: {kind:?}"
        );
    }
}

/// One real DSN (flufl.bounce's dsn_09, from a server that reports in X.400
/// form) made to carry exactly one proof at a time: each proof alone finds its
/// subscriber; the address alone proves nothing.
#[test]
fn each_proof_alone_matches_a_real_report() {
    let mail = MailServer::start(Faults::default());
    let (site, sent) = sent_site(&mail);
    let w6 = |i: usize| &sent[&(format!("person{i}@example.com"), "2026-W06".to_string())];
    let real = std::fs::read_to_string(fixture("bounces/flufl/dsn_09.txt")).unwrap();
    let original_id = "Message-ID: <3BE4F1EC.8306C281@nleaudio.com>";
    assert!(
        real.contains(&format!("\n{original_id}\n")) && real.contains("\nTo: user@example.com\n")
    );
    let own_id = "<\"c2bapps1.b:026710:20011104074531\"@btconnect.com>";
    let report =
        |n: usize, text: String| text.replace(own_id, &format!("<report-{n}@btconnect.com>"));
    let inbox = site.path("one-proof");
    std::fs::create_dir(&inbox).unwrap();
    let write = |name: &str, text: String| std::fs::write(inbox.join(name), text).unwrap();
    // 1: only the VERP address it came back to.
    write(
        "verp.txt",
        report(
            1,
            real.replace(
                "\nTo: user@example.com\n",
                &format!("\nTo: {}\n", w6(1).verp),
            ),
        ),
    );
    // 2: only the original's Message-ID, one gazette sent.
    write(
        "message-id.txt",
        report(
            2,
            real.replace(
                &format!("\n{original_id}\n"),
                &format!("\nMessage-ID: {}\n", w6(2).message_id),
            ),
        ),
    );
    // 3: only the original's List-Unsubscribe token.
    write(
        "token.txt",
        report(
            3,
            real.replace(
                &format!("\n{original_id}\n"),
                &format!(
                    "\n{original_id}\nList-Unsubscribe: {}\n",
                    w6(3).list_unsubscribe
                ),
            ),
        ),
    );
    // 4: only the subscriber's address as the failed recipient.
    write(
        "address.txt",
        report(4, real.replace("userx@example.com", "person4@example.com")),
    );
    let text = import_mail(&site, "one-proof");
    assert!(text.starts_with("3 applied"), "{text}");
    assert!(text.contains("1 unverified"), "{text}");
    for i in 1..=3 {
        assert_eq!(
            site.status(&format!("person{i}@example.com")),
            Status::Bounced,
            "person{i}: {text}"
        );
    }
    assert_eq!(site.status("person4@example.com"), Status::Active);
}
