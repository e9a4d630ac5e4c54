//! `realserver`: a minimal, fast static HTTP/1.x server standing in for the
//! paper's real servers (a 75-byte page), with per-node counters so that an
//! experiment can tell which node served how many requests.
//!
//! Module map:
//! * [`config`]   – command-line options (clap) and the validated [`config::Config`].
//! * [`content`]  – the generated page, content types, safe path resolution (pure).
//! * [`date`]     – IMF-fixdate formatting and the once-a-second `Date` cache (pure).
//! * [`stats`]    – per-thread counter shards and the `/stats` JSON (pure).
//! * [`work`]     – `--work-us` CPU burner measured in thread CPU time.
//! * [`handler`]  – request → response for one worker (no sockets).
//! * [`io`]       – byte-counting stream wrapper.
//! * [`listener`] – SO_REUSEPORT / IP_FREEBIND listening sockets and bind errors.
//! * [`server`]   – worker threads, hyper connections, signals, graceful shutdown.

pub mod config;
pub mod content;
pub mod date;
pub mod handler;
pub mod io;
pub mod listener;
pub mod server;
pub mod stats;
pub mod work;

pub use config::{Cli, Config};
pub use server::{serve_until_signal, Server, ServerError};
