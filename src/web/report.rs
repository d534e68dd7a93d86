//! The editor's report page, `/report/<week>` (and `/report`, the latest issue):
//! what `gazette report` says, with charts drawn as inline SVG (no script, no
//! library). Behind the desk's access rule. In: a week. Out: the page.
//!
//! Charts are sized in percentages with text at a fixed size, so they stay
//! readable at 360 px; they take their colours from the page (`currentColor`
//! and CSS classes), so dark mode applies; each has a title and description for
//! screen readers, and the same figures follow in a table.

use super::preview::{keep_token, no_such_week, refuse_non_admin, PreviewQuery};
use super::*;
use crate::app::{IssueClicks, ListWeek, Report};

/// The charts' colours, light and dark.
pub(super) const CHART_CSS: &str = ".chart{display:block;width:100%;margin:8px 0 16px;overflow:visible}\
.chart text{fill:currentColor;font-size:13px}.chart .bar{fill:#1d4ed8}.chart .auto{fill:#9ca3af}\
.chart .grid{stroke:#d1d5db;stroke-width:1}.chart .line{fill:none;stroke:#1d4ed8;stroke-width:2.5}\
.chart .join{fill:#15803d}.chart .leave{fill:#b91c1c}\
table.figures{border-collapse:collapse;width:100%;font-size:14px}table.figures td,table.figures th{padding:4px 6px;border-bottom:1px solid #d1d5db;text-align:left;vertical-align:top}\
table.figures td.n,table.figures th.n{text-align:right;white-space:nowrap}table.figures th.n{white-space:normal}table.figures tr.headline td{border-bottom:0;padding-top:10px}\
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:0}dl.kv dt{font-weight:bold}dl.kv dd{margin:0}\
@media (prefers-color-scheme:dark){.chart .bar,.chart .line{fill:#93c5fd}.chart .line{fill:none;stroke:#93c5fd}\
.chart .grid{stroke:#374151}.chart .join{fill:#4ade80}.chart .leave{fill:#f87171}.chart .auto{fill:#6b7280}\
table.figures td,table.figures th{border-color:#374151}}";

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A short label for a chart: the chart's text does not wrap.
fn short(s: &str, chars: usize) -> String {
    crate::text::cut_at_word(s, chars)
}

/// Clicks per story: a bar per story (readers' unique clicks), its headline
/// above it, automated clicks as a grey tail.
pub(super) fn story_bars(r: &Report) -> Markup {
    let row = 44;
    let height = r.stories.len() * row + 4;
    let max = r
        .stories
        .iter()
        .map(|s| s.unique_clicks + s.automated)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    // Bars take at most two thirds of the width: the figures sit at the right.
    let width = |n: u64| format!("{:.2}%", n as f64 / max * 66.0);
    let desc: Vec<String> = r
        .stories
        .iter()
        .map(|s| {
            format!(
                "{}: {} unique clicks ({}), {} automated",
                s.title,
                s.unique_clicks,
                percent(s.click_rate),
                s.automated
            )
        })
        .collect();
    html! {
        svg class="chart" role="img" aria-labelledby="clicks-title clicks-desc" width="100%" height=(height) {
            title id="clicks-title" { "Unique clicks per story, " (r.week) }
            desc id="clicks-desc" { (desc.join("; ")) }
            @for (i, s) in r.stories.iter().enumerate() {
                @let y = i * row;
                text x="0" y=(y + 14) { (s.position + 1) ". " (short(&s.title, 34)) }
                rect class="bar" x="0" y=(y + 20) width=(width(s.unique_clicks)) height="16" rx="2" {}
                @if s.automated > 0 {
                    rect class="auto" x=(width(s.unique_clicks)) y=(y + 20) width=(width(s.automated)) height="16" {}
                }
                text x="100%" y=(y + 33) text-anchor="end" {
                    (s.unique_clicks) " · " (percent(s.click_rate))
                }
            }
        }
    }
}

/// One series over the weeks as a line, scaled to the chart; values at its ends.
fn list_line(list: &[ListWeek]) -> Markup {
    let max = list.iter().map(|l| l.active).max().unwrap_or(0).max(1);
    let n = list.len().max(2) - 1;
    let points: Vec<String> = list
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{},{}", i * 100 / n, 100 - l.active * 100 / max))
        .collect();
    let (first, last) = (list.first(), list.last());
    html! {
        svg class="chart" role="img" aria-labelledby="list-title list-desc" width="100%" height="170" {
            title id="list-title" { "Active subscribers at the end of each week" }
            desc id="list-desc" {
                (list.iter().map(|l| format!("{}: {}", l.week, l.active)).collect::<Vec<_>>().join("; "))
            }
            text x="0" y="14" { "active: up to " (max) }
            line class="grid" x1="0" y1="30" x2="100%" y2="30" {}
            line class="grid" x1="0" y1="140" x2="100%" y2="140" {}
            svg x="0" y="30" width="100%" height="110" viewBox="0 0 100 100" preserveAspectRatio="none" {
                polyline class="line" vector-effect="non-scaling-stroke" points=(points.join(" ")) {}
            }
            @if let (Some(first), Some(last)) = (first, last) {
                text x="0" y="160" { (first.week) ": " (first.active) }
                text x="100%" y="160" text-anchor="end" { (last.week) ": " (last.active) }
            }
        }
    }
}

