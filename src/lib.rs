//! gazette builds and sends a weekly email digest of a news site's top stories.
//!
//! The flow, one module per stage, data flowing forward:
//! [`config`] → [`feed`] (fetch and parse) → [`store`] (SQLite, the only place
//! that runs SQL) → [`rank`] (pick the week's stories) → [`render`] (HTML + text,
//! once per issue) → [`digest`] (the `digests/<week>/` files) → [`message`] +
//! [`send`] (one copy per subscriber, over SMTP, recorded in the ledger) →
//! [`bounce`] (what came back). [`web`] holds the routes and pages of
//! `gazette serve`, [`serve`] its startup and the [`schedule`] loop. [`app`] holds
//! one function per command. Shared helpers: [`text`], [`files`], [`token`], [`week`],
//! [`theme`] (the site's colours and fonts).
#![forbid(unsafe_code)]

pub mod app;
pub mod bounce;
pub mod config;
pub mod digest;
pub mod feed;
pub mod files;
pub mod message;
pub mod rank;
pub mod render;
pub mod schedule;
pub mod send;
pub mod serve;
pub mod store;
pub mod text;
pub mod theme;
pub mod token;
pub mod web;
pub mod week;
