//! Rendering: turns a [`Selection`] into an [`Issue`]: subject, preheader, the
//! email HTML (Maud, then CSS inlined by css-inline) and its plain-text twin. Pure:
//! same selection, same bytes. It renders once per issue; the per-subscriber parts
//! (greeting, unsubscribe link) are placeholders that [`personalize`] fills at send
//! time. Feed text is untrusted: Maud escapes it, and it is never passed through
//! `PreEscaped`; placeholder markers in it are defused so a feed cannot reach a
//! subscriber's link.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::{Deserialize, Serialize};

use crate::config::Newsletter;
use crate::rank::{Candidate, EditorChoices, Selection};
pub use crate::store::IssueStory;
use crate::text::clean_line;
use crate::theme::Theme;
use crate::week::IsoWeek;

/// Where the subscriber's one-click unsubscribe URL goes.
pub const UNSUBSCRIBE_URL: &str = "{{gazette:unsubscribe_url}}";
/// Where "Hello Amina," (or "Hello,") goes, with its paragraph.
pub const GREETING: &str = "{{gazette:greeting}}";
/// Where the subscriber's "your data" link goes.
pub const DATA_URL: &str = "{{gazette:data_url}}";
/// Where the link of the issue's story N goes (`{{gazette:story:N}}`): the
/// story's own link, or in mail with click counting a counted link to it.
const STORY_MARKER: &str = "{{gazette:story:";
const MARKER_START: &str = "{{gazette:";

/// Gmail clips a message whose raw source passes about 102 KB.
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text: String,
    /// The stories the parts link to, in order: what `{{gazette:story:N}}` is.
    #[serde(default)]
    pub stories: Vec<IssueStory>,
}

impl Issue {
    /// Each story's own link, by position.
    pub fn links(&self) -> Vec<String> {
        self.stories.iter().map(|s| s.link.clone()).collect()
    }
}

/// The stories an issue links to, in order, with the link a reader is sent
/// (made safe to place in an attribute).
pub fn linked_stories(selection: &Selection) -> Vec<IssueStory> {
    selection
        .picks
        .iter()
        .map(|c| IssueStory {
            link: untrusted_url(c.reader_link()),
            title: untrusted(&c.title),
            topic: c.topic.clone(),
        })
        .collect()
}

fn story_marker(position: usize) -> String {
    format!("{STORY_MARKER}{position}}}}}")
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("inlining CSS: {0}")]
    Inline(String),
}

pub struct RenderContext<'a> {
    pub newsletter: &'a Newsletter,
    pub theme: &'a Theme,
    pub week: IsoWeek,
    pub summary_chars: usize,
}

/// What one subscriber's copy fills in.
pub struct Personal<'a> {
    pub name: Option<&'a str>,
    pub unsubscribe_url: &'a str,
    pub data_url: &'a str,
    /// Where each story's link leads in this copy, by position.
    pub story_links: &'a [String],
}

/// Untrusted text, made safe to place: one line, and no placeholder marker.
fn untrusted(s: &str) -> String {
    clean_line(s).replace(MARKER_START, "{ {gazette:")
}

/// An address from outside (a story's link, its picture), made safe to place
/// in an attribute: its braces percent-encoded, so no placeholder can be in it
/// and a subscriber's personal links are never spliced into a feed's URL.
fn untrusted_url(s: &str) -> String {
    clean_line(s).replace('{', "%7B").replace('}', "%7D")
}

fn short_date(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%-d %b").to_string()
}

fn week_label(week: IsoWeek) -> String {
    let monday = week.monday();
    let sunday = monday + chrono::Duration::days(6);
    format!(
        "{} – {}",
        monday.format("%-d %b"),
        sunday.format("%-d %b %Y")
    )
}

/// How long a default subject may be: inboxes show about 60 characters.
pub const SUBJECT_CHARS: usize = 60;
/// How long the preheader's list of headlines may be.
pub const PREHEADER_CHARS: usize = 90;
/// A brief's summary: a sentence, cut at a sentence's end where one falls
/// within it.
const BRIEF_CHARS: usize = 120;

/// The subject: the editor's, else the lead headline cut at a word to about
/// [`SUBJECT_CHARS`], after `[newsletter] subject_prefix` when one is set.
pub fn subject(selection: &Selection, choices: &EditorChoices, newsletter: &Newsletter) -> String {
    if let Some(s) = choices.subject.as_deref().filter(|s| !s.trim().is_empty()) {
        return crate::text::cut_at_word(&untrusted(s), 150);
    }
    let Some(lead) = selection.picks.first() else {
        return untrusted(&newsletter.name);
    };
    match &newsletter.subject_prefix {
        Some(prefix) => {
            let prefix = untrusted(prefix);
            // The prefix counts towards what the inbox shows.
            let room = SUBJECT_CHARS
                .saturating_sub(prefix.chars().count() + 2)
                .max(20);
            // "Weekly:" and "[Fintech]" bring their own separator.
            let joint = if prefix.ends_with(|c: char| c.is_ascii_punctuation()) {
                " "
            } else {
                ": "
            };
            format!(
                "{prefix}{joint}{}",
                crate::text::cut_at_word(&untrusted(&lead.title), room)
            )
        }
        None => crate::text::cut_at_word(&untrusted(&lead.title), SUBJECT_CHARS),
    }
}

