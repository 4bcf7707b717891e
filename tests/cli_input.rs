//! Input that cannot hurt (issue #12, items 4, 5, 7 and 8): what `-f` reads,
//! and that `validate`, `diff`, `plan` and `apply` agree on it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::{repo, run, stderr, stdout, tritonctl_bin};

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

/// Run tritonctl, killing it if it is still running after a generous while:
/// the inputs here used to hang it, and a hang must fail the test rather than
/// the whole run. Not a speed assertion: a healthy run takes well under a second.
fn run_guarded(data_dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(tritonctl_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .current_dir(repo())
        .env_remove("TRITONCTL_ZK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tritonctl");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            // Still running: stop the process this test started, by its id.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return true;
        }
        false
    });
    let out = child.wait_with_output().expect("wait for tritonctl");
    let _ = tx.send(());
    let killed = guard.join().unwrap();
    assert!(!killed, "tritonctl {args:?} hung and was killed");
    out
}

fn lab_manatee() -> String {
    std::fs::read_to_string(repo().join("examples/lab/manatee.yaml")).unwrap()
}

/// Every directory of `examples/` holding documents.
fn example_sets() -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let mut has_docs = false;
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "json") {
                has_docs = true;
            }
        }
        if has_docs {
            out.push(dir.to_path_buf());
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("examples"), &mut out);
    out
}

// Item 4: one kind and name twice in one input.

#[test]
fn validate_accepts_every_example_set() {
    let d = tempfile::tempdir().unwrap();
    let sets = example_sets();
    assert!(sets.len() >= 7, "examples/ went missing: {sets:?}");
    for set in sets {
        let o = run(d.path(), &["validate", "-f", set.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}: {}", set.display(), stderr(&o));
        assert!(stdout(&o).contains("are valid"), "{}", stdout(&o));
    }
}

#[test]
fn one_document_twice_in_sibling_directories_is_refused_by_validate_and_apply() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("input");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(input.join(sub)).unwrap();
        std::fs::write(input.join(sub).join("manatee.yaml"), lab_manatee()).unwrap();
    }
    let a = input.join("a/manatee.yaml");
    let b = input.join("b/manatee.yaml");
    let store = d.path().join("store");
    for cmd in ["validate", "apply", "diff", "plan"] {
        let mut args = vec![cmd, "-f", input.to_str().unwrap()];
        if cmd == "plan" {
            args.extend(["-o", "-"]);
        }
        let o = run(&store, &args);
        let err = stderr(&o);
        assert_ne!(code(&o), 0, "{cmd} accepted a document twice: {err}");
        assert!(
            err.contains(&format!("{}:", b.display()))
                && err.contains(&format!("{}:", a.display()))
                && err.contains("ManateeVersion `sdc` is defined twice"),
            "{cmd}: {err}"
        );
        assert!(err.contains(":7:3:"), "{cmd}: names the line: {err}");
    }
    // Nothing was stored.
    assert_ne!(code(&run(&store, &["get", "mv", "sdc"])), 0);
}

#[test]
fn validate_of_all_examples_reports_the_sets_that_collide() {
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), &["validate", "-f", "examples/"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("examples/lab/manatee.yaml") && err.contains("is defined twice"),
        "{err}"
    );
    let o = run(d.path(), &["apply", "-f", "examples/"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was applied"), "{}", stderr(&o));
}

// Item 5: what a directory walk reads.

#[test]
fn symlinked_directory_loops_terminate_and_each_file_is_read_once() {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    let two = d.path().join("two");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    std::fs::write(one.join("manatee.yaml"), lab_manatee()).unwrap();
    std::os::unix::fs::symlink(".", one.join("self")).unwrap();
    std::os::unix::fs::symlink(".", one.join("again")).unwrap();
    std::os::unix::fs::symlink("../two", one.join("to-two")).unwrap();
    std::os::unix::fs::symlink("../one", two.join("back")).unwrap();
    std::os::unix::fs::symlink("../one/manatee.yaml", two.join("same.yaml")).unwrap();
    let o = run_guarded(d.path(), &["validate", "-f", one.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 document(s) in 1 file(s) are valid"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn devices_fifos_and_huge_files_are_refused_with_their_path() {
    let d = tempfile::tempdir().unwrap();
    // A link to a device.
    let dev = d.path().join("dev");
    std::fs::create_dir(&dev).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dev.join("zero.yaml")).unwrap();
    let o = run_guarded(d.path(), &["validate", "-f", dev.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&dev.join("zero.yaml").display().to_string())
            && err.contains("not a regular file"),
        "{err}"
    );
    // A FIFO nobody writes to, in a directory and named directly.
    let fifo_dir = d.path().join("fifo");
    std::fs::create_dir(&fifo_dir).unwrap();
    let fifo = fifo_dir.join("pipe.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for target in [&fifo_dir, &fifo] {
        let o = run_guarded(d.path(), &["validate", "-f", target.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&fifo.display().to_string()) && err.contains("not a regular file"),
            "{err}"
        );
    }
    // A file over the size cap.
    let big_dir = d.path().join("big");
    std::fs::create_dir(&big_dir).unwrap();
    let big = big_dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(17 * 1024 * 1024).unwrap();
    let o = run_guarded(d.path(), &["validate", "-f", big_dir.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&big.display().to_string()) && err.contains("16 MiB"),
        "{err}"
    );
}

// Item 7: every error of a document at once.

#[test]
fn unknown_fields_and_type_errors_are_reported_together() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("mv.yaml");
    let text = lab_manatee()
        .replace("  image:\n", "  imagee: x\n  image:\n")
        .replace(
            "    approval: never",
            "    parallelism: lots\n    approval: [yes]",
        );
    assert_ne!(text, lab_manatee());
    std::fs::write(&f, &text).unwrap();
    let o = run(d.path(), &["validate", "-f", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    for field in [
        "spec.imagee: unknown field",
        "spec.rollout.parallelism:",
        "spec.rollout.approval:",
    ] {
        assert!(err.contains(field), "missing {field}: {err}");
    }
}

// Item 8: input that cannot be meant.

#[test]
fn an_empty_input_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing here\n").unwrap();
    let dir = d.path().join("nothing");
    std::fs::create_dir(&dir).unwrap();
    for target in [&empty, &dir] {
        for cmd in ["validate", "apply"] {
            let o = run(d.path(), &[cmd, "-f", target.to_str().unwrap()]);
            assert_eq!(code(&o), 1, "{cmd} {}: {}", target.display(), stderr(&o));
            assert!(stderr(&o).contains("no documents"), "{cmd}: {}", stderr(&o));
        }
    }
    let mut child = Command::new(tritonctl_bin())
        .arg("--data-dir")
        .arg(d.path())
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("no documents"), "{}", stderr(&o));
}

#[test]
fn zero_timeouts_and_free_text_versions_are_refused_with_the_field() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("mv.yaml");
    let text = lab_manatee()
        .replace("version: 20251104T182201Z", "version: the new one")
        .replace("catchUpTimeout: 15m", "catchUpTimeout: 0s");
    std::fs::write(&f, &text).unwrap();
    let o = run(d.path(), &["validate", "-f", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("spec.image.version:"), "{err}");
    assert!(err.contains("spec.health.catchUpTimeout:"), "{err}");
}
