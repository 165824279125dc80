//! The write-ahead log of `--durability sync` (with the memory index): a
//! write is acknowledged once its record is in an `fdatasync`ed frame of
//! this log, and sled gets it later from the write-behind thread, as in
//! periodic mode.
//!
//! Why: a group-commit round used to hand every queued key to sled, then
//! run sled's `flush` (which fans out over sled's I/O threads and issues
//! only `sync_file_range`) and `fdatasync` sled's files, all while its
//! writers waited. Profiled under 50 connections of 1 KB sets, the
//! committer thread used 48% of a core and sled's seven I/O threads 46%
//! for about 14k sets/s (`bench/profile.md`, "Session 7"). Here a round is
//! one `write` and one `fdatasync` of one file; sled's work leaves the
//! acknowledgement's path.
//!
//! Why not the `raft-log` crate the Raft log uses: after a failed write or
//! sync its flush worker stops for good, so a full disk would leave the
//! store refusing writes until a restart, where the store must resume by
//! itself once space is back (`super::fault`). This log is small: frames
//! of records, appended and synced by one thread, deleted a file at a time.
//!
//! # Order and what a round covers
//!
//! A writer takes its write generation and appends its record (the key's
//! new state, or its removal) to the pending buffer under one lock
//! ([`Wal::log`]), and it does so under the key's index shard lock, so
//! records of one key are in the order of its writes. A round reads the
//! generation under the same lock as it takes the buffer ([`Wal::take`]),
//! so the frame it writes holds every record up to that generation.
//!
//! # Files
//!
//! `<data-dir>/wal/<seq>.wal`: frames of `[len u32][crc32 u32][seq u64]
//! [records]` (`seq`: the file's own number), a record being `[key len
//! u16][key][record len + 1 u32, 0 = removed][record]`. A file is closed
//! at [`SEGMENT_BYTES`] (or after a failed round, whose frame may be torn)
//! and the next round starts another, on a spare file whose blocks are
//! already written where one is ready ([`spares`]: a sync then commits no
//! metadata). A spare's old bytes are zeros or frames of another number,
//! so replay stops at them. Files `<seq>.log` are an older release's: the
//! same frames without `seq`, replayed as such.
//!
//! # Checkpoints and recovery
//!
//! Once sled holds, flushed and `fdatasync`ed, a hand-over that started
//! after generation `G`, it has every write up to `G`, so closed files
//! whose rounds all ended at or below `G` are deleted ([`Wal::purge`]).
//! At open, before anything reads sled, the remaining files are applied to
//! sled in order ([`replay`]), each up to its first torn or corrupt frame
//! (a crash mid-write, whose writers were never answered), then sled is
//! synced and the files deleted. Replaying may put a key back to an older
//! state than sled had, but never older than its last acknowledged write:
//! a later acknowledged write of the key is in a later frame.

mod spares;

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// A log file is closed once it holds this much; deleting closed files is
/// what bounds the log's disk use, and replaying one is what a crash costs
/// at the next start.
pub const SEGMENT_BYTES: u64 = 32 << 20;

/// A frame's header: payload length, CRC-32 of the payload and the file's
/// sequence number, little-endian.
const HEADER: usize = 16;

/// A frame's header in an older release's `.log` files (no sequence number).
const LEGACY_HEADER: usize = 8;

/// The log's directory under the data directory.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// The sync-mode log: the writers' pending records and the files.
pub struct Wal {
    dir: PathBuf,
    /// Records not yet taken by a round, after a header's worth of room.
    pending: Mutex<Vec<u8>>,
    files: Mutex<Files>,
    spares: spares::Spares,
}

struct Files {
    /// The file rounds append to; `None` until the next round opens one.
    current: Option<Segment>,
    /// Closed files, oldest first: (path, highest generation a round
    /// written to it covered).
    closed: Vec<(PathBuf, u64)>,
    next_seq: u64,
}

struct Segment {
    seq: u64,
    file: File,
    len: u64,
    covers: u64,
    /// Started on a spare: its rounds overwrite written blocks. A file that
    /// grows is left for a spare as soon as one is ready.
    on_spare: bool,
}

