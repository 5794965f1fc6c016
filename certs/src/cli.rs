//! The `mm-certs` command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::{generate, Names};

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
    /// Replace existing files
    #[arg(long)]
    pub force: bool,
}

/// Runs `mm-certs` with the process arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mm-certs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
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
    let generated = generate(&dir, &names, args.force)?;
    println!("Wrote a CA and a server certificate to {}", dir.display());
    println!(
        "  server certificate covers: {}",
        generated.covers.join(", ")
    );
    println!("  CA fingerprint (SHA-256):  {}", generated.ca_fingerprint);
    println!();
    println!("Give clients the CA certificate and connect with:");
    println!(
        "  mm --server HOST:PORT --ca {} --nick NAME",
        generated.ca_cert.display()
    );
    println!("or have them compare the fingerprint above when mm asks on first contact.");
    println!("Keep ca.key secret (mode 0600); it is only needed to issue new server certificates.");
    Ok(())
}
