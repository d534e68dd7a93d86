//! DKIM signatures checked by an independent verifier: dkimpy (Python), with the
//! DNS answer given. RSA-2048 and Ed25519, and the List-Unsubscribe headers must
//! be covered (RFC 8058 §4). Skipped, saying so, where Python's `dkim` and `nacl`
//! modules or `openssl` are missing (`.ci/run` installs them).

use std::process::Command;

use crate::util::{fixture, Site};

/// dkimpy with PyNaCl, and openssl to make the keys.
pub fn available() -> bool {
    let python = Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .output()
        .is_ok_and(|o| o.status.success());
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    python && openssl
}

/// An RSA-2048 key (PKCS#1 PEM) and its DNS record.
fn rsa_key(dir: &std::path::Path) -> (String, String) {
    let pem = dir.join("rsa.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&pem)
        .arg("2048")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let public = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl rsa -in {} -pubout -outform DER 2>/dev/null | base64 -w0",
            pem.display()
        ))
        .output()
        .unwrap();
    let p = String::from_utf8(public.stdout).unwrap();
    (
        std::fs::read_to_string(&pem).unwrap(),
        format!("v=DKIM1; k=rsa; p={}", p.trim()),
    )
}

/// An Ed25519 key (base64 seed, as lettre takes it) and its DNS record.
fn ed25519_key() -> (String, String) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import base64, nacl.signing as s; k = s.SigningKey.generate(); print(base64.b64encode(bytes(k)).decode()); print(base64.b64encode(bytes(k.verify_key)).decode())",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let seed = lines.next().unwrap().to_string();
    let public = lines.next().unwrap().to_string();
    (seed, format!("v=DKIM1; k=ed25519; p={public}"))
}

pub fn signatures_verify_with_an_independent_implementation() {
    let verifier = crate::util::repo_file("tests/dkim-verify/verify.py");
    let keys_dir = tempfile::tempdir().unwrap();
    for (name, (key, record)) in [
        ("rsa", rsa_key(keys_dir.path())),
        ("ed25519", ed25519_key()),
    ] {
        let key_file = keys_dir.path().join(format!("{name}.key"));
        std::fs::write(&key_file, key).unwrap();
        let feed = fixture("site.rss");
        let site = Site::new(
            &[feed.to_str().unwrap()],
            &format!(
                "\n[smtp]\nfeedback_id = \"{{week}}:weekly:news\"\n\n[smtp.dkim]\ndomain = \"news.test\"\nselector = \"s1\"\nkey_file = {:?}\n",
                key_file.display().to_string()
            ),
        );
        site.import_people("reader", 3);
        site.ok(&["fetch"]);
        site.ok(&["send", "--week", "2026-W06"]);
        let mut checked = 0;
        for entry in std::fs::read_dir(site.path("digests/2026-W06/outbox")).unwrap() {
            let path = entry.unwrap().path();
            let raw = std::fs::read_to_string(&path).unwrap();
            let signature: String = raw
                .split("\r\n")
                .skip_while(|l| !l.to_ascii_lowercase().starts_with("dkim-signature:"))
                .take_while(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("");
            let h = signature.to_ascii_lowercase();
            assert!(
                raw.contains("\r\nFeedback-ID: 2026-W06:weekly:news\r\n"),
                "{raw}"
            );
            for header in [
                "feedback-id",
                "list-unsubscribe",
                "list-unsubscribe-post",
                "message-id",
                "from",
                "to",
                "subject",
                "date",
            ] {
                assert!(
                    h.split("h=").nth(1).is_some_and(|list| list
                        .split(';')
                        .next()
                        .unwrap()
                        .split(':')
                        .any(|x| x.trim() == header)),
                    "{name}: {header} is not signed: {signature}"
                );
            }
            assert!(h.contains("c=relaxed/relaxed"), "{signature}");
            let out = Command::new("python3")
                .arg(&verifier)
                .arg(&path)
                .arg(&record)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: dkimpy says {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
        assert_eq!(checked, 3, "{name}");
    }
}
