//! The `mm-certs` command line.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::{generate, renew_server, Names};

/// Generate a self-signed CA and a server certificate for mm-server.
///
/// The server certificate always covers localhost, 127.0.0.1 and ::1; add the names and
/// addresses clients will use to reach the server with --name and --ip.
#[derive(Debug, Parser)]
#[command(name = "mm-certs", version)]
pub struct Args {
    /// Directory to write ca.pem, ca.key, server.pem and server.key into
    /// [default: the directory mm-server reads by default]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Extra DNS name for the server certificate (repeatable)
    #[arg(long = "name", value_name = "DNS")]
    pub names: Vec<String>,
    /// Extra IP address for the server certificate, e.g. the LAN address (repeatable)
    #[arg(long = "ip", value_name = "ADDR")]
    pub ips: Vec<IpAddr>,
    /// Replace existing files (a new CA too: clients must trust it anew)
    #[arg(long)]
    pub force: bool,
    /// Replace only the server certificate and key, signed by the CA already in the directory
    /// (clients keep trusting it); then `kill -HUP` a running mm-server to use them
    #[arg(long, conflicts_with = "force")]
    pub renew: bool,
}

/// Runs `mm-certs` with the process arguments.
///
/// Exit status 0 when the files were written, 1 with a message on stderr otherwise. A closed
/// stdout or stderr changes neither (and never panics).
pub fn main() -> ExitCode {
    crate::restrict_umask();
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            // The files are written; a reader that went away (`| head`) misses the rest.
            let _ = std::io::stdout().lock().write_all(report.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "mm-certs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the files; returns what to tell the user.
fn run(args: &Args) -> anyhow::Result<String> {
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => crate::default_tls_dir().ok_or_else(|| {
            anyhow::anyhow!("no home directory to put certificates in; pass --out DIR")
        })?,
    };
    let names = Names {
        dns: args.names.clone(),
        ips: args.ips.clone(),
    };
    // Files an older mm-certs left readable by others: private, as the new ones are.
    let tightened: String = crate::tighten(&dir, &crate::TLS_FILES)
        .iter()
        .map(|change| format!("{change}\n"))
        .collect();
    if args.renew {
        let renewed = renew_server(&dir, &names)?;
        return Ok(tightened
            + &format!(
                "Wrote a new server certificate and key to {}, signed by the existing CA\n\
             \x20 server certificate covers: {}\n\
             \x20 CA fingerprint (SHA-256):  {}\n\
             Clients that trust this CA need nothing new. A running mm-server uses the new\n\
             certificate for new connections after `kill -HUP <its pid>`.\n",
                dir.display(),
                renewed.covers.join(", "),
                renewed.ca_fingerprint
            ));
    }
    let generated = generate(&dir, &names, args.force)?;
    Ok(tightened
        + &format!(
            "Wrote a CA and a server certificate to {}\n\
         \x20 server certificate covers: {}\n\
         \x20 CA fingerprint (SHA-256):  {}\n\
         \n\
         Give clients the CA certificate and connect with:\n\
         \x20 mm --server HOST:PORT --ca {} --nick NAME\n\
         or have them compare the fingerprint above when mm asks on first contact.\n\
         Keep ca.key secret (mode 0600); it is only needed to issue new server certificates.\n",
            dir.display(),
            generated.covers.join(", "),
            generated.ca_fingerprint,
            generated.ca_cert.display()
        ))
}
