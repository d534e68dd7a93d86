//! The `gazette` command: parses arguments, sets up logging, runs one command
//! from [`gazette::app`] and turns its outcome into an exit code.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use gazette::app;
use gazette::config::Config;
use gazette::send;
use gazette::token::Signer;
use gazette::week::IsoWeek;

#[derive(Parser)]
#[command(
    name = "gazette",
    version,
    about = "Builds and sends a weekly email digest of a news site's top stories"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "GAZETTE_CONFIG",
        default_value = "config.toml"
    )]
    config: PathBuf,
    /// Pretend it is this instant (RFC 3339); for tests and replays.
    #[arg(long, global = true, hide = true)]
    now: Option<DateTime<Utc>>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the database.
    Init,
    /// Read every configured feed and store its stories.
    Fetch,
    /// What gazette makes of each configured feed, without storing anything.
    Feeds {
        #[command(subcommand)]
        command: FeedsCommand,
    },
    /// Pick the week's top stories and write digests/<week>/.
    Build {
        /// The ISO week, such as 2026-W06 (default: the last complete week in the newsletter's time zone).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<IsoWeek>,
    },
    /// Show every candidate story, its score, and why it is in or out.
    Explain {
        /// The ISO week, such as 2026-W06 (default: the last complete week in the newsletter's time zone).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<IsoWeek>,
    },
    /// Page-view counts, a popularity signal for ranking.
    Views {
        #[command(subcommand)]
        command: ViewsCommand,
    },
    /// Send the week's issue to every active subscriber not yet sent it.
    Send {
        /// The ISO week, such as 2026-W06 (default: the last complete week in the newsletter's time zone).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<IsoWeek>,
        /// List who would receive it; send nothing.
        #[arg(long, conflicts_with = "test")]
        dry_run: bool,
        /// Send one "[TEST]" copy to these addresses only (the ledger is untouched).
        #[arg(long = "test", value_name = "ADDR", num_args = 1..)]
        test: Vec<String>,
    },
    /// Vouch for a week's issue: build it (unless frozen already) and record who
    /// approved it; with [schedule] require_approval only approved issues are sent.
    Approve {
        /// The ISO week, such as 2026-W06 (default: the week that goes out next).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<IsoWeek>,
        /// Who approves it (recorded with the time).
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
    },
    /// Withdraw an approval: the issue may change again (not once its send began).
    Unapprove {
        /// The ISO week, such as 2026-W06 (default: the week that goes out next).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<IsoWeek>,
    },
    /// The weekly job, for cron: fetch, build (unless a send has begun), send.
    Run {
        /// The ISO week, such as 2026-W06 (default: the last complete week in the newsletter's time zone).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<IsoWeek>,
    },
    /// The subscriber list.
    Subscribers {
        #[command(subcommand)]
        command: SubscribersCommand,
    },
    /// Unsubscribe an address (recorded as done from the command line).
    Unsubscribe {
        /// The subscriber's address.
        email: String,
    },
    /// Bounces and complaints that came back by mail.
    Bounces {
        #[command(subcommand)]
        command: BouncesCommand,
    },
    /// What happened to an issue: deliveries, bounces, unsubscribes, clicks per
    /// story and topic, and the list over time.
    Report {
        /// The ISO week, such as 2026-W06 (default: the latest issue sent).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<IsoWeek>,
        /// JSON for scripts, instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// A consistent copy of the live database (safe while serve and send run).
    Backup {
        /// The file to write the copy to (it must not exist).
        path: PathBuf,
    },
    /// Replace the database's content with a backup's.
    Restore {
        /// A file written by `gazette backup`.
        path: PathBuf,
    },
    /// Serve unsubscribes, subscriptions, the archive and the preview, and run the
    /// weekly schedule, until SIGTERM or Ctrl-C.
    Serve,
}

