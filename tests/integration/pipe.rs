//! Issue 7 item 7: every command that writes to stdout, run with its stdout
//! a pipe whose reader has already gone (`cmd | true`, `cmd | head -3`):
//! no panic, nothing on stderr that an open stdout would not also get, and
//! the exit code its result calls for (the same as with an open stdout;
//! README "Exit codes").

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

/// Run `program args` with stdout the write end of a pipe whose read end is
/// closed, so the first write fails with EPIPE.
fn run_into_closed_pipe(cwd: &Path, program: &Path, args: &[&str]) -> Run {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let output = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Run { output, shown: format!("command: {} {} | (closed)", program.display(), args.join(" ")) }
}

/// One command: `expect` is its documented exit code, or `None` where the
/// code depends on this host (status): then it must equal the open run's.
struct Case {
    program: &'static str,
    args: Vec<String>,
    expect: Option<i32>,
}

fn case(program: &'static str, args: &[&str], expect: Option<i32>) -> Case {
    Case { program, args: args.iter().map(|a| a.to_string()).collect(), expect }
}

#[test]
fn every_command_exits_quietly_into_a_closed_pipe() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let d = dir.to_str().unwrap();
    ga(tmp.path(), ["build", "-q", "--minimal", "--size", "1G", d]).success();
    let ga_ = "guestfs-appliance";
    let mfa = "make-fixed-appliance";
    // Stale on purpose: a different size is an option change, whatever the
    // inputs, so `check` has lines to print.
    let mut cases = vec![
        case(ga_, &["check", d, "--minimal", "--size", "2G"], Some(1)),
        case(ga_, &["-q", "check", d, "--minimal", "--size", "2G"], Some(1)),
        case(ga_, &["-q", "check", "--json", d, "--minimal", "--size", "2G"], Some(1)),
        case(ga_, &["check", "--json", d, "--minimal", "--size", "1G"], Some(0)),
        case(ga_, &["schedule"], Some(0)),
        case(ga_, &["schedule", "--kind", "cron", "--kind", "systemd", "--kind", "apt"], Some(0)),
        case(ga_, &["cache", "list"], Some(0)),
        case(ga_, &["cache", "list", "--json"], Some(0)),
        case(ga_, &["status", "--list-probes"], Some(0)),
        case(ga_, &["env", "--dir", d], Some(0)),
        case(ga_, &["env", "--shell", "fish", "--dir", d], Some(0)),
        case(ga_, &["--help"], Some(0)),
        case(ga_, &["--version"], Some(0)),
        case(ga_, &["help", "status"], Some(0)),
        case(mfa, &["--help"], Some(0)),
        case(mfa, &["--version"], Some(0)),
    ];
    for format in ["human", "json", "nagios", "prometheus"] {
        cases.push(case(ga_, &["status", "--dir", d, "--format", format], None));
    }
    for sub in [
        &["build"][..],
        &["check"],
        &["cache"],
        &["cache", "list"],
        &["cache", "prime"],
        &["cache", "clean"],
        &["schedule"],
        &["status"],
        &["env"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        cases.push(case(ga_, &args, Some(0)));
    }
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let program = bin(c.program);
        let open = run_in(tmp.path(), &program, &args, &[] as &[(&str, &OsStr)]);
        assert!(
            !open.stdout().is_empty(),
            "writes nothing to stdout, so this case tests nothing\n{}",
            open.shown_all()
        );
        let closed = run_into_closed_pipe(tmp.path(), &program, &args);
        let stderr = closed.stderr();
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe") && closed.code() != Some(101),
            "panic or pipe error\n{}",
            closed.shown_all()
        );
        // Only the messages an open stdout also gets (e.g. `check`'s
        // "DIR is stale (N changes):"), and none at all where there are none.
        assert_eq!(stderr, open.stderr(), "{}\n--- open run ---\n{}", closed.shown_all(), open.shown_all());
        let informs = args[0] == "check" && !args.contains(&"--json");
        if !informs {
            assert!(stderr.is_empty(), "{}", closed.shown_all());
        }
        let want = c.expect.or(open.code());
        assert_eq!(
            closed.code(),
            want,
            "exit code\n{}\n--- open run ---\n{}",
            closed.shown_all(),
            open.shown_all()
        );
        assert_eq!(open.code(), want, "{}", open.shown_all());
    }
}
