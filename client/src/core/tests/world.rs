//! A [`World`]: the server double ([`Server`]) and several named [`Core`]s on one simulated
//! clock, with the bytes moved between them by [`World::pump`] and time by [`World::advance`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mm_common::protocol::LeaveReason;

use super::super::{Core, CoreConfig, Event, LoginError, Welcome};
use super::double::Server;

/// One client in the [`World`]: its core, the configuration it was made with (clone it to
/// reconnect), the events taken from it and its login outcome.
#[derive(Debug)]
pub(super) struct Client {
    pub core: Core,
    pub config: CoreConfig,
    /// Events taken from the core, oldest first ([`World::events`] takes them out).
    pub events: Vec<Event>,
    pub login: Option<Result<Welcome, LoginError>>,
}

/// The double plus named clients on one simulated clock.
#[derive(Debug)]
pub(super) struct World {
    pub now: Instant,
    pub server: Server,
    pub clients: BTreeMap<String, Client>,
}

/// Most rounds one [`World::pump`] may take: more means bytes ping-pong without end (a bug).
const MAX_ROUNDS: usize = 100_000;

impl World {
    /// A world whose server announces a burst of 20 frames and 10 per second.
    pub(super) fn new() -> World {
        World::with_rate(20, 10)
    }

    /// A world whose server announces these limits.
    pub(super) fn with_rate(rate_burst: u32, rate_per_sec: u32) -> World {
        let t0 = Instant::now();
        World {
            now: t0,
            server: Server::new(t0, rate_burst, rate_per_sec),
            clients: BTreeMap::new(),
        }
    }

    /// Connects a new client `nick` with a fresh configuration ([`super::config`]) and logs
    /// it in; panics if the login fails.
    pub(super) fn connect(&mut self, nick: &str) {
        self.connect_with(nick, super::config(nick));
    }

    /// Connects `nick` made with `config` (a clone of an earlier one reconnects) and logs it
    /// in; panics if the login fails.
    pub(super) fn connect_with(&mut self, nick: &str, config: CoreConfig) {
        self.start(nick, config);
        self.pump();
        match &self.client(nick).login {
            Some(Ok(_)) => {}
            other => panic!("{nick} did not log in: {other:?}"),
        }
    }

    /// Opens a connection for `nick` with `config` without pumping.
    pub(super) fn start(&mut self, nick: &str, config: CoreConfig) {
        let core = Core::new(config.clone(), self.now);
        self.server.open(nick, self.now);
        self.clients.insert(
            nick.to_owned(),
            Client {
                core,
                config,
                events: Vec::new(),
                login: None,
            },
        );
    }

    /// The TCP link of `nick` drops: its core learns it (`connection_lost`), the double
    /// forgets the connection and tells the others; the events that follow are taken.
    pub(super) fn disconnect(&mut self, nick: &str) {
        let now = self.now;
        if let Some(client) = self.clients.get_mut(nick) {
            client.core.connection_lost("the link dropped".into(), now);
        }
        self.server
            .drop_conn(nick, LeaveReason::Disconnected, self.now);
        self.pump();
    }

    /// The client `nick`.
    pub(super) fn client(&mut self, nick: &str) -> &mut Client {
        self.clients
            .get_mut(nick)
            .unwrap_or_else(|| panic!("no client {nick}"))
    }

    /// The core of `nick`.
    pub(super) fn core(&mut self, nick: &str) -> &mut Core {
        &mut self.client(nick).core
    }

    /// The events `nick`'s core produced since the last call.
    pub(super) fn events(&mut self, nick: &str) -> Vec<Event> {
        std::mem::take(&mut self.client(nick).events)
    }

    /// Moves bytes both ways, takes events, login outcomes and save requests (saves always
    /// succeed: the identities are in memory), until nothing moves.
    pub(super) fn pump(&mut self) {
        let now = self.now;
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            let names: Vec<String> = self.clients.keys().cloned().collect();
            for name in &names {
                let Some(client) = self.clients.get_mut(name) else {
                    continue;
                };
                let mut out = BytesMut::new();
                if client.core.poll_transmit(now, &mut out) {
                    moved = true;
                    self.server.receive(name, &out, now);
                }
                let Some(client) = self.clients.get_mut(name) else {
                    continue;
                };
                let (input, closed) = self.server.take_output(name);
                if !input.is_empty() && !client.core.is_closed() {
                    moved = true;
                    client.core.receive(&input, now);
                }
                if closed && !client.core.is_closed() {
                    moved = true;
                    client.core.receive_end(now);
                    self.server.forget(name);
                }
                if let Some(login) = client.core.poll_login() {
                    moved = true;
                    client.login = Some(login);
                }
                while let Some(event) = client.core.poll_event(now) {
                    moved = true;
                    client.events.push(event);
                }
                if client.core.poll_save().is_some() {
                    moved = true;
                    client.core.saved(Ok(()), now);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("pump: bytes keep moving after {MAX_ROUNDS} rounds");
    }

    /// Moves the clock by `by`, waking every core when its [`Core::poll_timeout`] asks (and
    /// pumping after each wake-up), then pumps at the end time.
    pub(super) fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        for _ in 0..MAX_ROUNDS {
            let now = self.now;
            let next = self
                .clients
                .values_mut()
                .filter_map(|c| c.core.poll_timeout(now))
                .min();
            let at = match next {
                Some(at) if at <= end => at.max(self.now),
                _ => {
                    self.now = end;
                    return self.wake();
                }
            };
            self.now = at;
            self.wake();
        }
        panic!("advance: a core keeps asking for the same time");
    }

    /// Calls `handle_timeout` on each core that is due now, then pumps.
    fn wake(&mut self) {
        let now = self.now;
        for client in self.clients.values_mut() {
            if client.core.poll_timeout(now).is_some_and(|t| t <= now) {
                client.core.handle_timeout(now);
            }
        }
        self.pump();
    }
}
