//! The `digests/<week>/` directory: the editor's `issue.toml` comes in (created
//! with a commented template when an issue is first built), the built issue
//! goes out as `digest.html` and `digest.txt` (the issue as anyone reads it: no
//! name, no personal links; open them in a browser or a terminal),
//! `message.html` and `message.txt` (the per-subscriber templates with their
//! splice points, which `send` fills) and `digest.json` (every score and
//! reason). Files are written whole (to a temporary name, then renamed) so a
//! crash never leaves half an issue.

use std::path::Path;

use crate::rank::EditorChoices;
use crate::render::{DigestRecord, Issue};

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("{path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::files::WriteError),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DigestError + '_ {
    move |source| DigestError::Io {
        path: path.display().to_string(),
        source,
    }
}

const ISSUE_TEMPLATE: &str = r#"# The editor's choices for this issue. Rebuild (or reload the preview) to see them.
#
# subject = "A subject of your own"   # default: the top story's headline, cut at a word
# preheader = "The line inboxes show after the subject"   # default: the next headlines
# intro = """
# A few words from the editor. **Markdown** or plain text.
# """
# pin = ["https://…/story-that-must-lead"]   # always in, in this order, first
# drop = ["https://…/story-to-leave-out"]    # never in
pin = []
drop = []
"#;

pub const ISSUE_FILE: &str = "issue.toml";
pub const HTML_FILE: &str = "digest.html";
pub const TEXT_FILE: &str = "digest.txt";
/// The per-subscriber templates: what `send` splices each copy from.
pub const MESSAGE_HTML_FILE: &str = "message.html";
pub const MESSAGE_TEXT_FILE: &str = "message.txt";
pub const JSON_FILE: &str = "digest.json";

/// Reads `issue.toml` from `dir`; no file means no choices. Nothing is written:
/// a week without stories leaves no trace.
pub fn read_choices(dir: &Path) -> Result<EditorChoices, DigestError> {
    let path = dir.join(ISSUE_FILE);
    if !path.exists() {
        return Ok(EditorChoices::default());
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    parse_choices(&text).map_err(|message| DigestError::Invalid {
        path: path.display().to_string(),
        message,
    })
}

/// Creates `issue.toml` from the commented template when absent (when an
/// issue is built, or the desk first changes it).
pub fn ensure_choices_file(dir: &Path) -> Result<(), DigestError> {
    let path = dir.join(ISSUE_FILE);
    if !path.exists() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        crate::files::write_atomic(&path, ISSUE_TEMPLATE.as_bytes())?;
    }
    Ok(())
}

/// One change the editor's desk makes to `issue.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Pin(String),
    Unpin(String),
    Drop(String),
    Restore(String),
    /// Moves a pinned story one place up (towards the lead) or down.
    Move {
        url: String,
        up: bool,
    },
    /// Sets (or, empty, removes) `subject`, `preheader` or `intro`.
    Text {
        key: &'static str,
        value: String,
    },
}

/// Applies `edit` to `issue.toml` in place, keeping the editor's comments and
/// layout (toml_edit), and writes it whole; the result must still parse.
pub fn edit_choices(dir: &Path, edit: &Edit) -> Result<EditorChoices, DigestError> {
    ensure_choices_file(dir)?;
    let path = dir.join(ISSUE_FILE);
    let invalid = |message: String| DigestError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    // A hand-made mistake is reported with its line before anything changes.
    parse_choices(&text).map_err(invalid)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| invalid(e.to_string()))?;
    let list = |key: &str| -> Vec<String> {
        doc.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (mut pins, mut drops) = (list("pin"), list("drop"));
    // Entries name stories by URL; a hand-written one may carry tracking
    // parameters or be another form of the same address.
    let same = crate::feed::same_story;
    match edit {
        Edit::Pin(url) => {
            drops.retain(|u| !same(u, url));
            if !pins.iter().any(|u| same(u, url)) {
                pins.push(url.clone());
            }
        }
        Edit::Unpin(url) => pins.retain(|u| !same(u, url)),
        Edit::Drop(url) => {
            pins.retain(|u| !same(u, url));
            if !drops.iter().any(|u| same(u, url)) {
                drops.push(url.clone());
            }
        }
        Edit::Restore(url) => drops.retain(|u| !same(u, url)),
        Edit::Move { url, up } => {
            if let Some(i) = pins.iter().position(|u| same(u, url)) {
                let j = if *up {
                    i.checked_sub(1)
                } else {
                    Some(i + 1).filter(|j| *j < pins.len())
                };
                if let Some(j) = j {
                    pins.swap(i, j);
                }
            }
        }
        Edit::Text { key, value } => {
            let value = value.replace("\r\n", "\n");
            if value.trim().is_empty() {
                doc.remove(key);
            } else {
                doc[*key] = toml_edit::value(value.trim_end().to_string());
            }
        }
    }
    // Arrays are refilled in place, so the comments around them stay.
    for (key, items) in [("pin", &pins), ("drop", &drops)] {
        match doc.get_mut(key).and_then(|i| i.as_array_mut()) {
            Some(array) => {
                array.clear();
                array.extend(items.iter().map(String::as_str));
            }
            None => {
                doc[key] = toml_edit::value(toml_edit::Array::from_iter(
                    items.iter().map(String::as_str),
                ));
            }
        }
    }
    let out = doc.to_string();
    let choices = parse_choices(&out).map_err(invalid)?;
    crate::files::write_atomic(&path, out.as_bytes())?;
    Ok(choices)
}

