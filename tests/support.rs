//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `tritonctl` binary built by cargo for this test run.
pub fn tritonctl_bin() -> PathBuf {
    // Integration tests of another package do not get CARGO_BIN_EXE_*; the
    // binary sits next to the test executable's parent directory.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("tritonctl");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tritonctl` first",
        bin.display()
    );
    bin
}

/// Run tritonctl with an embedded store in `data_dir`.
pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(tritonctl_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .current_dir(repo())
        .env_remove("TRITONCTL_ZK")
        .output()
        .expect("run tritonctl")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
