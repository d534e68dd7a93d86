//! `gazette subscribers …` and `unsubscribe`: the list from the command line. In:
//! addresses and CSV files. Out: what changed, line by line for an import.

use super::*;

/// An address that is not one.
#[derive(Debug, thiserror::Error)]
pub enum InvalidAddress {
    #[error("no address")]
    Empty,
    #[error("longer than the 254 characters an address can have")]
    TooLong,
    #[error("{address:?} is not an email address ({reason})")]
    Malformed {
        address: String,
        reason: lettre::address::AddressError,
    },
    #[error("{0}: a quoted, unusual or non-ASCII local part (before the @) is not accepted: most mail servers cannot receive it")]
    Unusual(String),
    #[error("{0}: the domain (after the @) is not one mail can be routed to")]
    Unroutable(String),
}

/// RFC 5322's `atext`, plus the non-ASCII letters of RFC 6531.
fn is_atext(c: char) -> bool {
    // ASCII only: a non-ASCII local part needs SMTPUTF8 (RFC 6531), which many
    // servers refuse and gazette does not send.
    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
}

/// Validates an address with lettre's parser, and insists on a plain local part
/// (a dot-atom: no quotes, spaces or empty dot-separated pieces); returns it
/// trimmed.
pub fn valid_address(email: &str) -> Result<String, InvalidAddress> {
    let trimmed = email.trim();
    if trimmed.is_empty() {
        return Err(InvalidAddress::Empty);
    }
    // RFC 5321 allows no longer path.
    if trimmed.len() > 254 {
        return Err(InvalidAddress::TooLong);
    }
    let address =
        trimmed
            .parse::<lettre::Address>()
            .map_err(|reason| InvalidAddress::Malformed {
                address: trimmed.to_string(),
                reason,
            })?;
    let plain = address
        .user()
        .split('.')
        .all(|piece| !piece.is_empty() && piece.chars().all(is_atext));
    if !plain {
        return Err(InvalidAddress::Unusual(trimmed.to_string()));
    }
    // A domain mail can be routed to: a dot in it, not an IP literal.
    let domain = address.domain();
    if !domain.contains('.') || domain.ends_with('.') || domain.starts_with('[') {
        return Err(InvalidAddress::Unroutable(trimmed.to_string()));
    }
    Ok(address.to_string())
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
    let bytes = std::fs::read(path).with_context(|| format!("reading {file}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}');
    // Line by line: a stray quote on one line must not swallow the lines after
    // it (a CSV reader would read on to the next quote). Every line is stored or
    // reported by its number.
    let parse_line = |line: &str| -> Result<csv::StringRecord, String> {
        if line.matches('"').count() % 2 == 1 {
            // (Checked before the reader, which would read on to a later quote.)
            return Err("a quote is opened and never closed".into());
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(line.as_bytes());
        match reader.records().next() {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(e.to_string()),
            None => Ok(csv::StringRecord::new()),
        }
    };
    let all: Vec<&str> = text.lines().collect();
    let headers = all
        .first()
        .map(|l| parse_line(l))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{file}: line 1: {e}"))?
        .unwrap_or_default();
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
    let mut i = 1;
    while i < all.len() {
        let line = i + 1;
        let mut raw = all[i].to_string();
        i += 1;
        if raw.trim().is_empty() {
            continue;
        }
        // A quoted field may hold a line break (valid CSV): the next line joins
        // it when that closes the quote; else this line alone is bad.
        if raw.matches('"').count() % 2 == 1 && i < all.len() {
            let joined = format!("{raw}\n{}", all[i]);
            if joined.matches('"').count() % 2 == 0 {
                raw = joined;
                i += 1;
            }
        }
        let record = match parse_line(&raw) {
            Ok(r) if r.len() > headers.len() => {
                bad.push((
                    line,
                    format!("{} fields, but the header names {}", r.len(), headers.len()),
                ));
                continue;
            }
            Ok(r) => r,
            Err(e) => {
                bad.push((line, e));
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
            .and_then(crate::text::person_name);
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
    let name = name.and_then(crate::text::person_name);
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
    // With --json, one array (streamed: a list may not fit in memory).
    let mut after = 0;
    let mut first = true;
    if json {
        write!(out, "[")?;
    }
    loop {
        let page = store.subscribers_page(status, after, 1000)?;
        let Some(last) = page.last() else {
            if json {
                writeln!(out, "{}]", if first { "" } else { "\n" })?;
            }
            return Ok(());
        };
        after = last.id;
        for s in page {
            if json {
                let separator = if first { "\n" } else { ",\n" };
                write!(out, "{separator}{}", serde_json::to_string(&s)?)?;
                first = false;
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
    } else if counts.is_empty() {
        "no subscribers yet".to_string()
    } else {
        counts
            .iter()
            .map(|(status, n)| format!("{status}\t{n}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}
