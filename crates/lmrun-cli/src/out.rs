//! Writing to stdout and stderr without panics. `println!` panics when stdout is a closed pipe
//! (`lmrun run … | head`) or a full disk, so the CLI writes through these functions instead:
//! a closed reader becomes [`OutputClosed`], which `main` turns into a quiet exit with status 0
//! (the reader has what it wanted: not an error); any other write error is one clear line and
//! status 1. Stderr is best effort: a failed diagnostic never ends the program.

use std::io::Write;

/// Stdout's reader went away (EPIPE). Not an error for the user: `main` exits quietly with 0.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct OutputClosed;

/// The error for a failed write to stdout: [`OutputClosed`] for a broken pipe, else a message.
pub fn write_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(OutputClosed)
    } else {
        anyhow::anyhow!("cannot write to standard output: {e}")
    }
}

/// Write `s` to stdout and flush it (text appears as it is produced).
pub fn write_raw(s: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()
}

/// Write `s` to stdout.
pub fn print(s: &str) -> anyhow::Result<()> {
    write_raw(s).map_err(write_error)
}

/// Write `s` and a newline to stdout.
pub fn println(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(write_error)
}

/// Write a line to stderr, ignoring failures (a diagnostic must never end the program).
pub fn eprintln(s: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(s.as_bytes());
    let _ = err.write_all(b"\n");
    let _ = err.flush();
}

/// `format!` then [`println`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::println(&format!($($arg)*))
    };
}

/// `format!` then [`eprintln`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::eprintln(&format!($($arg)*))
    };
}
