//! Storage faults: a full disk, a read-only data directory, an `fdatasync`
//! that fails. What the store does about them:
//!
//! - [`Health`] is the store's one opinion of its disk. The first failed
//!   flush or sync (group-commit round, write-behind round) marks it
//!   failed with a [`Fault`]; from then on every write is refused *before*
//!   it touches the memory index or sled ([`Health::check`]), so nothing
//!   piles up in memory and nothing new becomes readable. The thread that
//!   failed retries on its own (every [`RETRY`]) and marks it healthy again
//!   once a round succeeds, so writes resume without a restart. Each change
//!   of state is logged, at most a line per 10 s (a disk on the
//!   edge of full may flap every retry), and every failed attempt is
//!   counted ([`Health::errors`], `storage_errors` in `stats` and
//!   `/metrics`).
//! - Free space is checked before each round ([`check_space`]): below
//!   [`HEADROOM`] the round fails as out of disk space *without writing*.
//!   This matters because sled 0.34 cannot recover from a failed write of
//!   its own log: `write_to_log` stores the error in its config's
//!   `global_error`, every later flush and insert returns it, and only a
//!   reopen (`PageCache::start`) clears it. Refusing while some megabytes
//!   remain keeps sled from ever meeting `ENOSPC` in its own writes; a
//!   failure sled does meet (an I/O error, a read-only remount) leaves the
//!   store refusing writes until a restart, which the log and `/readyz` say.
//! - Under `--durability sync`, writes made since the last good round were
//!   already in the memory index (and maybe handed to sled) when the round
//!   failed: the [`super::undo`] journal puts their keys back to their
//!   committed records, so reads never return a refused value.
//!
//! Tests make `fdatasync` fail through [`sync_data`] (`fail_syncs_under`),
//! which is the only way the store calls it.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Free space below which a round refuses to write (see the module doc):
/// several of sled's 512 KiB segments, far more than one round writes.
pub const HEADROOM: u64 = 4 << 20;

/// How often a failed store retries its flush and sync.
pub const RETRY: Duration = Duration::from_millis(250);

/// Why writes are refused, as clients are told (`SERVER_ERROR <fault>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `ENOSPC`/`EDQUOT`, or less free space than [`HEADROOM`].
    NoSpace,
    /// `EROFS`: the data directory's filesystem was remounted read-only.
    ReadOnly,
    /// Any other I/O error (`EIO` from `fdatasync`, ...).
    Io,
}

impl Fault {
    /// The fault an I/O error stands for.
    pub fn of(e: &std::io::Error) -> Fault {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Fault::NoSpace,
            Some(libc::EROFS) => Fault::ReadOnly,
            _ => Fault::Io,
        }
    }

    fn code(self) -> u8 {
        match self {
            Fault::NoSpace => 1,
            Fault::ReadOnly => 2,
            Fault::Io => 3,
        }
    }

    fn from_code(c: u8) -> Option<Fault> {
        match c {
            1 => Some(Fault::NoSpace),
            2 => Some(Fault::ReadOnly),
            3 => Some(Fault::Io),
            _ => None,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::NoSpace => "out of disk space",
            Fault::ReadOnly => "data directory is read-only",
            Fault::Io => "disk I/O error",
        })
    }
}

/// The I/O error inside a sled error, if it is one (sled wraps them).
pub fn io_of(e: sled::Error) -> std::io::Error {
    match e {
        sled::Error::Io(io) => io,
        other => std::io::Error::other(other),
    }
}

/// Whether the store can write, shared by the write path and the threads
/// that flush (see the module doc).
#[derive(Default)]
pub struct Health {
    /// 0: healthy; else [`Fault::code`].
    state: AtomicU8,
    /// The last failure's error text, for `/readyz` and the log.
    detail: Mutex<String>,
    /// Failed flush or sync attempts (retries included), and CSV mirror
    /// writes that failed.
    errors: AtomicU64,
    /// When a change of state was last logged, and how many changes went
    /// unlogged since: a disk on the edge of full may flap between the
    /// states every retry, and the log must not follow it.
    logged: Mutex<(Option<Instant>, u64)>,
    /// Which kinds of round are failing ([`Rounds`] bits): writes are
    /// accepted again only once each has succeeded since it failed, so
    /// the write-behind's good flush of sled does not accept writes that
    /// a failing write-ahead log would refuse.
    failing: Mutex<u8>,
}

/// The kinds of round that fail and recover on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounds {
    /// sled's writes and flushes (the write-behind thread, or the group
    /// committer without the write-ahead log).
    Sled = 1,
    /// The write-ahead log's appends and syncs (the group committer).
    Log = 2,
}

