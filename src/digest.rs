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
# subject = "A subject of your own"   # default: "<newsletter>: <top story>"
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

/// Reads `issue.toml` from `dir`, creating it from the template when absent.
pub fn load_choices(dir: &Path) -> Result<EditorChoices, DigestError> {
    let path = dir.join(ISSUE_FILE);
    if !path.exists() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        crate::files::write_atomic(&path, ISSUE_TEMPLATE.as_bytes())?;
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    parse_choices(&text).map_err(|message| DigestError::Invalid {
        path: path.display().to_string(),
        message,
    })
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
    let html = public_copy(&issue.html, base_url, true);
    crate::files::write_atomic(&dir.join(HTML_FILE), html.as_bytes())?;
    let text = public_copy(&issue.text, base_url, false);
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
    };
    Ok(Some((issue, record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = load_choices(dir.path()).unwrap();
        assert_eq!(c, EditorChoices::default());
        std::fs::write(
            dir.path().join(ISSUE_FILE),
            "subject = \"Hi\"\npin = [\"https://x.example/a\"]\n",
        )
        .unwrap();
        let c = load_choices(dir.path()).unwrap();
        assert_eq!(c.subject.as_deref(), Some("Hi"));
        assert_eq!(c.pin.len(), 1);
    }

    #[test]
    fn unknown_key_names_line() {
        let e = parse_choices("pin = []\npins = [\"x\"]\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("pins"), "{e}");
    }
}
