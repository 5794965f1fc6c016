//! Multi-Messenger client library, and the `mm` command line ([`cli`]).
//!
//! [`connect`] gives a [`Client`] handle to send with and an [`Events`] stream to read from.
//! The server is always verified ([`trust`]); there is no insecure mode.
//!
//! What an event says is worded once, in [`render`]; a command is carried out once, in
//! [`execute`]. Line mode lays the words out with [`display`], the terminal UI with [`tui`].

pub mod cli;
pub mod command;
pub mod connection;
pub mod display;
pub mod execute;
pub mod explain;
pub mod home;
pub mod localtime;
pub mod render;
pub mod secure;
pub mod stdio;
pub mod trust;
pub mod tui;

pub use connection::{
    connect, Client, ClientState, ConnectError, ConnectOptions, Delivery, Event, Events,
    FlushError, LineId, NotConnected, SendError, Trust, Welcome,
};
pub use secure::SecureSetup;
