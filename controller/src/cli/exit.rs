//! Exit statuses, the same for every command, and the two process-wide
//! habits that decide them before any command runs: usage errors and a
//! closed standard output.
//!
//! The table (README "Exit status", and each command's `--help`):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done (`diff`: no differences; `wait`: the condition holds) |
//! | 1 | refused: invalid arguments or input, a conflict, the named document does not exist, nothing to approve/resume/cancel (`diff`: differences; `wait`: timed out) |
//! | 2 | could not be done: the store or an API failed, a file could not be read (`diff`, `plan`, `snapshot`, `wait`: also every refusal, since their 1 is taken) |
//! | 3 | `controller`: leadership was lost, restart it |
//!
//! A command killed by a closed standard output (`tritonctl events | head
//! -1`) ends the way `cat` and `grep` do: by SIGPIPE, without a message.

use std::ffi::OsString;

use super::{EXIT_ERROR, EXIT_INVALID};

/// Commands whose status 1 answers a question (`diff`: differences,
/// `wait`: timed out), or that report invalid input as 2 (`plan` and
/// `snapshot`, like `diff`): their usage errors are 2.
pub fn usage_code(command: Option<&str>) -> u8 {
    match command {
        Some("diff" | "plan" | "snapshot" | "wait") => EXIT_ERROR,
        _ => EXIT_INVALID,
    }
}

/// Global options that take a value in the next argument.
const GLOBAL_WITH_VALUE: [&str; 3] = ["--zk", "--data-dir", "--session-timeout"];

/// The subcommand named on a command line that did not parse: the first
/// argument that is neither an option nor a global option's value.
pub fn subcommand_of(args: &[OsString]) -> Option<String> {
    let mut skip_next = false;
    for a in args.iter().skip(1) {
        let a = a.to_string_lossy();
        if skip_next {
            skip_next = false;
            continue;
        }
        if GLOBAL_WITH_VALUE.contains(&a.as_ref()) {
            skip_next = true;
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        return Some(a.into_owned());
    }
    None
}

/// Whether a panic message is Rust's report of a write to a closed pipe
/// (`println!` panics on EPIPE).
pub fn is_closed_output(message: &str) -> bool {
    (message.starts_with("failed printing to stdout")
        || message.starts_with("failed printing to stderr"))
        && message.contains(&format!("os error {}", libc::EPIPE))
}

/// Install the panic hook that turns a write to a closed standard output
/// into a quiet SIGPIPE, for every command at once.
pub fn quiet_on_closed_output() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_closed_output(message) {
            // SAFETY: restoring the default disposition and raising the
            // signal at ourselves; no memory is involved.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            // Not reached: the default action of SIGPIPE ends the process.
            std::process::exit(i32::from(EXIT_ERROR));
        }
        default(info)
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_subcommand_is_found_past_global_options() {
        assert_eq!(
            subcommand_of(&args(&["tritonctl", "--zk", "h:1", "wait", "x"])).as_deref(),
            Some("wait")
        );
        assert_eq!(
            subcommand_of(&args(&["tritonctl", "--zk=h:1", "-w", "get"])).as_deref(),
            Some("get")
        );
        assert_eq!(subcommand_of(&args(&["tritonctl", "--data-dir"])), None);
        assert_eq!(usage_code(Some("wait")), EXIT_ERROR);
        assert_eq!(usage_code(Some("get")), EXIT_INVALID);
        assert_eq!(usage_code(None), EXIT_INVALID);
    }

    #[test]
    fn only_a_broken_pipe_on_standard_output_or_error_is_quiet() {
        assert!(is_closed_output(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_closed_output(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_closed_output("Broken pipe (os error 32)"));
    }
}
