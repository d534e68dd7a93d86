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
