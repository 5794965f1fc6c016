//! Every mm-bench scenario, tiny: it must run against the real server binary and lose nothing.
//! Never a speed assertion (benchmarks measure; see BENCHMARKS.md).

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
