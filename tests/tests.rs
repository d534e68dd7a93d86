//! Integration tests, one binary (as ripgrep does): the real `gazette` binary and
//! library against fixture feeds served over HTTP on loopback and from files, a
//! real SQLite file in a temporary directory. The tests that need a system
//! package are in tests/external.rs.

mod mailserver;
mod util;

mod analytics;
mod bounces;
mod building;
mod concurrency;
mod feeds;
mod operator;
mod privacy;
mod properties;
mod real_feeds;
mod sending;
mod serving;
mod snapshots;
mod storage;
