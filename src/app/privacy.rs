//! Privacy and backups: `subscribers export` and `wipe`, `backup`, `restore`. In:
//! an address or a path. Out: the data, or what was done.

use super::*;

/// `gazette subscribers export EMAIL`.
pub fn export_subscriber(store: &Store, email: &str) -> Result<serde_json::Value> {
    let s = subscriber(store, email)?;
    Ok(store
        .export_subscriber(s.id)?
        .expect("the subscriber was just found"))
}

/// `gazette subscribers wipe EMAIL`: the database's record, and every copy of
/// a message to the address kept on disk (the file outbox, test copies,
/// confirmation mails).
pub fn wipe_subscriber(
    config: &Config,
    store: &mut Store,
    email: &str,
    now: DateTime<Utc>,
) -> Result<String> {
    let s = subscriber(store, email)?;
    store.wipe_subscriber(s.id, now)?;
    let removed = remove_kept_messages(&config.output.dir, s.id, &s.email)?;
    Ok(format!(
        "erased {email}: only a salted hash remains, so no import can add it again; {removed} kept messages to it deleted"
    ))
}

/// Deletes the messages to subscriber `id` at `email` kept anywhere under the
/// output directory: their copy of each issue in a file outbox
/// (`<week>/outbox/<id>.eml`), and any `.eml` that names the address (test
/// copies, confirmation mails).
fn remove_kept_messages(output: &Path, id: i64, email: &str) -> Result<usize> {
    let own_name = format!("{id:010}.eml");
    let needle = email.to_lowercase();
    let mut removed = 0;
    let mut dirs = vec![output.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "eml") {
                continue;
            }
            let in_outbox = path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "outbox");
            let named = in_outbox && path.file_name().is_some_and(|n| *n == *own_name);
            let holds = || {
                std::fs::read(&path)
                    .is_ok_and(|b| String::from_utf8_lossy(&b).to_lowercase().contains(&needle))
            };
            if named || holds() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("deleting {}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// `gazette backup PATH`: a consistent copy of the live database.
pub fn backup(config: &Config, dest: &Path) -> Result<String> {
    if dest.exists() {
        bail!("{} exists already; choose a new file", dest.display());
    }
    let store = open_store(config)?;
    crate::files::create_private(dest)
        .with_context(|| format!("creating the backup {}", dest.display()))?;
    store
        .backup_to(dest)
        .with_context(|| format!("backing up to {}", dest.display()))?;
    let info = crate::store::check_gazette_database(dest)
        .map_err(|why| anyhow::anyhow!("the backup {} is unusable: {why}", dest.display()))?;
    Ok(format!(
        "backed up to {} ({} subscribers, integrity ok)",
        dest.display(),
        info.subscribers
    ))
}

/// `gazette restore PATH`: replaces the database's content with a backup's,
/// refusing a file that is not a gazette database or is from a newer schema.
pub fn restore(config: &Config, src: &Path) -> Result<String> {
    crate::store::check_gazette_database(src)
        .map_err(|why| anyhow::anyhow!("{}: refusing to restore: {why}", src.display()))?;
    let mut store = open_store(config)?;
    store.restore_from(src)?;
    // Bring an older backup up to this gazette's schema.
    drop(store);
    let store = open_store(config)?;
    Ok(format!(
        "restored {} into {} (schema {})",
        src.display(),
        config.database.path.display(),
        store.user_version()?
    ))
}
