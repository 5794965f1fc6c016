// Over 600 lines with its tests (about 100); the code is under 600.
//! The `mm` command line: argument handling, trust on first contact, and the two front ends —
//! line mode (stdin is not a terminal: for scripts, bots and tests; in `line_mode.rs`) and the
//! terminal UI ([`crate::tui`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use mm_common::protocol::{validate_nick, ErrorCode};
use rustls_pki_types::CertificateDer;

use crate::home::Home;

/// The file in the home that keeps `/ignore`'s nicks, one a line.
pub const IGNORED_FILE: &str = "ignored";
use crate::stdio;
use crate::trust::KnownServers;
use crate::{connect, ConnectError, ConnectOptions, SecureSetup, Trust};

/// Multi-Messenger client.
///
/// In a terminal: a full-screen UI with a tab per conversation. Otherwise (line mode): every stdin line is a chat line
/// or a /command, every event is printed as one line on stdout, and EOF quits.
#[derive(Debug, Parser)]
#[command(name = "mm", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Without one, mm connects and chats
    #[command(subcommand)]
    pub command: Option<MmCommand>,
    /// Server to connect to; without a port, 7667
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        env = "MM_SERVER",
        default_value = "localhost:7667",
        value_parser = parse_server
    )]
    pub server: String,
    /// CA certificate to verify the server with (the server's ca.pem). Without it, the server
    /// must have a publicly trusted certificate for the name in --server (verified with the
    /// system's root certificates), or be one whose fingerprint you accepted before (see `mm
    /// trust`)
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Your nick: 1-32 of a-z A-Z 0-9 _ -, starting with a letter [default: $USER]
    #[arg(long, env = "MM_NICK", global = true)]
    pub nick: Option<String>,
    /// Directory where mm keeps your identity key and client certificate (which own your nick),
    /// your peers' pinned keys, which conversations are secure, and the servers you trust; one
    /// per nick, used by one mm at a time [default: $MM_HOME, else one per nick:
    /// ~/.local/share/multi-messenger/users/NICK]
    #[arg(long, value_name = "DIR", global = true)]
    pub home: Option<PathBuf>,
    /// Use line mode even when stdin is a terminal
    #[arg(long)]
    pub line_mode: bool,
    /// Desktop notifications (notify-send, else the terminal bell) for private messages and
    /// mentions in tabs not shown
    #[arg(long)]
    pub notify: bool,
    /// Line mode: reconnect by itself when the connection drops (what you type meanwhile
    /// waits). auto: when stdin is a terminal; a script piping into mm gets the end of the
    /// connection, the lines without an answer, and an exit code instead. The terminal UI
    /// always reconnects
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub reconnect: Reconnect,
}

/// When line mode reconnects (`--reconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Reconnect {
    /// When stdin is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never: the first drop ends mm.
    Never,
}

/// What `mm` does instead of chatting.
#[derive(Debug, Subcommand)]
pub enum MmCommand {
    /// The servers you trust by their CA fingerprint, without --ca (known_servers in your
    /// home; with --nick or --home, that nick's or that home's)
    #[command(subcommand)]
    Trust(TrustCommand),
}

/// `mm trust ...`
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// List them: server, CA fingerprint, and the day you trusted it
    List,
    /// Forget a server (e.g. after its operator made a new CA): the next connection to it
    /// shows its fingerprint and asks again
    Forget {
        /// As given to --server when you trusted it (without a port, 7667)
        #[arg(value_name = "HOST[:PORT]", value_parser = parse_server)]
        server: String,
    },
    /// Trust a server by the CA fingerprint its operator gives you (mm-server logs it at
    /// start), or by its CA file, replacing what you trusted for it before
    #[command(visible_alias = "set")]
    Add {
        /// As you give it to --server (without a port, 7667)
        #[arg(value_name = "HOST[:PORT]", value_parser = parse_server)]
        server: String,
        /// SHA-256 fingerprint, AB:CD:... (colons and case do not matter)
        #[arg(required_unless_present = "ca", conflicts_with = "ca")]
        fingerprint: Option<String>,
        /// The server's CA certificate (ca.pem) instead of a fingerprint
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
}

