//! "Looks right in every inbox": the sample digest checked against caniemail's
//! data beside an MJML twin of the same issue (the industry's reference for
//! responsive email), sizes as sent, and headless Chromium at 360, 600 and 800 px
//! in light and dark with overflow and contrast measured.
//!
//! Run alone, with its report: `cargo test --test external inbox -- --nocapture`.
//! Needs Node with `npm ci --prefix tests/email-check` (`.ci/run` does it) and
//! Chromium; reported as ignored, with what to install, without them.

use std::collections::BTreeSet;
use std::process::Command;

use maud::{html, Markup};
use serde_json::Value;

use crate::browser::{check_digest, chromium_present};
use crate::util::{repo_file, Site};

/// The same issue as MJML, from digest.json: same words, links, colours and widths.
fn mjml_twin(record: &Value, name: &str, postal: &str, archive: &str) -> String {
    let picks = record["selection"]["picks"].as_array().unwrap();
    let story = |i: usize, p: &Value| -> Markup {
        let url = p["url"].as_str().unwrap();
        let title = p["title"].as_str().unwrap();
        let date = chrono::DateTime::parse_from_rfc3339(p["published_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono_tz::Asia::Karachi)
            .format("%-d %b")
            .to_string();
        let kicker = match p["topic"].as_str() {
            Some(t) => format!("{date} · {t}").to_uppercase(),
            None => date.to_uppercase(),
        };
        html! {
            mj-section background-color="#ffffff" border-top="1px solid #d8dde4" padding="20px 0" {
                mj-column {
                    @if i == 0 {
                        @if let Some(img) = p["image"].as_str() {
                            mj-image src=(img) alt=(title) href=(url) width="552px" padding="0 24px 14px" {}
                        }
                    }
                    mj-text font-size="12px" line-height="18px" color="#4b5563" padding="0 24px 6px" { (kicker) }
                    mj-text font-family="Georgia, 'Times New Roman', serif" font-size="21px" line-height="28px" font-weight="bold" padding="0 24px 8px" {
                        a href=(url) style="color:#0b4f9c;text-decoration:none" { (title) }
                    }
                    mj-text font-size="16px" line-height="24px" color="#1f2937" padding="0 24px 10px" { (p["summary"].as_str().unwrap_or("")) }
                    @if i == 0 {
                        mj-button href=(url) background-color="#0b4f9c" color="#ffffff" font-size="16px" font-weight="bold" border-radius="4px" inner-padding="12px 22px" align="left" padding="0 24px" { "Read the story →" }
                    } @else {
                        mj-text font-size="15px" line-height="22px" font-weight="bold" padding="0 24px" {
                            a href=(url) style="color:#0b4f9c" { "Read the story →" }
                        }
                    }
                }
            }
        }
    };
    html! {
        mjml {
            mj-head {
                mj-title { (record["subject"].as_str().unwrap()) }
                mj-preview { (record["preheader"].as_str().unwrap()) }
                mj-attributes { mj-all font-family="Arial, Helvetica, sans-serif" {} }
            }
            mj-body background-color="#eef1f5" width="600px" {
                mj-section background-color="#ffffff" padding="12px 0 8px" {
                    mj-column {
                        mj-text align="right" font-size="12px" padding="0 24px" { a href=(archive) style="color:#0b4f9c" { "View in your browser" } }
                        mj-text font-family="Georgia, 'Times New Roman', serif" font-size="26px" line-height="32px" font-weight="bold" color="#111827" padding="24px 24px 8px" { (name) }
                        mj-text font-size="16px" color="#1f2937" padding="8px 24px" { "Hello," }
                    }
                }
                @for (i, p) in picks.iter().enumerate() { (story(i, p)) }
                mj-section background-color="#ffffff" border-top="1px solid #d8dde4" {
                    mj-column {
                        mj-text font-size="13px" line-height="20px" color="#4b5563" padding="20px 24px 8px" {
                            "You are receiving " (name) " because you subscribed to it. "
                            a href="https://example.com/u/TOKEN" style="color:#0b4f9c" { "Unsubscribe" } " in one click."
                        }
                        mj-text font-size="13px" color="#4b5563" padding="0 24px 28px" { (postal) }
                    }
                }
            }
        }
    }
    .into_string()
}

/// (feature, client) pairs a checker found entirely unsupported.
fn unsupported(findings: &Value) -> BTreeSet<(String, String)> {
    findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["support"] == "none")
        .flat_map(|f| {
            f["clients"].as_array().unwrap().iter().map(move |c| {
                (
                    f["feature"].as_str().unwrap().to_string(),
                    c.as_str().unwrap().to_string(),
                )
            })
        })
        .collect()
}

fn print_findings(label: &str, findings: &Value) {
    eprintln!(
        "--- {label}: {} findings",
        findings.as_array().unwrap().len()
    );
    for f in findings.as_array().unwrap() {
        let clients: Vec<&str> = f["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        eprintln!(
            "  {:<8} {:<28} {}",
            f["support"].as_str().unwrap(),
            f["feature"].as_str().unwrap(),
            clients.join(" ")
        );
    }
}

/// WCAG contrast ratio of two `rgb(r, g, b)` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let lum = |c: &str| -> f64 {
        let v: Vec<f64> = c
            .trim_start_matches("rgba(")
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .take(3)
            .map(|x| x.trim().parse::<f64>().unwrap() / 255.0)
            .map(|x| {
                if x <= 0.03928 {
                    x / 12.92
                } else {
                    ((x + 0.055) / 1.055).powf(2.4)
                }
            })
            .collect();
        0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]
    };
    let (la, lb) = (lum(a), lum(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

pub fn contrast_is_computed_as_wcag_says() {
    assert!((contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") - 21.0).abs() < 1e-9);
    assert!((contrast("rgb(118, 118, 118)", "rgb(255, 255, 255)") - 4.54).abs() < 0.01);
}

/// Node and the check's packages (`npm ci --prefix tests/email-check`).
pub fn node_packages_present() -> bool {
    let check = repo_file("tests/email-check");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    node_ok
        && check.join("node_modules/caniemail").exists()
        && check.join("node_modules/mjml").exists()
}

pub fn inbox_check_against_caniemail_and_an_mjml_twin() {
    let check = repo_file("tests/email-check");
    let site = Site::sample();
    site.ok(&["fetch"]);
    site.ok(&["build", "--week", "2026-W06"]);
    let config = site.config();
    let dir = site.path("digests/2026-W06");
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("digest.json")).unwrap()).unwrap();
    let twin = mjml_twin(
        &record,
        &config.newsletter.name,
        &config.newsletter.postal_address,
        &gazette::render::archive_url(&config.newsletter, "2026-W06".parse().unwrap()),
    );
    std::fs::write(dir.join("twin.mjml"), twin).unwrap();
    let out = Command::new("node")
        .arg(check.join("check.mjs"))
        .arg(dir.join("digest.html"))
        .arg(dir.join("twin.mjml"))
        .arg(dir.join("twin.html"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Sizes as sent: the same text part, each HTML, through the same message builder.
    let (issue, _) = gazette::digest::read_issue(&dir).unwrap().unwrap();
    let week = "2026-W06".parse().unwrap();
    let ours = gazette::message::sent_size(&issue, &config, week);
    let twin_issue = gazette::render::Issue {
        html: std::fs::read_to_string(dir.join("twin.html")).unwrap(),
        ..issue.clone()
    };
    let theirs = gazette::message::sent_size(&twin_issue, &config, week);

    print_findings("gazette", &report["gazette"]["findings"]);
    print_findings("MJML twin", &report["mjml"]["findings"]);
    eprintln!(
        "--- size as sent: gazette {ours} bytes, MJML twin {theirs} bytes ({:.2}×)",
        ours as f64 / theirs as f64
    );
    let only_ours: Vec<_> = unsupported(&report["gazette"]["findings"])
        .difference(&unsupported(&report["mjml"]["findings"]))
        .cloned()
        .collect();
    assert!(
        only_ours.is_empty(),
        "unsupported in gazette's digest but not in MJML's: {only_ours:?}"
    );
    assert!(
        ours < theirs,
        "gazette's digest ({ours} bytes) is not smaller than MJML's ({theirs})"
    );

    let chromium = chromium_present();
    check_digest(
        &chromium,
        &dir.join("digest.html"),
        &[360, 600, 800],
        "inbox",
        |label, _, p| {
            let ratio = contrast(&p.color, &p.background);
            eprintln!(
                "--- {label}: body text {} on {}: contrast {ratio:.1}:1",
                p.color, p.background
            );
            assert!(
                ratio >= 4.5,
                "{label}: body text contrast {ratio:.2} is under 4.5:1"
            );
        },
    );
}
