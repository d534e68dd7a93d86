//! The `gazette` command: parses arguments, sets up logging, runs one command
//! from [`gazette::app`] and turns its outcome into an exit code.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use gazette::app;
use gazette::config::Config;
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
    /// Pick the week's top stories and write digests/<week>/.
    Build {
        /// An ISO week such as 2026-W06 (default: the last complete week).
        #[arg(long)]
        week: Option<IsoWeek>,
    },
    /// Show every candidate story, its score, and why it is in or out.
    Explain {
        #[arg(long)]
        week: Option<IsoWeek>,
    },
    /// Page-view counts, a popularity signal for ranking.
    Views {
        #[command(subcommand)]
        command: ViewsCommand,
    },
    /// The weekly job: fetch, build, send.
    Run {
        #[arg(long)]
        week: Option<IsoWeek>,
    },
}

#[derive(Subcommand)]
enum ViewsCommand {
    /// Import a `url,views` CSV file.
    Import { file: PathBuf },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GAZETTE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config::from_file(&cli.config)?;
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
            println!("{}", app::summarize_fetch(&reports)?);
        }
        Command::Build { week } => {
            let store = app::open_store(&config)?;
            build(&config, &store, app::pick_week(&config, week, now), now)?;
        }
        Command::Explain { week } => {
            let store = app::open_store(&config)?;
            let week = app::pick_week(&config, week, now);
            match app::rank_week(&config, &store, week, now)? {
                Some(ranked) => print!("{}", app::explain(&ranked)),
                None => println!("{week}: no stories were published that week"),
            }
        }
        Command::Views {
            command: ViewsCommand::Import { file },
        } => {
            let mut store = app::open_store(&config)?;
            println!("{}", app::import_views(&mut store, &file)?);
        }
        Command::Run { week } => {
            let mut store = app::open_store(&config)?;
            let reports = runtime.block_on(app::fetch(&config, &mut store, now))?;
            let fetched = app::summarize_fetch(&reports);
            let week = app::pick_week(&config, week, now);
            build(&config, &store, week, now)?;
            fetched?;
        }
    }
    Ok(())
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