impl Wal {
    /// Opens the log in `data_dir` ([`replay`] must have run: files still
    /// there are kept as closed and replayed again at the next start).
    pub fn open(data_dir: &Path) -> io::Result<Wal> {
        let dir = dir_of(data_dir);
        std::fs::create_dir_all(&dir)?;
        let left = segments(&dir)?;
        let next_seq = left.last().map_or(0, |s| s.0 + 1);
        Ok(Wal {
            spares: spares::Spares::start(&dir)?,
            dir,
            pending: Mutex::new(vec![0; HEADER]),
            files: Mutex::new(Files {
                current: None,
                // Never purged by generation (they predate this start):
                // the next full sync removes them.
                closed: left.into_iter().map(|s| (s.1, u64::MAX)).collect(),
                next_seq,
            }),
        })
    }

    /// Takes the next write generation from `written` and logs the key's
    /// new state with it (`None`: removed); returns the generation. The
    /// caller holds the key's index shard lock.
    pub fn log(&self, written: &AtomicU64, key: &[u8], record: Option<&[u8]>) -> u64 {
        let mut buf = self.pending.lock();
        let gen = written.fetch_add(1, Ordering::AcqRel) + 1;
        let key_len = u16::try_from(key.len()).expect("keys are far shorter than 64 KiB");
        buf.extend_from_slice(&key_len.to_le_bytes());
        buf.extend_from_slice(key);
        let tag = record.map_or(0, |r| r.len() as u32 + 1);
        buf.extend_from_slice(&tag.to_le_bytes());
        if let Some(r) = record {
            buf.extend_from_slice(r);
        }
        gen
    }

    /// Takes every pending record with the generation they reach: a round's
    /// frame (header room first) and its target.
    pub fn take(&self, written: &AtomicU64) -> (u64, Vec<u8>) {
        let mut buf = self.pending.lock();
        let target = written.load(Ordering::Acquire);
        let mut next = Vec::with_capacity(buf.capacity().min(1 << 20));
        next.resize(HEADER, 0);
        (target, std::mem::replace(&mut *buf, next))
    }

    /// Writes `frame` (from [`Wal::take`]) at the end of the current file
    /// and `fdatasync`s it. After a failure the file is closed: its tail
    /// may be torn, and replay reads a file only up to a torn frame.
    pub fn write(&self, target: u64, mut frame: Vec<u8>) -> io::Result<()> {
        if frame.len() == HEADER {
            return Ok(());
        }
        let mut files = self.files.lock();
        let grows = files.current.as_ref().is_some_and(|s| !s.on_spare);
        if grows && self.spares.has_ready() {
            let seg = files.current.take().expect("checked");
            files.closed.push((self.path(seg.seq), seg.covers));
        }
        if files.current.is_none() {
            let seq = files.next_seq;
            files.next_seq += 1;
            let path = self.path(seq);
            let spare = self.spares.take();
            let on_spare = spare.is_some();
            let file = match spare {
                Some(spare) => {
                    std::fs::rename(&spare, &path)?;
                    OpenOptions::new().write(true).open(&path)?
                }
                None => OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?,
            };
            // The new name must survive a crash as well as its frames.
            sync_dir(&self.dir)?;
            files.current = Some(Segment {
                seq,
                file,
                len: 0,
                covers: 0,
                on_spare,
            });
        }
        let seg = files.current.as_mut().expect("opened above");
        seg.covers = seg.covers.max(target);
        seal(&mut frame, seg.seq)?;
        let path = self.path(seg.seq);
        let res = seg
            .file
            .write_all_at(&frame, seg.len)
            .and_then(|()| super::fault::sync_data(&seg.file, &path));
        let before = seg.len;
        seg.len += frame.len() as u64;
        if before < spares::WANTED_AFTER && seg.len >= spares::WANTED_AFTER {
            self.spares.want();
        }
        if res.is_err() || seg.len >= SEGMENT_BYTES {
            let seg = files.current.take().expect("there is one");
            files.closed.push((path, seg.covers));
        }
        res
    }

    /// Whether a closed file waits for a checkpoint.
    pub fn has_closed(&self) -> bool {
        !self.files.lock().closed.is_empty()
    }

