//! Files written whole: a reader (a browser opening the archive, `send` reading
//! the built issue, a person's editor) sees the old file or the new one, never
//! half of one. In: a path and bytes. Out: the file in place. Everything gazette
//! creates (the database, backups, the outbox's messages with their personal
//! links) is readable by its owner only: mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Owner read and write, no one else.
pub const PRIVATE_MODE: u32 = 0o600;

/// Creates `path` empty with [`PRIVATE_MODE`] unless it exists (an existing
/// file keeps the mode its owner gave it).
pub fn create_private(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(|_| ()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct WriteError {
    pub path: String,
    pub source: std::io::Error,
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |source| WriteError { path, source }
    };
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp{}", std::process::id()));
        path.with_file_name(name)
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_MODE)
        .open(&tmp)
        .map_err(err(&tmp))?;
    file.write_all(bytes).map_err(err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err(path))
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        super::write_atomic(&path, b"first").unwrap();
        super::write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, super::PRIVATE_MODE);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = super::write_atomic(&dir.path().join("no/such/dir/b"), b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
    }
}
