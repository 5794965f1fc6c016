//! The `mm-bench` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::conn::TransportKind;
use crate::rooms;
use crate::scenarios::{self, Report};
use crate::server::{default_server_binary, ClusterSpec, Target};

/// Load generator for Multi-Messenger: the real protocol over real TLS, many clients in one
/// process. Starts mm-server itself (limits lifted) unless --connect is given.
#[derive(Debug, Parser)]
#[command(name = "mm-bench", version)]
pub struct Args {
    /// mm-server binary to start [default: mm-server next to mm-bench]
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Target a running server at HOST:PORT instead (it needs limits lifted for load)
    #[arg(long, value_name = "HOST:PORT", requires = "ca")]
    pub connect: Option<String>,
    /// CA certificate of the running server (with --connect)
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// pid of the running server, to read its CPU and memory (with --connect)
    #[arg(long)]
    pub pid: Option<u32>,
    /// The started server's store: `postgres://USER@HOST:PORT/DB` (an empty database, so that
    /// runs compare; every run of --runs uses it as the previous one left it) [default: SQLite
    /// in a temporary data directory]
    #[arg(long, value_name = "URL", conflicts_with = "connect")]
    pub server_store: Option<String>,
    /// Start a cluster instead of one server (CLUSTER.md): this many nodes, each with
    /// --server-store (PostgreSQL) and --bus, the clients spread over them round robin
    /// (client i on node i mod N; the senders are the first clients). Fan-out and latency
    /// report each node's CPU and deliveries, the NATS server's CPU (--bus-pid) and the
    /// latency of lines from a sender on one node to a reader on another
    #[arg(long, value_name = "N", requires_all = ["bus", "server_store"])]
    pub nodes: Option<usize>,
    /// With --nodes: this many more nodes that get no client: they only apply the stream
    #[arg(long, value_name = "K", default_value_t = 0, requires = "nodes")]
    pub observer_nodes: usize,
    /// The NATS server (JetStream) of the cluster: `nats://HOST:PORT`, every node's --bus
    #[arg(long, value_name = "URL", requires = "nodes")]
    pub bus: Option<String>,
    /// pid of that NATS server, to read its CPU time
    #[arg(long, value_name = "PID", requires = "bus")]
    pub bus_pid: Option<u32>,
    /// With --nodes: append each node's log to DIR/nodeN.log (else it is read and dropped)
    #[arg(long, value_name = "DIR", requires = "nodes")]
    pub node_logs: Option<PathBuf>,
    /// Each node's --node-lease
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "8s",
        requires = "nodes"
    )]
    pub node_lease: String,
    /// The load connections' transport: native (mm/1, a client certificate) or ws (a
    /// WebSocket at /ws over http/1.1 TLS, an account key), as a browser's
    #[arg(long, value_enum, default_value_t = TransportKind::Native)]
    pub transport: TransportKind,
    /// Repeat the scenario this many times (a fresh server each time) and report medians
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// What to measure.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// N clients online, S of them send M public lines of B bytes as fast as accepted
    Fanout {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        senders: usize,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        #[arg(long, default_value_t = 64)]
        bytes: usize,
    },
    /// N idle logged-in clients: server memory per connection
    Idle {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
    },
    /// C concurrent connectors doing TLS + hello + quit for T seconds, each receiving H lines
    /// of history at login
    Connect {
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Public lines (100 bytes) sent before the logins, replayed to each as history
        #[arg(long, default_value_t = 0)]
        history: u64,
        /// Idle clients logged in (and reading) before the timed logins: each login is sent
        /// the list of who is online
        #[arg(long, default_value_t = 0)]
        online: usize,
    },
    /// The store alone, in this process: L public lines of B bytes appended as fast as it
    /// takes them, until all are committed (synchronous = FULL)
    Store {
        #[arg(long, default_value_t = 200_000)]
        lines: u64,
        #[arg(long, default_value_t = 64)]
        bytes: usize,
    },
    /// An open-loop paced delivery rate to N clients: latency percentiles
    Latency {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Deliveries per second (messages per second times N - 1)
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
    },
    /// The join storm: N clients (accounts registered beforehand) connect, log in and each
    /// join one room holding H lines of history; timed from the first connection to the last
    /// client's `Entered` and first page of members
    Join {
        #[arg(long, default_value_t = 5000)]
        clients: usize,
        /// Lines (100 bytes) in the room's history before the storm
        #[arg(long, default_value_t = 100)]
        history: u64,
        /// Connection attempts (TCP + TLS + login) in flight at once
        #[arg(long, default_value_t = 128)]
        parallel: usize,
        /// Every client logs in first, then all join: the two phases timed apart
        #[arg(long)]
        phased: bool,
    },
    /// R rooms of M members each (every client in one room), S senders per room sending K
    /// lines of B bytes as fast as accepted; every member must get every line of its room
    Rooms {
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        #[arg(long, default_value_t = 50)]
        members: usize,
        #[arg(long, default_value_t = 1)]
        senders: usize,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        #[arg(long, default_value_t = 64)]
        bytes: usize,
    },
    /// P pairs run /secure and exchange K end-to-end encrypted messages each
    Secure {
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 100)]
        messages: u64,
    },
}