    /// sled holds every write up to generation `g` on disk: deletes (or
    /// keeps as spares) the closed files whose rounds all ended at or below
    /// `g`, and with `all`, the current file too if that holds for it (a
    /// full sync).
    pub fn purge(&self, g: u64, all: bool) -> io::Result<()> {
        let mut files = self.files.lock();
        if all && files.current.as_ref().is_some_and(|s| s.covers <= g) {
            let seg = files.current.take().expect("checked");
            files.closed.push((self.path(seg.seq), seg.covers));
        }
        // A file older than this start covers u64::MAX: only a full sync,
        // which leaves sled complete, removes it.
        let mut kept = Vec::new();
        let mut closed = std::mem::take(&mut files.closed).into_iter();
        while let Some((path, covers)) = closed.next() {
            if covers <= g || (all && covers == u64::MAX) {
                let gone = match self.spares.recycle(&path) {
                    Ok(true) => Ok(()),
                    Ok(false) => std::fs::remove_file(&path),
                    Err(e) => Err(e),
                };
                match gone {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        kept.push((path, covers));
                        kept.extend(closed);
                        files.closed = kept;
                        return Err(e);
                    }
                }
            } else {
                kept.push((path, covers));
            }
        }
        files.closed = kept;
        // Deleted for good: a file back after a crash would be replayed.
        sync_dir(&self.dir)
    }

    fn path(&self, seq: u64) -> PathBuf {
        segment_path(&self.dir, seq)
    }
}

