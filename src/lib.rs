//! gazette builds and sends a weekly email digest of a news site's top stories.
//!
//! The flow, one module per stage, data flowing forward:
//! [`config`] → [`feed`] (fetch and parse) → [`store`] (SQLite) → [`rank`] (pick the
//! week's stories) → [`render`] (HTML + text, once per issue) → [`digest`] (the
//! `digests/<week>/` files) → [`message`] + [`send`] (one copy per subscriber, over
//! SMTP, recorded in the ledger). [`app`] holds one function per command.
#![forbid(unsafe_code)]

pub mod app;
pub mod bounce;
pub mod config;
pub mod digest;
pub mod feed;
pub mod message;
pub mod rank;
pub mod render;
pub mod schedule;
pub mod send;
pub mod smtp;
pub mod store;
pub mod token;
pub mod web;
pub mod week;
pub mod wire;
