//! Builds the web client (`web/`, bundled with esbuild by `node build.mjs`) and embeds it:
//! writes `$OUT_DIR/assets.rs`, the list of its files (path, content type, bytes, SHA-256 ETag,
//! gzip form) that `src/web/assets.rs` includes. Each text file is also gzip-compressed here, at
//! best compression, into `$OUT_DIR/web-gzip/` (kept only when smaller than the file), so the
//! server sends the gzip form to browsers that accept it without compressing at run time.
//!
//! Everything happens in `$OUT_DIR` (a copy of `web/` without `node_modules` or `dist`, its
//! `node_modules`, the built files), so the source tree is never written and two builds at once
//! (debug and release: two `OUT_DIR`s) never share a file. `npm ci` runs only when the lockfile
//! differs from the one last installed in that `OUT_DIR`.
//!
//! Node.js 20 or newer and npm are required: without them the build stops with what to install,
//! rather than embedding no web client.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

/// The oldest Node.js major version that builds the web client (web/package.json `engines`).
const NODE_MIN_MAJOR: u32 = 20;

const NEED_NODE: &str = "Multi-Messenger's server embeds its web client, built with Node.js (>= 20) and npm: install them (Debian/Ubuntu: apt-get install nodejs npm; or https://nodejs.org) and build again";

/// The files and directories of `web/` the build needs.
const INPUTS: [&str; 5] = [
    "package.json",
    "package-lock.json",
    "build.mjs",
    "src",
    "static",
];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env("OUT_DIR")?);
    let web = manifest.join("..").join("web");
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    check_tools()?;

    let work = out.join("web");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    for input in INPUTS {
        let (from, to) = (web.join(input), work.join(input));
        if from.is_dir() {
            if to.exists() {
                std::fs::remove_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
            }
            copy_dir(&from, &to)?;
        } else {
            std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
        }
    }

    // npm ci only when the lockfile changed since the last install in this OUT_DIR.
    let lock = read(&work.join("package-lock.json"))?;
    let installed = work.join(".installed-package-lock.json");
    let up_to_date = work.join("node_modules").is_dir()
        && std::fs::read(&installed).is_ok_and(|old| old == lock);
    if !up_to_date {
        let _ = std::fs::remove_file(&installed);
        run_logged(
            Command::new("npm")
                .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
                .current_dir(&work),
            "npm ci",
        )?;
        std::fs::write(&installed, &lock).map_err(|e| format!("{}: {e}", installed.display()))?;
    }

    let dist = out.join("web-dist");
    run_logged(
        Command::new("node")
            .arg("build.mjs")
            .arg(&dist)
            .current_dir(&work),
        "node build.mjs",
    )?;

    let mut files = Vec::new();
    list_files(&dist, &dist, &mut files)?;
    files.sort();
    if !files.iter().any(|(path, _)| path == "/index.html") {
        return Err(format!(
            "the web client's build wrote no index.html in {}",
            dist.display()
        ));
    }
    let gzip_dir = out.join("web-gzip");
    if gzip_dir.exists() {
        std::fs::remove_dir_all(&gzip_dir).map_err(|e| format!("{}: {e}", gzip_dir.display()))?;
    }
    let mut code = String::from(
        "/// Every file of the web client, sorted by path.\npub static ASSETS: &[Asset] = &[\n",
    );
    for (path, file) in &files {
        let body = read(file)?;
        let etag: String = Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let content_type = content_type(path);
        let gzip = if is_text(content_type) {
            gzip_smaller(&body)?
        } else {
            None
        };
        let gzip = match gzip {
            Some(gz) => {
                // `path` starts with '/': relative to the gzip directory without it.
                let target = gzip_dir.join(format!("{}.gz", path.trim_start_matches('/')));
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                std::fs::write(&target, gz).map_err(|e| format!("{}: {e}", target.display()))?;
                format!("Some(include_bytes!({:?}))", target.display().to_string())
            }
            None => "None".to_owned(),
        };
        let _ = writeln!(
            code,
            "    Asset {{ path: {path:?}, content_type: {content_type:?}, body: include_bytes!({:?}), etag: \"\\\"{etag}\\\"\", gzip: {gzip} }},",
            file.display().to_string(),
        );
    }
    code.push_str("];\n");
    let target = out.join("assets.rs");
    std::fs::write(&target, code).map_err(|e| format!("{}: {e}", target.display()))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (build.rs runs under cargo)"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Node.js >= 20 and npm, or the sentence that says what to install.
fn check_tools() -> Result<(), String> {
    let version = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(node) = version("node") else {
        return Err(format!("{NEED_NODE} (node was not found)"));
    };
    let major = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < NODE_MIN_MAJOR) {
        return Err(format!("{NEED_NODE} (found node {node})"));
    }
    if version("npm").is_none() {
        return Err(format!("{NEED_NODE} (npm was not found)"));
    }
    println!("node {node}");
    Ok(())
}

/// Runs a command; its output goes to cargo's build log, and with the error when it fails.
fn run_logged(cmd: &mut Command, what: &str) -> Result<(), String> {
    let output = cmd
        .output()
        .map_err(|e| format!("{what}: {e}\n{NEED_NODE}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{what}:\n{stdout}{stderr}");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the web client: `{what}` failed ({}):\n{stdout}{stderr}",
            output.status
        ))
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let name = entry.file_name();
        if name == "node_modules" || name == "dist" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
        }
    }
    Ok(())
}

/// Every file under `dir` as (URL path from `root`, file path).
fn list_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            list_files(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let url: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((format!("/{}", url.join("/")), path));
        }
    }
    Ok(())
}

/// Whether a `Content-Type` is text (it names a charset): worth compressing. Images, fonts and
/// WebAssembly are left as they are (mostly compressed already).
fn is_text(content_type: &str) -> bool {
    content_type.contains("charset=")
}

/// `body` gzip-compressed (RFC 1952, DEFLATE at best compression, modification time 0 so the
/// build is reproducible), or `None` when that is not smaller than `body`.
fn gzip_smaller(body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 2), Compression::best());
    encoder
        .write_all(body)
        .map_err(|e| format!("gzip-compressing a web client file: {e}"))?;
    let gz = encoder
        .finish()
        .map_err(|e| format!("gzip-compressing a web client file: {e}"))?;
    Ok((gz.len() < body.len()).then_some(gz))
}

/// The `Content-Type` of a file by its extension (text with its charset).
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json; charset=utf-8",
        "webmanifest" => "application/manifest+json; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml; charset=utf-8",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "map" => "application/json; charset=utf-8",
        _ => "application/octet-stream",
    }
}
