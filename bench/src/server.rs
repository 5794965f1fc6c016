//! The server under test: spawned from the `mm-server` binary, or an address to target.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Limits lifted for load runs: no rate limit, room for many connections and deep queues.
pub const BENCH_CONFIG: &str = r#"
[limits]
max_connections = 100000
max_connections_per_ip = 100000
rate_burst = 1000000000
rate_per_sec = 1000000000
outbound_queue = 100000
outbound_queue_bytes = 268435456
ping_interval = "10m"
idle_timeout = "30m"
write_timeout = "60s"
# Every connect-scenario login is a new nick, all from one address.
max_accounts = 10000000
# Rooms: each room's lines are kept and replayed on join, 100 as by default.
history_len = 100
registrations_per_certificate = 1000000000
registrations_per_address = 1000000000
"#;

/// A server to benchmark.
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// TLS client configuration trusting the server.
    pub tls: Arc<rustls::ClientConfig>,
    /// Its CA, for the full client library.
    pub ca: Vec<CertificateDer<'static>>,
    /// The server's pid, when known.
    pub pid: Option<u32>,
    /// The server's admin address (`/metrics`), when spawned here.
    pub admin: Option<String>,
    /// Every node of a cluster started by [`Target::spawn_cluster`] (the first is the one
    /// above), in order; empty for one server.
    pub nodes: Vec<Node>,
    /// How many of `nodes`, from the first, get clients (the rest only apply the stream).
    pub client_nodes: usize,
    /// The NATS server's pid (`--bus-pid`), to read its CPU.
    pub bus_pid: Option<u32>,
    _child: Option<Child>,
    _data: Option<tempfile::TempDir>,
}

/// One node of a cluster started here.
pub struct Node {
    /// `host:port`.
    pub addr: String,
    /// Its pid.
    pub pid: Option<u32>,
    /// Its admin address (`/metrics`).
    pub admin: Option<String>,
    child: Option<Child>,
    _data: tempfile::TempDir,
}

/// A cluster to start: N nodes on one PostgreSQL store and one NATS bus (CLUSTER.md).
pub struct ClusterSpec<'a> {
    /// `postgres://…`, every node's `--store`.
    pub store: &'a str,
    /// `nats://…`, every node's `--bus`.
    pub bus: &'a str,
    /// How many nodes get clients (round robin).
    pub nodes: usize,
    /// How many more nodes start that get no client (they only apply the stream).
    pub observers: usize,
    /// Each node's `--node-lease`.
    pub lease: &'a str,
    /// The NATS server's pid, if known.
    pub bus_pid: Option<u32>,
    /// A directory to write each node's log into (`nodeN.log`, appended).
    pub logs: Option<&'a Path>,
}

/// CPU time and memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU time in microseconds.
    pub cpu_us: u64,
    /// Resident memory in KiB.
    pub rss_kib: u64,
    /// Peak resident memory since the process started, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

impl Target {
    /// Spawns `binary` with the bench configuration on a free loopback port, its admin
    /// listener on another, and its store in a temporary data directory (SQLite), or at
    /// `store` (`postgres://…`, passed as `--store`; an empty database gives runs alike).
    pub async fn spawn(binary: &Path, store: Option<&str>) -> anyhow::Result<Target> {
        let data = tempfile::tempdir()?;
        let mut extra = Vec::new();
        if let Some(store) = store {
            extra.extend(["--store".to_owned(), store.to_owned()]);
        }
        let (child, addr, admin) = start_server(binary, data.path(), &extra, None).await?;
        let ca = mm_certs::load_certs(&data.path().join("tls").join(mm_certs::CA_CERT))?;
        Ok(Target {
            addr,
            tls: tls_config(&ca)?,
            ca,
            pid: child.id(),
            admin,
            nodes: Vec::new(),
            client_nodes: 1,
            bus_pid: None,
            _child: Some(child),
            _data: Some(data),
        })
    }

