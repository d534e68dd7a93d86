//! Snapshots of what a subscriber receives, for a fixed issue: the HTML and the
//! text. Any change to them shows up as a diff to review (`cargo insta review`).

use chrono::{TimeZone, Utc};
use gazette::rank::{self, EditorChoices, RankSettings};
use gazette::render::{self, RenderContext};
use gazette::store::Story;

fn story(
    id: i64,
    slug: &str,
    title: &str,
    summary: &str,
    day: u32,
    cats: &[&str],
    appearances: u32,
) -> Story {
    Story {
        id,
        url: format!("https://news.test/{slug}"),
        link: format!("https://news.test/{slug}"),
        title_derived: false,
        comments: None,
        title: title.into(),
        summary: summary.into(),
        image: (id == 1).then(|| "https://news.test/img/lead.jpg".to_string()),
        image_size: (id == 1).then_some((1200, 675)),
        published_at: Utc.with_ymd_and_hms(2026, 2, day, 8, 30, 0).unwrap(),
        published_estimated: false,
        appearances,
        sources: vec!["Test Site".into()],
        categories: cats.iter().map(|c| c.to_string()).collect(),
    }
}

pub fn fixed_issue() -> (gazette::config::Config, render::Issue) {
    let site = crate::util::Site::new(&["feed.xml"], "");
    let config = site.config();
    let stories = vec![
        story(
            1,
            "rate-cut",
            "Central bank cuts policy rate by 100 basis points",
            "The central bank cut its policy rate to spur lending, the third cut this year.",
            3,
            &["Hot this week", "Economy"],
            2,
        ),
        story(
            2,
            "wallet",
            "Wallet app <script>alert(1)</script> reaches a million users",
            "Downloads passed one million & counting, the company said on Wednesday.",
            4,
            &["Apps"],
            1,
        ),
        story(
            3,
            "urdu",
            "بینک دولت پاکستان نے شرح سود کم کر دی",
            "مرکزی بینک نے پالیسی ریٹ میں کمی کا اعلان کیا۔",
            5,
            &["Urdu"],
            1,
        ),
    ];
    let choices = EditorChoices {
        intro: Some("A short week, and a *busy* one.".into()),
        ..Default::default()
    };
    let settings = RankSettings {
        stories: 3,
        max_per_topic: 2,
        max_per_source: 0,
        half_life_hours: 168.0,
    };
    let reference = Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0).unwrap();
    let selection = rank::rank(
        &stories,
        &rank::Signals::default(),
        &choices,
        &settings,
        reference,
    )
    .unwrap();
    let ctx = RenderContext {
        newsletter: &config.newsletter,
        theme: &config.theme,
        week: "2026-W06".parse().unwrap(),
        summary_chars: 280,
    };
    let issue = render::render(&selection, &choices, &ctx).unwrap();
    (config, issue)
}

/// Breaks the one-line HTML before each tag so the snapshot diffs line by line.
fn lines(html: &str) -> String {
    html.replace("><", ">\n<")
}

#[test]
fn html_of_a_fixed_issue() {
    let (_, issue) = fixed_issue();
    insta::assert_snapshot!("issue_html", lines(&issue.html));
}

/// SpamAssassin's HTML_FONT_TINY scores text under about 5 px: the hidden
/// preheader stays hidden without a tiny font.
#[test]
fn no_font_is_tiny() {
    let (_, issue) = fixed_issue();
    let sizes = regex::Regex::new(r"font-size:\s*([0-9.]+)px").unwrap();
    let mut seen = 0;
    for size in sizes.captures_iter(&issue.html) {
        let px: f64 = size[1].parse().unwrap();
        assert!(px >= 5.0, "font-size:{px}px in the issue");
        seen += 1;
    }
    assert!(seen > 0, "the issue sets font sizes");
}

#[test]
fn text_of_a_fixed_issue() {
    let (_, issue) = fixed_issue();
    insta::assert_snapshot!("issue_text", issue.text);
}

#[test]
fn subject_and_preheader_of_a_fixed_issue() {
    let (_, issue) = fixed_issue();
    insta::assert_snapshot!(
        "subject_and_preheader",
        format!(
            "Subject: {}\nPreheader: {}\n",
            issue.subject, issue.preheader
        )
    );
}

/// The whole message one subscriber receives, with the date, Message-ID and MIME
/// boundary fixed.
#[test]
fn formatted_message_of_a_fixed_issue() {
    use gazette::message::{self, Letterhead, Recipient};
    let (config, issue) = fixed_issue();
    let week = "2026-W06".parse().unwrap();
    let mut head = Letterhead::new(&config, week, &issue.subject).unwrap();
    // Each copy's click links depend on a key random per run: fixed here.
    head.clicks
        .as_mut()
        .expect("clicks are counted by default")
        .copy_key = [7; 32];
    let signer = gazette::token::Signer::new(
        gazette::config::Secret::new("snapshot"),
        &config.newsletter.list_id,
    );
    let to = Recipient {
        id: 42,
        email: "amina@example.com".into(),
        name: Some("Amina Khan".into()),
    };
    let date = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_770_624_000);
    let m = message::build(
        &message::Prebuilt::new(&issue, &head),
        &head,
        &signer,
        &to,
        date,
        "<2026-W06.42.fixed@news.test>".into(),
        false,
    )
    .unwrap();
    let text = String::from_utf8(m.formatted()).unwrap();
    let boundary = text
        .split("boundary=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    insta::assert_snapshot!(
        "message",
        text.replace(&boundary, "BOUNDARY").replace("\r\n", "\n")
    );
}
