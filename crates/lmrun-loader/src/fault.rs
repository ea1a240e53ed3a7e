//! What happens when a mapped model file fails under the process. A mapping is only as good as
//! the file behind it: if the file is truncated while mapped (or its storage returns an I/O
//! error), the next read of a page past the new end raises `SIGBUS`, and by default the process
//! dies with no word. This is the one new way to fail that the mmap load modes bring, so lmrun
//! explains it: every mapping the loader makes is registered here with a message naming its
//! file, and a process that calls [`install_fault_handler`] (the CLI does; a library embedding
//! lmrun decides for itself) turns a `SIGBUS` inside a registered mapping into a newline on
//! stdout, that message on stderr and `_exit(`[`FAULT_EXIT_CODE`]`)`. A `SIGBUS` anywhere else
//! keeps its default action. The handler uses async-signal-safe calls only (atomic loads,
//! `write`, `_exit`); the messages are built when the mapping is made.
//!
//! [`FileStamp`] is the after-the-fact half: a file's size, modification time and inode at load,
//! compared at the end of a run to warn that a file was rewritten in place (which silently
//! changes the weights a mapping sees, without a fault). Replacing a file by renaming a new one
//! over it is the safe way to update a model and is not reported.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// The exit status after a fault in a model mapping: 128 + SIGBUS (7), the status a shell
/// reports for a process killed by `SIGBUS`, so scripts that already test for it keep working.
pub const FAULT_EXIT_CODE: i32 = 135;

/// Mappings that can be registered at once (each model load makes one or two).
const SLOTS: usize = 64;

/// One registered mapping: `[start, end)` and its message. `end == 0` marks a free slot.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    msg: AtomicPtr<u8>,
    msg_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the array below, never shared
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    msg: AtomicPtr::new(std::ptr::null_mut()),
    msg_len: AtomicUsize::new(0),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
static INSTALLED: AtomicBool = AtomicBool::new(false);
static NEWLINE_ON_STDOUT: AtomicBool = AtomicBool::new(true);
static REPORTED: AtomicBool = AtomicBool::new(false);

/// A registered mapping; unregisters on drop. Held by the mapping it describes.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: Option<usize>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // The message stays allocated (see `register`): a handler running on another
            // thread may still be reading it.
            TABLE[i].end.store(0, Ordering::SeqCst);
        }
    }
}

/// The line written when a read of `path`'s mapping faults.
pub fn fault_message(path: &Path) -> String {
    format!(
        "lmrun: error: {}: the model file failed under its memory mapping (SIGBUS): it was \
         truncated or replaced while in use, or its storage returned an I/O error. Do not modify \
         a model file while lmrun uses it; load files that may change with --load-mode file \
         (LoadMode::File), which reads them into memory\n",
        path.display()
    )
}

/// Register `[addr, addr + len)` as a mapping of `path`. When the table is full the mapping is
/// simply not covered (a fault there keeps the default action).
pub(crate) fn register(addr: *const u8, len: usize, path: &Path) -> Registration {
    if len == 0 {
        return Registration { slot: None };
    }
    for (i, s) in TABLE.iter().enumerate() {
        // Claim a free slot: `end` 0 → 1 reserves it while the fields are filled in.
        if s.end
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            // Leaked on purpose: a few hundred bytes per mapping made, so that a signal handler
            // never reads freed memory. Slots are reused, so an old message is replaced.
            let msg: &'static mut [u8] = Box::leak(fault_message(path).into_bytes().into());
            s.start.store(addr as usize, Ordering::SeqCst);
            s.msg_len.store(msg.len(), Ordering::SeqCst);
            s.msg.store(msg.as_mut_ptr(), Ordering::SeqCst);
            s.end
                .store((addr as usize).saturating_add(len), Ordering::SeqCst);
            return Registration { slot: Some(i) };
        }
    }
    log::debug!(
        "{}: no free slot to register the mapping for fault reports",
        path.display()
    );
    Registration { slot: None }
}

/// The message of the registered mapping holding `addr`, if any. Async-signal-safe.
fn lookup(addr: usize) -> Option<(*const u8, usize)> {
    for s in TABLE.iter() {
        let end = s.end.load(Ordering::SeqCst);
        if end > 1 && addr >= s.start.load(Ordering::SeqCst) && addr < end {
            let p = s.msg.load(Ordering::SeqCst);
            if !p.is_null() {
                return Some((p, s.msg_len.load(Ordering::SeqCst)));
            }
        }
    }
    None
}