    /// Starts a cluster (CLUSTER.md): `spec.nodes + spec.observers` nodes of `binary`, each
    /// with the bench configuration, `--store`, `--bus`, its own `--node-name` (unique to this
    /// process and call, so that a run never waits for the lease of a node of an earlier run)
    /// and one certificate chain for all (made here, copied into each node's TLS directory).
    /// Started one after the other, as nodes may migrate the schema.
    pub async fn spawn_cluster(binary: &Path, spec: &ClusterSpec<'_>) -> anyhow::Result<Target> {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let total = spec.nodes + spec.observers;
        if spec.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        let chain = tempfile::tempdir()?;
        mm_certs::generate(chain.path(), &mm_certs::Names::default(), false)
            .context("making the nodes' certificates")?;
        let mut nodes = Vec::with_capacity(total);
        for i in 0..total {
            let data = tempfile::tempdir()?;
            let tls = data.path().join("tls");
            std::fs::create_dir_all(&tls)?;
            for entry in std::fs::read_dir(chain.path())? {
                let entry = entry?;
                std::fs::copy(entry.path(), tls.join(entry.file_name()))?;
            }
            let name = format!("bench-{}-{call}-{}", std::process::id(), i + 1);
            let extra: Vec<String> = [
                "--store",
                spec.store,
                "--bus",
                spec.bus,
                "--node-name",
                &name,
                "--node-lease",
                spec.lease,
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let log = spec.logs.map(|dir| dir.join(format!("node{}.log", i + 1)));
            let (child, addr, admin) = start_server(binary, data.path(), &extra, log)
                .await
                .with_context(|| format!("starting node {}", i + 1))?;
            nodes.push(Node {
                addr,
                pid: child.id(),
                admin,
                child: Some(child),
                _data: data,
            });
        }
        let ca = mm_certs::load_certs(&chain.path().join(mm_certs::CA_CERT))?;
        let first = nodes.first().context("no node")?;
        Ok(Target {
            addr: first.addr.clone(),
            tls: tls_config(&ca)?,
            ca,
            pid: first.pid,
            admin: first.admin.clone(),
            client_nodes: spec.nodes,
            bus_pid: spec.bus_pid,
            nodes,
            _child: None,
            _data: Some(chain),
        })
    }

    /// Whether this is a cluster started here.
    pub fn is_cluster(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// Where client `i` connects: round robin over the nodes that get clients (the one server
    /// otherwise), with that node's index.
    pub fn node_for(&self, i: usize) -> (usize, &str) {
        if self.nodes.is_empty() {
            return (0, &self.addr);
        }
        let k = i % self.client_nodes.clamp(1, self.nodes.len());
        (k, &self.nodes[k].addr)
    }

    /// CPU time and memory of every node now (of the one server if not a cluster).
    pub fn node_stats(&self) -> Vec<Option<ProcStats>> {
        if self.nodes.is_empty() {
            return vec![self.stats()];
        }
        self.nodes
            .iter()
            .map(|n| proc_stats(&n.pid?.to_string()))
            .collect()
    }

    /// The NATS server's CPU time and memory now, if its pid was given.
    pub fn bus_stats(&self) -> Option<ProcStats> {
        proc_stats(&self.bus_pid?.to_string())
    }

    /// Stops the nodes of a cluster gracefully (SIGTERM, as an operator would: each gives up
    /// its lease and its nicks), waiting up to 15 s each before killing it. Nothing for one
    /// server (dropped, it is killed).
    pub async fn stop(&mut self) {
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Starts `binary` with the bench configuration (written into `data`, its data directory) on
/// a free loopback port and its admin listener on another, with `extra` arguments; returns it
/// once it listens, with its address and admin address.
async fn start_server(
    binary: &Path,
    data: &Path,
    extra: &[String],
    log: Option<PathBuf>,
) -> anyhow::Result<(Child, String, Option<String>)> {
    {
        let config = data.join("bench.toml");
        std::fs::write(&config, BENCH_CONFIG)?;
        let mut command = Command::new(binary);
        command
            .args([
                "--bind",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&config)
            .args(extra);
        let data = data.to_path_buf();
        let mut child = command
            .env("MM_SERVER_DATA", &data)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut admin = None;
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .context("server did not start in time")??
                .context("server exited before listening")?;
            // Logged before "listening".
            if let Some(rest) = line.split("metrics at http://").nth(1) {
                admin = rest.split('/').next().map(str::to_owned);
            }
            if let Some(rest) = line.split("listening local=").nth(1) {
                break rest.trim().to_string();
            }
        };
        // Keep draining the log so that the server never blocks writing it.
        // Into `log` if given (the server's log never holds message text).
        let mut file = match log {
            Some(path) => Some(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
            None => None,
        };
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                }
            }
        });
        Ok((child, addr, admin))
    }
}

impl Target {
    /// A running server at `addr`, trusted through `ca_file`.
    pub fn existing(addr: String, ca_file: &Path, pid: Option<u32>) -> anyhow::Result<Target> {
        let ca = mm_certs::load_certs(ca_file)?;
        Ok(Target {
            addr,
            tls: tls_config(&ca)?,
            ca,
            pid,
            admin: None,
            nodes: Vec::new(),
            client_nodes: 1,
            bus_pid: None,
            _child: None,
            _data: None,
        })
    }

