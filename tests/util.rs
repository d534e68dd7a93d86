//! Shared helpers: a temporary site (config + database), the binary, a loopback
//! HTTP server for fixture feeds, and the fixed clock every test uses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub const BIN: &str = env!("CARGO_BIN_EXE_gazette");
/// Every test pretends it is this instant: after the sample week 2026-W06.
pub const NOW: &str = "2026-02-12T09:00:00Z";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A newsletter in a temporary directory: its config.toml, database and digests.
pub struct Site {
    pub dir: tempfile::TempDir,
}

pub const NEWSLETTER: &str = r#"
[newsletter]
name = "Test Weekly"
from = "Test Weekly <weekly@news.test>"
base_url = "https://news.test/letter"
postal_address = "1 Test Street, Testville"
timezone = "UTC"
"#;

impl Site {
    /// A site reading `feeds` (URLs or file paths), with `extra` TOML appended.
    pub fn new(feeds: &[&str], extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NEWSLETTER.to_string();
        for f in feeds {
            let name = f.rsplit('/').next().unwrap();
            config += &format!("\n[[feeds]]\nurl = {f:?}\nname = {name:?}\n");
        }
        config += extra;
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Site { dir }
    }

    /// A site reading the three fixture feeds: two over HTTP from `server`
    /// (site.rss, wire.atom) and one from a file (blog.json).
    pub fn with_fixture_feeds(server: &FeedServer, extra: &str) -> Site {
        let blog = fixture("blog.json");
        Site::new(
            &[
                &server.url("site.rss"),
                &server.url("wire.atom"),
                blog.to_str().unwrap(),
            ],
            extra,
        )
    }

    /// The repository's own config.toml and sample data, copied.
    pub fn sample() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(repo_file("config.toml"), dir.path().join("config.toml")).unwrap();
        std::fs::create_dir(dir.path().join("sample")).unwrap();
        for entry in std::fs::read_dir(repo_file("sample")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                dir.path().join("sample").join(entry.file_name()),
            )
            .unwrap();
        }
        Site { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> gazette::config::Config {
        gazette::config::Config::parse(
            &std::fs::read_to_string(self.path("config.toml")).unwrap(),
            "config.toml",
            self.dir.path(),
            std::iter::empty(),
        )
        .unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(self.path("config.toml"))
            .arg("--now")
            .arg(NOW)
            .args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    /// [`Site::ok`] with `GAZETTE_SECRET` set: the commands that sign links in
    /// mail a server then checks.
    pub fn ok_signed(&self, args: &[&str], secret: &str) -> String {
        let out = self
            .command(args)
            .env("GAZETTE_SECRET", secret)
            .output()
            .unwrap();
        succeeded(args, out)
    }

    /// Imports `<prefix>1@example.com` … `<prefix><n>@example.com` (named
    /// "Person <i>") from `people.csv`.
    pub fn import_people(&self, prefix: &str, n: usize) {
        let csv: String = std::iter::once("email,name\n".to_string())
            .chain((1..=n).map(|i| format!("{prefix}{i}@example.com,Person {i}\n")))
            .collect();
        std::fs::write(self.path("people.csv"), csv).unwrap();
        self.ok(&["subscribers", "import", "people.csv"]);
    }

    pub fn store(&self) -> gazette::store::Store {
        gazette::store::Store::open(&self.path("gazette.db")).unwrap()
    }

    /// A plain SQLite connection to the site's database (created and migrated
    /// first), for tests that look at rows gazette's API does not show.
    pub fn db(&self) -> rusqlite::Connection {
        drop(self.store());
        rusqlite::Connection::open(self.path("gazette.db")).unwrap()
    }

    /// The subscriber's status now.
    pub fn status(&self, email: &str) -> gazette::store::Status {
        self.store()
            .subscriber_by_email(email)
            .unwrap()
            .unwrap()
            .status
    }

    /// The single integer `sql` selects.
    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn digest_json(&self, week: &str) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.path(&format!("digests/{week}/digest.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// The stdout of a run that must have succeeded.
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "gazette {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback HTTP server for fixture feeds with ETag support; it records each
/// request's path and status.
pub struct FeedServer {
    pub base: String,
    pub log: Arc<Mutex<Vec<(String, u16)>>>,
    _thread: std::thread::JoinHandle<()>,
}

#[derive(Clone)]
struct ServerState {
    files: Arc<HashMap<String, Vec<u8>>>,
    log: Arc<Mutex<Vec<(String, u16)>>>,
}

async fn serve_file(
    State(state): State<ServerState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(body) = state.files.get(&name) else {
        state.log.lock().unwrap().push((name, 404));
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!(
        "\"{}-{}\"",
        body.len(),
        body.iter().map(|b| *b as u64).sum::<u64>()
    );
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        state.log.lock().unwrap().push((name, 304));
        return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
    }
    state.log.lock().unwrap().push((name, 200));
    (
        StatusCode::OK,
        [("etag", etag), ("content-type", "application/xml".into())],
        body.clone(),
    )
        .into_response()
}

impl FeedServer {
    /// Serves the named fixtures at `<base>/feeds/<name>`.
    pub fn start(fixtures: &[&str]) -> FeedServer {
        let files: HashMap<String, Vec<u8>> = fixtures
            .iter()
            .map(|f| (f.to_string(), std::fs::read(fixture(f)).unwrap()))
            .collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            files: Arc::new(files),
            log: log.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new()
                    .route("/feeds/{name}", get(serve_file))
                    .with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        FeedServer {
            base: format!("http://{addr}"),
            log,
            _thread: thread,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/feeds/{name}", self.base)
    }

    pub fn statuses(&self, name: &str) -> Vec<u16> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .collect()
    }
}
