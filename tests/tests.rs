//! Integration tests, one binary (as ripgrep does): the real `gazette` binary and
//! library against fixture feeds served over HTTP on loopback and from files, a
//! real SQLite file in a temporary directory, and headless Chromium where present.

mod mailserver;
mod util;

mod bounces;
mod browser;
mod building;
mod concurrency;
mod dkim;
mod feeds;
mod inbox;
mod operator;
mod privacy;
mod properties;
mod real_feeds;
mod sending;
mod serving;
mod snapshots;
mod storage;
