//! Reading a feed's bytes: over HTTP(S) with a timeout, a size cap and
//! conditional GET (ETag, Last-Modified), or from a file. In: a [`FeedSource`]
//! and the validators remembered from the last fetch. Out: the bytes, or
//! "not modified", or a [`FeedError`] that says why not.

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::FeedError;
use crate::config::{FeedLocation, FeedSource};

/// What a fetch brought back.
#[derive(Debug)]
pub enum Fetched {
    /// The server said 304: nothing changed since the validators we sent.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Conditional-GET validators remembered from the last fetch.
#[derive(Debug, Default, Clone)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Settings for [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchLimits {
    pub timeout: Duration,
    pub max_bytes: u64,
}

/// An HTTP client set up for feeds: rustls, the timeout, a user agent.
pub fn http_client(limits: &FetchLimits) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(limits.timeout)
        .connect_timeout(limits.timeout)
        .user_agent(concat!("gazette/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .expect("the HTTP client's settings are static")
}

/// Reads one feed's bytes, over HTTP(S) or from its file.
pub async fn fetch(
    client: &reqwest::Client,
    source: &FeedSource,
    validators: &Validators,
    limits: &FetchLimits,
) -> Result<Fetched, FeedError> {
    match &source.location {
        FeedLocation::File(path) => read_file(path, limits.max_bytes),
        FeedLocation::Http(url) => fetch_http(client, url, validators, limits.max_bytes).await,
    }
}

fn read_file(path: &Path, max_bytes: u64) -> Result<Fetched, FeedError> {
    let file_err = |error| FeedError::File {
        path: path.display().to_string(),
        error,
    };
    let len = std::fs::metadata(path).map_err(file_err)?.len();
    if len > max_bytes {
        return Err(FeedError::TooLarge(max_bytes));
    }
    let bytes = std::fs::read(path).map_err(file_err)?;
    Ok(Fetched::Body {
        bytes,
        etag: None,
        last_modified: None,
    })
}

async fn fetch_http(
    client: &reqwest::Client,
    url: &Url,
    validators: &Validators,
    max_bytes: u64,
) -> Result<Fetched, FeedError> {
    use reqwest::header;
    let mut request = client.get(url.clone()).header(
        header::ACCEPT,
        "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.8",
    );
    if let Some(etag) = &validators.etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = &validators.last_modified {
        request = request.header(header::IF_MODIFIED_SINCE, lm);
    }
    let mut response = request.send().await.map_err(describe_reqwest)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FeedError::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(FeedError::TooLarge(max_bytes));
    }
    let header_text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header_text(header::ETAG);
    let last_modified = header_text(header::LAST_MODIFIED);
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe_reqwest)? {
        if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(FeedError::TooLarge(max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched::Body {
        bytes,
        etag,
        last_modified,
    })
}

fn describe_reqwest(e: reqwest::Error) -> FeedError {
    use std::error::Error;
    let mut message = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    FeedError::Unreachable(message)
}
