//! Text from outside (feed titles and summaries, names people type) made safe
//! for one line of a page, a message or a header. In: HTML or text. Out: plain
//! text with white space folded and control characters gone, so it can never
//! break a line it is put on.

/// Feed HTML as one line of plain text: tags dropped, entities decoded, white
/// space folded, control characters removed.
pub fn html_to_text(html: &str) -> String {
    let text = html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), 10_000)
        .unwrap_or_else(|_| html.to_string());
    clean_line(&text)
}

/// Folds all white space (newlines included) to single spaces and drops control
/// characters, so feed text can never break a line it is put on.
pub fn clean_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_line_removes_line_breaks() {
        assert_eq!(clean_line("a\r\nBcc: x\t y\u{7}"), "a Bcc: x y");
    }

    #[test]
    fn html_to_text_drops_tags_and_decodes_entities() {
        assert_eq!(
            html_to_text("<p>Fish &amp; <b>chips</b></p>\n<p>x</p>"),
            "Fish & chips x"
        );
    }
}

/// The longest name a subscriber can have, in characters: enough for any real
/// name, short enough that a `To:` header stays far under 998 octets.
pub const MAX_NAME_CHARS: usize = 100;

/// A person's name as typed (a form, a CSV): one line, at most
/// [`MAX_NAME_CHARS`] characters; `None` when nothing is left.
pub fn person_name(s: &str) -> Option<String> {
    let line = clean_line(s);
    let name: String = line.chars().take(MAX_NAME_CHARS).collect();
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

// ---------------------------------------------------------------- prose from feed HTML

/// Elements whose content is never prose: media, scripts, forms, footnote marks,
/// captions (they describe a picture the email may not show).
const NOT_PROSE: &[&str] = &[
    "script",
    "style",
    "img",
    "picture",
    "video",
    "audio",
    "iframe",
    "object",
    "embed",
    "svg",
    "noscript",
    "button",
    "form",
    "input",
    "select",
    "textarea",
    "figcaption",
    "template",
    "canvas",
    "map",
    "source",
    "track",
    "head",
    "title",
    "meta",
    "link",
];

/// Elements that end a paragraph (or a line of a list, a table row…).
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
    "table",
    "tr",
    "td",
    "th",
    "section",
    "article",
    "header",
    "footer",
    "aside",
    "nav",
    "figure",
    "main",
    "details",
    "summary",
    "address",
    "center",
];

/// Feed HTML (a summary or an article) as paragraphs of plain prose: the text of
/// links without their brackets or addresses, no image alt text, no quote or list
/// markers, no tags, entities decoded once, white space folded. Paragraphs that
/// are only boilerplate ("Continue reading…", "The post … appeared first on …",
/// Reddit's "submitted by /u/… \[link\] \[comments\]") are left out.
pub fn prose(html: &str) -> Prose {
    let fragment = scraper::Html::parse_fragment(html);
    let mut raw = Vec::new();
    let mut current = String::new();
    walk(fragment.tree.root(), &mut current, &mut raw);
    flush(&mut current, &mut raw);
    let mut prose = Prose::default();
    for p in raw {
        match strip_boilerplate(&p) {
            Some(kept) => {
                if kept != p {
                    prose.boilerplate += 1;
                }
                prose.paragraphs.push(kept);
            }
            None => prose.boilerplate += 1,
        }
    }
    prose
}

/// Feed HTML as prose: its paragraphs, and how many lost boilerplate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prose {
    pub paragraphs: Vec<String>,
    pub boilerplate: usize,
}

fn walk(node: ego_tree::NodeRef<'_, scraper::Node>, current: &mut String, out: &mut Vec<String>) {
    for child in node.children() {
        match child.value() {
            scraper::Node::Text(t) => current.push_str(t),
            scraper::Node::Element(e) => {
                let name = e.name();
                if NOT_PROSE.contains(&name) {
                    continue;
                }
                let block = BLOCKS.contains(&name);
                if block {
                    flush(current, out);
                }
                walk(child, current, out);
                if block {
                    flush(current, out);
                } else if matches!(name, "td" | "th") {
                    current.push(' ');
                }
            }
            _ => {}
        }
    }
}

fn flush(current: &mut String, out: &mut Vec<String>) {
    let line = clean_line(&std::mem::take(current));
    if !line.is_empty() {
        out.push(line);
    }
}

