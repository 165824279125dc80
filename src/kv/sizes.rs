//! memcached's slab classes as a view of this store: there is no slab
//! allocator here, so `stats items`, `stats slabs`, `stats sizes`,
//! `stats cachedump` and `lru_crawler metadump` report each live item in
//! the class memcached 1.6.18 would have stored it in (its default
//! `-f 1.25 -n 48` class table, 1 MiB pages), computed from the item's
//! key, value and flags. The figures come from a walk of the store, not
//! from counters kept on the hot path; the walk is cached until the store
//! changes (or a second passes), so a tool asking for `stats items` and
//! then `stats slabs` pays for one walk.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{off_the_runtime, Item, Kv, Result};

/// memcached's `sizeof(item)` on a 64-bit build.
const ITEM_HEADER: u64 = 48;
/// memcached's default `-n` (minimum space for key, value and flags).
const CHUNK_SIZE: u64 = 48;
/// memcached's `-f`.
const GROWTH_FACTOR: f64 = 1.25;
/// memcached's slab page size (`slab_page_size`).
pub const PAGE_SIZE: u64 = 1024 * 1024;
/// memcached keeps at most 63 classes (`MAX_NUMBER_OF_SLAB_CLASSES - 1`).
pub const MAX_CLASSES: usize = 63;
/// `stats sizes` groups items in buckets this wide, as memcached does.
pub const SIZE_BUCKET: u64 = 32;

/// The size memcached 1.6.18 gives an item (`ITEM_ntotal`): its header,
/// the key and a NUL, the value and its `\r\n`, the CAS, and 4 bytes of
/// flags when they are not 0.
pub fn memcached_size(key_len: usize, value_len: usize, flags: u32) -> u64 {
    let flags_len = if flags == 0 { 0 } else { 4 };
    ITEM_HEADER + key_len as u64 + 1 + value_len as u64 + 2 + 8 + flags_len
}

/// memcached's class table for a given `-I` (item size max).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlabClasses {
    /// Chunk size of class `i + 1`.
    sizes: Vec<u64>,
}

impl SlabClasses {
    /// The table `slabs_init` builds: from 96 bytes, times 1.25, aligned to
    /// 8, until the next would pass half the largest chunk; the last class
    /// is the largest chunk itself (512 KiB for the default 1 MiB `-I`).
    pub fn new(max_item_size: usize) -> Self {
        let chunk_max = (max_item_size as u64).min(PAGE_SIZE) / 2;
        let mut sizes = Vec::new();
        let mut size = (ITEM_HEADER + CHUNK_SIZE) as f64;
        while sizes.len() < MAX_CLASSES - 1 {
            if (chunk_max as f64) / GROWTH_FACTOR < size {
                break;
            }
            let mut s = size as u64;
            if !s.is_multiple_of(8) {
                s += 8 - s % 8;
            }
            sizes.push(s);
            size = s as f64 * GROWTH_FACTOR;
        }
        sizes.push(chunk_max.max(ITEM_HEADER + CHUNK_SIZE));
        SlabClasses { sizes }
    }

    /// How many classes there are (class ids are `1..=len`).
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Chunk size of `class` (1-based).
    pub fn chunk_size(&self, class: usize) -> u64 {
        self.sizes[class - 1]
    }

    /// Chunks of `class` in one page.
    pub fn per_page(&self, class: usize) -> u64 {
        (PAGE_SIZE / self.chunk_size(class)).max(1)
    }

    /// The class an item of memcached size `size` lands in; items larger
    /// than the largest chunk are chunked by memcached and counted in the
    /// largest class, as here.
    pub fn class_of(&self, size: u64) -> usize {
        self.sizes
            .partition_point(|&s| s < size)
            .min(self.len() - 1)
            + 1
    }

    /// The class of a stored item.
    pub fn class_of_item(&self, key_len: usize, item: &Item) -> usize {
        self.class_of(memcached_size(key_len, item.value().len(), item.flags()))
    }
}

/// One class's share of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassUsage {
    /// Live items.
    pub items: u64,
    /// This store's bytes for them (key, header, value: what `bytes` counts).
    pub bytes: u64,
    /// Oldest last access among them (unix secs), 0 when empty.
    pub oldest_access: u64,
}

/// Every class's share of the store at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeReport {
    pub classes: SlabClasses,
    /// Indexed by class id - 1.
    pub usage: Vec<ClassUsage>,
    /// `stats sizes`: memcached size rounded up to [`SIZE_BUCKET`] -> items.
    pub sizes: BTreeMap<u64, u64>,
    /// When it was taken (unix secs).
    pub taken: u64,
}

