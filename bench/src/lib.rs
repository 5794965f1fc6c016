//! `mm-bench`: a load generator for Multi-Messenger. It speaks the real protocol over real TLS,
//! runs many clients in one process, and either starts `mm-server` itself (with a bench
//! configuration that lifts the rate limits) or targets a running server. When it knows the
//! server's pid it reads the server's CPU time and memory from `/proc`.
//!
//! Every scenario counts every delivery and reports loss. Benchmarks measure; they never
//! assert a speed (CI runs each scenario tiny, checking only that nothing is lost).

pub mod cli;
mod conn;
mod rooms;
mod scenarios;
mod server;

pub use scenarios::Report;
