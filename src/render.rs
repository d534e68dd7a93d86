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
use crate::text::clean_line;
use crate::week::IsoWeek;

/// Where the subscriber's one-click unsubscribe URL goes.
pub const UNSUBSCRIBE_URL: &str = "{{gazette:unsubscribe_url}}";
/// Where "Hello Amina," (or "Hello,") goes.
pub const GREETING: &str = "{{gazette:greeting}}";
/// Where the subscriber's "your data" link goes.
pub const DATA_URL: &str = "{{gazette:data_url}}";
const MARKER_START: &str = "{{gazette:";

/// Gmail clips a message whose raw source passes about 102 KB.
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("inlining CSS: {0}")]
    Inline(String),
}

pub struct RenderContext<'a> {
    pub newsletter: &'a Newsletter,
    pub week: IsoWeek,
    pub summary_chars: usize,
}

/// What one subscriber's copy fills in.
pub struct Personal<'a> {
    pub name: Option<&'a str>,
    pub unsubscribe_url: &'a str,
    pub data_url: &'a str,
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

/// The subject: the editor's, else `"<name>: <top story>"`.
pub fn subject(selection: &Selection, choices: &EditorChoices, newsletter: &Newsletter) -> String {
    let s = match (&choices.subject, selection.picks.first()) {
        (Some(s), _) if !s.trim().is_empty() => untrusted(s),
        (_, Some(top)) => format!("{}: {}", untrusted(&newsletter.name), untrusted(&top.title)),
        _ => untrusted(&newsletter.name),
    };
    crate::text::cut_summary(&s, 150)
}

fn preheader(selection: &Selection) -> String {
    let rest: Vec<String> = selection
        .picks
        .iter()
        .skip(1)
        .take(2)
        .map(|c| untrusted(&c.title))
        .collect();
    let more = selection.picks.len().saturating_sub(1 + rest.len());
    let mut s = match rest.len() {
        0 => selection
            .picks
            .first()
            .map(|c| untrusted(&c.summary))
            .unwrap_or_default(),
        _ => format!("Also this week: {}", rest.join(" · ")),
    };
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    crate::text::cut_summary(&s, 140)
}

/// The archive URL of an issue: where "view in browser" points.
pub fn archive_url(newsletter: &Newsletter, week: IsoWeek) -> String {
    format!("{}issues/{week}", newsletter.base_url)
}

/// Markdown (or plain text) from the editor to HTML; raw HTML in it is shown as
/// text, not interpreted.
fn intro_html(markdown: &str) -> String {
    use pulldown_cmark::{Event, Parser};
    let events = Parser::new(markdown).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out.replace(MARKER_START, "{ {gazette:")
}

