//! Log files whose blocks are written before a round needs them.
//!
//! Why: an `fdatasync` after an append that grows a file must also commit
//! the file's new size and blocks (ext4's journal); one after overwriting
//! blocks already written commits the data alone. On this project's
//! machine (a Python loop of 600 writes of 40 KB, each `fdatasync`ed):
//! median 0.40 ms growing, 0.24 ms overwriting, 0.38 ms into `fallocate`d
//! space (its extents are unwritten: converting them is metadata too). A
//! sync-mode round is one such `fdatasync`, so each round's writers wait
//! about 40% less when the log file's blocks already exist.
//!
//! So a new segment is a spare renamed: a closed segment the checkpoint no
//! longer needs (recycled; its old frames carry another sequence number,
//! which replay refuses), or a file this module's thread filled with zeros
//! ahead of need. PostgreSQL and RocksDB recycle their logs for the same
//! reason.
//!
//! Spares are deleted at start: sequence numbers start again after a
//! start's replay clears the log, and a recycled file's old frames must
//! never meet the number they were written under. A spare is kept or made
//! only while the disk has [`ROOM`] free, so on a nearly full disk closed
//! files are deleted and segments grow, as without spares.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How many spares are kept ready: closed segments are recycled up to
/// this many.
const KEEP: usize = 2;

/// How many spares the thread fills with zeros ahead of need. Fewer than
/// [`KEEP`], so that a busy log's closed segments, which the checkpoint
/// frees about as fast as new ones start, find room to be recycled: with
/// the thread refilling to [`KEEP`] first, every closed segment was
/// deleted and every new one zero-filled (each segment's bytes written
/// twice, and the filling thread took up to 6% of a core at 30k sets/s of
/// 1 KB).
const PREPARE: usize = 1;

/// The size of each write that fills a spare with zeros: one page. The
/// page cache keeps a file's pages in folios as large as the writes that
/// made them (ext4 on recent kernels, this machine's 6.18 among them), and
/// a later small overwrite dirties its whole folio, which `fdatasync` then
/// writes back whole: filled with 1 MiB writes, each round's few KB sent
/// 1 MiB to the disk (`/proc/self/io` `write_bytes`: 1,030 KiB per
/// 7,000-byte overwrite, against 10.8 KiB after 4 KiB writes; at 50
/// connections of 1 KB sets, 87-92 KB per set against 4.3 KB).
const FILL_WRITE: usize = 4096;

/// Free space below which no spare is kept or made: a few segments' worth
/// above the store's own refusal point.
pub const ROOM: u64 = super::super::fault::HEADROOM + 4 * super::SEGMENT_BYTES;

/// A spare's size: a segment closes once it holds
/// [`super::SEGMENT_BYTES`], so its last round usually ends within this.
const SPARE_BYTES: u64 = super::SEGMENT_BYTES + (1 << 20);

/// Spare files of one log directory, and the thread that prepares them.
pub struct Spares {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    ready: Vec<PathBuf>,
    next_id: u64,
    /// Set once the log has written [`WANTED_AFTER`]: a store that writes
    /// little (most tests, a mostly read workload) never fills spares.
    wanted: bool,
    stop: bool,
}

/// How much a run's log writes before spares are prepared.
pub const WANTED_AFTER: u64 = 1 << 20;

impl Spares {
    /// Deletes the spares an earlier run left in `dir` and starts the thread
    /// that prepares new ones.
    pub fn start(dir: &Path) -> io::Result<Spares> {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if name.to_str().is_some_and(|n| n.starts_with("spare")) {
                std::fs::remove_file(dir.join(name))?;
            }
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                ready: Vec::new(),
                next_id: 0,
                wanted: false,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("wal-spares".into())
            .spawn({
                let shared = shared.clone();
                move || shared.prepare_while_running()
            })?;
        Ok(Spares {
            shared,
            thread: Some(thread),
        })
    }

    /// The log has written [`WANTED_AFTER`]: keep spares ready from now on.
    pub fn want(&self) {
        let mut state = self.shared.state.lock();
        if !state.wanted {
            state.wanted = true;
            self.shared.wake.notify_all();
        }
    }

    /// Whether a spare is ready.
    pub fn has_ready(&self) -> bool {
        !self.shared.state.lock().ready.is_empty()
    }

    /// A spare for the next segment, if one is ready.
    pub fn take(&self) -> Option<PathBuf> {
        let mut state = self.shared.state.lock();
        let spare = state.ready.pop();
        if spare.is_some() {
            self.shared.wake.notify_all();
        }
        spare
    }

    /// Keeps the closed segment at `path` as a spare instead of deleting
    /// it, if fewer than [`KEEP`] are ready and the disk has [`ROOM`];
    /// returns whether it did. The caller syncs the directory.
    pub fn recycle(&self, path: &Path) -> io::Result<bool> {
        if self.shared.state.lock().ready.len() >= KEEP || !has_room(&self.shared.dir) {
            return Ok(false);
        }
        let mut state = self.shared.state.lock();
        let spare = self.shared.spare_path(state.next_id);
        state.next_id += 1;
        std::fs::rename(path, &spare)?;
        state.ready.push(spare);
        Ok(true)
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn spare_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("spare-{id}.wal"))
    }

    fn prepare_while_running(&self) {
        loop {
            let id = {
                let mut state = self.state.lock();
                while !state.stop && (!state.wanted || state.ready.len() >= PREPARE) {
                    self.wake.wait(&mut state);
                }
                if state.stop {
                    return;
                }
                state.next_id += 1;
                state.next_id - 1
            };
            let made = if has_room(&self.dir) {
                self.zero_filled(id)
            } else {
                Ok(None)
            };
            let mut state = self.state.lock();
            match made {
                Ok(Some(path)) => state.ready.push(path),
                Ok(None) if state.stop => return,
                // No room, or stopped while filling: look again later.
                Ok(None) => {
                    self.wake.wait_for(&mut state, Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::debug!("could not prepare a write-ahead log file: {e}");
                    let _ = std::fs::remove_file(self.dir.join("spare.tmp"));
                    self.wake.wait_for(&mut state, Duration::from_secs(1));
                }
            }
        }
    }

    /// Writes [`SPARE_BYTES`] of zeros to a new file and syncs it; `None`
    /// if the store stopped meanwhile.
    fn zero_filled(&self, id: u64) -> io::Result<Option<PathBuf>> {
        let tmp = self.dir.join("spare.tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let zeros = [0u8; FILL_WRITE];
        let mut left = SPARE_BYTES;
        while left > 0 {
            // A look at `stop` every MiB, so a closing store waits little.
            if left.is_multiple_of(1 << 20) && self.state.lock().stop {
                drop(file);
                std::fs::remove_file(&tmp)?;
                return Ok(None);
            }
            let n = left.min(FILL_WRITE as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        super::super::fault::sync_data(&file, &tmp)?;
        let path = self.spare_path(id);
        std::fs::rename(&tmp, &path)?;
        Ok(Some(path))
    }
}

fn has_room(dir: &Path) -> bool {
    super::super::fault::free_space(dir).is_ok_and(|free| free >= ROOM)
}
