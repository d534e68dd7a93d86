//! `gazette bounces import`: reads a mailbox and prints what the bounce policy
//! did. In: a Maildir, mbox or `.eml` path. Out: one line per report.

use super::*;

/// What reading bounce mail came to, one line per message.
#[derive(Debug, Default)]
pub struct BounceImport {
    pub applied: Vec<String>,
    /// Reports already read before: nothing changed.
    pub repeated: usize,
    /// Reports whose subscriber could not be found, and mail that is no report.
    pub unmatched: Vec<String>,
    /// Reports (and unsubscribe mails) that name a subscriber without proving
    /// they concern mail gazette sent: not applied.
    pub unverified: Vec<String>,
}

impl BounceImport {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} applied, {} already read, {} not recognised or not matched, {} unverified (not applied)",
            self.applied.len(),
            self.repeated,
            self.unmatched.len(),
            self.unverified.len()
        );
        for line in self
            .applied
            .iter()
            .chain(&self.unmatched)
            .chain(&self.unverified)
        {
            s += &format!("\n  {line}");
        }
        s
    }
}

/// `gazette bounces import PATH`: reads delivery reports, complaints and
/// unsubscribe requests by mail, matches each to a subscriber and applies the
/// policy (see [`crate::bounce::policy`]), one transaction per report.
pub fn import_bounces(
    config: &Config,
    store: &mut Store,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<BounceImport> {
    use crate::bounce::{self, policy, policy::Matched};
    let signer = Signer::from_config(config)?.signer;
    let soft_limit = config.bounces.soft_limit;
    let messages =
        bounce::messages_at(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = BounceImport::default();
    for (label, raw) in messages {
        let report = bounce::read(&raw);
        if store.bounce_report_seen(&report.key)? {
            out.repeated += 1;
            continue;
        }
        let (events, unmatched) = match policy::match_report(&report, &label, &signer, store)? {
            Matched::Unrecognised(why) => {
                out.unmatched.push(format!(
                    "{label}: not recognised ({why}): {:?}",
                    report.subject
                ));
                continue;
            }
            Matched::NoFailure => {
                out.unmatched.push(format!(
                    "{label}: a delivery report with no failure in it (nothing to do)"
                ));
                continue;
            }
            Matched::Unverified(line) => {
                out.unverified.push(line);
                continue;
            }
            Matched::Unsubscribe(id) => {
                let changed = store.apply_mail_unsubscribe(&report.key, id, now)?;
                out.applied.push(format!(
                    "{label}: unsubscribe request by mail for subscriber {id}: {}",
                    if changed {
                        "unsubscribed"
                    } else {
                        "was not receiving the newsletter"
                    }
                ));
                continue;
            }
            Matched::Events {
                events,
                unmatched,
                unverified,
            } => {
                out.unverified.extend(unverified);
                (events, unmatched)
            }
        };
        out.unmatched.extend(unmatched);
        let soft_counts =
            store.record_bounces(&events, now, |e, soft| policy::decide(e, soft, soft_limit))?;
        for (e, soft) in events.iter().zip(soft_counts) {
            out.applied.push(format!(
                "{label}: {} {} for subscriber {}: {}",
                e.kind.as_str(),
                e.status,
                e.subscriber_id,
                policy::describe(e, soft, soft_limit)
            ));
        }
    }
    Ok(out)
}
