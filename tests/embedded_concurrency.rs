//! Several `tritonctl` processes on one embedded store (`--data-dir`), as
//! operators run them: a `get -w` or `wait` left running in one terminal,
//! applies from another, many applies at once from a script. Readers and
//! watchers never block a writer; writers take turns; a writer that has to
//! wait says so once and gives up after `TRITONCTL_STORE_WAIT` with an error
//! naming the directory.
//!
//! `E2E_TRITONCTL_BIN` runs these tests against another build of the binary
//! (to see them fail on one that predates the shared store).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{repo, stderr, stdout};

/// Generous: the machine is small and shared.
const PATIENCE: Duration = Duration::from_secs(120);

fn bin() -> PathBuf {
    match std::env::var_os("E2E_TRITONCTL_BIN") {
        Some(b) => PathBuf::from(b),
        None => e2e::tritonctl_bin(),
    }
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .current_dir(repo())
        .env_remove("TRITONCTL_ZK")
        .env_remove("TRITONCTL_STORE_WAIT");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("run tritonctl")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A long-running tritonctl process, its output lines on channels.
struct Running {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tritonctl");
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Running { child, out, err }
    }

    /// The first line of `rx` containing `needle`, within PATIENCE.
    fn expect(rx: &mpsc::Receiver<String>, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains(needle) {
                        return line;
                    }
                    seen.push(line);
                }
                Err(_) => panic!("no line with {needle:?} within {PATIENCE:?}; saw {seen:#?}"),
            }
        }
    }

    fn stdout_line(&self, needle: &str) -> String {
        Self::expect(&self.out, needle)
    }

    fn stderr_line(&self, needle: &str) -> String {
        Self::expect(&self.err, needle)
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for the process to exit by itself; its code and remaining stderr.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "tritonctl did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        while let Ok(line) = self.err.recv_timeout(Duration::from_secs(5)) {
            err.push_str(&line);
            err.push('\n');
        }
        (status.code().expect("exited normally"), err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab's ManateeVersion under another name, with a given lag setting.
fn manatee(name: &str, lag: u32) -> String {
    std::fs::read_to_string(repo().join("examples/lab/manatee.yaml"))
        .unwrap()
        .replace("name: sdc", &format!("name: {name}"))
        .replace(
            "maxReplicationLagSeconds: 5",
            &format!("maxReplicationLagSeconds: {lag}"),
        )
}

fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn apply_ok(data: &Path, file: &str) -> String {
    let o = run(data, &["apply", "-f", file]);
    assert_eq!(code(&o), 0, "apply {file}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// Nothing a reader or a waiting writer should ever print.
fn assert_not_locked_out(text: &str) {
    for word in ["in use", "locked", "gave up"] {
        assert!(!text.contains(word), "{word:?} in {text}");
    }
}

/// `get -w` and `wait` left running do not keep `apply` out, and both see
/// what it wrote.
#[test]
fn a_watcher_does_not_block_an_apply_and_sees_it() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let data = data.path();
    apply_ok(data, &write(files.path(), "mv.yaml", &manatee("sdc", 5)));

    let gone = write(files.path(), "gone.yaml", &manatee("gone-soon", 5));
    apply_ok(data, &gone);

    let watcher = Running::start(command(data, &["get", "-w", "mv", "sdc"]));
    let first = watcher.stdout_line("sdc");
    let waiter = Running::start(command(
        data,
        &["wait", "--for=delete", "mv/gone-soon", "--timeout", "10m"],
    ));
    let events = Running::start(command(data, &["events", "-w"]));

    // While they run: change one document, delete the other.
    let changed = write(files.path(), "mv2.yaml", &manatee("sdc", 6));
    assert!(apply_ok(data, &changed).contains("generation 2"));
    let second = watcher.stdout_line("sdc");
    assert_ne!(first, second, "the watcher printed a row for the change");
    let o = run(data, &["delete", "mv", "gone-soon"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_not_locked_out(&stderr(&o));

    // The waiter saw the deletion made by another process.
    let (code, err) = waiter.finish();
    assert_eq!(code, 0, "{err}");
    let mut watcher = watcher;
    let mut events = events;
    assert!(watcher.is_running() && events.is_running());
}

/// An open read transaction (a reader in the middle of a read) does not keep
/// a writer out.
#[test]
fn a_held_reader_does_not_block_an_apply() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let data = data.path();
    apply_ok(data, &write(files.path(), "a.yaml", &manatee("a", 5)));

    let reader = rusqlite::Connection::open(data.join(coord::mem::DB_FILE)).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM znode", [], |r| r.get(0))
        .unwrap();
    assert!(n > 0);

    let out = apply_ok(data, &write(files.path(), "b.yaml", &manatee("b", 5)));
    assert!(out.contains("created"), "{out}");
    let o = run(data, &["get", "mv"]);
    assert!(stdout(&o).contains('b'), "{}", stdout(&o));
    // The reader still sees its snapshot.
    let still: i64 = reader
        .query_row("SELECT count(*) FROM znode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(still, n);
    reader.execute_batch("COMMIT").unwrap();
}

fn spawn_all(data: &Path, files: &[String]) -> Vec<(String, Output)> {
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            let child = command(data, &["apply", "-f", f])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start tritonctl");
            (f.clone(), child)
        })
        .collect();
    children
        .into_iter()
        .map(|(f, c)| (f, c.wait_with_output().unwrap()))
        .collect()
}

/// 40 applies of 40 documents at once, each its own process: all succeed.
#[test]
fn forty_concurrent_applies_of_different_documents_all_succeed() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let data = data.path();
    let paths: Vec<String> = (0..40)
        .map(|i| {
            write(
                files.path(),
                &format!("mv{i}.yaml"),
                &manatee(&format!("shard{i}"), 5),
            )
        })
        .collect();
    let started = Instant::now();
    let outcomes = spawn_all(data, &paths);
    eprintln!("40 concurrent applies took {:?}", started.elapsed());
    for (f, o) in &outcomes {
        assert_eq!(code(o), 0, "{f}: {}{}", stdout(o), stderr(o));
        assert!(stdout(o).contains("created"), "{f}: {}", stdout(o));
        assert_not_locked_out(&stderr(o));
    }
    // Every process cleaned up after itself.
    let holders = std::fs::read_dir(data.join(coord::mem::shared::HOLDERS_DIR)).unwrap();
    assert_eq!(holders.count(), 0);
    let o = run(data, &["get", "mv"]);
    for i in 0..40 {
        assert!(
            stdout(&o).contains(&format!("shard{i} ")),
            "shard{i} missing: {}",
            stdout(&o)
        );
    }
}

/// 40 applies of one document at once: each either succeeds or fails with a
/// clear conflict (never a locked store), and the document ends up stored
/// once, at a generation no higher than the number of applies that
/// configured it.
#[test]
fn forty_concurrent_applies_of_one_document_succeed_or_conflict() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let data = data.path();
    // Half the processes write lag 5, half lag 6: some change the spec.
    let paths: Vec<String> = (0..40)
        .map(|i| {
            write(
                files.path(),
                &format!("mv{i}.yaml"),
                &manatee("sdc", 5 + (i % 2)),
            )
        })
        .collect();
    let outcomes = spawn_all(data, &paths);
    let mut created = 0;
    let mut configured = 0;
    for (f, o) in &outcomes {
        assert_not_locked_out(&stderr(o));
        match code(o) {
            0 => {
                created += usize::from(stdout(o).contains("created"));
                configured += usize::from(stdout(o).contains("configured"));
            }
            1 => assert!(stderr(o).contains("conflict on"), "{f}: {}", stderr(o)),
            other => panic!("{f}: exit {other}: {}{}", stdout(o), stderr(o)),
        }
    }
    assert_eq!(created, 1, "exactly one apply created the document");
    let o = run(data, &["get", "mv", "sdc", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let generation = doc["metadata"]["generation"].as_u64().unwrap();
    assert_eq!(generation as usize, 1 + configured, "{doc}");
}

/// A writer that finds the store's write lock held says so, once, and
/// waits; once the lock is free it writes. One that waits longer than
/// `TRITONCTL_STORE_WAIT` fails with exit 2 and a message naming the data
/// directory, having written nothing.
#[test]
fn a_waiting_writer_says_so_once_and_gives_up_after_its_timeout() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let data = data.path();
    apply_ok(data, &write(files.path(), "a.yaml", &manatee("a", 5)));
    let b = write(files.path(), "b.yaml", &manatee("b", 5));

    // Another writer holds the lock (as a long transaction would).
    let holder = rusqlite::Connection::open(data.join(coord::mem::DB_FILE)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let o = command(data, &["apply", "-f", &b])
        .env("TRITONCTL_STORE_WAIT", "1s")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{}{err}", stdout(&o));
    assert_eq!(
        err.matches("waiting for another tritonctl process").count(),
        1,
        "{err}"
    );
    assert!(err.contains("gave up after"), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");
    // Reads still work while the lock is held, and nothing was written.
    let o = run(data, &["get", "mv"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stdout(&o).contains("b "), "{}", stdout(&o));

    // A writer with time to spare waits, says so, and writes once it can.
    let waiting = Running::start(command(data, &["apply", "-f", &b]));
    waiting.stderr_line("waiting for another tritonctl process");
    holder.execute_batch("COMMIT").unwrap();
    let out = waiting.stdout_line("/b ");
    assert!(out.contains("created"), "{out}");
    let (code, _) = waiting.finish();
    assert_eq!(code, 0);
}