const CSS: &str = r#"
body { margin: 0; padding: 0; background-color: #eef1f5; -webkit-text-size-adjust: 100%; }
.outer { background-color: #eef1f5; }
.container { width: 100%; max-width: 600px; background-color: #ffffff; }
.pad { padding: 0 24px; }
.masthead { padding: 24px 24px 8px 24px; font-family: Georgia, 'Times New Roman', serif; font-size: 26px; line-height: 32px; font-weight: bold; color: #111827; }
.dates { padding: 0 24px 16px 24px; font-family: Arial, Helvetica, sans-serif; font-size: 14px; line-height: 20px; color: #4b5563; }
.topnote { padding: 12px 24px 0 24px; font-family: Arial, Helvetica, sans-serif; font-size: 12px; line-height: 18px; color: #4b5563; text-align: right; }
.prose { padding: 8px 24px 8px 24px; font-family: Arial, Helvetica, sans-serif; font-size: 16px; line-height: 24px; color: #1f2937; }
.story { padding: 20px 24px 20px 24px; border-top: 1px solid #d8dde4; }
.kicker { font-family: Arial, Helvetica, sans-serif; font-size: 12px; line-height: 18px; color: #4b5563; letter-spacing: 0.5px; margin: 0 0 6px 0; }
.headline { font-family: Georgia, 'Times New Roman', serif; font-size: 21px; line-height: 28px; font-weight: bold; margin: 0 0 8px 0; }
.headline a { color: #0b4f9c; text-decoration: none; }
.summary { font-family: Arial, Helvetica, sans-serif; font-size: 16px; line-height: 24px; color: #1f2937; margin: 0 0 10px 0; }
.more { font-family: Arial, Helvetica, sans-serif; font-size: 15px; line-height: 22px; font-weight: bold; margin: 0; }
.more a { color: #0b4f9c; text-decoration: underline; display: inline-block; padding: 11px 0; }
.button { border-radius: 4px; background-color: #0b4f9c; }
.button-link { display: inline-block; padding: 12px 22px; font-family: Arial, Helvetica, sans-serif; font-size: 16px; line-height: 20px; font-weight: bold; color: #ffffff; text-decoration: none; border-radius: 4px; }
.hero { display: block; width: 100%; max-width: 552px; height: auto; border: 0; margin: 0 0 14px 0; }
.footer { padding: 20px 24px 28px 24px; border-top: 1px solid #d8dde4; font-family: Arial, Helvetica, sans-serif; font-size: 13px; line-height: 20px; color: #4b5563; }
.footer a { color: #0b4f9c; text-decoration: underline; }
a { color: #0b4f9c; }
"#;

/// Kept in a `<style>` block (media queries cannot be inlined); `!important` lets
/// them win over the inlined styles where the client honours them.
const MEDIA_CSS: &str = r#"
@media only screen and (max-width: 480px) {
  .pad, .prose, .story, .footer, .masthead, .dates, .topnote { padding-left: 16px !important; padding-right: 16px !important; }
  .headline { font-size: 19px !important; line-height: 26px !important; }
}
:root { color-scheme: light dark; supported-color-schemes: light dark; }
@media (prefers-color-scheme: dark) {
  body, .outer { background-color: #0f141a !important; }
  .container { background-color: #1a2129 !important; }
  .masthead, .prose, .summary { color: #eef1f5 !important; }
  .dates, .kicker, .topnote, .footer { color: #c3cad3 !important; }
  .headline a, .more a, .footer a, a { color: #8fc1ff !important; }
  .button-link { color: #ffffff !important; }
  .story, .footer { border-top-color: #34404d !important; }
}
"#;

/// Renders the issue once. The result holds [`GREETING`] and [`UNSUBSCRIBE_URL`].
pub fn render(
    selection: &Selection,
    choices: &EditorChoices,
    ctx: &RenderContext,
) -> Result<Issue, RenderError> {
    let subject = subject(selection, choices, ctx.newsletter);
    let preheader = preheader(selection);
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
    let text = render_text(selection, choices, ctx);
    Ok(Issue {
        subject,
        preheader,
        html,
        text,
    })
}

/// The lead image's width in the 600 px layout (less the side padding).
const HERO_WIDTH: u32 = 552;

/// The lead image's height at [`HERO_WIDTH`], from its size in the feed.
fn hero_height(size: Option<(u32, u32)>) -> Option<u32> {
    size.map(|(w, h)| ((f64::from(HERO_WIDTH) * f64::from(h) / f64::from(w)).round() as u32).max(1))
}

fn story_block(c: &Candidate, lead: bool, ctx: &RenderContext) -> Markup {
    let tz = ctx.newsletter.timezone;
    let title = untrusted(&c.title);
    let summary = crate::text::cut_summary(&untrusted(&c.summary), ctx.summary_chars);
    let mut kicker = vec![short_date(c.published_at, tz)];
    if let Some(topic) = &c.topic {
        kicker.push(untrusted(topic));
    }
    // Upper case here, not with text-transform, which some clients drop.
    let kicker = kicker.join(" · ").to_uppercase();
    html! {
        tr { td class="story" {
            @if lead {
                @if let Some(img) = &c.image {
                    a href=(untrusted_url(c.reader_link())) {
                        // Width and height keep the layout steady while the image
                        // loads, and Outlook needs the width; CSS lets it shrink.
                        @if let Some(height) = hero_height(c.image_size) {
                            img class="hero" src=(untrusted_url(img)) alt=(title) width=(HERO_WIDTH) height=(height);
                        } @else {
                            img class="hero" src=(untrusted_url(img)) alt=(title) width=(HERO_WIDTH);
                        }
                    }
                }
            }
            p class="kicker" dir="auto" { (kicker) }
            h2 class="headline" dir="auto" { a href=(untrusted_url(c.reader_link())) { (title) } }
            @if !summary.is_empty() {
                p class="summary" dir="auto" { (summary) }
            }
            @if lead {
                // A bulletproof button: the cell carries the colour, so Outlook's
                // Word renderer, which ignores padding on links, still shows it.
                table role="presentation" cellpadding="0" cellspacing="0" border="0" {
                    tr { td class="button" bgcolor="#0b4f9c" {
                        a class="button-link" href=(untrusted_url(c.reader_link())) { "Read the story →" }
                    } }
                }
            } @else {
                p class="more" { a href=(untrusted_url(c.reader_link())) { "Read the story →" } }
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
    let name = untrusted(&n.name);
    // Invisible filler after the preheader stops clients from showing body text there.
    let filler = "&#847;&zwnj;&nbsp;".repeat(40);
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
                style { (PreEscaped(CSS)) }
                style data-css-inline="keep" { (PreEscaped(MEDIA_CSS)) }
            }
            body class="body" {
                div style="display:none;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all;" {
                    (preheader) (PreEscaped(&filler))
                }
                table role="presentation" class="outer" width="100%" cellpadding="0" cellspacing="0" border="0" {
                    tr { td align="center" {
                        (PreEscaped("<!--[if mso]><table role=\"presentation\" width=\"600\" align=\"center\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr><td><![endif]-->"))
                        table role="presentation" class="container" width="100%" cellpadding="0" cellspacing="0" border="0" {
                            tr { td class="topnote" {
                                a href=(archive_url(n, ctx.week)) { "View in your browser" }
                            } }
                            tr { td class="masthead" { (name) } }
                            tr { td class="dates" { "Top stories, " (week_label(ctx.week)) } }
                            tr { td class="prose" { p style="margin:0;" { (PreEscaped(GREETING)) } } }
                            @if let Some(intro) = choices.intro.as_deref().filter(|s| !s.trim().is_empty()) {
                                tr { td class="prose" dir="auto" { (PreEscaped(intro_html(intro))) } }
                            }
                            @for (i, c) in selection.picks.iter().enumerate() {
                                (story_block(c, i == 0, ctx))
                            }
                            tr { td class="footer" {
                                p style="margin:0 0 8px 0;" {
                                    "You are receiving " (name) " because you subscribed to it. "
                                    a href=(UNSUBSCRIBE_URL) { "Unsubscribe" } " in one click. "
                                    a href=(DATA_URL) { "Your data" } "."
                                }
                                p style="margin:0;" { (untrusted(&n.postal_address)) }
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

/// Wraps text to 72 columns with an indent.
fn wrap(text: &str, indent: &str) -> String {
    let options = textwrap::Options::new(72)
        .initial_indent(indent)
        .subsequent_indent(indent)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(text, options)
}

fn render_text(selection: &Selection, choices: &EditorChoices, ctx: &RenderContext) -> String {
    let n = ctx.newsletter;
    let tz = n.timezone;
    let mut out = String::new();
    let mut links: Vec<String> = Vec::new();
    let title = format!(
        "{} — top stories, {}",
        untrusted(&n.name),
        week_label(ctx.week)
    );
    out += &wrap(&title, "");
    out += "\n";
    out += &"-".repeat(title.chars().count().min(72));
    out += "\n";
    out += &format!("View in your browser: {}\n\n", archive_url(n, ctx.week));
    out += GREETING;
    out += "\n\n";
    if let Some(intro) = choices.intro.as_deref().filter(|s| !s.trim().is_empty()) {
        for para in intro.replace(MARKER_START, "{ {gazette:").split("\n\n") {
            out += &wrap(&clean_line(para), "");
            out += "\n\n";
        }
    }
    for (i, c) in selection.picks.iter().enumerate() {
        links.push(untrusted_url(c.reader_link()));
        let number = format!("{}. ", i + 1);
        let indent = " ".repeat(number.len());
        let head = wrap(
            &format!("{} [{}]", untrusted(&c.title), links.len()),
            &indent,
        );
        out += &number;
        out += head.trim_start();
        out += "\n";
        let mut kicker = vec![short_date(c.published_at, tz)];
        if let Some(topic) = &c.topic {
            kicker.push(untrusted(topic));
        }
        out += &wrap(&kicker.join(" · "), &indent);
        out += "\n";
        let summary = crate::text::cut_summary(&untrusted(&c.summary), ctx.summary_chars);
        if !summary.is_empty() {
            out += &wrap(&summary, &indent);
            out += "\n";
        }
        out += "\n";
    }
    out += "Links\n-----\n";
    for (i, l) in links.iter().enumerate() {
        out += &format!("[{}] {}\n", i + 1, l);
    }
    out += "\n-- \n";
    out += &wrap(
        &format!(
            "You are receiving {} because you subscribed to it.",
            untrusted(&n.name)
        ),
        "",
    );
    out += &format!("\nUnsubscribe in one click: {UNSUBSCRIBE_URL}\nYour data: {DATA_URL}\n");
    out += &wrap(&untrusted(&n.postal_address), "");
    out += "\n";
    out
}

/// Text escaped for HTML, the way Maud escapes it.
pub fn escape_html(s: &str) -> String {
    html! { (s) }.into_string()
}

/// Fills one subscriber's parts into the rendered issue. `html` says which part
/// `template` is, so the name is escaped for HTML and cleaned for text.
pub fn personalize(template: &str, p: &Personal, html: bool) -> String {
    let name = p.name.map(clean_line).filter(|n| !n.is_empty());
    let greeting = match name {
        Some(n) if html => format!("Hello {},", escape_html(&n)),
        Some(n) => format!("Hello {n},"),
        None => "Hello,".to_string(),
    };
    let link = |url: &str| {
        if html {
            escape_html(url)
        } else {
            url.to_string()
        }
    };
    template
        .replace(GREETING, &greeting)
        .replace(UNSUBSCRIBE_URL, &link(p.unsubscribe_url))
        .replace(DATA_URL, &link(p.data_url))
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