/// Whether `addr` lies in a registered model mapping (for tests and diagnostics).
pub fn is_model_mapping(addr: *const u8) -> bool {
    lookup(addr as usize).is_some()
}

/// Install the process-wide `SIGBUS` handler described in the module docs. `newline_on_stdout`
/// writes a newline to stdout first, so text streamed so far ends its line. Idempotent; returns
/// an error when `sigaction` fails.
#[cfg(unix)]
pub fn install_fault_handler(newline_on_stdout: bool) -> std::io::Result<()> {
    NEWLINE_ON_STDOUT.store(newline_on_stdout, Ordering::SeqCst);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    // SAFETY: a zeroed sigaction is a valid starting value; the handler has the SA_SIGINFO
    // signature and only makes async-signal-safe calls.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        INSTALLED.store(false, Ordering::SeqCst);
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(unix)]
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    match lookup(addr) {
        Some((msg, len)) => {
            if REPORTED.swap(true, Ordering::SeqCst) {
                // Another thread is writing the report and will exit the process.
                loop {
                    // SAFETY: pause is async-signal-safe.
                    unsafe { libc::pause() };
                }
            }
            // SAFETY: write and _exit are async-signal-safe; `msg` points at `len` leaked bytes.
            unsafe {
                if NEWLINE_ON_STDOUT.load(Ordering::SeqCst) {
                    libc::write(1, b"\n".as_ptr().cast(), 1);
                }
                libc::write(2, msg.cast(), len);
                libc::_exit(FAULT_EXIT_CODE);
            }
        }
        None => {
            // Not ours: restore the default action; returning re-runs the faulting access,
            // which then kills the process as it would have without this handler.
            // SAFETY: signal() with SIG_DFL is async-signal-safe.
            unsafe {
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
            }
        }
    }
}

/// A file's identity and version at one moment: size, modification time and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch (0 if unknown).
    pub mtime_ns: i128,
    /// Device and inode (0 if unknown).
    pub dev_ino: (u64, u64),
}

impl FileStamp {
    /// Read the stamp of `path` now (`None` if it cannot be read).
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp::from_metadata(&m))
    }

    /// The stamp of already-read metadata.
    pub fn from_metadata(m: &std::fs::Metadata) -> FileStamp {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        #[cfg(unix)]
        let dev_ino = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let dev_ino = (0, 0);
        FileStamp {
            len: m.len(),
            mtime_ns,
            dev_ino,
        }
    }

    /// How the file at `path` was changed *in place* since this stamp, in words, or `None`
    /// when it was not. A file that was removed, or replaced by renaming another file over it,
    /// is not a change here: the process keeps the inode it opened (its mapping or its copy
    /// stays valid), which is the safe way to update a model.
    pub fn changes(&self, path: &Path) -> Option<String> {
        let now = FileStamp::of(path)?;
        if now.dev_ino != self.dev_ino {
            return None;
        }
        if now.len != self.len {
            Some(format!(
                "its size went from {} to {} bytes",
                self.len, now.len
            ))
        } else if now.mtime_ns != self.mtime_ns {
            Some("it was modified in place".to_string())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_ranges_are_found_until_dropped() {
        let buf = vec![0u8; 4096];
        let p = buf.as_ptr();
        assert!(!is_model_mapping(p));
        let r = register(p, buf.len(), Path::new("/models/x.gguf"));
        assert!(is_model_mapping(p));
        assert!(is_model_mapping(p.wrapping_add(4095)));
        assert!(!is_model_mapping(p.wrapping_add(4096)));
        let (msg, len) = lookup(p as usize).unwrap();
        // SAFETY: the table holds `len` leaked bytes at `msg`.
        let text = std::str::from_utf8(unsafe { std::slice::from_raw_parts(msg, len) }).unwrap();
        assert!(text.contains("/models/x.gguf"), "{text}");
        assert!(text.contains("--load-mode file"), "{text}");
        drop(r);
        assert!(!is_model_mapping(p));
    }

    #[test]
    fn stamps_see_size_and_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        std::fs::write(&path, b"abcdef").unwrap();
        let s = FileStamp::of(&path).unwrap();
        assert_eq!(s.changes(&path), None);
        std::fs::write(&path, b"abc").unwrap();
        let c = s.changes(&path).unwrap();
        assert!(c.contains("from 6 to 3 bytes"), "{c}");
        // Replaced by a rename, or removed: the opened inode lives on, nothing to report.
        let s = FileStamp::of(&path).unwrap();
        let other = dir.path().join("new.bin");
        std::fs::write(&other, b"xyz").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(s.changes(&path), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.changes(&path), None);
    }
}