/// Changes of state are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Health {
    /// `Err` while writes are refused.
    #[inline]
    pub fn check(&self) -> Result<(), Fault> {
        match Fault::from_code(self.state.load(Ordering::Acquire)) {
            None => Ok(()),
            Some(f) => Err(f),
        }
    }

    /// A flush or sync of `rounds` failed: refuse writes from now on
    /// (until [`Health::recovered`] for every kind that failed). Logs only
    /// when the state changes.
    pub fn failed(&self, rounds: Rounds, what: &str, e: &std::io::Error) -> Fault {
        let fault = Fault::of(e);
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.detail.lock() = format!("{fault}: {what}: {e}");
        let mut failing = self.failing.lock();
        *failing |= rounds as u8;
        let before = self.state.swap(fault.code(), Ordering::AcqRel);
        drop(failing);
        if before != fault.code() {
            if let Some(unlogged) = self.may_log() {
                tracing::error!(
                    "{what} failed: {e}; refusing writes ({fault}) and retrying every {} ms{unlogged}",
                    RETRY.as_millis()
                );
            }
        }
        fault
    }

    /// A round of `rounds` succeeded: accept writes again unless another
    /// kind is still failing. Logs only when the state changes.
    pub fn recovered(&self, rounds: Rounds) {
        if self.state.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut failing = self.failing.lock();
        *failing &= !(rounds as u8);
        if *failing != 0 {
            return;
        }
        let before = self.state.swap(0, Ordering::AcqRel);
        drop(failing);
        if before != 0 {
            if let Some(unlogged) = self.may_log() {
                tracing::info!("storage writable again; accepting writes{unlogged}");
            }
        }
    }

    /// Whether a change of state may be logged now ([`LOG_EVERY`]); if so,
    /// a note of the changes left unlogged before it.
    fn may_log(&self) -> Option<String> {
        let mut logged = self.logged.lock();
        let now = Instant::now();
        if logged.0.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            logged.1 += 1;
            return None;
        }
        let unlogged = std::mem::take(&mut logged.1);
        logged.0 = Some(now);
        Some(match unlogged {
            0 => String::new(),
            n => format!(" ({n} changes of state not logged since the last line)"),
        })
    }

    /// Counts a storage error that does not refuse writes (the CSV mirror).
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Storage errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Why writes are refused now, if they are.
    pub fn problem(&self) -> Option<String> {
        self.check().err().map(|_| self.detail.lock().clone())
    }
}

/// Fails with `ENOSPC` when less than [`HEADROOM`] is free below `dir`.
pub fn check_space(dir: &Path) -> std::io::Result<()> {
    if free_space(dir)? < HEADROOM {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}

/// Bytes free for this process below `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("data directory path contains a NUL byte"))?;
    // SAFETY: a valid C string and a zeroed struct statvfs fills in.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// `fdatasync`: every durability barrier of the store goes through here,
/// so tests can make it fail (`fail_syncs_under`).
pub fn sync_data(file: &File, path: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some((_, errno)) = FAIL_SYNCS.lock().iter().find(|(d, _)| path.starts_with(d)) {
        return Err(std::io::Error::from_raw_os_error(*errno));
    }
    let _ = path;
    file.sync_data()
}

#[cfg(test)]
static FAIL_SYNCS: Mutex<Vec<(std::path::PathBuf, i32)>> = Mutex::new(Vec::new());

/// Tests: make every `fdatasync` of a file below `dir` fail with `errno`
/// (`None`: stop). Tests running at once each use their own directory.
#[cfg(test)]
pub fn fail_syncs_under(dir: &Path, errno: Option<i32>) {
    let mut failing = FAIL_SYNCS.lock();
    failing.retain(|(d, _)| d != dir);
    if let Some(e) = errno {
        failing.push((dir.to_path_buf(), e));
    }
}

thread_local! {
    /// The write generations this thread's writes got since the front end
    /// last asked ([`take_own_writes`]): (lowest, highest). A front end runs a
    /// command's store calls on one thread without yielding, so reading this
    /// right after the command tells exactly which writes were its own, and
    /// so whether a failed round refused any of them (see
    /// [`super::commit::Ticket`]).
    static OWN: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// Notes a write with generation `gen` made by this thread.
pub(super) fn note_own_write(gen: u64) {
    OWN.with(|c| {
        c.set(Some(match c.get() {
            Some((lo, hi)) => (lo.min(gen), hi.max(gen)),
            None => (gen, gen),
        }))
    });
}

/// The generations of this thread's writes since the last call (and
/// forgets them).
pub fn take_own_writes() -> Option<(u64, u64)> {
    OWN.with(|c| c.take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_come_from_errno_and_log_once_per_change() {
        let h = Health::default();
        assert!(h.check().is_ok());
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(h.failed(Rounds::Sled, "sync", &full), Fault::NoSpace);
        assert_eq!(h.failed(Rounds::Sled, "sync", &full), Fault::NoSpace);
        assert_eq!(h.check(), Err(Fault::NoSpace));
        assert_eq!(h.errors(), 2);
        assert!(h.problem().unwrap().starts_with("out of disk space"));
        let ro = std::io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(h.failed(Rounds::Log, "sync", &ro), Fault::ReadOnly);
        h.recovered(Rounds::Sled);
        assert_eq!(h.check(), Err(Fault::ReadOnly), "the log still fails");
        h.recovered(Rounds::Log);
        assert!(h.check().is_ok() && h.problem().is_none());
        assert_eq!(
            Fault::of(&std::io::Error::from_raw_os_error(libc::EIO)),
            Fault::Io
        );
    }

    #[test]
    fn own_writes_are_a_range_taken_once() {
        assert_eq!(take_own_writes(), None);
        note_own_write(7);
        note_own_write(3);
        note_own_write(9);
        assert_eq!(take_own_writes(), Some((3, 9)));
        assert_eq!(take_own_writes(), None);
    }
}
