//! `gazette subscribers …` and `unsubscribe`: the list from the command line. In:
//! addresses and CSV files. Out: what changed, line by line for an import.

use super::*;

/// An address that is not one.
#[derive(Debug, thiserror::Error)]
pub enum InvalidAddress {
    #[error("no address")]
    Empty,
    #[error("{address:?} is not an email address ({reason})")]
    Malformed {
        address: String,
        reason: lettre::address::AddressError,
    },
}

/// Validates an address with lettre's parser; returns it trimmed.
pub fn valid_address(email: &str) -> Result<String, InvalidAddress> {
    let trimmed = email.trim();
    if trimmed.is_empty() {
        return Err(InvalidAddress::Empty);
    }
    trimmed
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|reason| InvalidAddress::Malformed {
            address: trimmed.to_string(),
            reason,
        })
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub added: usize,
    pub existing: usize,
    pub bad: Vec<String>,
}

impl ImportReport {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "added {}, already on the list {}, bad lines {}",
            self.added,
            self.existing,
            self.bad.len()
        );
        for b in &self.bad {
            s += &format!("\n  {b}");
        }
        s
    }
}

/// `gazette subscribers import FILE.csv` (header `email,name`, name optional).
/// Good lines are stored in one transaction, bad ones reported by line number;
/// an address already on the list keeps its status (an import never resubscribes).
pub fn import_subscribers(
    store: &mut Store,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    let file = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading {file}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: line 1"))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let email_col = col("email").with_context(|| {
        format!("{file}: line 1: the header must name an `email` column (and optionally `name`)")
    })?;
    let name_col = col("name");
    let mut report = ImportReport::default();
    // (line, why) of every bad line, in file order once sorted.
    let mut bad: Vec<(usize, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // (line, address, name) of every good line, stored together below.
    let mut good: Vec<(usize, String, Option<String>)> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push((line, e.to_string()));
                continue;
            }
        };
        let email = match valid_address(record.get(email_col).unwrap_or("")) {
            Ok(e) => e,
            Err(reason) => {
                bad.push((line, reason.to_string()));
                continue;
            }
        };
        if !seen.insert(crate::store::email_key(&email)) {
            report.existing += 1;
            continue;
        }
        let name = name_col
            .and_then(|c| record.get(c))
            .map(clean_line)
            .filter(|n| !n.is_empty());
        good.push((line, email, name));
    }
    let outcomes = store.import_subscribers(
        good.iter()
            .map(|(_, email, name)| (email.as_str(), name.as_deref())),
        now,
    )?;
    for ((line, email, _), added) in good.iter().zip(outcomes) {
        match added {
            Added::New(_) => report.added += 1,
            Added::Existing(..) => report.existing += 1,
            Added::Erased => bad.push((*line, erased(email))),
        }
    }
    bad.sort_by_key(|(line, _)| *line);
    report.bad = bad
        .into_iter()
        .map(|(line, why)| format!("{file}: line {line}: {why}"))
        .collect();
    Ok(report)
}

fn erased(email: &str) -> String {
    format!("{email} was erased at its owner's request and may not be added again")
}

/// `gazette subscribers add EMAIL [--name N]`: adds an address as active; one
/// already on the list keeps its status, and an erased one is refused.
pub fn add_subscriber(
    store: &mut Store,
    email: &str,
    name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String> {
    let email = valid_address(email)?;
    let name = name.map(clean_line).filter(|n| !n.is_empty());
    match store.add_subscriber(
        &email,
        name.as_deref(),
        Status::Active,
        Origin::Operator,
        now,
    )? {
        Added::New(_) => Ok(format!("added {email}")),
        Added::Existing(_, status) => Ok(format!(
            "{email} is already on the list ({})",
            status.as_str()
        )),
        Added::Erased => bail!("{}", erased(&email)),
    }
}

/// The subscriber with this address, or an error that says it is not on the list.
pub fn subscriber(store: &Store, email: &str) -> Result<crate::store::Subscriber> {
    store
        .subscriber_by_email(email)?
        .with_context(|| format!("{email} is not on the list"))
}

/// `gazette unsubscribe EMAIL`.
pub fn unsubscribe(store: &mut Store, email: &str, now: DateTime<Utc>) -> Result<String> {
    let s = subscriber(store, email)?;
    let changed = store.set_status(
        s.id,
        Status::Unsubscribed,
        Some(UnsubscribeMethod::Cli),
        None,
        now,
    )?;
    Ok(if changed {
        format!("{} unsubscribed", s.email)
    } else {
        format!("{} was already unsubscribed", s.email)
    })
}

/// `gazette subscribers remove EMAIL`.
pub fn remove_subscriber(store: &mut Store, email: &str) -> Result<String> {
    let s = subscriber(store, email)?;
    store.remove_subscriber(s.id)?;
    Ok(format!("removed {}", s.email))
}

/// `gazette subscribers list`: every subscriber (of one status), one line each
/// (tab-separated, or JSON lines), streamed a page at a time.
pub fn list_subscribers(
    store: &Store,
    status: Option<&str>,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let status = match status {
        Some(s) => Some(Status::parse(s).with_context(|| {
            format!("--status {s:?}: one of pending, active, unsubscribed, bounced, complained")
        })?),
        None => None,
    };
    let mut after = 0;
    loop {
        let page = store.subscribers_page(status, after, 1000)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id;
        for s in page {
            if json {
                writeln!(out, "{}", serde_json::to_string(&s)?)?;
            } else {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    s.email,
                    s.status.as_str(),
                    s.name.unwrap_or_default()
                )?;
            }
        }
    }
}

/// `gazette subscribers count`: subscribers by status.
pub fn count_subscribers(store: &Store, json: bool) -> Result<String> {
    let counts = store.count_by_status()?;
    Ok(if json {
        let map: serde_json::Map<String, serde_json::Value> =
            counts.into_iter().map(|(k, v)| (k, v.into())).collect();
        serde_json::Value::Object(map).to_string()
    } else {
        counts
            .iter()
            .map(|(status, n)| format!("{status}\t{n}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}
