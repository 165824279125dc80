//! Writing the CSV image: `export` (key order, streamed from sled) and the
//! mirror's `image` (from the memory index, no order). Both read through
//! [`Kv`], so expiry and a due delayed `flush_all` apply as they do to
//! every other reader.

use std::io::Write;

use super::format::{write_row, HEADER};
use crate::kv::{Kv, KvError};

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing CSV: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the header and every live item to `out`, streaming from sled's
/// ordered scan (never the whole store in memory). Expired items, and
/// items a due delayed `flush_all` has invalidated, are skipped. Returns the number of rows written.
///
/// Each row is one consistent item; sled offers no multi-key snapshot, so
/// on a busy store the image mixes moments (as memcached's own dumps do).
pub fn export<W: Write>(kv: &Kv, out: W) -> Result<u64, ExportError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let mut rows = 0;
    for entry in kv.live_items() {
        let (key, item) = entry?;
        write_row(&mut w, &key, &item)?;
        rows += 1;
    }
    w.flush()?;
    Ok(rows)
}

/// The mirror's image: like [`export`] but from the memory index when the
/// store has one, in no particular order. At 10^7 items that is several
/// times cheaper than the ordered scan, which would page the whole tree
/// through sled's cache (and push out what serving needs) every time.
pub fn image<W: Write>(kv: &Kv, out: W) -> Result<u64, ExportError> {
    let Some(batches) = kv.live_batches()? else {
        return export(kv, out);
    };
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let mut rows = 0;
    for batch in batches {
        for (key, item) in batch {
            write_row(&mut w, &key, &item)?;
            rows += 1;
        }
    }
    w.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv::format::tests::read_all;
    use crate::kv::{SetOptions, StoreMode};

    fn kv() -> (tempfile::TempDir, Kv) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        (dir, Kv::open(&cfg).unwrap())
    }

    #[test]
    fn any_bytes_round_trip_and_expired_items_are_skipped() {
        let (_d, kv) = kv();
        let items: [(&[u8], &[u8]); 5] = [
            (b"plain", b"hello"),
            (b"quoted", b"a,\"b\"\r\nc"),
            (b"empty", b""),
            (b"bin", &[0, 159, 146, 150, 255]),
            (b"\xff\xfekey", b"v"),
        ];
        for (i, (k, v)) in items.iter().enumerate() {
            let opts = SetOptions {
                new_cas: Some(10 + i as u64),
                ..SetOptions::default()
            };
            kv.set_with(StoreMode::Set, k, i as u32, 0, v, &opts)
                .unwrap();
        }
        kv.set(StoreMode::Set, b"old", 0, -1, b"x").unwrap();
        let mut out = vec![];
        assert_eq!(export(&kv, &mut out).unwrap(), 5);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("key,flags,exptime,cas,encoding,value\n"));
        assert!(text.contains("bin,3,0,13,base64,AJ+Slv8=\n"));
        let rows = read_all(&out).unwrap();
        for (i, (k, v)) in items.iter().enumerate() {
            let row = rows.iter().find(|r| r.key == *k).unwrap();
            assert_eq!(
                (row.value.as_slice(), row.flags, row.cas),
                (*v, i as u32, 10 + i as u64)
            );
        }
    }

    #[test]
    fn a_due_delayed_flush_all_empties_export_and_image() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let clock = crate::rules::Clock::manual(1_800_000_000);
        let kv = Kv::open_with_clock(&cfg, clock.clone()).unwrap();
        kv.load_index().unwrap();
        for key in [&b"a"[..], b"b"] {
            kv.set(StoreMode::Set, key, 0, 0, b"v").unwrap();
        }
        // memcached's deadline is one second before the delay.
        kv.flush_all(5).unwrap();
        clock.advance(3);
        assert_eq!(export(&kv, std::io::sink()).unwrap(), 2, "not due yet");
        assert_eq!(image(&kv, std::io::sink()).unwrap(), 2, "not due yet");
        clock.advance(1);
        assert_eq!(
            image(&kv, std::io::sink()).unwrap(),
            0,
            "image after the flush"
        );
        assert_eq!(
            export(&kv, std::io::sink()).unwrap(),
            0,
            "export after the flush"
        );
    }
}