/// The end of `mm --help`: chat commands, homes, trust and exit statuses. Every chat command it
/// names is one [`command::parse`] or the terminal UI knows (a test checks).
const AFTER_HELP: &str = "\
Chat commands (type /help in mm for all):
  TEXT              say TEXT to everyone (//TEXT says a line that starts with /)
  /msg NICK TEXT    say TEXT to NICK only
  /secure NICK      end-to-end encrypt your private chat with NICK (the server cannot read it)
  /verify NICK      show the safety number to compare with NICK in person or by phone
  /verified NICK    mark NICK's key as verified after the numbers matched
  /accept-key NICK  accept NICK's new key after a key-change warning
  /insecure NICK    end the secure chat with NICK: private messages are unencrypted again
  /who              who is online
  /me ACTION        act in the room: * you ACTION (/me #ROOM ACTION in a room)
  /join #ROOM       join (or create) a room; /msg #ROOM TEXT says TEXT there (the server reads it)
  /part #ROOM       leave a room (a reason may follow)
  /list             list the rooms (/list more: the next page)
  /names [#ROOM]    a room's members (without: who is online)
  /topic #ROOM      show the topic (a text after it sets it)
  /invite NICK #ROOM  invite NICK into a room
  /kick #ROOM NICK  remove NICK from a room (a reason may follow)
  /ban #ROOM NICK   ban NICK from a room
  /unban #ROOM NICK lift the ban
  /op #ROOM NICK    make NICK an operator
  /deop #ROOM NICK  take NICK's operator status
  /voice #ROOM NICK let NICK speak in a moderated room
  /devoice #ROOM NICK  take NICK's voice
  /mode #ROOM +i    invite-only (+t topic by operators, +m moderated; - turns off)
  /away MESSAGE     mark yourself away (/away alone: back)
  /ignore NICK      hide NICK's room and private lines (/ignore alone lists them)
  /unignore NICK    show NICK's lines again
  /help             all commands (in the terminal UI also its keys, /query, /close, /reconnect)
  /quit             leave (Ctrl-D too)

Homes: each nick has its own home by default ($XDG_DATA_HOME or ~/.local/share, then
multi-messenger/users/NICK), so `mm --nick alice` and `mm --nick bob` on one machine are two
identities. A home belongs to the nick that first used it (its `nick` file): mm refuses it to
another nick. The single default home of older versions (multi-messenger/client) goes to the
first nick that starts without a home of its own (mm says so once); other nicks get their own. A
running mm locks its home: a second mm on it stops with an error.

Trust: with --ca, the server must be signed by that CA. Without it, mm shows an unknown
server's CA fingerprint once and asks whether to trust it (in a terminal), then remembers it in
known_servers in your home. `mm trust list` shows those servers; `mm trust forget HOST:PORT`
forgets one (do it when its operator made a new CA: until then mm refuses the server, warning
that its certificate changed); `mm trust add HOST:PORT FINGERPRINT` (or --ca FILE) trusts one
without asking. Give `mm trust` the same --nick or --home as mm.

Line mode exit status:
  0    every line was delivered
  1    could not start or connect, lost the connection, the server stopped answering, or pinned
       keys and secure conversations could not be saved
  2    some input lines were refused (by mm or the server) and not delivered, or reading stdin
       failed
  3    the account logged in from another client (same certificate), which took over
  141  stdout was closed

In the terminal UI, a client replaced by another login stays disconnected: /reconnect takes the
account back.";

/// The certificates in `--ca FILE`, or why that file is not a CA certificate, in words that say
/// which file `--ca` takes.
fn ca_file(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    match mm_certs::load_certs(path) {
        Ok(certs) => {
            // What `mm --ca` would refuse at connect time is refused here too (`mm trust add
            // --ca` pinned the fingerprint of garbage, later reported as a changed certificate).
            let mut roots = rustls::RootCertStore::empty();
            for cert in &certs {
                if roots.add(cert.clone()).is_err() {
                    bail!(
                        "{}",
                        ca_refused(
                            path,
                            "does not hold a certificate mm can check servers with (damaged?)"
                        )
                    );
                }
            }
            Ok(certs)
        }
        Err(mm_certs::CertError::Io { error, .. }) => {
            bail!("{}", ca_refused(path, &mm_common::text::os_words(&error)))
        }
        Err(_) => {
            let holds_key = mm_certs::read_limited(path, mm_certs::MAX_PEM_FILE)
                .map(|b| String::from_utf8_lossy(&b).contains("PRIVATE KEY-----"))
                .unwrap_or(false);
            let what = if holds_key {
                "holds a private key, not a certificate (keep ca.key secret, on the server)"
            } else {
                "holds no certificate (a PEM file with -----BEGIN CERTIFICATE-----)"
            };
            bail!("{}", ca_refused(path, what))
        }
    }
}

/// `--ca FILE` refused: `why`, and which file to give.
fn ca_refused(path: &Path, why: &str) -> String {
    format!(
        "--ca {}: {why}; --ca takes the server's ca.pem (in its TLS directory; mm-certs prints \
         where it wrote it)",
        path.display()
    )
}

/// `--server`'s value in its canonical form (see [`crate::server_address`]).
fn parse_server(value: &str) -> Result<String, String> {
    crate::server_address(value).ok_or_else(|| {
        "give HOST or HOST:PORT, for example chat.example.org or 192.168.1.20:7667".to_owned()
    })
}

#[path = "line_mode.rs"]
mod line;

/// Exit code for "could not connect, lost the connection, or the server stopped answering".
const EXIT_FAILURE: u8 = 1;

/// Exit code for "connected and quit cleanly, but some input lines were refused (by `mm` or
/// by the server) and not delivered".
const EXIT_REFUSED: u8 = 2;

/// Exit code when the account logged in from another client (same certificate), which took
/// the connection over: this `mm` stops and does not try to take it back.
const EXIT_REPLACED: u8 = 3;

/// Exit code when stdout was closed (128 + SIGPIPE, as a shell reports a process the signal
/// ended): `mm` stopped reading input there.
const EXIT_STDOUT_CLOSED: u8 = 141;

/// Runs `mm` with the process arguments.
pub fn main() -> ExitCode {
    // Before the home directory is touched: whatever mm creates is owner-only.
    mm_certs::restrict_umask();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            stdio::err(&format!("mm: cannot start the async runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(args));
    // Do not wait for the thread blocked on reading stdin.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            stdio::err(&format!("mm: {e:#}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(MmCommand::Trust(command)) = &args.command {
        return trust_command(&args, command);
    }
    let interactive = std::io::stdin().is_terminal() && !args.line_mode;
    let nick = nick_of(&args)?;
    // Locked before anything in it is read or written: a second mm on this home stops here.
    let base = crate::home::default_base();
    let mut home = match (args.home.clone().or_else(crate::home::env_home), &base) {
        (Some(dir), _) => Home::open(&dir)?,
        (None, Some(base)) => Home::open_default(base, &nick)?,
        (None, None) => bail!("no home directory for your identity key; pass --home DIR"),
    };
    let first_use = home.claim(&nick)?;
    let explicit_home = args.home.is_some() || crate::home::env_home().is_some();
    // First-run news: printed on stderr, and repeated inside the terminal UI (whose screen
    // would hide it).
    let mut notes = home.take_notes();
    let home_dir = home.path().to_path_buf();
    let home_path = home_dir.as_path();
    // What an older mm (or a loose umask) left readable by others: private now, and said so.
    notes.extend(crate::home::tighten(home_path));
    let trust = match &args.ca {
        Some(path) => Trust::Roots(ca_file(path)?),
        None => {
            Trust::Known(KnownServers::in_home(home_path).with_options(trust_options(&args, &nick)))
        }
    };
    let (secure, created) = SecureSetup::load(home_path)?;
    if created {
        notes.push(format!(
            "created your identity key in {} (keep it private; copy the directory to move to another machine)",
            home_path.display()
        ));
    }
    let (certificate, created) = mm_certs::ClientIdentity::load_or_create(home_path)?;
    if created {
        notes.push(format!(
            "created your client certificate in {} (fingerprint {}); servers register your nick to it",
            home_path.display(),
            certificate.fingerprint()
        ));
    }
    for note in &notes {
        stdio::err(&format!("mm: {note}"));
    }
    let mut opts = ConnectOptions::new(args.server.clone(), nick, trust);
    opts.ca_file.clone_from(&args.ca);
    opts.secure = secure;
    opts.certificate = Some(certificate);
    // `/ignore`'s list, kept in the home (owner-only, like everything there).
    if let Err(e) = opts.state.load_ignored(&home_path.join(IGNORED_FILE)) {
        stdio::err(&format!("mm: {e}; nobody is ignored this time"));
    }
    // The terminal UI always reconnects (with /reconnect and its status line); line mode as
    // --reconnect says.
    opts.reconnect = interactive
        || match args.reconnect {
            Reconnect::Auto => std::io::stdin().is_terminal(),
            Reconnect::Always => true,
            Reconnect::Never => false,
        };

    let connected = connect(&opts).await;
    if let Err(ConnectError::Refused { code, .. }) = &connected {
        let nick_refused = [
            ErrorCode::NICK_REGISTERED,
            ErrorCode::NICK_LOOKS_LIKE,
            ErrorCode::INVALID_NICK,
        ]
        .contains(code);
        // The server refused the nick itself: a home this run bound to it was never its, and
        // the next try with another --nick may use it.
        if nick_refused && first_use {
            if let Err(e) = home.unclaim() {
                stdio::err(&format!("mm: the nick was refused, but {e}"));
            }
        }
    }
    let (client, events, welcome) = match connected {
        Ok(connected) => connected,
        Err(ConnectError::UnknownServer {
            server,
            fingerprint,
        }) => {
            let Trust::Known(known) = &opts.trust else {
                bail!("{server} is not known"); // only the pinning verifier reports this
            };
            if !interactive {
                bail!(
                    "{server} is not a known server; refusing to connect without a trust anchor.\n\
                     Its CA certificate fingerprint (SHA-256) is\n  {fingerprint}\n\
                     Pass --ca with the server's ca.pem, or run mm once in a terminal to compare \
                     this fingerprint with the one mm-server logged and accept it (or, once \
                     compared: {}).",
                    known.command(&format!("add {server} {fingerprint}"))
                );
            }
            if !ask_to_trust(&server, &fingerprint).await? {
                stdio::err("Not connecting.");
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
            known.add(&server, &fingerprint)?;
            stdio::err(&format!(
                "Remembered {server} in {}.",
                known.path().display()
            ));
            connect(&opts).await?
        }
        Err(ConnectError::Refused { code, detail }) if code == ErrorCode::NICK_REGISTERED => {
            bail!(
                "{detail}.\n{}",
                nick_registered_advice(&mut home, explicit_home, base.as_deref(), &opts.nick)
            );
        }
        Err(e) => return Err(e.into()),
    };
    // A server with a publicly trusted certificate: nothing was pinned, and the user is told
    // what vouched for it.
    if let Some(crate::connect::Verification::SystemRoots { host }) = opts.verified.get() {
        let line = format!("verified by the system's root certificates: {host}");
        if interactive {
            notes.push(line);
        } else {
            stdio::err(&format!("mm: {line}"));
        }
    }

    let code = if interactive {
        // Line mode prints UTC (labelled, the same for every reader); the UI local time.
        notes.extend(crate::localtime::init());
        let settings = crate::tui::Settings {
            notify: args.notify,
            notes,
        };
        crate::tui::run(opts, (client, events, welcome), settings).await?
    } else {
        line::line_mode(&args.server, client, events, welcome, opts.reconnect).await
    };
    // The home stays locked until here: the whole time this process may write to it.
    drop(home);
    Ok(code)
}

/// The nick `mm` runs as: `--nick` (or `$MM_NICK`), else `$USER`, validated.
fn nick_of(args: &Args) -> anyhow::Result<String> {
    let nick = match args.nick.clone().or_else(|| std::env::var("USER").ok()) {
        Some(nick) => nick,
        None => bail!("choose a nick with --nick NAME (or MM_NICK; without either, mm uses $USER, which is not set here)"),
    };
    if let Err(e) = validate_nick(&nick) {
        bail!("{nick:?} cannot be a nick: {e}");
    }
    Ok(nick)
}

/// The options `mm trust` needs to act on the `known_servers` this `mm` uses (for the commands
/// its messages name): `--home DIR` for a home given on the command line; `--nick NICK` for a
/// nick's default home when `mm trust` alone would pick another nick; nothing otherwise
/// (`$MM_HOME` and `$MM_NICK` carry over by themselves).
fn trust_options(args: &Args, nick: &str) -> String {
    if let Some(home) = &args.home {
        return format!("--home {}", shell_word(&home.display().to_string()));
    }
    if crate::home::env_home().is_some() {
        return String::new();
    }
    let default = std::env::var("MM_NICK")
        .ok()
        .or_else(|| std::env::var("USER").ok());
    if default
        .is_some_and(|d| mm_common::protocol::nick_key(&d) == mm_common::protocol::nick_key(nick))
    {
        String::new()
    } else {
        format!("--nick {nick}")
    }
}

/// `word` as one shell word: as it is when it is plain, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `mm trust ...`: works on the `known_servers` file the same `--nick`/`--home` would use to
/// connect. It does not take the home's lock, so that it can be run while that `mm` runs (to
/// act on its certificate-changed warning); the file is rewritten atomically, and a running
/// `mm` only writes it when its user accepts a server at start.
fn trust_command(args: &Args, command: &TrustCommand) -> anyhow::Result<ExitCode> {
    let home = match (
        args.home.clone().or_else(crate::home::env_home),
        crate::home::default_base(),
    ) {
        (Some(dir), _) => dir,
        (None, Some(base)) => crate::home::locate_default(&base, &nick_of(args)?)?,
        (None, None) => bail!("no home directory to find known_servers in; pass --home DIR"),
    };
    let known = KnownServers::in_home(&home);
    let file = known.path().display().to_string();
    match command {
        TrustCommand::List => {
            let entries = known.list()?;
            if entries.is_empty() {
                stdio::err(&format!(
                    "mm: no trusted servers in {file} (mm adds one when you accept it at first contact, or with mm trust add)"
                ));
            }
            for entry in entries {
                let added = entry
                    .added
                    .map_or_else(|| "trusted before mm noted dates".to_owned(), |d| format!("trusted {d}"));
                stdio::out(&format!("{}  {}  {added}", entry.server, entry.fingerprint));
            }
        }
        TrustCommand::Forget { server } => match known.forget(server)? {
            Some(old) => stdio::err(&format!(
                "mm: forgot {} (CA fingerprint {}) in {file}; the next connection to it shows its fingerprint and asks again",
                old.server, old.fingerprint
            )),
            None => bail!(
                "{server} is not a trusted server in {file} (nothing forgotten; mm trust list shows them, as HOST:PORT given to --server)"
            ),
        },
        TrustCommand::Add {
            server,
            fingerprint,
            ca,
        } => {
            if crate::connect::split_host_port(server).is_none() {
                bail!("{server:?} is not HOST:PORT");
            }
            let fingerprint = match (fingerprint, ca) {
                (Some(typed), _) => crate::trust::normalize_fingerprint(typed).with_context(|| {
                    format!("{typed:?} is not a SHA-256 fingerprint (64 hex digits, AB:CD:...; mm-server logs it at start, mm-certs prints it)")
                })?,
                (None, Some(file)) => {
                    let certs = ca_file(file)?;
                    let Some(ca) = certs.last() else {
                        bail!("{}", ca_refused(file, "holds no certificate"));
                    };
                    mm_certs::fingerprint(ca)
                }
                (None, None) => bail!("give the fingerprint, or --ca FILE"),
            };
            match known.add(server, &fingerprint)? {
                Some(old) if old.fingerprint == fingerprint => stdio::err(&format!(
                    "mm: {} was trusted with this fingerprint already ({file})",
                    old.server
                )),
                Some(old) => stdio::err(&format!(
                    "mm: {} now trusted with CA fingerprint {fingerprint} (was {}) in {file}",
                    old.server, old.fingerprint
                )),
                None => stdio::err(&format!(
                    "mm: {} trusted with CA fingerprint {fingerprint} in {file}",
                    server.to_ascii_lowercase()
                )),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What to do when the server says `nick` is registered to another certificate than the one in
/// `home`. An old default home this run adopted for `nick` is evidently another nick's: the
/// adoption is undone, so that nick still finds it.
fn nick_registered_advice(
    home: &mut Home,
    explicit: bool,
    base: Option<&std::path::Path>,
    nick: &str,
) -> String {
    let copy_to = |dir: &std::path::Path| {
        format!(
            "If it is yours from another machine, copy that machine's home directory (client.pem \
             and client.key at least) to {}; otherwise choose another --nick.",
            dir.display()
        )
    };
    if home.adopted() {
        let undone = home.undo_adoption();
        let own = base.and_then(|b| crate::home::nick_home(b, nick).ok());
        let mut text = format!(
            "{} (made by an older mm, before each nick had a home of its own) holds another \
             nick's identity, so it stays for that nick",
            home.path().display()
        );
        if let Err(e) = undone {
            text.push_str(&format!(" (but mm could not record that: {e})"));
        }
        text.push_str(".\n");
        if let Some(own) = own {
            text.push_str(&copy_to(&own));
        }
        return text;
    }
    let mut text = copy_to(home.path());
    if !explicit {
        if let Some((old, owner)) = base.and_then(crate::home::old_home_owner) {
            if owner != mm_common::protocol::nick_key(nick) {
                text.push_str(&format!(
                    "\n(The home an older mm made, {}, went to {owner}: if it holds {nick}'s \
                     identity instead, run mm --nick {nick} --home {}.)",
                    old.display(),
                    old.display()
                ));
            }
        }
    }
    text
}

/// Shows a first-contact fingerprint and asks whether to trust it.
async fn ask_to_trust(server: &str, fingerprint: &str) -> anyhow::Result<bool> {
    stdio::err(&format!(
        "The server {server} is not known yet. Its CA certificate fingerprint (SHA-256) is:"
    ));
    stdio::err(&format!("  {fingerprint}"));
    stdio::err(
        "Compare it with the fingerprint the server's operator gives you (mm-server logs it at",
    );
    stdio::err(
        "start; `mm-certs` prints it). If they differ, someone may be intercepting the connection.",
    );
    stdio::err_prompt("Trust this server and remember it? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading the answer")??;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("mm").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn chatting_needs_no_subcommand_and_trust_takes_the_same_nick_and_home() {
        let chat = parse(&["--server", "h:1", "--nick", "alice"]);
        assert!(chat.command.is_none());
        assert_eq!(chat.nick.as_deref(), Some("alice"));
        assert_eq!(chat.server, "h:1");

        for args in [
            &["trust", "list", "--nick", "bob", "--home", "/x"][..],
            &["--nick", "bob", "--home", "/x", "trust", "list"][..],
        ] {
            let trust = parse(args);
            assert!(matches!(
                trust.command,
                Some(MmCommand::Trust(TrustCommand::List))
            ));
            assert_eq!(trust.nick.as_deref(), Some("bob"));
            assert_eq!(trust.home.as_deref(), Some(std::path::Path::new("/x")));
        }
        let forget = parse(&["trust", "forget", "127.0.0.1:7667"]);
        assert!(matches!(
            forget.command,
            Some(MmCommand::Trust(TrustCommand::Forget { server })) if server == "127.0.0.1:7667"
        ));
        let add = parse(&["trust", "set", "h:1", "--ca", "ca.pem"]);
        assert!(matches!(
            add.command,
            Some(MmCommand::Trust(TrustCommand::Add {
                fingerprint: None,
                ca: Some(_),
                ..
            }))
        ));
        assert!(
            Args::try_parse_from(["mm", "trust", "add", "h:1"]).is_err(),
            "a fingerprint or --ca"
        );
        assert!(Args::try_parse_from(["mm", "trust", "add", "h:1", "AB", "--ca", "f"]).is_err());
    }

    #[test]
    fn the_chat_commands_in_mm_help_are_commands_mm_knows() {
        let section: Vec<&str> = AFTER_HELP
            .split("\n\n")
            .find(|part| part.starts_with("Chat commands (type /help in mm for all):"))
            .expect("mm --help lists the chat commands")
            .lines()
            .skip(1)
            .collect();
        let mut listed = Vec::new();
        for line in &section {
            // The command column, and every command named in the explanations.
            for word in line.split(|c: char| c.is_whitespace() || ",()".contains(c)) {
                if word.starts_with("//") {
                    continue;
                }
                let Some(name) = word.strip_prefix('/').filter(|n| !n.is_empty()) else {
                    continue; // not a command ("a line that starts with /" is not one)
                };
                let known = command::command_name(name).is_some()
                    || crate::tui::app::COMMANDS.contains(&word);
                assert!(known, "mm --help names {word}, which mm does not know");
                listed.push(name);
            }
        }
        // Each command of the parser has its line (the others are the terminal UI's).
        for (name, _) in command::NAMES {
            assert!(
                section
                    .iter()
                    .any(|l| l.trim_start().starts_with(&format!("/{name} "))),
                "mm --help does not list /{name}"
            );
            assert!(listed.contains(&name));
        }
        // What the TEXT line says of //.
        assert_eq!(
            command::parse("//x"),
            Ok(command::Command::Say("/x".into()))
        );
    }

    #[test]
    fn the_forget_command_names_a_home_given_on_the_command_line() {
        let args = parse(&["--nick", "bob", "--home", "/tmp/my home"]);
        assert_eq!(trust_options(&args, "bob"), "--home '/tmp/my home'");
        let args = parse(&["--nick", "bob", "--home", "/tmp/h"]);
        assert_eq!(trust_options(&args, "bob"), "--home /tmp/h");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