/// A paragraph without the boilerplate feeds add to it; `None` when nothing else
/// is left.
fn strip_boilerplate(paragraph: &str) -> Option<String> {
    use std::sync::OnceLock;
    static WHOLE: OnceLock<Vec<regex::Regex>> = OnceLock::new();
    static TAIL: OnceLock<Vec<regex::Regex>> = OnceLock::new();
    let whole = WHOLE.get_or_init(|| {
        [
            // Medium, WordPress themes, Substack, Ghost…: short paragraphs that
            // are only a pointer to the page ("Continue reading on Medium »").
            r"(?i)^(continue|keep) reading\b.{0,50}$",
            r"(?i)^read (more|on|the (full|rest)( of the)? (story|article|post|piece))\b.{0,40}$",
            r"(?i)^(view|see) (the )?(full|original) (story|article|post)\b.{0,40}$",
            r"(?i)^the post .{1,300} appeared first on .{1,200}$",
            r"(?i)^(submitted by|posted by) /u/\S+.{0,80}$",
            r"(?i)^\[(link|comments|permalink|∞ permalink|read more[^\]]{0,40})\]$",
            r"(?i)^(link|permalink|∞ permalink|read more.{0,20})$",
            r"(?i)^(∞|#|permalink|share|tweet|comments?( \(\d+\))?|\d+ comments?)$",
            r"(?i)^related( posts| articles| stories)?:?$",
            r"^[\s\[\]\(\)…\.»›→|·•-]*$",
        ]
        .iter()
        .map(|p| regex::Regex::new(p).expect("static pattern"))
        .collect()
    });
    let tail = TAIL.get_or_init(|| {
        [
            // Reddit: "submitted by /u/name [to /r/sub] [link] [comments]".
            r"(?i)\s*submitted by\s+/u/\S+(\s+to\s+/?r/\S+)?(\s*\[(link|comments)\])*\s*$",
            r"(?i)\s*\[(link|comments)\](\s*\[(link|comments)\])*\s*$",
            // A pointer at the end: in brackets, or marked with an arrow.
            r"(?i)\s*\[(continue reading|read more|keep reading)[^\]]{0,60}\]\s*$",
            r"(?i)\s*(continue reading|read more|keep reading)( on [^.]{1,40})?\s*[»›→]+\s*$",
            r"(?i)\s*the post .{1,300} appeared first on .{1,200}$",
            r"(?i)\s*\((more|read more)…?\)\s*$",
            r"\s*\[(…|\.\.\.|&hellip;)\]\s*$",
        ]
        .iter()
        .map(|p| regex::Regex::new(p).expect("static pattern"))
        .collect()
    });
    let mut text = paragraph.trim().to_string();
    // Quote and list markers written as text.
    while let Some(rest) = text
        .strip_prefix("> ")
        .or_else(|| text.strip_prefix("* "))
        .or_else(|| text.strip_prefix("• "))
        .or_else(|| text.strip_prefix("- "))
    {
        text = rest.trim_start().to_string();
    }
    for pattern in tail {
        text = pattern.replace(&text, "").trim_end().to_string();
    }
    if text.is_empty() || whole.iter().any(|p| p.is_match(&text)) {
        return None;
    }
    Some(text)
}

/// Cuts prose to at most `max` characters: at the end of the last sentence that
/// fits, when one ends past a third of `max`; else at a word, with "…".
pub fn cut_summary(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let fits: String = text.chars().take(max).collect();
    let next = text.chars().nth(max);
    let chars: Vec<(usize, char)> = fits.char_indices().collect();
    let best = chars
        .iter()
        .enumerate()
        .filter(|(k, &(i, c))| {
            let after = chars.get(k + 1).map(|x| x.1).or(next);
            is_sentence_end(&fits, i, c, after)
        })
        .map(|(_, &(i, c))| i + c.len_utf8())
        .next_back();
    if let Some(end) = best.filter(|&e| fits[..e].chars().count() > max / 3) {
        return fits[..end].trim_end().to_string();
    }
    let cut = match fits.rfind(char::is_whitespace) {
        Some(i) if i > max / 2 => &fits[..i],
        _ => &fits[..],
    };
    format!(
        "{}…",
        cut.trim_end_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
    )
}

/// `text` cut at a word to at most `max` characters, "…" marking the cut.
pub fn cut_at_word(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let fits: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match fits.rfind(char::is_whitespace) {
        Some(i) if i > max / 2 => &fits[..i],
        _ => &fits[..],
    };
    format!(
        "{}…",
        cut.trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—".contains(c))
    )
}

/// A title from the first sentence of an untitled item's text: at most about
/// twelve words, cut at a word with "…" when the sentence is longer.
pub fn derived_title(text: &str) -> Option<String> {
    let first = match sentence_end(text, 160) {
        Some(end) => text[..end].trim().to_string(),
        None => text.to_string(),
    };
    let words: Vec<&str> = first.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    Some(if words.len() > 12 {
        format!(
            "{}…",
            words[..10]
                .join(" ")
                .trim_end_matches(|c: char| c.is_ascii_punctuation())
        )
    } else {
        words.join(" ")
    })
}

/// The byte index just past the first sentence end within `max` characters.
fn sentence_end(text: &str, max: usize) -> Option<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().take(max + 1).collect();
    chars.iter().enumerate().find_map(|(k, &(i, c))| {
        let end = i + c.len_utf8();
        is_sentence_end(text, i, c, chars.get(k + 1).map(|x| x.1)).then_some(end)
    })
}

/// Abbreviations whose dot ends no sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "gov", "sen", "rep", "gen", "col", "lt", "sgt", "capt", "st",
    "mt", "jr", "sr", "inc", "ltd", "co", "corp", "bros", "vs", "etc", "no", "nos", "fig",
    "approx", "est", "dept", "univ", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "e.g", "i.e", "u.s", "u.k", "u.n", "a.m", "p.m",
];

