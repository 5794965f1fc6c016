//! The `mm-certs` command line.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::{
    date, generate, load_certs, renew_server, CaScope, CertInfo, Generated, Names, CA_CERT, CA_KEY,
    RENEW_BEFORE, SERVER_CERT, SERVER_KEY,
};

/// Make mm-server's certificates: a server certificate from the CA in the directory, or a CA
/// and a server certificate if there is none yet.
///
/// With a CA in the directory (ca.pem and ca.key, e.g. made by mm-server's first start), only
/// server.pem and server.key are replaced, signed by that CA: clients that trust the server
/// keep trusting it. The server certificate is valid 397 days and always covers localhost,
/// 127.0.0.1 and ::1; add the names and addresses clients use with --name and --ip. A running
/// mm-server renews it by itself from ca.key before it runs out; `kill -HUP` it to use a
/// certificate made here at once.
///
/// A CA made here or by mm-server may vouch only for the names and addresses it was made for,
/// localhost, names under .local, .lan, .home.arpa and .internal, and loopback, private and
/// link-local addresses (X.509 name constraints), so that browsers that import it trust it for
/// no other website. A new public name or address needs --new-ca.
#[derive(Debug, Parser)]
#[command(name = "mm-certs", version)]
pub struct Args {
    /// Directory to write ca.pem, ca.key, server.pem and server.key into [default: the TLS
    /// directory of an mm-server started without --data, --tls-dir or --config:
    /// $MM_SERVER_DATA/tls, else multi-messenger/server/tls in $XDG_DATA_HOME or ~/.local/share]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Extra DNS name for the server certificate (repeatable)
    #[arg(long = "name", value_name = "DNS")]
    pub names: Vec<String>,
    /// Extra IP address for the server certificate, e.g. the LAN address (repeatable)
    #[arg(long = "ip", value_name = "ADDR")]
    pub ips: Vec<IpAddr>,
    /// Make a NEW CA (and a server certificate), replacing the one in the directory: every
    /// client must then trust the server anew
    #[arg(long, visible_alias = "force")]
    pub new_ca: bool,
    /// Issue from the existing CA (what mm-certs does by default when there is one); fails if
    /// there is none
    #[arg(long, conflicts_with = "new_ca", hide = true)]
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
    let mut report: String = crate::tighten(&dir, &crate::TLS_FILES)
        .iter()
        .map(|change| format!("{change}\n"))
        .collect();
    // A replacement of server.key and server.pem that was interrupted: completed (or rolled
    // back) first, so that what follows sees a pair.
    match crate::finish_pending(&dir)? {
        crate::Pending::Completed => report.push_str(&format!(
            "Completed an interrupted replacement of {SERVER_CERT} and {SERVER_KEY}.\n"
        )),
        crate::Pending::RolledBack | crate::Pending::Discarded => report.push_str(&format!(
            "Removed unfinished new files ({}, {}).\n",
            crate::SERVER_KEY_PENDING,
            crate::SERVER_CERT_PENDING
        )),
        _ => {}
    }
    let has = |name: &str| dir.join(name).exists();
    let ca = (has(CA_CERT), has(CA_KEY));
    if args.new_ca {
        let generated = generate(&dir, &names, true)?;
        report.push_str(&new_ca_report(&dir, &generated, true)?);
        return Ok(report);
    }
    match ca {
        (true, true) => {
            let previous = previous_names(&dir);
            let renewed = renew_server(&dir, &names)?;
            report.push_str(&issued_report(&dir, &renewed, previous.as_ref())?);
            Ok(report)
        }
        (false, false) if !args.renew && !has(SERVER_CERT) && !has(SERVER_KEY) => {
            let generated = generate(&dir, &names, false)?;
            report.push_str(&new_ca_report(&dir, &generated, false)?);
            Ok(report)
        }
        (true, false) => anyhow::bail!(
            "{} holds {CA_CERT} but not {CA_KEY}, so no server certificate can be issued from \
             that CA here: put {CA_KEY} back (e.g. from where it was moved offline), or pass \
             --new-ca to make a new CA that every client must trust anew",
            dir.display()
        ),
        _ => anyhow::bail!(
            "{} holds no CA to issue from ({CA_CERT} and {CA_KEY}){}: pass --new-ca to make a new \
             CA and server certificate, replacing what is there (every client must trust the \
             new CA)",
            dir.display(),
            if has(SERVER_CERT) || has(SERVER_KEY) {
                format!(" but a server certificate ({SERVER_CERT}, {SERVER_KEY}) that would be replaced")
            } else {
                String::new()
            }
        ),
    }
}

/// The names the server certificate in `dir` covers now, if it is readable.
fn previous_names(dir: &Path) -> Option<Names> {
    let path = dir.join(SERVER_CERT);
    let der = load_certs(&path).ok()?.into_iter().next()?;
    CertInfo::parse(&der, &path).ok().map(|info| info.names)
}

/// The expiry line for the server certificate just written.
fn validity(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(SERVER_CERT);
    let der = load_certs(&path)?.remove(0);
    let info = CertInfo::parse(&der, &path)?;
    Ok(format!(
        "\x20 valid until:              {} (mm-server renews it from {CA_KEY} when fewer than {} days remain)\n",
        date(info.not_after),
        RENEW_BEFORE.whole_days()
    ))
}