    /// The server's CPU time and RSS now, if its pid is known.
    pub fn stats(&self) -> Option<ProcStats> {
        proc_stats(&self.pid?.to_string())
    }

    /// The store's commits so far, from the server's `/metrics` (`mm_store_commit_seconds`,
    /// METRICS.md): how many, their mean, and the histogram bucket bounds under which half
    /// and 99% of them fell (upper bounds, in ms: the buckets are coarse). `None` if the
    /// server has no admin address known here or the scrape fails.
    pub async fn store_commits(&self) -> Option<serde_json::Value> {
        store_commits_at(self.admin.as_deref()?).await
    }
}

/// [`Target::store_commits`] of the server whose admin listener is at `admin`.
pub async fn store_commits_at(admin: &str) -> Option<serde_json::Value> {
    let text = scrape(admin).await.ok()?;
    commit_summary(&text)
}

/// `GET /metrics` from an admin address, the body as text (at most 4 MiB, within 5 s).
async fn scrape(admin: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        stream.take(4 << 20).read_to_end(&mut body).await?;
        anyhow::Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .context("scrape timed out")?
}

/// Count, mean and bucket bounds of `mm_store_commit_seconds` in a Prometheus text scrape.
fn commit_summary(text: &str) -> Option<serde_json::Value> {
    let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
    let mut buckets = Vec::new();
    let (mut count, mut sum) = (None, None);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("mm_store_commit_seconds_bucket{le=\"") {
            let le = rest.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            buckets.push((le, value(line)?));
        } else if line.starts_with("mm_store_commit_seconds_count") {
            count = value(line);
        } else if line.starts_with("mm_store_commit_seconds_sum") {
            sum = value(line);
        }
    }
    let (count, sum) = (count?, sum?);
    let under = |share: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n >= share * count)
            .map(|(le, _)| le * 1000.0)
    };
    Some(serde_json::json!({
        "commits": count,
        "mean_ms": if count > 0.0 { sum / count * 1000.0 } else { 0.0 },
        "p50_under_ms": under(0.5).filter(|v| v.is_finite()),
        "p99_under_ms": under(0.99).filter(|v| v.is_finite()),
    }))
}

/// This process's own CPU time and memory (the load generator's share of the machine).
pub fn own_stats() -> Option<ProcStats> {
    proc_stats("self")
}

/// CPU time and memory of process `pid` (a number, or `self`).
fn proc_stats(pid: &str) -> Option<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) on every mainstream arch.
    Some(ProcStats {
        cpu_us: ticks * 10_000,
        rss_kib: kib("VmRSS:")?,
        peak_rss_kib: kib("VmHWM:").unwrap_or(0),
    })
}

/// The default server binary: `mm-server` next to this executable.
pub fn default_server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("no directory for the current executable")?;
    let candidate = dir.join("mm-server");
    if !candidate.exists() {
        bail!(
            "{} not found; build it (cargo build --release -p mm-server) or pass --server-bin",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// The client certificate of every raw bench connection.
static BENCH_IDENTITY: std::sync::LazyLock<mm_certs::ClientIdentity> =
    std::sync::LazyLock::new(|| {
        mm_certs::ClientIdentity::generate().unwrap_or_else(|e| {
            eprintln!("mm-bench: cannot make a client certificate: {e}");
            std::process::exit(1)
        })
    });

fn tls_config(ca: &[CertificateDer<'static>]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    // One certificate owns every bench nick: accounts are per nick, a key may hold many.
    .with_client_auth_cert(vec![BENCH_IDENTITY.cert.clone()], BENCH_IDENTITY.key())?;
    config.alpn_protocols = vec![mm_common::protocol::ALPN.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::commit_summary;

    #[test]
    fn the_commit_histogram_is_read_from_a_scrape() {
        let text = "# TYPE mm_store_commit_seconds histogram\n\
            mm_store_commit_seconds_bucket{le=\"0.001\"} 60\n\
            mm_store_commit_seconds_bucket{le=\"0.005\"} 99\n\
            mm_store_commit_seconds_bucket{le=\"+Inf\"} 100\n\
            mm_store_commit_seconds_sum 0.2\n\
            mm_store_commit_seconds_count 100\n";
        let summary = commit_summary(text).unwrap();
        assert_eq!(summary["commits"], 100.0);
        assert!((summary["mean_ms"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(summary["p50_under_ms"], 1.0);
        assert_eq!(summary["p99_under_ms"], 5.0);
        assert!(commit_summary("mm_other 1\n").is_none());
    }
}
