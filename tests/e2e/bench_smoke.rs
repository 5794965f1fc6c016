//! Every mm-bench scenario, tiny: it must run against the real server binary and lose nothing.
//! Never a speed assertion (benchmarks measure; see BENCHMARKS.md).

use mm_tests::{TestDatabase, TestNats};
use tokio::process::Command;

const MM_BENCH: &str = env!("CARGO_BIN_EXE_e2e-mm-bench");
const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

async fn run(args: &[&str]) -> serde_json::Value {
    let output = Command::new(MM_BENCH)
        .args(["--server-bin", MM_SERVER])
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{args:?}: no JSON line"));
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(report["lost"], 0, "{args:?}: {report}");
    report
}

#[tokio::test]
async fn every_bench_scenario_runs_tiny_and_loses_nothing() {
    let fanout = run(&[
        "fanout",
        "--clients",
        "5",
        "--senders",
        "2",
        "--messages",
        "20",
    ])
    .await;
    assert_eq!(fanout["deliveries"], 2 * 20 * 4);
    let idle = run(&["idle", "--clients", "20"]).await;
    assert_eq!(idle["connected"], 20);
    let connect = run(&[
        "connect",
        "--concurrency",
        "2",
        "--seconds",
        "0.5",
        "--history",
        "10",
    ])
    .await;
    assert!(connect["logins"].as_u64().unwrap() > 0);
    let store = run(&["store", "--lines", "2000"]).await;
    assert_eq!(store["lines"], 2000);
    let latency = run(&[
        "latency",
        "--clients",
        "5",
        "--rate",
        "200",
        "--seconds",
        "0.5",
        "--warmup",
        "0.2",
    ])
    .await;
    assert!(latency["deliveries"].as_u64().unwrap() > 0);
    let secure = run(&["secure", "--pairs", "2", "--messages", "5"]).await;
    assert_eq!(secure["messages"], 10);
    // The join storm: every client got its `Entered` and its first page of members.
    let join = run(&["join", "--clients", "20", "--history", "10"]).await;
    assert_eq!(join["joined"], 20, "{join}");
    assert_eq!(join["entered"], 20, "{join}");
    assert_eq!(join["names"], 20, "{join}");
    let phased = run(&["join", "--clients", "20", "--history", "10", "--phased"]).await;
    assert_eq!(phased["joined"], 20, "{phased}");
    assert!(phased["login_phase_seconds"].as_f64().is_some(), "{phased}");
    // Rooms: every member gets every line of its room from the others, nothing of the others.
    let rooms = run(&[
        "rooms",
        "--rooms",
        "4",
        "--members",
        "5",
        "--senders",
        "2",
        "--messages",
        "20",
    ])
    .await;
    assert_eq!(rooms["deliveries"], 4 * 2 * 20 * 4, "{rooms}");
    assert_eq!(rooms["misdelivered"], 0, "{rooms}");
}

#[tokio::test]
async fn the_websocket_mode_runs_tiny_and_loses_nothing() {
    // The same scenarios over the web client's transport: WebSocket at /ws, key login.
    let fanout = run(&[
        "--transport",
        "ws",
        "fanout",
        "--clients",
        "5",
        "--senders",
        "2",
        "--messages",
        "20",
    ])
    .await;
    assert_eq!(fanout["deliveries"], 2 * 20 * 4);
    let idle = run(&["--transport", "ws", "idle", "--clients", "20"]).await;
    assert_eq!(idle["connected"], 20);
    let latency = run(&[
        "--transport",
        "ws",
        "latency",
        "--clients",
        "5",
        "--rate",
        "200",
        "--seconds",
        "0.5",
        "--warmup",
        "0.2",
    ])
    .await;
    assert!(latency["deliveries"].as_u64().unwrap() > 0);
}

/// `--nodes`: a cluster on a real PostgreSQL and nats-server (CLUSTER.md), the clients round
/// robin over 2 nodes and a third node without clients. Needs `MM_TEST_POSTGRES` and
/// nats-server, like tests/e2e/cluster.rs (fails without them).
#[tokio::test]
async fn the_cluster_mode_spreads_clients_over_nodes_and_reports_each_node() {
    let db = TestDatabase::new();
    let nats = TestNats::start();
    let (store, bus) = (db.url(), nats.url());
    let bus_pid = nats.pid().unwrap().to_string();
    let cluster = [
        "--server-store",
        store.as_str(),
        "--bus",
        bus.as_str(),
        "--bus-pid",
        bus_pid.as_str(),
        "--nodes",
        "2",
        "--observer-nodes",
        "1",
    ];
    let fanout = run(&[
        &cluster[..],
        &[
            "fanout",
            "--clients",
            "5",
            "--senders",
            "2",
            "--messages",
            "20",
        ],
    ]
    .concat())
    .await;
    assert_eq!(fanout["deliveries"], 2 * 20 * 4, "{fanout}");
    let c = &fanout["cluster"];
    assert_eq!(c["stream_messages"], 2 * 20, "{c}");
    let nodes = c["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{c}");
    // Clients 0, 2, 4 on node 1 and 1, 3 on node 2 (senders: clients 0 and 1); node 3 none.
    let field = |k: usize, f: &str| nodes[k][f].as_u64().unwrap();
    assert_eq!(
        [
            field(0, "clients"),
            field(1, "clients"),
            field(2, "clients")
        ],
        [3, 2, 0]
    );
    assert_eq!(
        [
            field(0, "senders"),
            field(1, "senders"),
            field(2, "senders")
        ],
        [1, 1, 0]
    );
    // Node 1's readers: client 0 gets client 1's 20 lines, clients 2 and 4 get both senders'.
    assert_eq!(field(0, "deliveries"), 20 + 2 * 40, "{c}");
    assert_eq!(field(1, "deliveries"), 20 + 40, "{c}");
    assert_eq!(field(2, "deliveries"), 0, "{c}");
    // Every node's CPU is read (node 3 applies the stream too), and the NATS server's.
    for node in nodes {
        assert!(node["cpu_us"].as_u64().is_some(), "{c}");
    }
    assert!(c["nats_cpu_us"].as_u64().is_some(), "{c}");
    // Across nodes: sender 0's lines to clients 1 and 3, sender 1's to clients 0, 2 and 4.
    assert_eq!(c["cross_node_deliveries"], 20 * 2 + 20 * 3, "{c}");
    assert!(
        c["cross_node_latency"]["p50_us"].as_u64().unwrap() > 0,
        "{c}"
    );
    assert_eq!(fanout["cluster_store_commits"].as_array().unwrap().len(), 3);

    // Paced: lines from a sender on one node to readers on the other.
    let latency = run(&[
        &cluster[..2],
        &cluster[2..6],
        &["--nodes", "3"],
        &[
            "latency",
            "--clients",
            "6",
            "--rate",
            "250",
            "--seconds",
            "0.5",
            "--warmup",
            "0.2",
        ],
    ]
    .concat())
    .await;
    let c = &latency["cluster"];
    assert_eq!(c["nodes"].as_array().unwrap().len(), 3, "{c}");
    assert!(c["cross_node_deliveries"].as_u64().unwrap() > 0, "{c}");
    // One server (no --nodes; a database of its own) has no cluster part: its report is as
    // before.
    let own = TestDatabase::new();
    let single = run(&[
        "--server-store",
        own.url().as_str(),
        "fanout",
        "--clients",
        "3",
        "--senders",
        "1",
        "--messages",
        "5",
    ])
    .await;
    assert!(single.get("cluster").is_none(), "{single}");
}
