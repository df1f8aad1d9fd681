//! What `ssmc` writes on stdout and stderr, without ever panicking (`print!` panics when a
//! write fails).
//!
//! - stdout closed by its reader (`ssmc ir f.ssm | head -1`): ssmc stops quietly with
//!   status 0, as `head` asked; every file it writes is complete before anything is
//!   printed, so stopping loses nothing.
//! - any other failed write on stdout (a full disk: `> /dev/full`): `error: cannot write to
//!   stdout: ...` on stderr and status 1.
//! - stderr: best effort. When it cannot be written there is no one to tell; the exit
//!   status still says whether the command failed.

use crate::Failed;
use std::io::{ErrorKind, Write};

/// Writes `text` to stdout and flushes it.
pub fn stdout(text: &str) -> Result<(), Failed> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            stderr(&format!("error: cannot write to stdout: {e}\n"));
            Err(Failed)
        }
    }
}

/// Writes `text` to stdout with a newline.
pub fn line(text: &str) -> Result<(), Failed> {
    stdout(&format!("{text}\n"))
}

/// Writes `text` to stderr, ignoring a failure (see the module doc).
pub fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}
