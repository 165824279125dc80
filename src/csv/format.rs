//! The CSV image of the store, shared by the mirror, `export`, `import` and
//! `GET /v1/export.csv`.
//!
//! ```text
//! key,flags,exptime,cas,encoding,value
//! ```
//!
//! One row per live item, RFC 4180 quoting (the `csv` crate): in key order
//! for `export` and `GET /v1/export.csv`, in no particular order for the
//! mirror, which is written from the store's memory index (see
//! [`super::export::image`]).
//! `exptime` is absolute unix seconds (0 = never), so an image read later
//! expires items at the same moment the store would have. `encoding` says
//! how the text fields are written so any bytes round-trip:
//! `utf8` (key and value as text), `base64` (value in standard base64,
//! because it is not valid UTF-8) or `base64key` (key and value both in
//! base64, for the rare key that is not valid UTF-8).

use std::borrow::Cow;
use std::io::{Read, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::kv::Item;
use crate::rules::valid_key;

/// The header row, also checked by the reader.
pub const HEADER: [&str; 6] = ["key", "flags", "exptime", "cas", "encoding", "value"];

/// One item as a CSV row (the encoding column says how the fields are written).
pub(super) fn write_row<W: Write>(
    w: &mut csv::Writer<W>,
    key: &[u8],
    item: &Item,
) -> csv::Result<()> {
    let mut flags = itoa::Buffer::new();
    let mut exp = itoa::Buffer::new();
    let mut cas = itoa::Buffer::new();
    let nums = [
        flags.format(item.flags()).as_bytes(),
        exp.format(item.exptime()).as_bytes(),
        cas.format(item.cas()).as_bytes(),
    ];
    let value = item.value();
    let b64 = |bytes: &[u8]| Cow::Owned(B64.encode(bytes).into_bytes());
    let (encoding, key, value): (&[u8], Cow<[u8]>, Cow<[u8]>) = match (
        std::str::from_utf8(key).is_ok(),
        std::str::from_utf8(value).is_ok(),
    ) {
        (true, true) => (b"utf8", Cow::Borrowed(key), Cow::Borrowed(value)),
        (true, false) => (b"base64", Cow::Borrowed(key), b64(value)),
        (false, _) => (b"base64key", b64(key), b64(value)),
    };
    w.write_record([&key[..], nums[0], nums[1], nums[2], encoding, &value[..]])
}

/// One item read back from an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<u8>,
    pub flags: u32,
    pub exptime: u64,
    pub cas: u64,
    pub value: Vec<u8>,
}

/// A row (or the header) that cannot be read, with its 1-based line number.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// Streams rows out of a CSV image, checking the header and each field.
pub struct Rows<R: Read> {
    reader: csv::Reader<R>,
    record: csv::ByteRecord,
    max_value: usize,
    header_checked: bool,
}

impl<R: Read> Rows<R> {
    /// Values longer than `max_value` bytes are rejected like the server would.
    pub fn new(input: R, max_value: usize) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        Rows {
            reader,
            record: csv::ByteRecord::new(),
            max_value,
            header_checked: false,
        }
    }

    /// Bytes consumed so far (for a progress bar).
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next row, `Ok(None)` at the end.
    pub fn next_row(&mut self) -> Result<Option<Row>, RowError> {
        let got = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| {
                let line = e
                    .position()
                    .map_or(self.reader.position().line(), |p| p.line());
                RowError {
                    line,
                    reason: format!("unreadable CSV: {e}"),
                }
            })?;
        if !got {
            if !self.header_checked {
                return Err(RowError {
                    line: 1,
                    reason: "empty file: missing header row".into(),
                });
            }
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let fail = |reason: String| RowError { line, reason };
        if !self.header_checked {
            self.header_checked = true;
            if self.record.iter().ne(HEADER.iter().map(|h| h.as_bytes())) {
                return Err(fail(format!("header must be `{}`", HEADER.join(","))));
            }
            return self.next_row();
        }
        parse_row(&self.record, self.max_value)
            .map(Some)
            .map_err(fail)
    }
}

fn parse_row(rec: &csv::ByteRecord, max_value: usize) -> Result<Row, String> {
    if rec.len() != HEADER.len() {
        return Err(format!(
            "expected {} fields, found {}",
            HEADER.len(),
            rec.len()
        ));
    }
    let num = |i: usize| -> Result<u64, String> {
        std::str::from_utf8(&rec[i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                format!(
                    "{} is not an unsigned integer: {:?}",
                    HEADER[i],
                    String::from_utf8_lossy(&rec[i])
                )
            })
    };
    let flags = u32::try_from(num(1)?).map_err(|_| "flags does not fit in 32 bits".to_string())?;
    let (exptime, cas) = (num(2)?, num(3)?);
    let decode = |field: &[u8], what: &str| {
        B64.decode(field)
            .map_err(|e| format!("{what} is not valid base64: {e}"))
    };
    let (key, value) = match &rec[4] {
        b"utf8" => (rec[0].to_vec(), rec[5].to_vec()),
        b"base64" => (rec[0].to_vec(), decode(&rec[5], "value")?),
        b"base64key" => (decode(&rec[0], "key")?, decode(&rec[5], "value")?),
        other => {
            return Err(format!(
                "encoding must be utf8, base64 or base64key, not {:?}",
                String::from_utf8_lossy(other)
            ))
        }
    };
    if !valid_key(&key) {
        return Err(format!(
            "invalid key {:?} (1..=250 bytes, no spaces or control characters)",
            String::from_utf8_lossy(&key)
        ));
    }
    if value.len() > max_value {
        return Err(format!(
            "value of {} bytes exceeds the item size limit {max_value}",
            value.len()
        ));
    }
    Ok(Row {
        key,
        flags,
        exptime,
        cas,
        value,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn read_all(csv: &[u8]) -> Result<Vec<Row>, RowError> {
        let mut rows = Rows::new(csv, 1 << 20);
        let mut out = vec![];
        while let Some(r) = rows.next_row()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn bad_rows_name_their_line() {
        let head = "key,flags,exptime,cas,encoding,value\n";
        let cases = [
            ("k,1,0,1,utf8\n", 2, "expected 6 fields"),
            ("k,x,0,1,utf8,v\n", 2, "flags is not"),
            (
                "ok,0,0,1,utf8,\"multi\nline\"\nk,1,0,1,hex,v\n",
                4,
                "encoding must be",
            ),
            ("k,1,0,1,base64,!!\n", 2, "not valid base64"),
            ("a b,1,0,1,utf8,v\n", 2, "invalid key"),
            ("k,4294967296,0,1,utf8,v\n", 2, "32 bits"),
        ];
        for (body, line, msg) in cases {
            let err = read_all(format!("{head}{body}").as_bytes()).unwrap_err();
            assert_eq!(err.line, line, "{body:?}: {err}");
            assert!(err.reason.contains(msg), "{body:?}: {err}");
        }
        assert!(read_all(b"").unwrap_err().reason.contains("missing header"));
        assert!(read_all(b"k,v\n")
            .unwrap_err()
            .reason
            .contains("header must be"));
        assert!(read_all(head.as_bytes()).unwrap().is_empty());
    }
}
