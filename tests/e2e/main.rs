//! End-to-end tests: every test starts a real server on 127.0.0.1:0 with certificates generated
//! at test time and talks to it over real TLS, with the real client library or binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod acme;
mod adversarial;
mod at_rest;
mod bench_smoke;
mod build;
mod certs;
mod chat;
mod cli;
mod cluster;
mod delivery;
mod errors;
mod home;
mod hostile;
mod ids;
mod keys;
mod nats;
mod offline;
mod operations;
mod postgres;
mod process;
mod rooms;
mod secure;
mod shutdown;
mod store;
mod store_faults;
mod text;
mod trust;
mod tui;
mod web;
