//! The `mm` command line: argument handling, trust on first contact, and the two front ends —
//! line mode (stdin is not a terminal: for scripts, bots and tests) and the terminal UI
//! ([`crate::tui`]).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use mm_common::protocol::{validate_nick, ErrorCode};
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;

use crate::command::{self, Command, HELP};
use crate::display::{self, Style};
use crate::trust::KnownServers;
use crate::{
    connect, Client, ConnectError, ConnectOptions, Delivery, Event, Events, SecureSetup, SendError,
    Trust, Welcome,
};

/// How long to wait for the server to close after we quit.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Multi-Messenger client.
///
/// In a terminal: a full-screen UI with a tab per conversation. Otherwise (line mode): every stdin line is a chat line
/// or a /command, every event is printed as one line on stdout, and EOF quits.
#[derive(Debug, Parser)]
#[command(name = "mm", version)]
pub struct Args {
    /// Server to connect to
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "MM_SERVER",
        default_value = "localhost:7667"
    )]
    pub server: String,
    /// CA certificate to verify the server with (the server's ca.pem). Without it, the server
    /// must be one whose fingerprint you accepted before
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Your nick: 1-32 of a-z A-Z 0-9 _ -, starting with a letter [default: $USER]
    #[arg(long, env = "MM_NICK")]
    pub nick: Option<String>,
    /// Directory where mm keeps what it remembers (accepted server fingerprints)
    /// [default: $MM_HOME or ~/.local/share/multi-messenger/client]
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Use line mode even when stdin is a terminal
    #[arg(long)]
    pub line_mode: bool,
    /// Desktop notifications (notify-send, else the terminal bell) for private messages and
    /// mentions in tabs not shown
    #[arg(long)]
    pub notify: bool,
}

/// Exit code for "could not connect or lost the connection".
const EXIT_FAILURE: u8 = 1;

/// Runs `mm` with the process arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    crate::tui::init_local_time(); // while still single-threaded
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mm: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(args));
    // Do not wait for the thread blocked on reading stdin.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mm: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal() && !args.line_mode;
    let nick = match args.nick.clone().or_else(|| std::env::var("USER").ok()) {
        Some(nick) => nick,
        None => bail!("choose a nick with --nick NAME"),
    };
    if let Err(e) = validate_nick(&nick) {
        bail!("{nick:?} cannot be a nick: {e}");
    }
    let Some(home) = args.home.clone().or_else(crate::home::default_home) else {
        bail!("no home directory for your identity key; pass --home DIR");
    };
    let trust = match &args.ca {
        Some(path) => Trust::Roots(mm_certs::load_certs(path)?),
        None => Trust::Known(KnownServers::in_home(&home)),
    };
    // First-run news: printed on stderr, and repeated inside the terminal UI (whose screen
    // would hide it).
    let mut notes = Vec::new();
    let (secure, created) = SecureSetup::load(&home)?;
    if created {
        notes.push(format!(
            "created your identity key in {} (keep it private; copy the directory to move to another machine)",
            home.display()
        ));
    }
    let (certificate, created) = mm_certs::ClientIdentity::load_or_create(&home)?;
    if created {
        notes.push(format!(
            "created your client certificate in {} (fingerprint {}); servers register your nick to it",
            home.display(),
            certificate.fingerprint()
        ));
    }
    for note in &notes {
        eprintln!("mm: {note}");
    }
    let mut opts = ConnectOptions::new(args.server.clone(), nick, trust);
    opts.secure = secure;
    opts.certificate = Some(certificate);

    let (client, events, welcome) = match connect(&opts).await {
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
                     this fingerprint with the one mm-server logged and accept it."
                );
            }
            if !ask_to_trust(&server, &fingerprint).await? {
                eprintln!("Not connecting.");
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
            known.add(&server, &fingerprint)?;
            eprintln!("Remembered {server} in {}.", known.path().display());
            connect(&opts).await?
        }
        Err(ConnectError::Refused { code, detail }) if code == ErrorCode::NICK_REGISTERED => {
            bail!(
                "{detail}.\nIf it is yours from another machine, copy that machine's home directory \
                 (client.pem and client.key at least) to {}; otherwise choose another --nick.",
                home.display()
            );
        }
        Err(e) => return Err(e.into()),
    };

    if interactive {
        let settings = crate::tui::Settings {
            notify: args.notify,
            notes,
        };
        crate::tui::run(opts, (client, events, welcome), settings).await
    } else {
        Ok(line_mode(&args.server, client, events, welcome).await)
    }
}