/// Joins (up, green) and leaves (down, red) per week.
fn joins_leaves(list: &[ListWeek]) -> Markup {
    let max = list
        .iter()
        .map(|l| l.joins.max(l.leaves))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = 100.0 / list.len().max(1) as f64;
    html! {
        svg class="chart" role="img" aria-labelledby="moves-title moves-desc" width="100%" height="170" {
            title id="moves-title" { "Joins and leaves per week" }
            desc id="moves-desc" {
                (list.iter().map(|l| format!("{}: {} joined, {} left", l.week, l.joins, l.leaves)).collect::<Vec<_>>().join("; "))
            }
            text x="0" y="14" { "joined ▲ / left ▼, up to " (max) " a week" }
            line class="grid" x1="0" y1="90" x2="100%" y2="90" {}
            @for (i, l) in list.iter().enumerate() {
                @let x = format!("{:.2}%", i as f64 * slot + slot * 0.2);
                @let w = format!("{:.2}%", slot * 0.6);
                @let up = l.joins as f64 / max * 60.0;
                @let down = l.leaves as f64 / max * 60.0;
                rect class="join" x=(x) y=(format!("{:.1}", 90.0 - up)) width=(w) height=(format!("{up:.1}")) {}
                rect class="leave" x=(x) y="90" width=(w) height=(format!("{down:.1}")) {}
            }
            @if let (Some(first), Some(last)) = (list.first(), list.last()) {
                text x="0" y="166" { (first.week) }
                text x="100%" y="166" text-anchor="end" { (last.week) }
            }
        }
    }
}

/// The last issues' click rates, a column each.
fn issue_columns(issues: &[IssueClicks]) -> Markup {
    let max = issues
        .iter()
        .map(|i| i.click_rate)
        .fold(0.0f64, f64::max)
        .max(0.0001);
    let slot = 100.0 / issues.len().max(1) as f64;
    html! {
        svg class="chart" role="img" aria-labelledby="rates-title rates-desc" width="100%" height="170" {
            title id="rates-title" { "Click rate of the last issues" }
            desc id="rates-desc" {
                (issues.iter().map(|i| format!("{}: {}", i.week, percent(i.click_rate))).collect::<Vec<_>>().join("; "))
            }
            line class="grid" x1="0" y1="140" x2="100%" y2="140" {}
            @for (n, i) in issues.iter().enumerate() {
                @let h = i.click_rate / max * 100.0;
                @let x = n as f64 * slot;
                rect class="bar" x=(format!("{:.2}%", x + slot * 0.2)) y=(format!("{:.1}", 140.0 - h)) width=(format!("{:.2}%", slot * 0.6)) height=(format!("{h:.1}")) {}
                text x=(format!("{:.2}%", x + slot / 2.0)) y=(format!("{:.1}", 134.0 - h)) text-anchor="middle" { (format!("{:.0}%", i.click_rate * 100.0)) }
                text x=(format!("{:.2}%", x + slot / 2.0)) y="160" text-anchor="middle" {
                    (i.week.rsplit_once('-').map(|(_, w)| w).unwrap_or(&i.week))
                }
            }
        }
    }
}

