//! `memcached-lite import`: loads a CSV image (see [`super::format`]) into
//! a store no server holds.
//!
//! The whole file is validated first and applied only if every row is good,
//! so a malformed row (reported with its line number) changes nothing in
//! either mode. Rows are then written in sled batches, which keeps a
//! 100,000-item load to seconds even in a debug build.

use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::format::{Row, Rows};
use crate::kv::{Item, Kv};
use crate::rules::exptime;

/// Imported CAS values above this get a fresh one instead, so reserving
/// CAS values past the imported ones can never overflow.
const MAX_KEPT_CAS: u64 = 1 << 62;
const BATCH: usize = 5_000;

/// What happens to items already in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Keep existing items; rows overwrite items with the same key.
    Merge,
    /// Remove every existing item first (only once the whole file checked out).
    Replace,
}

/// What an import did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Rows written to the store.
    pub imported: u64,
    /// Rows skipped because their exptime has passed.
    pub expired: u64,
    /// Items removed first (`replace` mode).
    pub removed: u64,
    /// Rows whose CAS was 0 or out of range and got a fresh one.
    pub fresh_cas: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} items ({} expired rows skipped, {} existing items removed, {} given a new cas)",
            self.imported, self.expired, self.removed, self.fresh_cas
        )
    }
}

/// Validates `path` completely, then applies it to the store behind `kv`. Shows a
/// progress bar on stderr when `progress` is set and stderr is a terminal.
pub fn import(
    kv: &Kv,
    path: &Path,
    mode: Mode,
    max_value: usize,
    progress: bool,
) -> anyhow::Result<Summary> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let bar = progress_bar(progress, size);
    let now = kv.now();

    bar.set_message("checking");
    let mut max_cas = 0;
    each_row(path, max_value, &bar, |row| {
        if row.cas <= MAX_KEPT_CAS {
            max_cas = max_cas.max(row.cas);
        }
        Ok(())
    })?;

    let mut summary = Summary::default();
    if mode == Mode::Replace {
        summary.removed = kv.remove_all()?;
    }
    kv.reserve_cas_above(max_cas)?;
    bar.set_message("loading");
    bar.set_position(0);
    let mut batch = Vec::with_capacity(BATCH);
    each_row(path, max_value, &bar, |row| {
        if exptime::is_expired(row.exptime, now) {
            summary.expired += 1;
            return Ok(());
        }
        let cas = if row.cas == 0 || row.cas > MAX_KEPT_CAS {
            summary.fresh_cas += 1;
            kv.next_cas()?
        } else {
            row.cas
        };
        batch.push((
            row.key,
            Item::encode(row.flags, row.exptime, cas, &[&row.value]),
        ));
        summary.imported += 1;
        if batch.len() == BATCH {
            kv.load_batch(std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    kv.load_batch(batch)?;
    kv.finish_load()?;
    bar.finish_and_clear();
    Ok(summary)
}

fn each_row(
    path: &Path,
    max_value: usize,
    bar: &ProgressBar,
    mut f: impl FnMut(Row) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = Rows::new(BufReader::with_capacity(1 << 16, file), max_value);
    let mut n = 0u64;
    while let Some(row) = rows
        .next_row()
        .with_context(|| format!("{}: malformed CSV; nothing was imported", path.display()))?
    {
        f(row)?;
        n += 1;
        if n.is_multiple_of(1024) {
            bar.set_position(rows.bytes_read());
        }
    }
    Ok(())
}

fn progress_bar(wanted: bool, len: u64) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(dir: &Path) -> Kv {
        Kv::open(&crate::config::Config::for_data_dir(dir).store).unwrap()
    }

    #[test]
    fn replace_applies_nothing_when_a_row_is_bad_and_keeps_cas_unique() {
        let dir = tempfile::tempdir().unwrap();
        let s = kv(&dir.path().join("db"));
        s.set(crate::kv::StoreMode::Set, b"keep", 0, 0, b"v")
            .unwrap();
        let csv = dir.path().join("in.csv");
        std::fs::write(
            &csv,
            "key,flags,exptime,cas,encoding,value\na,1,0,5000000,utf8,x\nb,1,zz,1,utf8,y\n",
        )
        .unwrap();
        let err = import(&s, &csv, Mode::Replace, 1024, false).unwrap_err();
        assert!(format!("{err:#}").contains("line 3"), "{err:#}");
        assert!(s.peek(b"keep").unwrap().is_some() && s.peek(b"a").unwrap().is_none());

        std::fs::write(&csv, "key,flags,exptime,cas,encoding,value\na,1,0,5000000,utf8,x\nold,0,5,0,utf8,y\nz,0,0,0,utf8,\n").unwrap();
        let sum = import(&s, &csv, Mode::Replace, 1024, false).unwrap();
        assert_eq!(
            sum,
            Summary {
                imported: 2,
                expired: 1,
                removed: 1,
                fresh_cas: 1
            }
        );
        assert!(s.peek(b"keep").unwrap().is_none());
        assert_eq!(s.peek(b"a").unwrap().unwrap().cas(), 5_000_000);
        assert!(s.peek(b"z").unwrap().unwrap().cas() > 5_000_000);
        assert!(s.next_cas().unwrap() > 5_000_000);
        assert_eq!(s.curr_items(), 2);
    }
}