/// Parses the editor's choices; errors say the line.
pub fn parse_choices(text: &str) -> Result<EditorChoices, String> {
    toml::from_str(text).map_err(|e| crate::config::describe_toml_error(text, &e))
}

/// Writes the files of a built issue; `base_url` is where the public copies'
/// footer links point.
pub fn write_issue(
    dir: &Path,
    issue: &Issue,
    record: &DigestRecord,
    base_url: &str,
) -> Result<(), DigestError> {
    use crate::render::public_copy;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    crate::files::write_atomic(&dir.join(MESSAGE_HTML_FILE), issue.html.as_bytes())?;
    crate::files::write_atomic(&dir.join(MESSAGE_TEXT_FILE), issue.text.as_bytes())?;
    let links = issue.links();
    let html = public_copy(&issue.html, base_url, &links, true);
    crate::files::write_atomic(&dir.join(HTML_FILE), html.as_bytes())?;
    let text = public_copy(&issue.text, base_url, &links, false);
    crate::files::write_atomic(&dir.join(TEXT_FILE), text.as_bytes())?;
    let json = serde_json::to_string_pretty(record).expect("the record serializes");
    crate::files::write_atomic(&dir.join(JSON_FILE), json.as_bytes())?;
    Ok(())
}

/// Reads a built issue back (for sending and serving).
pub fn read_issue(dir: &Path) -> Result<Option<(Issue, DigestRecord)>, DigestError> {
    let json_path = dir.join(JSON_FILE);
    if !json_path.exists() {
        return Ok(None);
    }
    let read = |name: &str| -> Result<String, DigestError> {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(io_err(&p))
    };
    let record: DigestRecord =
        serde_json::from_str(&read(JSON_FILE)?).map_err(|e| DigestError::Invalid {
            path: json_path.display().to_string(),
            message: e.to_string(),
        })?;
    // Issues built before the templates had their own files kept them in
    // digest.html and digest.txt.
    let template = |name: &str, older: &str| {
        if dir.join(name).exists() {
            read(name)
        } else {
            read(older)
        }
    };
    let issue = Issue {
        subject: record.subject.clone(),
        preheader: record.preheader.clone(),
        html: template(MESSAGE_HTML_FILE, HTML_FILE)?,
        text: template(MESSAGE_TEXT_FILE, TEXT_FILE)?,
        stories: crate::render::linked_stories(&record.selection),
    };
    Ok(Some((issue, record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = read_choices(dir.path()).unwrap();
        assert_eq!(c, EditorChoices::default());
        assert!(
            !dir.path().join(ISSUE_FILE).exists(),
            "reading writes nothing"
        );
        ensure_choices_file(dir.path()).unwrap();
        assert_eq!(read_choices(dir.path()).unwrap(), EditorChoices::default());
        std::fs::write(
            dir.path().join(ISSUE_FILE),
            "subject = \"Hi\"\npin = [\"https://x.example/a\"]\n",
        )
        .unwrap();
        let c = read_choices(dir.path()).unwrap();
        assert_eq!(c.subject.as_deref(), Some("Hi"));
        assert_eq!(c.pin.len(), 1);
    }

    #[test]
    fn desk_edits_keep_the_editors_comments_and_order_pins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(ISSUE_FILE),
            "# my note\nsubject = \"Hi\" # keep\n# pins lead\npin = [\"https://x.example/a\"]\ndrop = [\"https://x.example/b\"]\n",
        )
        .unwrap();
        let edit = |e: Edit| edit_choices(dir.path(), &e).unwrap();
        // The desk names a story by its canonical URL; the file may hold another form.
        edit(Edit::Pin("https://x.example/b?utm_source=x".into()));
        let c = edit(Edit::Move {
            url: "https://x.example/b".into(),
            up: true,
        });
        assert_eq!(
            c.pin,
            vec!["https://x.example/b?utm_source=x", "https://x.example/a"]
        );
        assert!(c.drop.is_empty(), "a pinned story is not dropped");
        let c = edit(Edit::Text {
            key: "intro",
            value: "- one\r\n- two \"quoted\"".into(),
        });
        assert_eq!(c.intro.as_deref(), Some("- one\n- two \"quoted\""));
        let c = edit(Edit::Text {
            key: "preheader",
            value: "Next: two".into(),
        });
        assert_eq!(c.preheader.as_deref(), Some("Next: two"));
        let c = edit(Edit::Text {
            key: "preheader",
            value: " ".into(),
        });
        assert_eq!(c.preheader, None);
        let text = std::fs::read_to_string(dir.path().join(ISSUE_FILE)).unwrap();
        assert!(
            text.starts_with("# my note\nsubject = \"Hi\" # keep\n# pins lead\n"),
            "{text}"
        );
        // A broken file is reported with its line, and left as it is.
        std::fs::write(dir.path().join(ISSUE_FILE), "pin = [\n").unwrap();
        let e = edit_choices(dir.path(), &Edit::Drop("https://x.example/c".into())).unwrap_err();
        assert!(e.to_string().contains("line"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(ISSUE_FILE)).unwrap(),
            "pin = [\n"
        );
    }

    #[test]
    fn unknown_key_names_line() {
        let e = parse_choices("pin = []\npins = [\"x\"]\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("pins"), "{e}");
    }
}