/// Runs `mm-bench` with the process arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mm-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(lost) => {
            eprintln!("mm-bench: {lost} deliveries lost");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("mm-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario `args.runs` times; returns the total loss.
async fn run(args: Args) -> anyhow::Result<u64> {
    crate::conn::set_transport(args.transport);
    let mut reports = Vec::new();
    for run in 0..args.runs.max(1) {
        if let Scenario::Store { lines, bytes } = args.scenario {
            let report = scenarios::store(lines, bytes).await?;
            print_table(run + 1, &report);
            println!("{}", report.json);
            reports.push(report);
            continue;
        }
        let target = match &args.connect {
            Some(addr) => {
                let ca = args
                    .ca
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("--connect needs --ca"))?;
                Target::existing(addr.clone(), &ca, args.pid)?
            }
            None => {
                let binary = match &args.server_bin {
                    Some(path) => path.clone(),
                    None => default_server_binary()?,
                };
                match (args.nodes, &args.bus, &args.server_store) {
                    (Some(nodes), Some(bus), Some(store)) => {
                        let spec = ClusterSpec {
                            store,
                            bus,
                            nodes,
                            observers: args.observer_nodes,
                            lease: &args.node_lease,
                            bus_pid: args.bus_pid,
                            logs: args.node_logs.as_deref(),
                        };
                        Target::spawn_cluster(&binary, &spec).await?
                    }
                    _ => Target::spawn(&binary, args.server_store.as_deref()).await?,
                }
            }
        };
        let mut target = target;
        let report = match args.scenario.clone() {
            Scenario::Fanout {
                clients,
                senders,
                messages,
                bytes,
            } => scenarios::fanout(&target, clients, senders, messages, bytes).await?,
            Scenario::Idle { clients } => scenarios::idle(&target, clients).await?,
            Scenario::Connect {
                concurrency,
                seconds,
                history,
                online,
            } => scenarios::connect(&target, concurrency, seconds, history, online).await?,
            Scenario::Store { .. } => continue, // handled above
            Scenario::Latency {
                clients,
                rate,
                seconds,
                warmup,
            } => scenarios::latency(&target, clients, rate, seconds, warmup).await?,
            Scenario::Join {
                clients,
                history,
                parallel,
                phased,
            } => rooms::join_storm(&target, clients, history, parallel, phased).await?,
            Scenario::Rooms {
                rooms: r,
                members,
                senders,
                messages,
                bytes,
            } => rooms::rooms(&target, r, members, senders, messages, bytes).await?,
            Scenario::Secure { pairs, messages } => {
                scenarios::secure(&target, pairs, messages).await?
            }
        };
        let mut report = report;
        if let Some(commits) = target.store_commits().await {
            report.json["store_commits"] = commits;
        }
        if target.is_cluster() {
            let mut per_node = Vec::new();
            for node in &target.nodes {
                per_node.push(match node.admin.as_deref() {
                    Some(admin) => crate::server::store_commits_at(admin).await,
                    None => None,
                });
            }
            report.json["cluster_store_commits"] = per_node.into();
        }
        target.stop().await;
        print_table(run + 1, &report);
        println!("{}", report.json);
        reports.push(report);
    }
    if reports.len() > 1 {
        print_medians(&reports);
    }
    Ok(reports.iter().map(Report::lost).sum())
}

/// Every numeric field, flattened (`latency.p99_us`), in order.
fn numbers(value: &serde_json::Value, prefix: &str, out: &mut Vec<(String, f64)>) {
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if let Some(n) = v.as_f64() {
                out.push((key, n));
            } else {
                numbers(v, &key, out);
            }
        }
    }
}

fn print_table(run: usize, report: &Report) {
    let mut fields = Vec::new();
    numbers(&report.json, "", &mut fields);
    let scenario = report.json["scenario"].as_str().unwrap_or("?");
    eprintln!("--- {scenario}, run {run}");
    for (k, v) in fields {
        eprintln!("  {k:<34} {}", pretty(v));
    }
}

fn print_medians(reports: &[Report]) {
    let mut all: Vec<Vec<(String, f64)>> = Vec::new();
    for r in reports {
        let mut fields = Vec::new();
        numbers(&r.json, "", &mut fields);
        all.push(fields);
    }
    let mut median = serde_json::Map::new();
    median.insert("median_of_runs".into(), reports.len().into());
    if let Some(first) = all.first() {
        eprintln!("--- median of {} runs", reports.len());
        for (i, (key, _)) in first.iter().enumerate() {
            let mut values: Vec<f64> = all
                .iter()
                .filter_map(|f| f.get(i).map(|(_, v)| *v))
                .collect();
            values.sort_by(f64::total_cmp);
            let m = values[values.len() / 2];
            eprintln!("  {key:<34} {}", pretty(m));
            median.insert(key.clone(), m.into());
        }
    }
    println!("{}", serde_json::Value::Object(median));
}

fn pretty(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}