/// The last walk, reused while the store is unchanged and it is fresh.
#[derive(Default)]
pub(super) struct SizeCache(Mutex<Option<(u64, Arc<SizeReport>)>>);

impl Kv {
    /// memcached's class table for this server's `--max-item-size`.
    pub fn slab_classes(&self) -> SlabClasses {
        SlabClasses::new(self.max_item_size)
    }

    /// Live items and bytes per slab class and per 32-byte size bucket.
    /// Walks the store (the memory index shard by shard when there is one,
    /// else sled's scan) off the async runtime's worker; the result is
    /// cached while the store is unchanged, for at most a second.
    pub fn size_report(&self) -> Result<Arc<SizeReport>> {
        let now = self.now();
        let generation = self.generation();
        if let Some((g, report)) = &*self.sizes.0.lock() {
            if *g == generation && report.taken == now {
                return Ok(report.clone());
            }
        }
        let report = Arc::new(off_the_runtime(|| self.walk_sizes(now))?);
        *self.sizes.0.lock() = Some((generation, report.clone()));
        Ok(report)
    }

    fn walk_sizes(&self, now: u64) -> Result<SizeReport> {
        let classes = self.slab_classes();
        let mut usage = vec![ClassUsage::default(); classes.len()];
        let mut sizes = BTreeMap::new();
        let mut count = |key: &[u8], item: &Item| {
            let size = memcached_size(key.len(), item.value().len(), item.flags());
            let u = &mut usage[classes.class_of(size) - 1];
            u.items += 1;
            u.bytes += Item::footprint(key.len(), item.raw().len());
            let access = item.atime().unwrap_or(now);
            if u.oldest_access == 0 || access < u.oldest_access {
                u.oldest_access = access;
            }
            *sizes
                .entry(size.div_ceil(SIZE_BUCKET) * SIZE_BUCKET)
                .or_insert(0) += 1;
        };
        match self.live_batches()? {
            Some(batches) => {
                for batch in batches {
                    for (key, item) in &batch {
                        count(key, item);
                    }
                }
            }
            None => {
                for entry in self.live_items() {
                    let (key, item) = entry?;
                    count(&key, &item);
                }
            }
        }
        Ok(SizeReport {
            classes,
            usage,
            sizes,
            taken: now,
        })
    }

    /// One page of live items in key order after `after`, at most `limit`,
    /// plus whether more may follow: the cursor `lru_crawler metadump` and
    /// `stats cachedump` stream with, so a dump holds one page in memory.
    /// Counts nothing, like [`Kv::peek`].
    pub fn dump_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(sled::IVec, Item)>, bool)> {
        off_the_runtime(|| {
            let now = self.now();
            self.apply_due_flush(now)?;
            let mut page = Vec::with_capacity(limit.min(1024));
            for entry in self.store.scan(b"", after) {
                let (key, item) = entry?;
                if item.is_expired(now) {
                    continue;
                }
                page.push((key, item));
                if page.len() == limit {
                    return Ok((page, true));
                }
            }
            Ok((page, false))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_memcached_defaults() {
        // memcached 1.6.18 -m 64: class 1 is 96 bytes, class 19 5680, the
        // last (39) 512 KiB (`memcached -vv` lists the same table).
        let c = SlabClasses::new(1024 * 1024);
        assert_eq!(c.chunk_size(1), 96);
        assert_eq!(c.chunk_size(2), 120);
        assert_eq!(c.chunk_size(19), 5680);
        assert_eq!(c.len(), 39);
        assert_eq!(c.chunk_size(39), 512 * 1024);
        assert_eq!(c.chunk_size(38), 394840);
        assert_eq!(c.per_page(1), 10922);
        assert_eq!(c.per_page(19), 184);
    }

    #[test]
    fn item_sizes_and_classes_match_memcached() {
        // What memcached 1.6.18 printed for these items in a metadump.
        assert_eq!(memcached_size(3, 3, 5), 69);
        assert_eq!(memcached_size(3, 10, 0), 72);
        assert_eq!(memcached_size(3, 5000, 0), 5062);
        let c = SlabClasses::new(1024 * 1024);
        assert_eq!(c.class_of(69), 1);
        assert_eq!(c.class_of(96), 1);
        assert_eq!(c.class_of(97), 2);
        assert_eq!(c.class_of(5062), 19);
        assert_eq!(c.class_of(2 * 1024 * 1024), 39);
    }
}