#[derive(Subcommand)]
enum BouncesCommand {
    /// Read a Maildir, an mbox file, or .eml files; apply the bounce policy and
    /// unsubscribe requests sent by mail.
    Import {
        /// A Maildir (with cur/ and new/), an mbox file, an .eml file or a directory of them.
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum SubscribersCommand {
    /// Add an address as active (an address already on the list keeps its status).
    Add {
        /// The address to add.
        email: String,
        /// The name greetings use (at most 100 characters are kept).
        #[arg(long)]
        name: Option<String>,
    },
    /// Import an `email,name` CSV: good lines stored, bad ones reported by line.
    Import {
        /// A CSV file of `email,name` lines (a header line is optional).
        file: PathBuf,
    },
    /// List subscribers.
    List {
        /// Only subscribers with this status.
        #[arg(long, value_parser = ["pending", "active", "unsubscribed", "bounced", "complained"])]
        status: Option<String>,
        /// One JSON array of subscribers instead of tab-separated lines.
        #[arg(long)]
        json: bool,
    },
    /// How many subscribers have each status.
    Count {
        /// One JSON object, status to count, instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Delete an address and its history.
    Remove {
        /// The subscriber's address.
        email: String,
    },
    /// Print everything held about an address, as JSON.
    Export {
        /// The subscriber's address.
        email: String,
    },
    /// Erase an address's data, keeping a salted hash so no import adds it again.
    Wipe {
        /// The subscriber's address.
        email: String,
    },
}

#[derive(Subcommand)]
enum FeedsCommand {
    /// Items, dates, images, summaries, boilerplate removed and problems, per feed.
    Check,
}

#[derive(Subcommand)]
enum ViewsCommand {
    /// Import a `url,views` CSV file.
    Import {
        /// An analytics export: `url,views` lines, or a Matomo, Plausible or GA4 CSV.
        file: PathBuf,
    },
}

/// Libraries whose debug output drowns gazette's own (html5ever logs every
/// token it parses): kept at `warn` unless `GAZETTE_LOG` names them.
const NOISY_TARGETS: &[&str] = &[
    "html5ever",
    "markup5ever",
    "selectors",
    "scraper",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "mio",
    "tokio_util",
    // Not "tower": EnvFilter matches by prefix, and tower_http logs serve's requests.
    "css_inline",
    "cssparser",
];

/// The log filter: `GAZETTE_LOG` (tracing's `EnvFilter` syntax, such as `debug`
/// or `gazette=debug,tower_http=info`), else `info` for `serve` (each request
/// and job) and `warn` for commands (quiet on success). Noisy libraries stay at
/// `warn` unless named. An invalid `GAZETTE_LOG` is an error that names it.
fn log_filter(serve: bool) -> Result<tracing_subscriber::EnvFilter> {
    let default = if serve { "info" } else { "warn" };
    let asked = std::env::var("GAZETTE_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut directives: Vec<String> = NOISY_TARGETS
        .iter()
        .filter(|t| !asked.as_deref().is_some_and(|a| a.contains(*t)))
        .map(|t| format!("{t}=warn"))
        .collect();
    directives.push(asked.clone().unwrap_or_else(|| default.to_string()));
    tracing_subscriber::EnvFilter::builder()
        .parse(directives.join(","))
        .with_context(|| {
            format!(
                "GAZETTE_LOG={:?} is not a log filter (examples: info, debug, gazette=debug)",
                asked.unwrap_or_default()
            )
        })
}

/// Log times in the newsletter's zone, as every time gazette shows people.
struct ZoneTime(chrono_tz::Tz);

impl tracing_subscriber::fmt::time::FormatTime for ZoneTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{}",
            Utc::now()
                .with_timezone(&self.0)
                .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match log_filter(matches!(cli.command, Command::Serve)) {
        Ok(f) => f,
        Err(e) => {
            // The filter's own error repeats its cause: say it once.
            eprintln!("error: {e}: {}", e.root_cause());
            return ExitCode::from(2);
        }
    };
    let config = Config::from_file(&cli.config);
    let zone = config
        .as_ref()
        .map(|c| c.newsletter.timezone)
        .unwrap_or(chrono_tz::UTC);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(ZoneTime(zone))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let outcome = config
        .map_err(anyhow::Error::from)
        .and_then(|config| run(cli, config));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, config: Config) -> Result<()> {
    let now = cli.now.unwrap_or_else(Utc::now);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Init => println!("{}", app::init(&config)?),
        Command::Fetch => {
            let mut store = app::open_store(&config)?;
            let reports = runtime.block_on(app::fetch(&config, &mut store, now))?;
            let summary = app::summarize_fetch(&reports);
            for line in &summary.lines {
                println!("{line}");
            }
            if let Some(e) = summary.error() {
                return Err(e);
            }
        }
        Command::Build { week } => {
            let store = app::open_store(&config)?;
            build(&config, &store, app::pick_week(&config, week, now), now)?;
        }
        Command::Explain { week } => {
            let store = app::open_store(&config)?;
            let week = app::pick_week(&config, week, now);
            match app::rank_week(&config, &store, week, now)? {
                // Piped into `head`, a closed pipe is no error.
                Some(ranked) => {
                    let _ = std::io::stdout()
                        .write_all(app::explain(&ranked, config.newsletter.timezone).as_bytes());
                }
                None => println!("{week}: no stories were published that week"),
            }
        }
        Command::Feeds {
            command: FeedsCommand::Check,
        } => {
            let checks = runtime.block_on(app::check_feeds(&config));
            print!("{}", app::describe_feed_checks(&checks));
            if checks.iter().any(|c| c.outcome.is_err()) {
                anyhow::bail!("some feeds could not be read (named above)");
            }
        }
        Command::Views {
            command: ViewsCommand::Import { file },
        } => {
            let mut store = app::open_store(&config)?;
            println!("{}", app::import_views(&mut store, &file)?);
        }
        Command::Send {
            week,
            dry_run,
            test,
        } => {
            let week = app::pick_week(&config, week, now);
            if dry_run {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let n = app::would_receive(&config, week, &mut out)?;
                out.flush()?;
                eprintln!("{week}: {n} subscribers would receive it (dry run: nothing sent)");
                return Ok(());
            }
            let progress = || progress(&config, week);
            let outcome = runtime.block_on(app::send(&config, week, now, &test, progress))?;
            for line in &outcome.lines {
                println!("{line}");
            }
            if let Some(summary) = outcome.summary {
                check_finished(&summary)?;
            }
        }
        Command::Run { week } => {
            let week = app::pick_week(&config, week, now);
            let progress = progress(&config, week)?;
            let outcome =
                runtime.block_on(app::run_job(&config, week, now, progress, Arc::default()))?;
            for line in &outcome.lines {
                println!("{line}");
            }
            if let Some(e) = outcome.fetch_error {
                return Err(e);
            }
            if let Some(summary) = outcome.summary {
                check_finished(&summary)?;
            }
        }
        Command::Subscribers { command } => subscribers(&config, command, now)?,
        Command::Approve { week, by } => {
            let store = app::open_store(&config)?;
            let week = match week {
                Some(w) => w,
                None => app::next_week(&config, &store, now)?,
            };
            println!("{}", app::approve(&config, &store, week, &by, None, now)?);
        }
        Command::Unapprove { week } => {
            let store = app::open_store(&config)?;
            let week = match week {
                Some(w) => w,
                None => app::next_week(&config, &store, now)?,
            };
            println!("{}", app::unapprove(&store, week)?);
        }
        Command::Bounces {
            command: BouncesCommand::Import { path },
        } => {
            let mut store = app::open_store(&config)?;
            let outcome = app::import_bounces(&config, &mut store, &path, now)?;
            println!("{}", outcome.describe());
        }
        Command::Report { week, json } => {
            let mut store = app::open_store(&config)?;
            let report = app::report_week(&config, &mut store, week, now)?;
            let out = if json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                app::describe_report(&report)
            };
            let _ = std::io::stdout().write_all(out.as_bytes());
        }
        Command::Backup { path } => println!("{}", app::backup(&config, &path)?),
        Command::Restore { path } => println!("{}", app::restore(&config, &path)?),
        Command::Serve => {
            // A pretended `--now` keeps running from there.
            let started = std::time::Instant::now();
            let clock: gazette::web::Clock = match cli.now {
                Some(at) => Arc::new(move || {
                    at + chrono::Duration::from_std(started.elapsed()).unwrap_or_default()
                }),
                None => Arc::new(Utc::now),
            };
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.server.listen)
                    .await
                    .with_context(|| {
                        format!("[server] listen: cannot listen on {}", config.server.listen)
                    })?;
                gazette::serve::serve(config, clock, listener, shutdown_signal()).await
            })?;
        }
        Command::Unsubscribe { email } => {
            let mut store = app::open_store(&config)?;
            println!("{}", app::unsubscribe(&mut store, &email, now)?);
        }
    }
    Ok(())
}

