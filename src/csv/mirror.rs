//! The CSV mirror: a background task that keeps a CSV image of the store
//! (see [`super::format`]) at most one interval behind it, and the atomic
//! file replacement it (and `export --out`) relies on.
//!
//! The image is rewritten only when the store's write generation moved, on
//! a blocking thread so the request path never waits for it; `serve` writes
//! it once more after the final sync so it is exact after a clean shutdown.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::kv::Kv;

/// Replaces `path` atomically with what `fill` writes: a temp file in the
/// same folder, fsync, rename over `path`, fsync the folder. A reader or a
/// crash at any moment sees the old complete file or the new complete one.
///
/// The temp name is fixed (`.<name>.tmp`) so a crash's leftover is reused
/// by the next write rather than piling up; only one writer may target a
/// path at a time (the server's single mirror task guarantees that).
pub fn replace_atomically<T>(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let value = fill(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        File::open(&dir)?.sync_all()?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Fails fast at start-up on a mirror path whose folder does not exist, so
/// a typo is an error rather than a warning repeated every interval.
pub fn check_target(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        anyhow::ensure!(
            dir.is_dir(),
            "CSV mirror folder {} does not exist",
            dir.display()
        );
    }
    anyhow::ensure!(
        !path.is_dir(),
        "CSV mirror path {} is a directory",
        path.display()
    );
    Ok(())
}

/// Writes the whole store to `path` atomically; returns the row count.
pub fn write_image(kv: &Kv, path: &Path) -> anyhow::Result<u64> {
    let started = std::time::Instant::now();
    let rows = replace_atomically(path, |out| Ok(super::export::image(kv, out)?))
        .with_context(|| format!("writing CSV mirror {}", path.display()))?;
    crate::metrics::record_mirror_write(started.elapsed());
    Ok(rows)
}

/// A full image costs time proportional to the store; waiting this many
/// times the last write's duration between writes keeps the mirror to at
/// most a fifth of one core however large the store grows.
const PAUSE_PER_WRITE_TIME: u32 = 4;

/// How long to wait before the next image: the configured interval, or
/// longer when images have become expensive to write.
fn next_pause(interval: Duration, last_write: Duration) -> Duration {
    interval.max(last_write * PAUSE_PER_WRITE_TIME)
}

/// Writes one image on a thread of its own at the lowest CPU priority
/// (nice 19): when the cores are saturated, serving requests comes first and
/// the image simply takes longer (the mirror falls further behind) instead of
/// taking a core away from clients. A fresh thread per image, because a
/// thread's priority cannot be raised back without privileges, so a pooled
/// thread must never be lowered.
async fn write_in_background(kv: Arc<Kv>, path: PathBuf) -> anyhow::Result<anyhow::Result<u64>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("csv-mirror".into())
        .spawn(move || {
            lower_own_priority();
            let _ = tx.send(write_image(&kv, &path));
        })
        .context("cannot start the mirror thread")?;
    rx.await.context("the mirror thread ended without a result")
}

/// Lowers the calling thread's (not the process's) scheduling priority.
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::debug!("could not lower the mirror thread's priority");
        }
    }
}

/// Runs until `stop` fires: every `interval` (stretched for large stores,
/// see `next_pause`), rewrites the image if the store changed since the
/// last write (and once at start). Errors are logged and retried next
/// interval; the server keeps serving.
pub async fn run(kv: Arc<Kv>, path: PathBuf, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut written: Option<u64> = None;
    // The last failure, so a persistent one (full disk) is logged once, not every interval.
    let mut failing: Option<String> = None;
    loop {
        let generation = kv.generation();
        let started = std::time::Instant::now();
        if written != Some(generation) {
            match write_in_background(kv.clone(), path.clone()).await {
                Ok(Ok(rows)) => {
                    tracing::debug!(rows, path = %path.display(), "CSV mirror written");
                    if failing.take().is_some() {
                        tracing::info!(path = %path.display(), "CSV mirror writing again");
                    }
                    written = Some(generation);
                }
                Ok(Err(e)) => {
                    // The old image stays whole (see `replace_atomically`)
                    // and serving goes on; the error is counted.
                    kv.count_storage_error();
                    let msg = format!("{e:#}");
                    if failing.as_deref() != Some(msg.as_str()) {
                        tracing::warn!("{msg} (will retry every interval)");
                    }
                    failing = Some(msg);
                }
                Err(e) => tracing::warn!("CSV mirror thread failed: {e}"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(next_pause(interval, started.elapsed())) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn expensive_images_stretch_the_interval() {
        let second = Duration::from_secs(1);
        assert_eq!(next_pause(second, Duration::from_millis(10)), second);
        assert_eq!(next_pause(second, Duration::ZERO), second);
        assert_eq!(
            next_pause(second, Duration::from_secs(2)),
            Duration::from_secs(8)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_mirror_thread_is_deprioritised() {
        // SAFETY: getpriority on thread ids of this process.
        let nice_of =
            |tid: libc::pid_t| unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
        let me = unsafe { libc::gettid() };
        let before = nice_of(me);
        let theirs = std::thread::spawn(move || {
            lower_own_priority();
            nice_of(unsafe { libc::gettid() })
        })
        .join()
        .unwrap();
        assert_eq!(theirs, 19);
        assert_eq!(nice_of(me), before);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.csv");
        replace_atomically(&path, |out| Ok(out.write_all(b"old")?)).unwrap();
        let err: anyhow::Result<()> = replace_atomically(&path, |out| {
            out.write_all(b"partial")?;
            anyhow::bail!("boom")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["img.csv"]);
    }
}