/// The preheader: the editor's, else the next stories' headlines, whole, as
/// many as fit in [`PREHEADER_CHARS`]; when not even one fits, the intro line.
pub fn preheader(selection: &Selection, choices: &EditorChoices) -> String {
    if let Some(p) = choices
        .preheader
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        return crate::text::cut_at_word(&untrusted(p), 150);
    }
    let mut out = String::new();
    for c in selection.picks.iter().skip(1) {
        let title = untrusted(&c.title);
        let next = if out.is_empty() {
            title
        } else {
            format!("{out} · {title}")
        };
        if next.chars().count() > PREHEADER_CHARS {
            break;
        }
        out = next;
    }
    if out.is_empty() {
        generated_intro(selection)
    } else {
        out
    }
}

/// The topics an issue covers, most stories first (ties: the better-ranked).
fn topics(picks: &[Candidate]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for c in picks {
        if let Some(t) = c.topic.as_deref().map(untrusted).filter(|t| !t.is_empty()) {
            match counts
                .iter_mut()
                .find(|(name, _)| name.eq_ignore_ascii_case(&t))
            {
                Some((_, n)) => *n += 1,
                None => counts.push((t, 1)),
            }
        }
    }
    // Stable: equal counts keep the order of their first story.
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

/// "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The intro when the editor wrote none: "This week: 9 stories on crypto,
/// payments and regulation."
pub fn generated_intro(selection: &Selection) -> String {
    let n = selection.picks.len();
    let stories = if n == 1 { "story" } else { "stories" };
    let names: Vec<String> = topics(&selection.picks)
        .into_iter()
        .take(3)
        .map(|(t, _)| t)
        .collect();
    if names.is_empty() {
        format!("This week: {n} {stories}.")
    } else {
        format!("This week: {n} {stories} on {}.", and_list(&names))
    }
}

/// The archive URL of an issue: where "view in browser" points.
pub fn archive_url(newsletter: &Newsletter, week: IsoWeek) -> String {
    format!("{}issues/{week}", newsletter.base_url)
}

/// Markdown (or plain text) from the editor to HTML; raw HTML in it is shown as
/// text, not interpreted.
///
/// Headings become bold paragraphs (the issue's own h1/h2/h3 order stays
/// whole), and links other than http(s) and mailto stay text.
pub fn intro_html(markdown: &str) -> String {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let safe = |url: &str| {
        let lower = url.trim().to_ascii_lowercase();
        ["https://", "http://", "mailto:"]
            .iter()
            .any(|scheme| lower.starts_with(scheme))
    };
    let mut unsafe_links = 0usize;
    let events = Parser::new(markdown).flat_map(|e| -> Vec<Event> {
        match e {
            Event::Html(t) | Event::InlineHtml(t) => vec![Event::Text(t)],
            Event::Start(Tag::Heading { .. }) => {
                vec![Event::Start(Tag::Paragraph), Event::Start(Tag::Strong)]
            }
            Event::End(TagEnd::Heading(_)) => {
                vec![Event::End(TagEnd::Strong), Event::End(TagEnd::Paragraph)]
            }
            Event::Start(Tag::Link { ref dest_url, .. }) if !safe(dest_url) => {
                unsafe_links += 1;
                vec![]
            }
            Event::End(TagEnd::Link) if unsafe_links > 0 => {
                unsafe_links -= 1;
                vec![]
            }
            other => vec![other],
        }
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out.replace(MARKER_START, "{ {gazette:")
}

/// The digest's CSS, in the theme's accent and fonts.
fn css(theme: &Theme) -> String {
    let (accent, font, headline) = (theme.accent, &theme.font, &theme.headline_font);
    format!(
        r#"
body {{ margin: 0; padding: 0; background-color: #eef1f5; -webkit-text-size-adjust: 100%; }}
.outer {{ background-color: #eef1f5; }}
.container {{ width: 100%; max-width: 600px; background-color: #ffffff; }}
.masthead {{ padding: 20px 24px 2px 24px; }}
.masthead-title {{ margin: 0; font-family: {headline}; font-size: 26px; line-height: 32px; font-weight: bold; color: #111827; }}
.logo {{ display: block; border: 0; height: auto; max-width: 100%; }}
.dates {{ padding: 0 24px 0 24px; font-family: {font}; font-size: 14px; line-height: 20px; color: #4b5563; border-bottom: 3px solid {accent}; }}
.dates a {{ color: {accent}; text-decoration: underline; display: inline-block; padding: 12px 0; }}
.prose {{ padding: 14px 24px 2px 24px; font-family: {font}; font-size: 16px; line-height: 24px; color: #1f2937; }}
.prose p {{ margin: 0 0 12px 0; }}
.contents {{ font-family: {font}; font-size: 14px; line-height: 20px; color: #4b5563; margin: 0 0 12px 0; }}
.lead {{ padding: 8px 24px 22px 24px; }}
.label {{ font-family: {font}; font-size: 13px; line-height: 18px; font-weight: bold; color: {accent}; letter-spacing: 0.5px; margin: 0 0 6px 0; }}
.hero {{ display: block; width: 100%; max-width: 552px; height: auto; border: 0; margin: 0 0 14px 0; }}
.lead-headline {{ font-family: {headline}; font-size: 24px; line-height: 31px; font-weight: bold; margin: 0 0 8px 0; }}
.lead-headline a {{ color: #111827; text-decoration: none; }}
.summary {{ font-family: {font}; font-size: 16px; line-height: 24px; color: #1f2937; margin: 0 0 16px 0; }}
.button {{ border-radius: 4px; background-color: {accent}; }}
.button-link {{ display: inline-block; padding: 12px 22px; font-family: {font}; font-size: 16px; line-height: 20px; font-weight: bold; color: #ffffff; text-decoration: none; border-radius: 4px; }}
.section {{ padding: 14px 24px 0 24px; border-top: 1px solid #d8dde4; }}
.section-title {{ font-family: {font}; font-size: 14px; line-height: 20px; font-weight: bold; color: #4b5563; letter-spacing: 0.5px; margin: 0; }}
.brief {{ padding: 8px 24px 8px 24px; }}
.brief-headline {{ font-family: {headline}; font-size: 18px; line-height: 22px; font-weight: bold; margin: 0 0 4px 0; }}
.brief-headline a {{ color: {accent}; text-decoration: none; }}
.brief-summary {{ font-family: {font}; font-size: 15px; line-height: 21px; color: #1f2937; margin: 0; }}
.footer {{ padding: 16px 24px 20px 24px; border-top: 1px solid #d8dde4; font-family: {font}; font-size: 14px; line-height: 20px; color: #4b5563; }}
.footer p {{ margin: 0 0 8px 0; }}
.footer a {{ color: {accent}; text-decoration: underline; display: inline-block; padding: 12px 0; margin-right: 14px; }}
a {{ color: {accent}; }}
"#
    )
}

/// Kept in a `<style>` block (media queries cannot be inlined); `!important` lets
/// them win over the inlined styles where the client honours them.
fn media_css(theme: &Theme) -> String {
    let dark = theme.accent_dark;
    format!(
        r#"
@media only screen and (max-width: 480px) {{
  .prose, .lead, .section, .brief, .footer, .masthead, .dates {{ padding-left: 16px !important; padding-right: 16px !important; }}
  .lead-headline {{ font-size: 22px !important; line-height: 28px !important; }}
  .masthead-title {{ font-size: 24px !important; line-height: 30px !important; }}
}}
:root {{ color-scheme: light dark; supported-color-schemes: light dark; }}
@media (prefers-color-scheme: dark) {{
  body, .outer {{ background-color: #0f141a !important; }}
  .container {{ background-color: #1a2129 !important; }}
  .masthead-title, .prose, .summary, .brief-summary, .lead-headline a {{ color: #eef1f5 !important; }}
  .dates, .contents, .section-title, .footer {{ color: #c3cad3 !important; }}
  .brief-headline a, .footer a, .dates a, .label, a {{ color: {dark} !important; }}
  .button-link {{ color: #ffffff !important; }}
  .section, .footer {{ border-top-color: #34404d !important; }}
}}
"#
    )
}

/// Renders the issue once. The result holds [`GREETING`], [`UNSUBSCRIBE_URL`]
/// and [`DATA_URL`], filled per subscriber by [`personalize`].
pub fn render(
    selection: &Selection,
    choices: &EditorChoices,
    ctx: &RenderContext,
) -> Result<Issue, RenderError> {
    let subject = subject(selection, choices, ctx.newsletter);
    let preheader = preheader(selection, choices);
    let html = render_html(selection, choices, ctx, &subject, &preheader);
    let html = css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .build()
        .inline(&html)
        .map_err(|e| RenderError::Inline(e.to_string()))?
        .replace(" data-css-inline=\"keep\"", "")
        // A line per tag: quoted-printable then wraps each short line alone, and the
        // lines holding per-subscriber placeholders can be encoded per copy.
        .replace("><", ">\n<");
    let html = isolate_markers(&html);
    let text = render_text(selection, choices, ctx);
    Ok(Issue {
        subject,
        preheader,
        html,
        text,
        stories: linked_stories(selection),
    })
}

/// Puts each placeholder of the HTML on a line of its own (an `href="…"` with
/// its attribute: a line break between attributes is only white space), so a
/// copy encodes a few short lines of its own and shares every other byte.
fn isolate_markers(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    while let Some(at) = rest.find(MARKER_START) {
        let Some(end) = rest[at..].find("}}").map(|e| at + e + 2) else {
            break;
        };
        let (start, end) = if rest[..at].ends_with("href=\"") && rest[end..].starts_with('"') {
            (at - "href=\"".len(), end + 1)
        } else {
            (at, end)
        };
        out.push_str(rest[..start].trim_end_matches(' '));
        out.push('\n');
        out.push_str(&rest[start..end]);
        out.push('\n');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The lead image's width in the 600 px layout (less the side padding).
const HERO_WIDTH: u32 = 552;

/// The lead image's height at [`HERO_WIDTH`], from its size in the feed.
fn hero_height(size: Option<(u32, u32)>) -> Option<u32> {
    size.map(|(w, h)| ((f64::from(HERO_WIDTH) * f64::from(h) / f64::from(w)).round() as u32).max(1))
}

/// The briefs in sections: a section for each topic that has at least two of
/// them (in the order of each topic's best story), the rest last under "More
/// stories"; one "More stories" section when no topic has two.
pub fn sections(briefs: &[Candidate]) -> Vec<(String, Vec<&Candidate>)> {
    let shared: Vec<String> = topics(briefs)
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(t, _)| t)
        .collect();
    let section_of = |c: &Candidate| {
        let topic = c.topic.as_deref().map(untrusted)?;
        shared
            .iter()
            .find(|t| t.eq_ignore_ascii_case(&topic))
            .cloned()
    };
    let mut sections: Vec<(String, Vec<&Candidate>)> = Vec::new();
    let mut rest = Vec::new();
    for c in briefs {
        match section_of(c) {
            Some(t) => match sections.iter_mut().find(|(name, _)| *name == t) {
                Some((_, list)) => list.push(c),
                None => sections.push((t, vec![c])),
            },
            None => rest.push(c),
        }
    }
    if !rest.is_empty() {
        sections.push((MORE_STORIES.to_string(), rest));
    }
    // Sections in the order of their best story, "More stories" too: the
    // reader meets the stories close to the order they were ranked in.
    let rank = |c: &Candidate| {
        briefs
            .iter()
            .position(|b| std::ptr::eq(b, c))
            .unwrap_or(usize::MAX)
    };
    sections.sort_by_key(|(_, list)| list.iter().map(|c| rank(c)).min());
    sections
}

/// The section of briefs without a topic of their own.
const MORE_STORIES: &str = "More stories";

/// "In this issue: Crypto (3) · Payments (2) · …", or `None` for a lone story.
fn contents_line(selection: &Selection) -> Option<String> {
    let topics = topics(&selection.picks);
    if selection.picks.len() < 2 || topics.is_empty() {
        return None;
    }
    let shown: Vec<String> = topics
        .iter()
        .take(4)
        .map(|(t, n)| format!("{t} ({n})"))
        .collect();
    let more: usize = topics.iter().skip(4).map(|(_, n)| n).sum();
    let mut line = format!("In this issue: {}", shown.join(" · "));
    if more > 0 {
        line += &format!(" · {more} more");
    }
    Some(line)
}

fn lead_block(c: &Candidate, ctx: &RenderContext) -> Markup {
    let tz = ctx.newsletter.timezone;
    let title = untrusted(&c.title);
    let link = story_marker(0);
    let summary = lead_summary(c, ctx.summary_chars);
    let accent = ctx.theme.accent.to_string();
    // Upper case here, not with text-transform, which some clients drop.
    let label = format!(
        "TOP STORY · {}",
        short_date(c.published_at, tz).to_uppercase()
    );
    html! {
        tr { td class="lead" {
            p class="label" { (label) }
            @if let Some(img) = &c.image {
                // Width and height keep the layout steady while the image loads,
                // and Outlook needs the width; CSS lets it shrink. Not a link:
                // the headline and the button are the story's links.
                @if let Some(height) = hero_height(c.image_size) {
                    img class="hero" src=(untrusted_url(img)) alt="" width=(HERO_WIDTH) height=(height);
                } @else {
                    img class="hero" src=(untrusted_url(img)) alt="" width=(HERO_WIDTH);
                }
            }
            h2 class="lead-headline" dir="auto" { a href=(link) { (title) } }
            @if !summary.is_empty() {
                p class="summary" dir="auto" { (summary) }
            }
            // A bulletproof button: the cell carries the colour, so Outlook's
            // Word renderer, which ignores padding on links, still shows it.
            table role="presentation" cellpadding="0" cellspacing="0" border="0" {
                tr { td class="button" bgcolor=(accent) {
                    a class="button-link" href=(link) { "Read the full story" }
                } }
            }
        } }
    }
}

/// The lead's words: its summary cut to `[ranking] summary_chars`.
fn lead_summary(c: &Candidate, summary_chars: usize) -> String {
    crate::text::cut_summary(&untrusted(&c.summary), summary_chars)
}

/// The editor's own intro, when they wrote one.
fn editor_intro(choices: &EditorChoices) -> Option<&str> {
    choices.intro.as_deref().filter(|s| !s.trim().is_empty())
}

/// The lead story and the briefs after it.
fn lead_and_briefs(selection: &Selection) -> (Option<&Candidate>, &[Candidate]) {
    match selection.picks.split_first() {
        Some((lead, briefs)) => (Some(lead), briefs),
        None => (None, &[]),
    }
}

/// A brief's words: its summary cut to a sentence or so.
pub fn brief_summary(c: &Candidate, summary_chars: usize) -> String {
    crate::text::cut_summary(&untrusted(&c.summary), BRIEF_CHARS.min(summary_chars))
}

/// Where a picked story stands in the issue (the lead is 0).
fn position_of(selection: &Selection, c: &Candidate) -> usize {
    selection
        .picks
        .iter()
        .position(|p| std::ptr::eq(p, c))
        .expect("a brief is one of the picks")
}

/// A brief: `position` is its place in the issue (the lead is 0).
fn brief_block(c: &Candidate, position: usize, ctx: &RenderContext) -> Markup {
    let summary = brief_summary(c, ctx.summary_chars);
    html! {
        tr { td class="brief" {
            h3 class="brief-headline" dir="auto" { a href=(story_marker(position)) { (untrusted(&c.title)) } }
            @if !summary.is_empty() {
                p class="brief-summary" dir="auto" { (summary) }
            }
        } }
    }
}

fn render_html(
    selection: &Selection,
    choices: &EditorChoices,
    ctx: &RenderContext,
    subject: &str,
    preheader: &str,
) -> String {
    let n = ctx.newsletter;
    let theme = ctx.theme;
    let name = untrusted(&n.name);
    // Invisible filler after the preheader stops clients from showing body text there.
    let filler = "&#847;&zwnj;&nbsp;".repeat(40);
    // Without the editor's words, the generated intro names the topics: it is
    // the "in this issue" line.
    let editor_intro = editor_intro(choices);
    let intro = match editor_intro {
        Some(markdown) => intro_html(markdown),
        None => format!("<p>{}</p>", escape_html(&generated_intro(selection))),
    };
    let (lead, briefs) = lead_and_briefs(selection);
    let sections = sections(briefs);
    let markup = html! {
        (DOCTYPE)
        html lang=(n.language) dir="ltr" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="x-apple-disable-message-reformatting";
                meta name="format-detection" content="telephone=no, date=no, address=no, email=no";
                meta name="color-scheme" content="light dark";
                meta name="supported-color-schemes" content="light dark";
                title { (subject) }
                style { (PreEscaped(css(theme))) }
                style data-css-inline="keep" { (PreEscaped(media_css(theme))) }
            }
            body class="body" {
                div style="display:none;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all;" {
                    (preheader) (PreEscaped(&filler))
                }
                table role="presentation" class="outer" width="100%" cellpadding="0" cellspacing="0" border="0" {
                    tr { td align="center" {
                        (PreEscaped("<!--[if mso]><table role=\"presentation\" width=\"600\" align=\"center\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr><td><![endif]-->"))
                        table role="presentation" class="container" width="100%" cellpadding="0" cellspacing="0" border="0" {
                            tr { td class="masthead" {
                                h1 class="masthead-title" {
                                    @if let Some(logo) = &theme.logo {
                                        img class="logo" src=(untrusted_url(&logo.url)) alt=(untrusted(&logo.alt)) width=(logo.width) height=(logo.height);
                                    } @else {
                                        (name)
                                    }
                                }
                            } }
                            tr { td class="dates" {
                                "Top stories · " (week_label(ctx.week))
                                " · " a href=(archive_url(n, ctx.week)) { "View in your browser" }
                            } }
                            tr { td class="prose" dir="auto" {
                                (PreEscaped(GREETING))
                                (PreEscaped(intro))
                                @if editor_intro.is_some() {
                                    @if let Some(line) = contents_line(selection) {
                                        p class="contents" { (line) }
                                    }
                                }
                            } }
                            @if let Some(lead) = lead {
                                (lead_block(lead, ctx))
                            }
                            @for (title, stories) in &sections {
                                tr { td class="section" { h2 class="section-title" { (title.to_uppercase()) } } }
                                @for c in stories {
                                    (brief_block(c, position_of(selection, c), ctx))
                                }
                            }
                            tr { td class="footer" {
                                @if let Some(note) = &theme.footer_note {
                                    p dir="auto" { (untrusted(note)) }
                                }
                                p { "You are receiving " (name) " because you subscribed to it. " (untrusted(&n.postal_address)) }
                                p {
                                    a href=(UNSUBSCRIBE_URL) { "Unsubscribe" }
                                    a href=(DATA_URL) { "Your data" }
                                    // For a reader of a forwarded copy.
                                    a href=(n.base_url.as_str()) { "Subscribe" }
                                }
                            } }
                        }
                        (PreEscaped("<!--[if mso]></td></tr></table><![endif]-->"))
                    } }
                }
            }
        }
    };
    markup.into_string()
}

/// The text part's width: mail readers show 72 to 78 columns.
const TEXT_WIDTH: usize = 76;

/// Wraps text to [`TEXT_WIDTH`] with an indent; a URL is never broken.
fn wrap(text: &str, indent: &str) -> String {
    // Break at spaces only: Unicode line-breaking would split a URL after "?".
    let options = textwrap::Options::new(TEXT_WIDTH)
        .initial_indent(indent)
        .subsequent_indent(indent)
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(text, options)
}

/// The editor's Markdown as plain text: paragraphs wrapped, lists as lists,
/// links as `text <url>`, emphasis dropped.
pub fn markdown_text(markdown: &str) -> String {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prefix = String::new();
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut link: Option<String> = None;
    let mut link_text = String::new();
    let flush = |blocks: &mut Vec<String>, current: &mut String, prefix: &str| {
        let text = current.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() {
            let indent = " ".repeat(prefix.chars().count());
            let wrapped = wrap(&format!("{prefix}{text}"), "");
            let mut lines = wrapped.lines();
            let mut out = lines.next().unwrap_or_default().to_string();
            // Continuation lines line up under the item's text.
            let rest: Vec<&str> = lines.collect();
            if !rest.is_empty() {
                out += "\n";
                out += &wrap(&rest.join(" "), &indent);
            }
            blocks.push(out);
        }
        current.clear();
    };
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::List(start)) => {
                flush(&mut blocks, &mut current, &prefix);
                lists.push(start);
            }
            Event::End(TagEnd::List(_)) => {
                flush(&mut blocks, &mut current, &prefix);
                lists.pop();
                prefix.clear();
            }
            Event::Start(Tag::Item) => {
                flush(&mut blocks, &mut current, &prefix);
                let depth = lists.len().saturating_sub(1);
                let marker = match lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "- ".to_string(),
                };
                prefix = format!("{}{marker}", "  ".repeat(depth));
            }
            Event::End(TagEnd::Item)
            | Event::End(TagEnd::Paragraph)
            | Event::End(TagEnd::Heading(_)) => {
                flush(&mut blocks, &mut current, &prefix);
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                link = Some(dest_url.to_string());
                link_text.clear();
            }
            Event::End(TagEnd::Link) => {
                if let Some(url) = link.take() {
                    let text = link_text.trim();
                    if text.is_empty() || text == url {
                        current += &format!("<{url}>");
                    } else {
                        current += &format!("{text} <{url}>");
                    }
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if link.is_some() {
                    link_text += &t;
                } else {
                    current += &t;
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if link.is_some() {
                    link_text.push(' ');
                } else {
                    current.push(' ');
                }
            }
            Event::Html(t) | Event::InlineHtml(t) => current += &t,
            _ => {}
        }
    }
    flush(&mut blocks, &mut current, &prefix);
    // Items of one list sit on consecutive lines; other blocks are paragraphs.
    let mut out = String::new();
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            let list_item = |s: &str| {
                let t = s.trim_start();
                t.starts_with("- ")
                    || t.split_once(". ")
                        .is_some_and(|(n, _)| n.parse::<u64>().is_ok())
            };
            out += if list_item(b) && list_item(&blocks[i - 1]) {
                "\n"
            } else {
                "\n\n"
            };
        }
        out += b;
    }
    out.replace(MARKER_START, "{ {gazette:")
}

/// A story in the text part: its headline, its link on the next line, then its
/// words.
fn text_story(out: &mut String, c: &Candidate, position: usize, summary: String) {
    *out += &wrap(&untrusted(&c.title), "");
    *out += "\n";
    *out += &story_marker(position);
    *out += "\n";
    if !summary.is_empty() {
        *out += &wrap(&summary, "");
        *out += "\n";
    }
    *out += "\n";
}

fn render_text(selection: &Selection, choices: &EditorChoices, ctx: &RenderContext) -> String {
    let n = ctx.newsletter;
    let mut out = String::new();
    let name = untrusted(&n.name);
    out += &wrap(&name, "");
    out += "\n";
    out += &format!("Top stories · {}\n", week_label(ctx.week));
    out += &"=".repeat(name.chars().count().clamp(20, TEXT_WIDTH));
    out += "\n";
    out += &format!("View in your browser: {}\n\n", archive_url(n, ctx.week));
    out += GREETING;
    out += "\n\n";
    match editor_intro(choices) {
        Some(markdown) => {
            out += &markdown_text(markdown);
            out += "\n\n";
            if let Some(line) = contents_line(selection) {
                out += &wrap(&line, "");
                out += "\n\n";
            }
        }
        None => {
            out += &wrap(&generated_intro(selection), "");
            out += "\n\n";
        }
    }
    let (lead, briefs) = lead_and_briefs(selection);
    if let Some(lead) = lead {
        out += "TOP STORY\n---------\n";
        text_story(&mut out, lead, 0, lead_summary(lead, ctx.summary_chars));
    }
    for (title, stories) in sections(briefs) {
        let heading = title.to_uppercase();
        out += &format!("{heading}\n{}\n", "-".repeat(heading.chars().count()));
        for c in stories {
            let position = position_of(selection, c);
            text_story(&mut out, c, position, brief_summary(c, ctx.summary_chars));
        }
    }
    out += "-- \n";
    if let Some(note) = &ctx.theme.footer_note {
        out += &wrap(&untrusted(note), "");
        out += "\n";
    }
    out += &wrap(
        &format!("You are receiving {name} because you subscribed to it."),
        "",
    );
    out += &format!(
        "\nUnsubscribe: {UNSUBSCRIBE_URL}\nYour data: {DATA_URL}\nSubscribe (for a forwarded copy): {}\n",
        n.base_url
    );
    out += &wrap(&untrusted(&n.postal_address), "");
    out += "\n";
    out
}

/// Text escaped for HTML, the way Maud escapes it.
pub fn escape_html(s: &str) -> String {
    html! { (s) }.into_string()
}

/// A placeholder in a rendered part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Greeting,
    Unsubscribe,
    Data,
    /// The link of the issue's story at this position.
    Story(usize),
}

/// A piece of a rendered part: its own text, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Marker(Marker),
}

/// A part cut at its placeholders. Text that only looks like one (a marker
/// this version does not know) stays text.
pub fn pieces(part: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let rest = part;
    let mut text_from = 0;
    let mut at = 0;
    while let Some(found) = rest[at..].find(MARKER_START) {
        let start = at + found;
        let marker = rest[start..].find("}}").and_then(|end| {
            let name = &rest[start + MARKER_START.len()..start + end];
            let marker = match name {
                "greeting" => Marker::Greeting,
                "unsubscribe_url" => Marker::Unsubscribe,
                "data_url" => Marker::Data,
                _ => Marker::Story(name.strip_prefix("story:")?.parse().ok()?),
            };
            Some((marker, start + end + 2))
        });
        match marker {
            Some((marker, end)) => {
                if text_from < start {
                    out.push(Piece::Text(rest[text_from..start].to_string()));
                }
                out.push(Piece::Marker(marker));
                text_from = end;
                at = end;
            }
            None => at = start + MARKER_START.len(),
        }
    }
    if text_from < rest.len() {
        out.push(Piece::Text(rest[text_from..].to_string()));
    }
    out
}

/// What one copy puts in place of each placeholder of one part, worked out
/// once per copy (escaped for HTML, or as text).
pub struct Filling {
    greeting: String,
    unsubscribe: String,
    data: String,
    stories: Vec<String>,
}

impl Filling {
    pub fn new(p: &Personal, html: bool) -> Filling {
        // Greetings use the first name: "Hello Amina," for Amina Khan.
        let first = p
            .name
            .map(clean_line)
            .and_then(|n| n.split_whitespace().next().map(str::to_string));
        let hello = match first {
            Some(n) => format!("Hello {n},"),
            None => "Hello,".to_string(),
        };
        // The greeting sits before the intro, whose styles were inlined already.
        let greeting = if html {
            format!(
                "<p style=\"margin:0 0 12px 0;\">{}</p>",
                escape_html(&hello)
            )
        } else {
            // One line: copies are spliced line by line.
            hello
        };
        Filling {
            greeting,
            unsubscribe: place_url(p.unsubscribe_url, html),
            data: place_url(p.data_url, html),
            stories: p.story_links.iter().map(|u| place_url(u, html)).collect(),
        }
    }

    /// What goes in place of `marker`; `None` for a story the issue lacks.
    pub fn value(&self, marker: Marker) -> Option<&str> {
        match marker {
            Marker::Greeting => Some(&self.greeting),
            Marker::Unsubscribe => Some(&self.unsubscribe),
            Marker::Data => Some(&self.data),
            Marker::Story(n) => self.stories.get(n).map(String::as_str),
        }
    }

    /// Appends `pieces` to `out`, filled.
    pub fn fill_into(&self, pieces: &[Piece], out: &mut String) {
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Marker(m) => match self.value(*m) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&marker_text(*m)),
                },
            }
        }
    }
}

/// A placeholder as it is written in a part.
fn marker_text(m: Marker) -> String {
    match m {
        Marker::Greeting => GREETING.to_string(),
        Marker::Unsubscribe => UNSUBSCRIBE_URL.to_string(),
        Marker::Data => DATA_URL.to_string(),
        Marker::Story(n) => story_marker(n),
    }
}

/// Fills one subscriber's parts into the rendered issue. `html` says which part
/// `template` is, so the name is escaped for HTML and cleaned for text. A story
/// the issue lacks keeps its placeholder (feed text cannot hold one: markers in
/// it are defused).
pub fn personalize(template: &str, p: &Personal, html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    Filling::new(p, html).fill_into(&pieces(template), &mut out);
    out
}

/// A URL as it goes into a part: escaped in HTML.
fn place_url(url: &str, html: bool) -> String {
    if html {
        escape_html(url)
    } else {
        url.to_string()
    }
}

/// A part with each story's own link in place (the personal parts left as
/// they are): what copies get when clicks are not counted.
pub fn with_story_links(part: &str, links: &[String], html: bool) -> String {
    let mut out = String::with_capacity(part.len() + links.len() * 64);
    for piece in pieces(part) {
        match piece {
            Piece::Marker(Marker::Story(n)) if n < links.len() => {
                out.push_str(&place_url(&links[n], html))
            }
            Piece::Marker(m) => out.push_str(&marker_text(m)),
            Piece::Text(t) => out.push_str(&t),
        }
    }
    out
}

/// A part of the issue for anyone to read (the archive, the files on disk):
/// no name, and the personal links pointing at the newsletter's page, where
/// there is a subscribe form.
pub fn public_copy(part: &str, base_url: &str, story_links: &[String], html: bool) -> String {
    let general = Personal {
        name: None,
        unsubscribe_url: base_url,
        data_url: base_url,
        story_links,
    };
    personalize(part, &general, html)
}

/// The digest as it is stored in `digest.json`: the issue's words and the
/// selection with every score and reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigestRecord {
    pub week: IsoWeek,
    pub built_at: DateTime<Utc>,
    pub subject: String,
    pub preheader: String,
    pub html_bytes: usize,
    pub editor: EditorChoices,
    pub selection: Selection,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::{ScoreParts, Verdict};

    fn story(title: &str, topic: Option<&str>) -> Candidate {
        Candidate {
            url: format!("https://news.example/{}", title.len()),
            link: String::new(),
            title: title.into(),
            title_derived: false,
            comments: None,
            summary: String::new(),
            image: None,
            image_size: None,
            published_at: DateTime::<Utc>::default(),
            sources: vec![],
            categories: vec![],
            topic: topic.map(str::to_string),
            folded: vec![],
            appearances: 1,
            views: 0,
            listed: None,
            recurring: false,
            score: 1.0,
            parts: ScoreParts::default(),
            readers_note: None,
            verdict: Verdict::Picked,
            reason: String::new(),
        }
    }

    fn selection(picks: Vec<Candidate>) -> Selection {
        Selection {
            picks,
            others: vec![],
            signals: vec![],
        }
    }

    fn newsletter(prefix: Option<&str>) -> Newsletter {
        let mut c = crate::config::Config::parse(
            "[newsletter]\nname = \"Weekly\"\nfrom = \"a@news.example\"\nbase_url = \"https://news.example/\"\npostal_address = \"x\"\ntimezone = \"UTC\"\n[[feeds]]\nurl = \"f.xml\"\n",
            "t.toml",
            std::path::Path::new("."),
            std::iter::empty(),
        )
        .unwrap()
        .newsletter;
        c.subject_prefix = prefix.map(str::to_string);
        c
    }

    #[test]
    fn the_default_subject_is_the_lead_cut_at_a_word() {
        let lead = "Bithumb Accidentally Distributes $44 Billion in Bitcoin, Sparks Market Volatility and Regulatory Action";
        let s = selection(vec![story(lead, None)]);
        let subject = subject(&s, &EditorChoices::default(), &newsletter(None));
        assert_eq!(
            subject,
            "Bithumb Accidentally Distributes $44 Billion in Bitcoin…"
        );
        assert!(subject.chars().count() <= SUBJECT_CHARS);
        let prefixed = subject_line(&s, &newsletter(Some("Fintech Weekly")));
        assert!(
            prefixed.starts_with("Fintech Weekly: Bithumb"),
            "{prefixed}"
        );
        assert!(prefixed.chars().count() <= SUBJECT_CHARS, "{prefixed}");
        for (prefix, start) in [
            ("Weekly:", "Weekly: Bithumb"),
            ("[Fintech]", "[Fintech] Bithumb"),
        ] {
            let s2 = subject_line(&s, &newsletter(Some(prefix)));
            assert!(s2.starts_with(start), "{s2}");
        }
        let own = EditorChoices {
            subject: Some("Our pick of the week".into()),
            ..Default::default()
        };
        assert_eq!(
            super::subject(&s, &own, &newsletter(None)),
            "Our pick of the week"
        );
    }

    fn subject_line(s: &Selection, n: &Newsletter) -> String {
        subject(s, &EditorChoices::default(), n)
    }

    #[test]
    fn the_preheader_holds_whole_headlines_only() {
        let s = selection(vec![
            story("Lead", Some("A")),
            story("Second story has a headline of forty chars", Some("A")),
            story("Third story with a headline of forty-one c", Some("B")),
            story("Fourth", Some("B")),
        ]);
        let p = preheader(&s, &EditorChoices::default());
        assert_eq!(
            p,
            "Second story has a headline of forty chars · Third story with a headline of forty-one c"
        );
        assert!(p.chars().count() <= PREHEADER_CHARS);
        // Not even one headline fits: the generated intro instead.
        let long = selection(vec![story("Lead", None), story(&"word ".repeat(30), None)]);
        assert_eq!(
            preheader(&long, &EditorChoices::default()),
            "This week: 2 stories."
        );
    }

    #[test]
    fn the_generated_intro_names_the_main_topics() {
        let s = selection(vec![
            story("a", Some("Crypto")),
            story("b", Some("Payments")),
            story("c", Some("crypto")),
            story("d", Some("Regulation")),
            story("e", Some("Payments")),
            story("f", None),
        ]);
        assert_eq!(
            generated_intro(&s),
            "This week: 6 stories on Crypto, Payments and Regulation."
        );
    }

    #[test]
    fn briefs_are_grouped_by_topics_that_have_two() {
        let briefs = vec![
            story("a", Some("Crypto")),
            story("b", Some("Payments")),
            story("c", Some("Crypto")),
            story("d", Some("Events")),
        ];
        let got: Vec<(String, usize)> = sections(&briefs)
            .into_iter()
            .map(|(t, list)| (t, list.len()))
            .collect();
        assert_eq!(got, vec![("Crypto".into(), 2), (MORE_STORIES.into(), 2)]);
    }

    #[test]
    fn the_intro_markdown_reads_as_text() {
        let md = "Hello **all**.\n\n- one\n- two with a [link](https://x.example/a)\n\nSee <https://x.example/b>.";
        assert_eq!(
            markdown_text(md),
            "Hello all.\n\n- one\n- two with a link <https://x.example/a>\n\nSee <https://x.example/b>."
        );
        // A URL in running text is never broken, not even after "?" or "&".
        let url = "https://preview.example/some/long/path/to/a/picture.jpg?width=3024&format=pjpg&auto=webp&s=abcdef";
        let text = markdown_text(&format!(
            "See the picture here: {url} and more words follow"
        ));
        assert!(text.lines().any(|l| l.contains(url)), "{text}");
        let long = format!("- {}", "word ".repeat(30));
        let text = markdown_text(&long);
        assert!(
            text.lines().all(|l| l.chars().count() <= TEXT_WIDTH),
            "{text}"
        );
        assert!(text.lines().nth(1).unwrap().starts_with("  word"), "{text}");
    }

    #[test]
    fn the_intro_keeps_the_issues_headings_and_safe_links_only() {
        let html =
            intro_html("# Big news\n\n[ok](https://x.example) [bad](javascript:alert(1)) <b>x</b>");
        assert!(
            !html.contains("<h1") && html.contains("<strong>Big news</strong>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"https://x.example\">ok</a>"),
            "{html}"
        );
        assert!(
            !html.contains("javascript:") && html.contains("bad"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;"), "{html}");
    }

    #[test]
    fn the_greeting_uses_the_first_name() {
        let p = Personal {
            name: Some("Amina Khan"),
            unsubscribe_url: "u",
            data_url: "d",
            story_links: &[],
        };
        assert_eq!(personalize(GREETING, &p, false), "Hello Amina,");
        let nobody = Personal {
            name: None,
            unsubscribe_url: "u",
            data_url: "d",
            story_links: &[],
        };
        assert!(personalize(GREETING, &nobody, true).contains(">Hello,<"));
    }

    #[test]
    fn placeholders_are_cut_out_and_each_href_sits_on_its_own_line() {
        let part = "a{{gazette:greeting}}{{gazette:story:2}}b{{gazette:nope}}{{gazette:story:x}}{{gazette:data_url}}";
        assert_eq!(
            pieces(part),
            vec![
                Piece::Text("a".into()),
                Piece::Marker(Marker::Greeting),
                Piece::Marker(Marker::Story(2)),
                Piece::Text("b{{gazette:nope}}{{gazette:story:x}}".into()),
                Piece::Marker(Marker::Data),
            ]
        );
        let p = Personal {
            name: None,
            unsubscribe_url: "u",
            data_url: "https://d.example/?a=1&b=2",
            story_links: &["s0".into()],
        };
        // A story the copy lacks keeps its placeholder; others are filled, escaped.
        assert_eq!(
            personalize(part, &p, true),
            "a<p style=\"margin:0 0 12px 0;\">Hello,</p>{{gazette:story:2}}b{{gazette:nope}}{{gazette:story:x}}https://d.example/?a=1&amp;b=2"
        );
        let html = "<td>{{gazette:greeting}}<p>x</p>\n<a class=\"b\" href=\"{{gazette:story:0}}\" style=\"c\">T</a>";
        assert_eq!(
            isolate_markers(html),
            "<td>\n{{gazette:greeting}}\n<p>x</p>\n<a class=\"b\"\nhref=\"{{gazette:story:0}}\"\n style=\"c\">T</a>"
        );
    }
}