/// Fills in the header of `frame` (header room, then records) for the file
/// numbered `seq`.
fn seal(frame: &mut [u8], seq: u64) -> io::Result<()> {
    let payload = &frame[HEADER..];
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::other("a round's records exceed 4 GiB"))?;
    let crc = crc32fast::hash(payload);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    frame[8..HEADER].copy_from_slice(&seq.to_le_bytes());
    Ok(())
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// The log files in `dir` (this release's `.wal` and an older one's
/// `.log`), by sequence number.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut seqs = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(seqs),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal").or_else(|| n.strip_suffix(".log")))
            .and_then(|n| n.parse::<u64>().ok())
        {
            seqs.push((seq, dir.join(name)));
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Applies every intact frame of the log in `data_dir` to `apply` (key,
/// new state or `None` for removed), oldest first; returns how many
/// frames. The caller then makes sled durable and calls [`clear`].
pub fn replay(
    data_dir: &Path,
    mut apply: impl FnMut(&[u8], Option<&[u8]>) -> io::Result<()>,
) -> io::Result<u64> {
    let dir = dir_of(data_dir);
    let mut frames = 0;
    for (seq, path) in segments(&dir)? {
        let own = (path.extension() == Some("wal".as_ref())).then_some(seq);
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut at = 0;
        while let Some((payload, next)) = frame_at(&bytes, at, own) {
            for_each_record(payload, &mut apply)?;
            frames += 1;
            at = next;
        }
        // What follows the last frame in a spare-based file is its zeros or
        // an earlier life's frames; only a header of this file's own is a
        // round cut short.
        let torn = match own {
            None => at < bytes.len(),
            Some(seq) => bytes.get(at + 8..at + HEADER) == Some(&seq.to_le_bytes()[..]),
        };
        if torn {
            tracing::warn!(
                "write-ahead log {}: {} bytes after the last whole frame ignored (a write cut by a crash, never acknowledged)",
                path.display(),
                bytes.len() - at
            );
        }
    }
    Ok(frames)
}

/// Deletes the log's files (after [`replay`] and a sync of sled).
pub fn clear(data_dir: &Path) -> io::Result<()> {
    let dir = dir_of(data_dir);
    let seqs = segments(&dir)?;
    for (_, path) in &seqs {
        std::fs::remove_file(path)?;
    }
    if seqs.is_empty() {
        return Ok(());
    }
    sync_dir(&dir)
}

/// Makes the directory's entries (files created or deleted) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    super::fault::sync_data(&File::open(dir)?, dir)
}

/// The payload of the frame at `at` and where the next starts, if the
/// frame is whole, its checksum holds and it names the file's sequence
/// number `own` (`None`: an older release's file, whose frames name none).
fn frame_at(bytes: &[u8], at: usize, own: Option<u64>) -> Option<(&[u8], usize)> {
    let header_len = if own.is_some() { HEADER } else { LEGACY_HEADER };
    let header = bytes.get(at..at + header_len)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if let Some(seq) = own {
        if header[8..] != seq.to_le_bytes() {
            return None;
        }
    }
    let payload = bytes.get(at + header_len..at + header_len + len)?;
    (len > 0 && crc32fast::hash(payload) == crc).then_some((payload, at + header_len + len))
}

fn for_each_record(
    mut p: &[u8],
    apply: &mut impl FnMut(&[u8], Option<&[u8]>) -> io::Result<()>,
) -> io::Result<()> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed write-ahead log record",
        )
    };
    while !p.is_empty() {
        let key_len = u16::from_le_bytes(p.get(..2).ok_or_else(bad)?.try_into().unwrap()) as usize;
        let key = p.get(2..2 + key_len).ok_or_else(bad)?;
        p = &p[2 + key_len..];
        let tag = u32::from_le_bytes(p.get(..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
        p = &p[4..];
        let record = match tag {
            0 => None,
            n => {
                let r = p.get(..n - 1).ok_or_else(bad)?;
                p = &p[n - 1..];
                Some(r)
            }
        };
        apply(key, record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn replayed(dir: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        replay(dir, |k, r| {
            out.push((k.to_vec(), r.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        out
    }

    /// One group-commit round of a single write: logged, taken, written
    /// and synced; returns the round's target.
    fn round(wal: &Wal, written: &AtomicU64, key: &[u8], record: Option<&[u8]>) -> io::Result<u64> {
        wal.log(written, key, record);
        let (target, frame) = wal.take(written);
        wal.write(target, frame).map(|()| target)
    }

    #[test]
    fn rounds_replay_in_order_up_to_a_torn_frame() {
        let dir = tempfile::tempdir().unwrap();
        let written = AtomicU64::new(0);
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(wal.log(&written, b"a", Some(b"1")), 1);
        assert_eq!(wal.log(&written, b"b", None), 2);
        let (target, frame) = wal.take(&written);
        assert_eq!(target, 2);
        wal.write(target, frame).unwrap();
        round(&wal, &written, b"a", Some(b"22")).unwrap();
        // A third round cut short by a crash: half its frame on disk.
        wal.log(&written, b"c", Some(b"never acknowledged"));
        let (_, mut frame) = wal.take(&written);
        seal(&mut frame, 0).unwrap();
        let path = segment_path(&dir_of(dir.path()), 0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame[..frame.len() / 2]).unwrap();
        drop(wal);
        let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), None),
            (b"a".to_vec(), Some(b"22".to_vec())),
        ];
        assert_eq!(replayed(dir.path()), want);
        // A corrupt byte in the second frame ends the file there.
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[second + HEADER] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(replayed(dir.path()), want[..2]);
        clear(dir.path()).unwrap();
        assert!(replayed(dir.path()).is_empty());
    }

    #[test]
    fn purging_deletes_only_files_a_checkpoint_covers() {
        let dir = tempfile::tempdir().unwrap();
        let written = AtomicU64::new(0);
        let wal = Wal::open(dir.path()).unwrap();
        let big = vec![7u8; SEGMENT_BYTES as usize];
        let t1 = round(&wal, &written, b"big", Some(&big)).unwrap();
        assert!(wal.has_closed(), "a full file is closed");
        let t2 = round(&wal, &written, b"small", Some(b"v")).unwrap();
        wal.purge(t1 - 1, false).unwrap();
        assert_eq!(seqs(dir.path()), vec![0, 1]);
        wal.purge(t1, false).unwrap();
        assert_eq!(seqs(dir.path()), vec![1]);
        assert!(!wal.has_closed());
        // The open file goes only with a full sync that covers it.
        wal.purge(t1, true).unwrap();
        assert_eq!(seqs(dir.path()), vec![1]);
        wal.purge(t2, true).unwrap();
        assert!(seqs(dir.path()).is_empty());
        // The next round starts a new file.
        round(&wal, &written, b"again", Some(b"v")).unwrap();
        assert_eq!(seqs(dir.path()), vec![2]);
    }

    fn seqs(data_dir: &Path) -> Vec<u64> {
        let segs = segments(&dir_of(data_dir)).unwrap();
        segs.into_iter().map(|s| s.0).collect()
    }

    fn spares_in(data_dir: &Path) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir_of(data_dir)).unwrap();
        let names = entries.map(|e| e.unwrap().path());
        names
            .filter(|p| {
                p.to_str().unwrap().ends_with(".wal") && p.to_str().unwrap().contains("spare-")
            })
            .collect()
    }

    #[test]
    fn a_recycled_file_replays_only_its_own_frames() {
        // A closed file kept as a spare, then reused under a later number:
        // its new rounds overwrite the start of its old frames.
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir_of(dir.path());
        std::fs::create_dir_all(&wal_dir).unwrap();
        let frame = |seq: u64, key: &[u8], value: &[u8]| {
            let written = AtomicU64::new(0);
            let staging = Wal {
                dir: wal_dir.clone(),
                pending: Mutex::new(vec![0; HEADER]),
                files: Mutex::new(Files {
                    current: None,
                    closed: Vec::new(),
                    next_seq: 0,
                }),
                spares: spares::Spares::start(&wal_dir).unwrap(),
            };
            staging.log(&written, key, Some(value));
            let mut frame = staging.take(&written).1;
            seal(&mut frame, seq).unwrap();
            frame
        };
        let mut old = frame(3, b"old", &[b'o'; 300]);
        old.extend(frame(3, b"older", b"x"));
        let path = segment_path(&wal_dir, 7);
        std::fs::write(&path, &old).unwrap();
        let new = frame(7, b"new", b"n");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&new, 0)
            .unwrap();
        assert_eq!(
            replayed(dir.path()),
            vec![(b"new".to_vec(), Some(b"n".to_vec()))]
        );
        // An older release's `.log` file (8-byte headers) still replays.
        let mut legacy = frame(0, b"legacy", b"l");
        legacy.drain(LEGACY_HEADER..HEADER);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(wal_dir.join(format!("{:020}.log", 2)), &legacy).unwrap();
        assert_eq!(
            replayed(dir.path()),
            vec![(b"legacy".to_vec(), Some(b"l".to_vec()))]
        );
    }

    #[test]
    fn segments_start_on_prepared_spares_once_the_log_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let written = AtomicU64::new(0);
        let wal = Wal::open(dir.path()).unwrap();
        let round = |key: &[u8], value: &[u8]| round(&wal, &written, key, Some(value)).unwrap();
        round(b"small", b"v");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            spares_in(dir.path()).is_empty(),
            "a quiet log prepares nothing"
        );
        // A log that has written a megabyte gets spares (its thread fills
        // them); the file that grew is left for one at the next round, well
        // before it is full, and once the checkpoint no longer needs it, it
        // is kept as a spare instead of deleted.
        let t1 = round(b"big", &vec![7u8; spares::WANTED_AFTER as usize + 1000]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !wal.spares.has_ready() {
            assert!(std::time::Instant::now() < deadline, "no spare prepared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let t2 = round(b"next", b"v");
        assert_eq!(seqs(dir.path()), vec![0, 1]);
        assert!(wal.has_closed(), "the file that grew is closed");
        let seg1 = segment_path(&dir_of(dir.path()), 1);
        assert!(
            std::fs::metadata(&seg1).unwrap().len() > SEGMENT_BYTES,
            "the second file is a spare whose blocks were written ahead"
        );
        wal.purge(t1, false).unwrap();
        assert_eq!(seqs(dir.path()), vec![1]);
        assert!(!spares_in(dir.path()).is_empty());
        round(b"last", b"w");
        let want = vec![
            (b"next".to_vec(), Some(b"v".to_vec())),
            (b"last".to_vec(), Some(b"w".to_vec())),
        ];
        assert_eq!(replayed(dir.path()), want);
        let _ = t2;
        drop(wal);
        // Spares do not outlive a start.
        let _again = Wal::open(dir.path()).unwrap();
        assert!(spares_in(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_round_closes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let written = AtomicU64::new(0);
        let wal = Wal::open(dir.path()).unwrap();
        round(&wal, &written, b"k", Some(b"1")).unwrap();
        super::super::fault::fail_syncs_under(dir.path(), Some(libc::EIO));
        assert!(round(&wal, &written, b"k", Some(b"2")).is_err());
        super::super::fault::fail_syncs_under(dir.path(), None);
        assert!(wal.has_closed());
        round(&wal, &written, b"k", Some(b"1")).unwrap();
        assert_eq!(seqs(dir.path()), vec![0, 1]);
        let last = replayed(dir.path()).pop().unwrap();
        assert_eq!(last, (b"k".to_vec(), Some(b"1".to_vec())));
    }
}
