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

/// `gazette subscribers wipe EMAIL`.
pub fn wipe_subscriber(store: &mut Store, email: &str, now: DateTime<Utc>) -> Result<String> {
    let s = subscriber(store, email)?;
    store.wipe_subscriber(s.id, now)?;
    Ok(format!(
        "erased {email}: only a salted hash remains, so no import can add it again"
    ))
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