fn issued_report(
    dir: &Path,
    renewed: &Generated,
    previous: Option<&Names>,
) -> anyhow::Result<String> {
    let mut report = format!(
        "Wrote a new server certificate and key to {}, issued by the CA already there\n\
         \x20 server certificate covers: {}\n{}\
         \x20 CA fingerprint (SHA-256):  {} (unchanged)\n",
        dir.display(),
        renewed.covers.join(", "),
        validity(dir)?,
        renewed.ca_fingerprint
    );
    if let Some(previous) = previous {
        let dropped: Vec<String> = previous
            .dns
            .iter()
            .cloned()
            .chain(previous.ips.iter().map(IpAddr::to_string))
            .filter(|name| !renewed.covers.contains(name))
            .collect();
        if !dropped.is_empty() {
            report.push_str(&format!(
                "Note: the previous certificate also covered {}; this one does not (repeat --name/--ip to keep them).\n",
                dropped.join(", ")
            ));
        }
    }
    report.push_str(
        "Clients that trust this CA need nothing new. A running mm-server uses the new\n\
         certificate for new connections after `kill -HUP <its pid>`.\n",
    );
    report.push_str(&browser_trust(&dir.join(CA_CERT)));
    Ok(report)
}

/// How to make browsers and operating systems trust the CA at `ca` (for the web client), a few
/// steps per platform. The same words as README.md's "Browsers: trust the server's CA".
///
/// Reads `ca`: a CA without name constraints (made by an earlier version, see
/// [`crate::ca_is_limited`]) is one whose key could vouch for any website, and the text then
/// leads with that warning ([`crate::UNLIMITED_CA_WARNING`]) and how to make a new one. A CA
/// that cannot be read gets the steps alone (the caller has just read or written it).
#[must_use]
pub fn browser_trust(ca: &Path) -> String {
    let warning = match crate::ca_is_limited(ca) {
        Ok(false) => format!(
            "\nWARNING: {}: {}.\n",
            ca.display(),
            crate::UNLIMITED_CA_WARNING
        ),
        Ok(true) | Err(_) => String::new(),
    };
    let ca = ca.display();
    format!(
        "{warning}\n\
         Browsers (the web client, https://HOST:PORT/) accept the server once they trust this CA,\n\
         {ca}. After importing it, check that its SHA-256 fingerprint is the one above (or:\n\
         openssl x509 -in ca.pem -noout -fingerprint -sha256). To import it:\n\
         \x20 Firefox (any system): Settings > Privacy & Security > Certificates > View Certificates >\n\
         \x20   Authorities > Import > ca.pem, tick \"Trust this CA to identify websites\"\n\
         \x20 Chrome, Edge, Brave on Linux: chrome://certificate-manager > Local certificates >\n\
         \x20   Installed by you > Trusted certificates > Import > ca.pem; or, the browser closed,\n\
         \x20   with certutil (libnss3-tools), making the database first on a profile that has none:\n\
         \x20   [ -e $HOME/.pki/nssdb/cert9.db ] || {{ mkdir -p $HOME/.pki/nssdb &&\n\
         \x20     certutil -d sql:$HOME/.pki/nssdb -N --empty-password; }}\n\
         \x20   certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n multi-messenger -i ca.pem\n\
         \x20   (its fingerprint: certutil -d sql:$HOME/.pki/nssdb -L -n multi-messenger)\n\
         \x20 Windows (Chrome, Edge):  certutil -user -addstore Root ca.pem\n\
         \x20 macOS (Safari, Chrome):  security add-trusted-cert -r trustRoot \\\n\
         \x20   -k ~/Library/Keychains/login.keychain-db ca.pem\n\
         \x20 Debian, Ubuntu (system tools; browsers as above):\n\
         \x20   sudo cp ca.pem /usr/local/share/ca-certificates/multi-messenger.crt && sudo update-ca-certificates\n\
         \x20 Android: Settings > Security > Encryption & credentials > Install a certificate > CA certificate\n\
         \x20 iPhone, iPad: open ca.pem (AirDrop, mail), install the profile, then Settings > General >\n\
         \x20   About > Certificate Trust Settings > turn on full trust for it\n\
         Never click through a browser's certificate warning instead: anyone between you and the\n\
         server could then read everything, end-to-end encryption included.\n"
    )
}

fn new_ca_report(dir: &Path, generated: &Generated, replaced: bool) -> anyhow::Result<String> {
    let warning = if replaced {
        "\nWARNING: this is a NEW CA. Every client must trust the server anew: give them the new\n\
         ca.pem (mm --ca), or the new fingerprint (mm trust add HOST:PORT FINGERPRINT, which\n\
         replaces the old one). Until then mm refuses the server, loudly, as one whose CA changed.\n"
    } else {
        ""
    };
    let scope = load_certs(&generated.ca_cert)
        .ok()
        .and_then(|ca| ca.into_iter().next())
        .and_then(|der| CaScope::of_ca(&der, &generated.ca_cert).ok().flatten())
        .map(|scope| format!("\x20 the CA may vouch only for: {scope}\n"))
        .unwrap_or_default();
    Ok(format!(
        "Wrote a CA and a server certificate to {}\n\
         \x20 server certificate covers: {}\n{}\
         \x20 CA fingerprint (SHA-256):  {}\n{scope}{warning}\
         \n\
         Give clients the CA certificate and connect with:\n\
         \x20 mm --server HOST:PORT --ca {} --nick NAME\n\
         or have them compare the fingerprint above when mm asks on first contact.\n\
         Keep ca.key secret; mm-server uses it to renew its certificate, and mm-certs to issue\n\
         new ones (for new names or addresses) that clients trust without doing anything.\n{}",
        dir.display(),
        generated.covers.join(", "),
        validity(dir)?,
        generated.ca_fingerprint,
        generated.ca_cert.display(),
        browser_trust(&generated.ca_cert)
    ))
}
