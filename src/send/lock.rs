//! One sender per issue. In: the database and an issue. Out: a [`SendLock`]
//! held until dropped, or who holds it. Guarantee kept here: two sends of one
//! issue cannot both deliver; a lock left by a process that is gone (its pid
//! vanished on this host, or no heartbeat for a minute from another) is taken over.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{hostname, SendError};
use crate::store::{LockHolder, Store};
use crate::week::IsoWeek;

/// This process, as a lock names it: `host:pid`.
fn holder_name() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// Whether the process named by a lock holder is gone: on this host, by its pid;
/// elsewhere, by a heartbeat older than a minute.
fn holder_is_gone(other: &LockHolder) -> bool {
    let (host, pid) = other.holder.rsplit_once(':').unwrap_or((&other.holder, ""));
    if host == hostname() {
        if let Ok(pid) = pid.parse::<u32>() {
            if pid == std::process::id() {
                return false;
            }
            return !Path::new(&format!("/proc/{pid}")).exists();
        }
    }
    Utc::now().timestamp() - other.heartbeat_at > 60
}

/// A held send lock; released when dropped.
pub(crate) struct SendLock {
    path: PathBuf,
    issue_id: i64,
    pub(crate) holder: String,
}

impl SendLock {
    pub(crate) fn acquire(
        store: &mut Store,
        path: &Path,
        issue_id: i64,
        week: IsoWeek,
    ) -> Result<SendLock, SendError> {
        let holder = holder_name();
        if let Some(other) = store.lock_take(issue_id, &holder, Utc::now(), holder_is_gone)? {
            return Err(SendError::Locked {
                week,
                holder: other.holder,
                since: other.since.to_rfc3339(),
            });
        }
        Ok(SendLock {
            path: path.to_path_buf(),
            issue_id,
            holder,
        })
    }

    /// Keeps the heartbeat fresh every five seconds, so another host can tell the
    /// holder is alive, until the returned task is aborted.
    pub(crate) fn keep_alive(&self) -> tokio::task::JoinHandle<()> {
        let (path, issue_id, holder) = (self.path.clone(), self.issue_id, self.holder.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                if let Ok(store) = Store::open(&path) {
                    let _ = store.lock_heartbeat(issue_id, &holder, Utc::now());
                }
            }
        })
    }
}

impl Drop for SendLock {
    fn drop(&mut self) {
        if let Ok(store) = Store::open(&self.path) {
            let _ = store.lock_release(self.issue_id, &self.holder);
        }
    }
}