fn subscribers(config: &Config, command: SubscribersCommand, now: DateTime<Utc>) -> Result<()> {
    let mut store = app::open_store(config)?;
    match command {
        SubscribersCommand::Add { email, name } => {
            println!(
                "{}",
                app::add_subscriber(&mut store, &email, name.as_deref(), now)?
            )
        }
        SubscribersCommand::Import { file } => {
            let report = app::import_subscribers(&mut store, &file, now)?;
            println!("{}", report.describe());
            if !report.bad.is_empty() {
                anyhow::bail!(
                    "{} bad lines in {} (the good ones were stored)",
                    report.bad.len(),
                    file.display()
                );
            }
        }
        SubscribersCommand::List { status, json } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            app::list_subscribers(&store, status.as_deref(), json, &mut out)?;
            out.flush()?;
        }
        SubscribersCommand::Count { json } => {
            println!("{}", app::count_subscribers(&store, json)?)
        }
        SubscribersCommand::Export { email } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&app::export_subscriber(&store, &email)?)?
            );
        }
        SubscribersCommand::Wipe { email } => {
            println!("{}", app::wipe_subscriber(config, &mut store, &email, now)?)
        }
        SubscribersCommand::Remove { email } => {
            println!("{}", app::remove_subscriber(&mut store, &email)?)
        }
    }
    Ok(())
}