/// Shows a first-contact fingerprint and asks whether to trust it.
async fn ask_to_trust(server: &str, fingerprint: &str) -> anyhow::Result<bool> {
    eprintln!("The server {server} is not known yet. Its CA certificate fingerprint (SHA-256) is:");
    eprintln!("  {fingerprint}");
    eprintln!(
        "Compare it with the fingerprint the server's operator gives you (mm-server logs it at"
    );
    eprintln!(
        "start; `mm-certs` prints it). If they differ, someone may be intercepting the connection."
    );
    eprint!("Trust this server and remember it? [y/N] ");
    let _ = std::io::stderr().flush();
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

/// [`command::text_refusal`] as a line-mode line.
fn local_text_error(text: &str, max: usize) -> Option<String> {
    command::text_refusal(text, max).map(|e| format!("! {e}"))
}

/// What one input line did.
enum Outcome {
    Continue,
    Quit,
}

/// Carries out one parsed command. `say` shows lines to the user (stdout or above the prompt).
async fn execute(client: &Client, line: &str, echo: bool, mut say: impl FnMut(String)) -> Outcome {
    let max = client.max_text_len();
    let style = Style::from_env();
    let result: Result<(), SendError> = match command::parse(line) {
        Err(e) => {
            say(format!("! {e}"));
            return Outcome::Continue;
        }
        Ok(Command::Nothing) => return Outcome::Continue,
        Ok(Command::Quit) => return Outcome::Quit,
        Ok(Command::Help) => {
            for line in HELP.lines() {
                say(format!("* {line}"));
            }
            return Outcome::Continue;
        }
        Ok(Command::Who) => client.who().await.map_err(|_| SendError::NotConnected),
        Ok(Command::Say(text)) => {
            if let Some(err) = local_text_error(&text, max) {
                say(err);
                return Outcome::Continue;
            }
            if echo {
                say(display::own_public_line(client.nick(), &text, style));
            }
            client.public(&text).await.map_err(|_| SendError::NotConnected)
        }
        Ok(Command::Msg { to, text }) => {
            if let Some(err) = local_text_error(&text, max) {
                say(err);
                return Outcome::Continue;
            }
            client.private(&to, &text).await.map(|delivery| {
                if echo {
                    say(match delivery {
                        Delivery::Plain => display::own_private_line(&to, &text, style),
                        Delivery::Secure => display::own_secure_line(&to, &text, false, style),
                        Delivery::Queued => display::own_secure_line(&to, &text, true, style),
                    });
                }
            })
        }
        Ok(Command::Secure(peer)) => client.secure(&peer).await,
        Ok(Command::Insecure(peer)) => client.insecure(&peer).await,
        Ok(Command::Verify(peer)) => match client.safety_number(&peer) {
            Ok(number) => {
                say(format!("* safety number with {peer}: {number}"));
                say(format!(
                    "* compare it with the one {peer} sees, in person or by phone; if they are the same: /verified {peer}"
                ));
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Ok(Command::Verified(peer)) => client.mark_verified(&peer).await.map(|()| {
            say(format!("* {peer}'s key is now marked as verified"));
        }),
        Ok(Command::AcceptKey(peer)) => client.accept_key(&peer).await.map(|()| {
            say(format!(
                "* accepted {peer}'s new key (pinned, not verified). /secure {peer} to start a session; /verify {peer} to compare safety numbers"
            ));
        }),
    };
    match result {
        Ok(()) => Outcome::Continue,
        Err(SendError::NotConnected) => Outcome::Quit, // the event stream says why
        Err(e) => {
            say(format!("! {e}"));
            Outcome::Continue
        }
    }
}

/// Line mode: stdin lines in, one line per event out. Reading stdin runs in its own task so that
/// printing events never waits behind a send that waits for the server.
async fn line_mode(server: &str, client: Client, mut events: Events, welcome: Welcome) -> ExitCode {
    println!("{}", display::welcome_line(server, &welcome, Style::PLAIN));
    let (quit_tx, mut quit_rx) = oneshot::channel::<()>();
    let input_client = client.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Outcome::Quit =
                        execute(&input_client, &line, false, |l| println!("{l}")).await
                    {
                        break;
                    }
                }
                Ok(None) => break, // EOF: everything read has been queued before the Quit below
                Err(e) => {
                    eprintln!("mm: reading stdin: {e}");
                    break;
                }
            }
        }
        // Say we are quitting before sending Quit, so that the server's close can never be
        // mistaken for a lost connection.
        let _ = quit_tx.send(());
        input_client.quit().await;
    });
    drop(client);

    let mut quitting = false;
    let deadline = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased; // see the quit signal before the close it causes
            _ = &mut quit_rx, if !quitting => {
                quitting = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + QUIT_TIMEOUT);
            }
            event = events.next() => {
                let Some(event) = event else { break };
                if let Some(line) = display::event_line(&event, Style::PLAIN) {
                    println!("{line}");
                }
                if matches!(event, Event::Closed { .. }) {
                    break;
                }
            }
            () = &mut deadline => break,
        }
    }
    if quitting {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
