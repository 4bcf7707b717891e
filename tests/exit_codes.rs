//! One table of exit statuses (README, "Exit status"): every command's
//! `--help` says what the table says, and every command, run as an
//! operator would run it (error cases included: bad arguments, names that
//! do not exist), exits as the table says. Also the habits every command
//! shares: a closed standard output ends it quietly, `KIND NAME` and
//! `KIND/NAME` both name a document, and the store options.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use e2e::{repo, run, stderr, stdout, tritonctl_bin};

/// The README's table: command -> exit status -> meaning.
fn readme_table() -> BTreeMap<String, BTreeMap<u8, String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("<!-- exit-status-table -->")
        .expect("README has the exit status table");
    let end = readme
        .find("<!-- /exit-status-table -->")
        .expect("the table ends");
    let mut table = BTreeMap::new();
    for line in readme[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `cmd` | 0 | 1 | 2 | 3 |
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let cmd = cells[1].trim_matches('`').to_string();
        let codes = (0u8..=3)
            .filter_map(|c| {
                let m = cells[usize::from(c) + 2];
                (!m.is_empty()).then(|| (c, m.to_string()))
            })
            .collect();
        table.insert(cmd, codes);
    }
    table
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn code(o: &std::process::Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {o:?}"))
}

#[test]
fn every_help_states_the_readme_exit_status_table() {
    let table = readme_table();
    let help = Command::new(tritonctl_bin())
        .arg("--help")
        .output()
        .unwrap();
    // Every subcommand is in the table.
    for cmd in [
        "validate",
        "apply",
        "diff",
        "snapshot",
        "plan",
        "get",
        "describe",
        "status",
        "delete",
        "demo",
        "approve",
        "cancel",
        "events",
        "wait",
        "pause",
        "resume",
        "controller",
        "sim serve",
        "schema",
        "auth init",
        "auth add",
        "auth remove",
        "auth list",
        "auth whoami",
    ] {
        let first = cmd.split(' ').next().unwrap();
        assert!(
            stdout(&help).contains(&format!("  {first} ")),
            "{first} is not a command any more: {}",
            stdout(&help)
        );
        let codes = table
            .get(cmd)
            .unwrap_or_else(|| panic!("README's exit status table has no row for `{cmd}`"));
        let line = format!(
            "Exit status: {}.",
            codes
                .iter()
                .map(|(c, m)| format!("{c} {m}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--help");
        let o = Command::new(tritonctl_bin()).args(&args).output().unwrap();
        assert_eq!(code(&o), 0, "{cmd} --help");
        assert!(
            squash(&stdout(&o)).contains(&squash(&line)),
            "`{cmd} --help` does not say `{line}`:\n{}",
            stdout(&o)
        );
    }
    assert_eq!(table.len(), 24, "{table:#?}");
}

/// A data directory holding `examples/lab/`, and an invalid document.
fn lab() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    let o = run(&d.path().join("store"), &["apply", "-f", "examples/lab/"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bad = d.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: tritonctl/v1alpha1\nkind: [\n").unwrap();
    (d, bad.to_str().unwrap().to_string())
}

#[test]
fn every_command_exits_as_the_table_says() {
    let table = readme_table();
    let (d, bad) = lab();
    let store = d.path().join("store");
    let bad = bad.as_str();
    let api = "http://127.0.0.1:1";
    // (table row, arguments, expected status), in order: later cases see
    // what earlier ones stored.
    let cases: Vec<(&str, Vec<&str>, u8)> = vec![
        ("validate", vec!["validate", "-f", "examples/lab/"], 0),
        ("validate", vec!["validate", "-f", bad], 1),
        ("validate", vec!["validate"], 1),
        ("validate", vec!["validate", "-f", "does/not/exist"], 2),
        ("apply", vec!["apply", "-f", "examples/lab/"], 0),
        ("apply", vec!["apply", "-f", bad], 1),
        ("apply", vec!["apply", "--bogus"], 1),
        ("diff", vec!["diff", "-f", "examples/lab/"], 0),
        (
            "diff",
            vec!["diff", "-f", "examples/scenarios/manatee-upgrade/"],
            1,
        ),
        ("diff", vec!["diff", "-f", bad], 2),
        ("diff", vec!["diff", "--bogus"], 2),
        ("snapshot", vec!["snapshot", "-o", "/dev/null"], 2),
        ("snapshot", vec!["snapshot", "--bogus"], 2),
        (
            "plan",
            vec!["plan", "-f", "examples/lab/", "-o", "/dev/null"],
            2,
        ),
        ("plan", vec!["plan", "--bogus"], 2),
        ("get", vec!["get", "mv"], 0),
        ("get", vec!["get", "mv/sdc"], 0),
        ("get", vec!["get", "mv", "sdc", "-o", "name,ready"], 0),
        ("get", vec!["get", "leader"], 0),
        ("get", vec!["get", "mv", "nope"], 1),
        ("get", vec!["get", "mv/nope"], 1),
        ("get", vec!["get", "pod"], 1),
        ("get", vec!["get"], 1),
        ("status", vec!["status"], 0),
        ("status", vec!["status", "--bogus"], 1),
        ("status", vec!["status", "--sapi", api], 2),
        ("get", vec!["get", "mv", "-o", "name,bogus"], 1),
        ("get", vec!["get", "mv", "-o", "jsonpath={.items["], 1),
        ("describe", vec!["describe", "mv/sdc"], 0),
        ("describe", vec!["describe", "mv", "nope"], 1),
        ("describe", vec!["describe", "mv"], 1),
        ("events", vec!["events"], 0),
        ("events", vec!["events", "mv/sdc"], 0),
        ("events", vec!["events", "mv", "nope"], 1),
        ("events", vec!["events", "-o", "bogus"], 1),
        (
            "wait",
            vec!["wait", "--for=delete", "mv/nope", "--timeout", "0s"],
            0,
        ),
        (
            "wait",
            vec!["wait", "--for=condition=Ready", "mv/sdc", "--timeout", "0s"],
            1,
        ),
        (
            "wait",
            vec![
                "wait",
                "--for=condition=Ready",
                "mv/nope",
                "--timeout",
                "0s",
            ],
            2,
        ),
        ("wait", vec!["wait", "mv/sdc"], 2),
        ("wait", vec!["wait", "--for=condition=Ready", "mv"], 2),
        ("pause", vec!["pause", "mv", "sdc", "--by", "t@h"], 0),
        ("pause", vec!["pause", "mv/nope"], 1),
        ("pause", vec!["pause"], 1),
        ("resume", vec!["resume", "mv/sdc"], 0),
        ("resume", vec!["resume", "mv", "sdc"], 1),
        ("resume", vec!["resume", "mv/nope"], 1),
        ("approve", vec!["approve", "mv/sdc"], 1),
        ("approve", vec!["approve", "mv", "nope"], 1),
        ("approve", vec!["approve"], 1),
        ("cancel", vec!["cancel", "mv/sdc"], 1),
        ("cancel", vec!["cancel", "hs", "lab"], 1),
        ("cancel", vec!["cancel"], 1),
        ("demo", vec!["demo", "--timeout", "soon"], 1),
        ("controller", vec!["controller"], 1),
        (
            "controller",
            vec![
                "controller",
                "--sapi",
                api,
                "--vmapi",
                api,
                "--cnapi",
                api,
                "--imgapi",
                api,
            ],
            1,
        ),
        ("sim serve", vec!["sim", "serve", "--bogus"], 1),
        (
            "sim serve",
            vec![
                "sim",
                "serve",
                "--scenario",
                "examples/lab",
                "--dc-time-scale",
                "-1",
            ],
            1,
        ),
        (
            "sim serve",
            vec!["sim", "serve", "--scenario", "does/not/exist"],
            2,
        ),
        ("schema", vec!["schema", "mv"], 0),
        ("schema", vec!["schema", "pod"], 1),
        ("schema", vec!["schema"], 1),
        // The embedded store has no access control: `auth` refuses (1),
        // except `whoami`, which names the local user.
        (
            "auth init",
            vec!["auth", "init", "--controller-credentials", "ctl.cred"],
            1,
        ),
        ("auth init", vec!["auth", "init"], 1),
        (
            "auth add",
            vec!["auth", "add", "alice", "--role", "viewer"],
            1,
        ),
        (
            "auth add",
            vec!["auth", "add", "alice", "--role", "root"],
            1,
        ),
        ("auth remove", vec!["auth", "remove", "alice"], 1),
        ("auth list", vec!["auth", "list"], 1),
        ("auth list", vec!["auth", "list", "-o", "nope"], 1),
        ("auth whoami", vec!["auth", "whoami"], 0),
        ("delete", vec!["delete", "mv", "nope"], 1),
        ("delete", vec!["delete"], 1),
        ("delete", vec!["delete", "mv/sdc"], 0),
    ];
    let mut wrong = Vec::new();
    for (row, args, want) in &cases {
        let meaning = table[*row].get(want).unwrap_or_else(|| {
            panic!("{args:?} expects {want}, which the README's row for `{row}` does not list")
        });
        let o = run(&store, args);
        if code(&o) != i32::from(*want) {
            wrong.push(format!(
                "{args:?}: exit {} where the table says {want} ({meaning})\n  stderr: {}",
                code(&o),
                stderr(&o).trim()
            ));
        }
        assert!(
            !stderr(&o).contains("panicked"),
            "{args:?} panicked: {}",
            stderr(&o)
        );
    }
    // Every command of the table was run.
    for row in table.keys() {
        assert!(
            cases.iter().any(|(r, _, _)| r == row),
            "no case runs `{row}`"
        );
    }
    // The binary's own options: help and version are 0, no command is 1.
    for (args, want) in [(vec!["--help"], 0), (vec!["--version"], 0), (vec![], 1)] {
        let o = Command::new(tritonctl_bin()).args(&args).output().unwrap();
        if code(&o) != want {
            wrong.push(format!("{args:?}: exit {} where {want} is meant", code(&o)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Run with standard output already closed by its reader, as `| head -1`
/// does once it has its line.
fn with_closed_stdout(
    store: &std::path::Path,
    args: &[&str],
) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(tritonctl_bin())
        .arg("--data-dir")
        .arg(store)
        .args(args)
        .current_dir(repo())
        .env_remove("TRITONCTL_ZK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_standard_output_ends_every_command_quietly() {
    let (d, _) = lab();
    let store = d.path().join("store");
    let o = run(&store, &["pause", "mv/sdc", "--by", "t@h"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for args in [
        vec!["events"],
        vec!["get", "mv"],
        vec!["get", "mv", "sdc", "-o", "yaml"],
        vec!["describe", "mv", "sdc"],
        vec!["diff", "-f", "examples/scenarios/manatee-upgrade/"],
        vec!["validate", "-f", "examples/lab/"],
        vec!["schema", "mv"],
    ] {
        let (status, err) = with_closed_stdout(&store, &args);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_ne!(status.code(), Some(101), "{args:?}: {err}");
        // Like cat or grep: ended by SIGPIPE.
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {status:?} {err}"
        );
    }
}

#[test]
fn kind_name_and_kind_slash_name_name_a_document_everywhere() {
    let (d, _) = lab();
    let store = d.path().join("store");
    for kind in ["mv", "MV", "manateeversion", "ManateeVersions"] {
        for args in [
            vec!["get", kind, "sdc"],
            vec!["describe", kind, "sdc"],
            vec!["events", kind, "sdc"],
        ] {
            let o = run(&store, &args);
            assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        }
        let slash = format!("{kind}/sdc");
        for args in [
            vec!["get", slash.as_str()],
            vec!["describe", slash.as_str()],
            vec!["events", slash.as_str()],
        ] {
            let o = run(&store, &args);
            assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        }
    }
    let o = run(&store, &["get", "mv/sdc", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metadata"]["name"], "sdc");
    for args in [
        vec!["pause", "mv", "sdc", "--by", "t@h"],
        vec!["resume", "mv", "sdc"],
        vec!["wait", "--for=delete", "hs", "nope", "--timeout", "0s"],
    ] {
        let o = run(&store, &args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    // approve and cancel read KIND NAME too: what they refuse is the
    // missing operation, not the spelling.
    let o = run(&store, &["approve", "mv", "sdc"]);
    assert!(
        stderr(&o).contains("no operation step is waiting"),
        "{}",
        stderr(&o)
    );
    let o = run(&store, &["cancel", "mv", "sdc"]);
    assert!(
        stderr(&o).contains("no transplant is in flight"),
        "{}",
        stderr(&o)
    );
    // Both spellings at once is ambiguous.
    let o = run(&store, &["get", "mv/sdc", "sdc"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not both"), "{}", stderr(&o));
    let o = run(&store, &["delete", "mv", "sdc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn the_store_flag_on_the_command_line_wins_over_the_environment() {
    let (d, _) = lab();
    let store = d.path().join("store");
    // TRITONCTL_ZK points nowhere; --data-dir on the command line wins.
    let o = Command::new(tritonctl_bin())
        .arg("--data-dir")
        .arg(&store)
        .args(["get", "mv", "sdc"])
        .env("TRITONCTL_ZK", "127.0.0.1:1")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("sdc"), "{}", stdout(&o));
    // Both on the command line: two stores named, refused.
    let o = Command::new(tritonctl_bin())
        .arg("--data-dir")
        .arg(&store)
        .args(["--zk", "127.0.0.1:1", "get", "mv"])
        .env_remove("TRITONCTL_ZK")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("two different stores"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_malformed_zk_connect_string_fails_at_once_with_the_reason() {
    for (zk, why) in [
        ("127.0.0.1:2181:2181", "is not a port"),
        ("zk_1.example:2181", "is not a host name"),
        ("127.0.0.1:notaport", "is not a port"),
        ("http://127.0.0.1:2181", "chroot"),
    ] {
        let o = Command::new(tritonctl_bin())
            .args(["--zk", zk, "get", "mv"])
            .env_remove("TRITONCTL_ZK")
            .env_remove("TRITONCTL_DATA_DIR")
            .output()
            .unwrap();
        assert_eq!(code(&o), 1, "{zk}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("not a ZooKeeper connect string") && stderr(&o).contains(why),
            "{zk}: {}",
            stderr(&o)
        );
    }
    // `wait` keeps 1 for a timeout: its usage errors are 2.
    let o = Command::new(tritonctl_bin())
        .args([
            "--zk",
            "127.0.0.1:2181:2181",
            "wait",
            "--for=delete",
            "mv/sdc",
        ])
        .env_remove("TRITONCTL_ZK")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}
