//! The operator commands memcached answers beside `stats`: `slabs
//! reassign|automove` and `lru_crawler ...`, parsed as pure functions of the
//! line's tokens (memcached 1.6.18's token counts and replies).

use crate::memcache::frame::{ERROR, ERR_FORMAT};
use crate::rules::parse_u64;

pub const BADCLASS: &str = "BADCLASS invalid class id";

/// Which slab classes an `lru_crawler` command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classes {
    /// `all`: every class, in class order.
    All,
    /// `hash`: every item, in hash-table order (here: key order).
    Hash,
    /// A comma-separated list of class ids (bit `id` set for each).
    Some(u64),
}

impl Classes {
    pub fn contains(self, class: usize) -> bool {
        match self {
            Classes::All | Classes::Hash => true,
            Classes::Some(mask) => class < 64 && mask & (1 << class) != 0,
        }
    }
}

/// One operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `slabs reassign <src> <dst>`.
    SlabsReassign {
        src: i64,
        dst: i64,
    },
    /// `slabs automove <0|1|2>` (`ratio` changes nothing: `level` None).
    SlabsAutomove {
        level: Option<u64>,
        noreply: bool,
    },
    CrawlerCrawl(Classes),
    CrawlerMetadump(Classes),
    CrawlerSleep(u64),
    CrawlerToCrawl(u64),
    CrawlerEnable,
    CrawlerDisable,
}

/// Parses a `slabs` line (`toks[0] == "slabs"`); `Err` is the reply
/// (`Err((reply, noreply))`).
pub fn slabs(toks: &[&[u8]]) -> Result<Op, (&'static str, bool)> {
    let noreply = toks.last() == Some(&&b"noreply"[..]);
    match toks {
        [_, b"reassign", src, dst] => {
            let (Some(src), Some(dst)) = (parse_i32(src), parse_i32(dst)) else {
                return Err((ERR_FORMAT, false));
            };
            Ok(Op::SlabsReassign { src, dst })
        }
        [_, b"automove", b"ratio", rest @ ..] => {
            let ratio = rest.first().and_then(|r| std::str::from_utf8(r).ok());
            if toks.len() < 4 || ratio.and_then(|r| r.parse::<f64>().ok()).is_none() {
                return Err((ERROR, noreply));
            }
            Ok(Op::SlabsAutomove {
                level: None,
                noreply,
            })
        }
        [_, b"automove", level, ..] => match parse_u64(level).filter(|&l| l <= u32::MAX as u64) {
            None => Err((ERR_FORMAT, noreply)),
            Some(l @ 0..=2) => Ok(Op::SlabsAutomove {
                level: Some(l),
                noreply,
            }),
            Some(_) => Err((ERROR, noreply)),
        },
        _ => Err((ERROR, false)),
    }
}

/// Parses an `lru_crawler` line (`toks[0] == "lru_crawler"`); `Err` is the
/// reply.
pub fn lru_crawler(toks: &[&[u8]]) -> Result<Op, &'static str> {
    let number = |t: &[u8]| {
        parse_u64(t)
            .filter(|&n| n <= u32::MAX as u64)
            .ok_or(ERR_FORMAT)
    };
    match toks {
        [_, b"crawl", classes] => Ok(Op::CrawlerCrawl(parse_classes(classes).ok_or(BADCLASS)?)),
        [_, b"metadump", classes] => {
            Ok(Op::CrawlerMetadump(parse_classes(classes).ok_or(BADCLASS)?))
        }
        [_, b"tocrawl", n] => Ok(Op::CrawlerToCrawl(number(n)?)),
        [_, b"sleep", n] => match number(n)? {
            n if n > 1_000_000 => Err("CLIENT_ERROR sleep must be one second or less"),
            n => Ok(Op::CrawlerSleep(n)),
        },
        [_, b"enable"] => Ok(Op::CrawlerEnable),
        [_, b"disable"] => Ok(Op::CrawlerDisable),
        _ => Err(ERROR),
    }
}

/// `all`, `hash` or class ids `1..=63` separated by commas.
pub fn parse_classes(s: &[u8]) -> Option<Classes> {
    match s {
        b"all" => Some(Classes::All),
        b"hash" => Some(Classes::Hash),
        list => {
            let mut mask = 0u64;
            for id in list.split(|&b| b == b',').filter(|p| !p.is_empty()) {
                let id = parse_u64(id).filter(|&n| (1..64).contains(&n))?;
                mask |= 1 << id;
            }
            (mask != 0).then_some(Classes::Some(mask))
        }
    }
}

/// memcached's `safe_strtol` for a 32-bit int.
fn parse_i32(t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?;
    s.parse::<i32>().ok().map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(line: &str) -> Vec<&[u8]> {
        line.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn slabs_replies_follow_memcached() {
        assert_eq!(
            slabs(&toks("slabs reassign 1 2")),
            Ok(Op::SlabsReassign { src: 1, dst: 2 })
        );
        assert_eq!(slabs(&toks("slabs reassign x y")), Err((ERR_FORMAT, false)));
        assert_eq!(slabs(&toks("slabs reassign 1 2 3")), Err((ERROR, false)));
        assert_eq!(
            slabs(&toks("slabs automove 1")),
            Ok(Op::SlabsAutomove {
                level: Some(1),
                noreply: false
            })
        );
        assert_eq!(slabs(&toks("slabs automove 3")), Err((ERROR, false)));
        assert_eq!(slabs(&toks("slabs automove x")), Err((ERR_FORMAT, false)));
        assert_eq!(slabs(&toks("slabs automove")), Err((ERROR, false)));
        assert_eq!(slabs(&toks("slabs")), Err((ERROR, false)));
    }

    #[test]
    fn crawler_replies_follow_memcached() {
        assert_eq!(
            lru_crawler(&toks("lru_crawler metadump all")),
            Ok(Op::CrawlerMetadump(Classes::All))
        );
        assert_eq!(
            lru_crawler(&toks("lru_crawler metadump 1,19")),
            Ok(Op::CrawlerMetadump(Classes::Some((1 << 1) | (1 << 19))))
        );
        assert_eq!(
            lru_crawler(&toks("lru_crawler metadump foo")),
            Err(BADCLASS)
        );
        assert_eq!(lru_crawler(&toks("lru_crawler metadump 64")), Err(BADCLASS));
        assert_eq!(lru_crawler(&toks("lru_crawler metadump 0")), Err(BADCLASS));
        assert_eq!(lru_crawler(&toks("lru_crawler metadump")), Err(ERROR));
        assert_eq!(lru_crawler(&toks("lru_crawler sleep x")), Err(ERR_FORMAT));
        assert_eq!(
            lru_crawler(&toks("lru_crawler sleep 2000000")),
            Err("CLIENT_ERROR sleep must be one second or less")
        );
        assert_eq!(lru_crawler(&toks("lru_crawler foo")), Err(ERROR));
        assert_eq!(lru_crawler(&toks("lru_crawler")), Err(ERROR));
    }
}
