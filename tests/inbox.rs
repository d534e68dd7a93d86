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

/// The same issue as MJML, from digest.json: the same layout (masthead, lead
/// with its button, briefs under topic headings, footer), words, links, colours
/// and widths.
fn mjml_twin(record: &Value, config: &gazette::config::Config, archive: &str) -> String {
    use gazette::rank::Candidate;
    let picks: Vec<Candidate> =
        serde_json::from_value(record["selection"]["picks"].clone()).unwrap();
    let name = &config.newsletter.name;
    let accent = config.theme.accent.to_string();
    let date = |c: &Candidate| {
        c.published_at
            .with_timezone(&config.newsletter.timezone)
            .format("%-d %b")
            .to_string()
            .to_uppercase()
    };
    let (lead, briefs) = picks.split_first().unwrap();
    let sections = gazette::render::sections(briefs);
    let summary_chars = config.ranking.summary_chars;
    let intro = gazette::render::generated_intro(&gazette::rank::Selection {
        picks: picks.clone(),
        others: vec![],
        signals: vec![],
    });
    let link_style =
        format!("color:{accent};display:inline-block;padding:12px 0;margin-right:14px");
    html! {
        mjml {
            mj-head {
                mj-title { (record["subject"].as_str().unwrap()) }
                mj-preview { (record["preheader"].as_str().unwrap()) }
                mj-attributes { mj-all font-family="Arial, Helvetica, sans-serif" {} }
            }
            mj-body background-color="#eef1f5" width="600px" {
                mj-section background-color="#ffffff" padding="20px 0 0" border-bottom={"3px solid " (accent)} {
                    mj-column {
                        mj-text font-family="Georgia, 'Times New Roman', serif" font-size="26px" line-height="32px" font-weight="bold" color="#111827" padding="0 24px 2px" { h1 style="margin:0;font-size:26px" { (name) } }
                        mj-text font-size="14px" line-height="20px" color="#4b5563" padding="0 24px" {
                            "Top stories · 2 Feb – 8 Feb 2026 · "
                            a href=(archive) style=(link_style) { "View in your browser" }
                        }
                    }
                }
                mj-section background-color="#ffffff" padding="14px 0 2px" {
                    mj-column {
                        mj-text font-size="16px" line-height="24px" color="#1f2937" padding="0 24px 12px" { "Hello," }
                        mj-text font-size="16px" line-height="24px" color="#1f2937" padding="0 24px 12px" { (intro) }
                    }
                }
                mj-section background-color="#ffffff" padding="8px 0 22px" {
                    mj-column {
                        mj-text font-size="13px" line-height="18px" font-weight="bold" color=(accent) padding="0 24px 6px" { "TOP STORY · " (date(lead)) }
                        @if let Some(img) = &lead.image {
                            mj-image src=(img) alt="" width="552px" padding="0 24px 14px" {}
                        }
                        mj-text font-family="Georgia, 'Times New Roman', serif" font-size="24px" line-height="31px" font-weight="bold" padding="0 24px 8px" {
                            h2 style="margin:0;font-size:24px" { a href=(lead.reader_link()) style="color:#111827;text-decoration:none" { (lead.title) } }
                        }
                        mj-text font-size="16px" line-height="24px" color="#1f2937" padding="0 24px 16px" {
                            (gazette::text::cut_summary(&lead.summary, summary_chars))
                        }
                        mj-button href=(lead.reader_link()) background-color=(accent) color="#ffffff" font-size="16px" font-weight="bold" border-radius="4px" inner-padding="12px 22px" align="left" padding="0 24px" { "Read the full story" }
                    }
                }
                @for (title, stories) in &sections {
                    mj-section background-color="#ffffff" border-top="1px solid #d8dde4" padding="14px 0 0" {
                        mj-column {
                            mj-text font-size="14px" line-height="20px" font-weight="bold" color="#4b5563" padding="0 24px" { h2 style="margin:0;font-size:14px" { (title.to_uppercase()) } }
                        }
                    }
                    @for c in stories {
                        mj-section background-color="#ffffff" padding="8px 0" {
                            mj-column {
                                mj-text font-family="Georgia, 'Times New Roman', serif" font-size="18px" line-height="22px" font-weight="bold" padding="0 24px 4px" {
                                    h3 style="margin:0;font-size:18px" { a href=(c.reader_link()) style={"color:" (accent) ";text-decoration:none"} { (c.title) } }
                                }
                                mj-text font-size="15px" line-height="21px" color="#1f2937" padding="0 24px" { (gazette::render::brief_summary(c, summary_chars)) }
                            }
                        }
                    }
                }
                mj-section background-color="#ffffff" border-top="1px solid #d8dde4" padding="16px 0 20px" {
                    mj-column {
                        mj-text font-size="14px" line-height="20px" color="#4b5563" padding="0 24px 8px" {
                            "You are receiving " (name) " because you subscribed to it. " (config.newsletter.postal_address)
                        }
                        mj-text font-size="14px" line-height="20px" color="#4b5563" padding="0 24px" {
                            a href="https://example.com/u/TOKEN" style=(link_style) { "Unsubscribe" }
                            a href="https://example.com/data/TOKEN" style=(link_style) { "Your data" }
                            a href=(config.newsletter.base_url.as_str()) style=(link_style) { "Subscribe" }
                        }
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

/// The contrast of two computed `rgb(r, g, b)` colours, by gazette's own WCAG
/// arithmetic (checked against hand-computed ratios in `theme`'s unit tests).
fn contrast(a: &str, b: &str) -> f64 {
    let rgb = |c: &str| {
        let v: Vec<u8> = c
            .trim_start_matches("rgba(")
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .take(3)
            .map(|x| x.trim().parse().unwrap())
            .collect();
        gazette::theme::Rgb(v[0], v[1], v[2])
    };
    rgb(a).contrast(rgb(b))
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
        &config,
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
    let ours = gazette::message::sent_size(&issue, &config, week).unwrap();
    let twin_issue = gazette::render::Issue {
        html: std::fs::read_to_string(dir.join("twin.html")).unwrap(),
        ..issue.clone()
    };
    let theirs = gazette::message::sent_size(&twin_issue, &config, week).unwrap();

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