/// A progress bar on a terminal.
struct Bar(indicatif::ProgressBar);

impl send::Progress for Bar {
    /// Shown from here on, so it never shows a made-up total.
    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    fn delivered(&self) {
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// The progress display: a bar on a terminal, nothing otherwise (the summary line
/// says it all). Also says when the development secret signs the links.
fn progress(config: &Config, week: IsoWeek) -> Result<Arc<dyn send::Progress>> {
    if Signer::from_config(config)?.development {
        eprintln!("note: GAZETTE_SECRET is not set; the outbox's links are signed with a fixed development secret");
    }
    Ok(if std::io::stderr().is_terminal() {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden())
                .with_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {wide_bar} {pos}/{len} {per_sec} eta {eta}",
                    )
                    .expect("static template"),
                );
        bar.set_message(format!("sending {week}"));
        Arc::new(Bar(bar))
    } else {
        Arc::new(send::LogProgress::new(
            format!("sending {week}"),
            std::time::Duration::from_secs(10),
        ))
    })
}

/// Exit 0 only when no delivery is left pending and none ran out of attempts.
fn check_finished(summary: &send::SendSummary) -> Result<()> {
    if summary.pending > 0 {
        anyhow::bail!(
            "{} deliveries are still pending; run send again to finish",
            summary.pending
        );
    }
    if summary.gave_up > 0 {
        anyhow::bail!(
            "{} deliveries failed after every attempt was deferred ([smtp] max_attempts): the mail server's trouble, not the addresses'; see the log",
            summary.gave_up
        );
    }
    Ok(())
}

/// SIGTERM (systemd) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

fn build(
    config: &Config,
    store: &gazette::store::Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<()> {
    match app::build(config, store, week, now)? {
        Some(built) => println!("{}", app::describe_build(&built)),
        None => println!("{week}: no stories were published that week; no issue written"),
    }
    Ok(())
}
