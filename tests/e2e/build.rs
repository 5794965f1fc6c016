//! The build itself: a command from the README must not rebuild what another one just built.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `cargo tree` lines `name vX.Y.Z [feature,…]` for a package selection (normal and build edges,
/// as `cargo build` resolves them; dev-dependencies excluded).
fn resolved_features(selection: &[&str]) -> BTreeSet<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .args(["-f", "{p} [{f}]"])
        .args(selection)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree {selection:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.replace(" (*)", "").replace(" (proc-macro)", ""))
        // The workspace's own packages carry their paths; only registry crates matter here.
        .filter(|l| !l.starts_with("mm-"))
        .collect()
}

/// `cargo build --release` then `cargo run --release -p mm-server` rebuilt ~25 crates (97 s on two
/// cores) because a build of one package turned on fewer features of `mio`, `rustix`, `time`, `syn`…
/// than a build of the workspace. `workspace-hack/` asks for the union; this names what a
/// dependency change made differ.
#[test]
fn one_package_builds_with_the_features_of_the_whole_workspace() {
    let workspace = resolved_features(&["--workspace"]);
    for package in ["mm-server", "mm-client", "mm-certs", "mm-bench"] {
        let alone = resolved_features(&["-p", package]);
        let differ: Vec<_> = alone.difference(&workspace).collect();
        assert!(
            differ.is_empty(),
            "`cargo build -p {package}` resolves these with other features than `cargo build` \
             of the workspace, so one rebuilds what the other built: {differ:#?}\n\
             Add the workspace's features of these crates to workspace-hack/Cargo.toml \
             (`cargo tree --workspace -e normal,build -f '{{p}} [{{f}}]'` lists them)."
        );
    }
}
