//! Multi-Messenger client library, and the `mm` command line ([`cli`]).
//!
//! [`connect()`] gives a [`Client`] handle to send with and an [`Events`] stream to read from.
//! The server is always verified ([`trust`]); there is no insecure mode.
//!
//! Layers, bottom up: [`core`] is the protocol without I/O (fed bytes and the time, it yields
//! bytes to send, events and timeouts); [`connect`](mod@connect) reaches a server over TLS;
//! [`driver`] runs a core on a socket (and reconnects); [`secure`] keeps end-to-end keys in the
//! home. What an event says is worded once, in [`render`]; a command is carried out once, in
//! [`execute`]. Line mode lays the words out with [`display`], the terminal UI with [`tui`].

pub mod cli;
pub mod command;
pub mod connect;
pub mod core;
pub mod display;
pub mod driver;
pub mod execute;
pub mod explain;
pub mod home;
pub mod localtime;
pub mod render;
pub mod secure;
pub mod stdio;
pub mod trust;
pub mod tui;

pub use crate::core::{
    ChatLine, ClientState, Delivery, Event, LineId, NotConnected, RoomEvent, RoomInfo, SendError,
    Welcome, MAX_UNANSWERED,
};
pub use connect::{server_address, ConnectError, ConnectOptions, Trust};
pub use driver::{connect, Client, Events, FlushError};
pub use secure::SecureSetup;