/// Whether the `c` at byte `i` of `text` ends a sentence, `after` being the
/// character that follows it: . ! ? (or their CJK, Urdu and Hindi forms) before a
/// space, a closing quote or the end, and not the dot of "Mr." or "U.S.".
fn is_sentence_end(text: &str, i: usize, c: char, after: Option<char>) -> bool {
    if matches!(c, '。' | '！' | '？' | '۔' | '।') {
        return true;
    }
    if !matches!(c, '.' | '!' | '?') {
        return false;
    }
    if !after.is_none_or(|a| a.is_whitespace() || a == '"' || a == '”' || a == '\'') {
        return false;
    }
    if c != '.' {
        return true;
    }
    // The word before the dot, dots inside it kept ("U.S").
    let word: String = text[..i]
        .chars()
        .rev()
        .take_while(|ch| ch.is_alphanumeric() || *ch == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_lowercase();
    let word = word.trim_start_matches('.');
    if word.is_empty() {
        return true;
    }
    let initial = word.chars().count() == 1 && word.chars().all(char::is_alphabetic);
    let dotted = word.contains('.') && word.split('.').all(|p| p.chars().count() <= 1);
    !(initial || dotted || ABBREVIATIONS.contains(&word))
}

#[cfg(test)]
mod prose_tests {
    use super::*;

    #[test]
    fn links_keep_their_words_and_images_lose_their_alt_text() {
        let p = prose(
            r#"<p><img src="x.jpg" alt="A photo of Relay"><a href="https://relay.fm">Relay</a> FM has created <b>a new show</b>.</p><blockquote><p>Quoted words.</p></blockquote><ul><li>one</li><li>two</li></ul>"#,
        );
        assert_eq!(
            p.paragraphs,
            [
                "Relay FM has created a new show.",
                "Quoted words.",
                "one",
                "two"
            ]
        );
    }

    #[test]
    fn boilerplate_families_are_removed() {
        let cases = [
            ("<p>Real text.</p><p><a href=\"https://medium.com/x\">Continue reading on Medium »</a></p>", "Real text."),
            ("<p>Real text.</p><p>The post <a href=\"#\">Hello</a> appeared first on <a href=\"#\">My Blog</a>.</p>", "Real text."),
            ("Real text. [&#8230;]", "Real text."),
            ("<div>Real text.</div> &#32; submitted by &#32; <a href=\"https://www.reddit.com/user/x\"> /u/x </a> <br/> <span><a href=\"#\">[link]</a></span> &#32; <span><a href=\"#\">[comments]</a></span>", "Real text."),
            ("<p>Real text.</p><p><a href=\"#\">[Read More Here →]</a></p>", "Real text."),
            ("<p>Real text.</p><p><a href=\"#\">∞ Permalink</a></p>", "Real text."),
            ("&gt; quoted line", "quoted line"),
            // Prose that only sounds like boilerplate stays.
            ("<p>Officials said residents can read more on the city website before the vote.</p>", "Officials said residents can read more on the city website before the vote."),
            ("<p>The petition, submitted by u/civicdata on Reddit, gathered 4,000 names.</p>", "The petition, submitted by u/civicdata on Reddit, gathered 4,000 names."),
            ("<p>Read more about how the money was spent in the audit, which runs to 300 pages and names every contractor.</p>", "Read more about how the money was spent in the audit, which runs to 300 pages and names every contractor."),
            ("<p>The post office published its results on Monday.</p>", "The post office published its results on Monday."),
            ("<p>Apple<a href=\"#\">'s</a> new phone costs <b>$999</b>, the 1<sup>st</sup> price rise.</p>", "Apple's new phone costs $999, the 1st price rise."),
        ];
        for (html, want) in cases {
            assert_eq!(prose(html).paragraphs.join(" "), want, "{html}");
        }
    }

    #[test]
    fn summaries_end_at_a_sentence_when_one_fits() {
        let text = "The central bank held rates. Analysts expected a cut of fifty basis points after the inflation print last month.";
        assert_eq!(cut_summary(text, 60), "The central bank held rates.");
        assert_eq!(
            cut_summary(
                "The U.S. dollar rose against every currency we track this week and more",
                40
            ),
            "The U.S. dollar rose against every…"
        );
        assert_eq!(cut_summary("short", 40), "short");
        assert_eq!(
            cut_summary(
                "Prices went up. Then the bank stepped in and bought every bond it could find",
                40
            ),
            "Prices went up."
        );
        assert_eq!(
            cut_summary(
                "Gov. Smith said the rate rose 5%. The bank kept buying bonds all week long",
                40
            ),
            "Gov. Smith said the rate rose 5%."
        );
        assert_eq!(
            derived_title("Acme Inc. raised prices again. Buyers left."),
            Some("Acme Inc. raised prices again.".into())
        );
        assert_eq!(
            derived_title("بینک نے شرح سود کم کر دی۔ مزید"),
            Some("بینک نے شرح سود کم کر دی۔".into())
        );
    }
}
