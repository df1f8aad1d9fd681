//! Running `ssmc` on one case: a child process with a time limit, what it did to its
//! folder, and the judgement of its exit.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// How one child process ended.
pub struct Exit {
    /// The exit status, `None` if it was killed by a signal or the time limit.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Whether it ran past the time limit (and was killed).
    pub timed_out: bool,
    /// What it wrote on stdout (lossy UTF-8).
    pub stdout: String,
    /// What it wrote on stderr (lossy UTF-8).
    pub stderr: String,
    /// How long it ran.
    pub wall: Duration,
}

/// Runs `cmd` with stdin closed, killing it after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> std::io::Result<Exit> {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let (status, timed_out) = match child.wait_timeout(limit)? {
        Some(s) => (Some(s), false),
        None => {
            let _ = child.kill();
            (child.wait().ok(), true)
        }
    };
    let text =
        |h: std::thread::JoinHandle<Vec<u8>>| String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned();
    Ok(Exit {
        code: if timed_out { None } else { status.and_then(|s| s.code()) },
        signal: if timed_out { None } else { status.and_then(|s| s.signal()) },
        timed_out,
        stdout: text(out),
        stderr: text(err),
        wall: start.elapsed(),
    })
}

/// What is wrong with how a case ended; `None` when nothing is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// A Rust panic (exit 101 or a `panicked` message).
    Panic,
    /// Killed by a signal (a stack overflow aborts, an out-of-bounds access faults).
    Signal(i32),
    /// Ran past the time limit.
    TimedOut,
    /// An exit status other than 0 (success) and 1 (a reported error).
    Status(i32),
    /// Exit 1 without an `error:` line.
    Silent,
    /// A diagnostic of `check` without a file:line:col location.
    Unlocated,
    /// An error that shows a library's type name instead of words (`InvalidOffset("z")`).
    Unclear,
    /// A file not named as an output was created, changed or removed.
    Touched,
    /// A temporary build folder was left behind.
    LeftTemporary,
    /// valgrind's memcheck saw an invalid read or write.
    OutOfBounds,
    /// Native code and the interpreter disagree on the same inputs.
    Disagrees,
    /// Something the campaign itself could not do (write a file, start the child).
    Harness,
}

impl Problem {
    /// A short name for tables and folder names.
    pub fn name(&self) -> String {
        match self {
            Problem::Signal(s) => format!("signal-{s}"),
            Problem::Status(c) => format!("status-{c}"),
            other => format!("{other:?}").to_lowercase(),
        }
    }
}

/// The problem with an exit, judged on its status and its stderr alone.
pub fn judge(exit: &Exit) -> Option<Problem> {
    if exit.timed_out {
        return Some(Problem::TimedOut);
    }
    if exit.code == Some(101) || exit.stderr.contains("panicked") {
        return Some(Problem::Panic);
    }
    if let Some(s) = exit.signal {
        return Some(Problem::Signal(s));
    }
    match exit.code {
        Some(0) => None,
        Some(1) if !exit.stderr.contains("error") => Some(Problem::Silent),
        Some(1) if unclear(&exit.stderr) => Some(Problem::Unclear),
        Some(1) => None,
        Some(c) => Some(Problem::Status(c)),
        None => Some(Problem::Signal(0)),
    }
}

/// Whether an error message shows a Rust enum's Debug form, such as `InvalidOffset("z")` or
/// `MetadataIncompleteBuffer`, where words should be.
fn unclear(stderr: &str) -> bool {
    stderr.lines().filter(|l| l.starts_with("error")).any(|l| {
        // What a message quotes in backticks is the user's (a name like `hTD`), not prose.
        let prose: String = l.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        prose.split(|c: char| !c.is_alphanumeric()).any(|w| {
            let caps = w.chars().filter(char::is_ascii_uppercase).count();
            let lower = w.chars().any(|c| c.is_ascii_lowercase());
            // Two capitals inside one word of letters: CamelCase, which prose never has.
            caps >= 2 && lower && w.chars().all(|c| c.is_ascii_alphabetic()) && !w.starts_with("NaN")
        })
    })
}

/// Whether every diagnostic header of `check`'s stderr is followed by its location line.
pub fn every_error_located(stderr: &str) -> bool {
    let lines: Vec<&str> = stderr.lines().collect();
    lines.iter().enumerate().all(|(i, l)| {
        let header = l.starts_with("error: ") || l.starts_with("warning: ");
        // Summaries (`error: `f.ssm`: 2 errors`, `... more errors`) sit after located ones.
        let summary = l.starts_with("error: `") || l.contains("more error") || l.contains("not shown");
        !header || summary || lines.get(i + 1).is_some_and(|n| n.trim_start().starts_with("┌─") && n.contains(':'))
    })
}

/// Size and content hash of every file under a folder, by path.
pub type Snapshot = BTreeMap<PathBuf, (u64, u64)>;

/// Every file under `dir` except under `skip`.
pub fn snapshot(dir: &Path, skip: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.starts_with(skip) {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                _ => {
                    let bytes = std::fs::read(&p).unwrap_or_default();
                    out.insert(p, (bytes.len() as u64, fnv(&bytes)));
                }
            }
        }
    }
    out
}

/// The paths that differ between two snapshots, other than `outputs`.
pub fn touched(before: &Snapshot, after: &Snapshot, outputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths.into_iter().filter(|p| before.get(*p) != after.get(*p) && !outputs.contains(p)).cloned().collect()
}

/// A temporary build folder anywhere under `dir`.
pub fn temporary_left(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(".ssmc-build") {
                return Some(p);
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    None
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