/// The whole report: figures, charts, and the tables behind them.
pub(super) fn report_body(r: &Report) -> Markup {
    let d = &r.delivery;
    let left: Vec<String> = r
        .unsubscribed
        .iter()
        .map(|(m, n)| format!("{n} {m}"))
        .collect();
    html! {
        div class="card" {
            p { strong { (r.subject) } }
            dl class="kv" {
                dt { "Sent" } dd { (d.sent) " of " (d.enrolled) " · " (d.failed) " failed · " (d.unfinished) " unfinished · " (d.skipped) " skipped" }
                dt { "Bounced" } dd { (r.bounced.hard) " hard · " (r.bounced.soft) " soft" }
                dt { "Complaints" } dd { (r.complained) }
                dt { "Unsubscribed" } dd { @if left.is_empty() { "none" } @else { (left.join(" · ")) } }
                dt { "Clicks" } dd {
                    @if r.clicks_counted {
                        (r.clicks.readers) " of " (d.sent) " copies with a click (" (percent(r.clicks.click_rate)) ") · " (r.clicks.unique_clicks) " unique · " (r.clicks.clicks) " in all · " (r.clicks.automated) " automated (scanners, previews: counted apart)"
                    } @else {
                        "not counted: this issue went out with [analytics] clicks = false"
                    }
                }
            }
        }
        @if r.clicks_counted {
        div class="card" {
            h2 { "Clicks per story" }
            p class="muted" { "Stories by rank (the lead is 1); the mail groups the briefs by topic." }
            (story_bars(r))
            // A row for the headline, one for its figures: four narrow columns
            // fit a phone.
            table class="figures" {
                thead { tr { th class="n" { "Clicks" } th class="n" { "Unique" } th class="n" { "Rate" } th class="n" { "Automated" } } }
                tbody {
                    @for s in &r.stories {
                        tr class="headline" {
                            td colspan="4" {
                                (s.position + 1) ". " a dir="auto" href=(s.link) { (s.title) }
                                @if let Some(t) = &s.topic { " " span class="muted" { "(" (t) ")" } }
                            }
                        }
                        tr {
                            td class="n" { (s.clicks) } td class="n" { (s.unique_clicks) } td class="n" { (percent(s.click_rate)) } td class="n" { (s.automated) }
                        }
                    }
                }
            }
            @if !r.topics.is_empty() {
                h3 { "By topic" }
                table class="figures" {
                    thead { tr { th { "Topic" } th class="n" { "Stories" } th class="n" { "Unique clicks" } th class="n" { "Per story" } } }
                    tbody {
                        @for t in &r.topics {
                            tr { td { (t.topic) } td class="n" { (t.stories) } td class="n" { (t.unique_clicks) } td class="n" { (percent(t.click_rate)) } }
                        }
                    }
                }
            }
        }
        }
        div class="card" {
            h2 { "The list" }
            (list_line(&r.list))
            (joins_leaves(&r.list))
            div {
                table class="figures" {
                    thead { tr { th { "Week" } th class="n" { "Active" } th class="n" { "Joined" } th class="n" { "Left" } } }
                    tbody {
                        @for l in &r.list {
                            tr { td { (l.week) } td class="n" { (l.active) } td class="n" { (l.joins) } td class="n" { (l.leaves) } }
                        }
                    }
                }
            }
        }
        div class="card" {
            h2 { "Recent issues" }
            (issue_columns(&r.issues))
            table class="figures" {
                thead { tr { th { "Issue" } th class="n" { "Sent" } th class="n" { "Copies with a click" } th class="n" { "Click rate" } th class="n" { "Unique clicks" } } }
                tbody {
                    @for i in &r.issues {
                        tr { td { (i.week) } td class="n" { (i.sent) } td class="n" { (i.readers) } td class="n" { @if i.clicks_counted { (percent(i.click_rate)) } @else { "not counted" } } td class="n" { (i.unique_clicks) } }
                    }
                }
            }
        }
        p class="muted" { "Counts are per story and issue, not per person: no pixel, no per-reader record unless [analytics] per_subscriber is on. Automated clicks (mail scanners, link previews, HEAD requests, bursts across a message's links) are counted apart." }
    }
}

pub(super) async fn report_latest(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
) -> Response {
    report_response(state, peer, q, headers, None).await
}

pub(super) async fn report_page(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
    Path(week): Path<String>,
) -> Response {
    match week.parse::<IsoWeek>() {
        Ok(w) => report_response(state, peer, q, headers, Some(w)).await,
        Err(e) => no_such_week(&state, e),
    }
}

async fn report_response(
    state: Arc<AppState>,
    peer: SocketAddr,
    q: PreviewQuery,
    headers: HeaderMap,
    week: Option<IsoWeek>,
) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, peer, &q, &headers) {
        return refusal;
    }
    let (config, now) = (state.config.clone(), state.now());
    let report = state
        .db(move |s| Ok(app::report_week(&config, s, week, now).map_err(|e| format!("{e:#}"))))
        .await;
    let response = match report {
        Ok(Ok(r)) => (
            StatusCode::OK,
            Html(
                page_with(
                    &state.config.theme,
                    &format!("Report of {}", r.week),
                    CHART_CSS,
                    html! {
                        p { a href=(state.href(&format!("preview/{}", r.week))) { "The issue on the desk" } }
                        (report_body(&r))
                    },
                    None,
                )
                .into_string(),
            ),
        )
            .into_response(),
        Ok(Err(why)) => state.respond(
            StatusCode::NOT_FOUND,
            "No report",
            html! { p { (why) } },
        ),
        Err(r) => r,
    };
    keep_token(&state, &q, response)
}
