//! Export -> import round trip through the real binary: 100,000 items with
//! binary values, commas, quotes, CR/LF, empty values, UTF-8 keys, flags and
//! expiries come back identical (value, flags, exptime and cas). Most items
//! are seeded by importing a CSV the test writes itself (a debug-build server
//! takes long for 100,000 sets); the last 3,000 are set by a client.

mod common;

use std::path::Path;
use std::process::Command;

use memcached_lite::config::Config;
use memcached_lite::csv::format::Row;
use memcached_lite::store::Store;

const N: usize = 100_000;

fn key(i: usize) -> Vec<u8> {
    match i % 5 {
        0 => format!("ключ:{i}:日本").into_bytes(),
        1 => format!("user/{i}?a=b&c=\"d\",e").into_bytes(),
        _ => format!("k{i}").into_bytes(),
    }
}

fn value(i: usize) -> Vec<u8> {
    match i % 6 {
        0 => format!("plain value {i}").into_bytes(),
        1 => (0..(i % 97) as u8)
            .map(|b| b.wrapping_mul(37) ^ (i as u8))
            .chain([0, 0xff, b'\r', b'\n'])
            .collect(),
        2 => format!("a,\"b\",,c \"\"{i}\"").into_bytes(),
        3 => format!("line1\r\nline2\n{i}\r").into_bytes(),
        4 => Vec::new(),
        _ => format!("héllo {i} ✓ «quoted»").into_bytes(),
    }
}

fn flags(i: usize) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761)
}

fn exptime(i: usize) -> u64 {
    if i.is_multiple_of(4) {
        0
    } else {
        3600 + i as u64
    }
}

/// Items below this are seeded through `import` of a CSV the test writes
/// itself (fast); the rest are written by a client over the memcached
/// protocol, so both kinds go through the round trip.
const SEEDED: usize = N - 3_000;

/// Writes items `0..SEEDED` as a CSV image, expiring relative to `now`.
fn seed_csv(path: &Path, now: u64) {
    use base64::Engine;
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["key", "flags", "exptime", "cas", "encoding", "value"])
        .unwrap();
    for i in 0..SEEDED {
        let v = value(i);
        let exp = if exptime(i) == 0 { 0 } else { now + exptime(i) };
        let (enc, v) = match String::from_utf8(v.clone()) {
            Ok(text) => ("utf8", text),
            Err(_) => (
                "base64",
                base64::engine::general_purpose::STANDARD.encode(&v),
            ),
        };
        let (flags, exp, cas) = (
            flags(i).to_string(),
            exp.to_string(),
            (1000 + i).to_string(),
        );
        w.write_record([
            &key(i)[..],
            flags.as_bytes(),
            exp.as_bytes(),
            cas.as_bytes(),
            enc.as_bytes(),
            v.as_bytes(),
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

/// Writes items `SEEDED..N` over the memcached protocol, pipelined in chunks.
fn load(server: &common::Server) {
    let mut c = server.connect();
    for chunk in (SEEDED..N).collect::<Vec<_>>().chunks(500) {
        let mut req = Vec::new();
        for &i in chunk {
            let v = value(i);
            req.extend_from_slice(b"set ");
            req.extend_from_slice(&key(i));
            req.extend_from_slice(
                format!(" {} {} {}\r\n", flags(i), exptime(i), v.len()).as_bytes(),
            );
            req.extend_from_slice(&v);
            req.extend_from_slice(b"\r\n");
        }
        c.send(&req);
        let replies = c.read_exact(chunk.len() * b"STORED\r\n".len());
        assert!(
            replies.chunks(8).all(|r| r == b"STORED\r\n"),
            "{}",
            String::from_utf8_lossy(&replies[..64])
        );
    }
}

fn items(dir: &Path) -> Vec<Row> {
    let store = Store::open(&Config::for_data_dir(dir).store).unwrap();
    store
        .scan(b"", None)
        .map(|r| {
            let (k, it) = r.unwrap();
            let (flags, exptime, cas) = (it.flags(), it.exptime(), it.cas());
            Row {
                key: k.to_vec(),
                flags,
                exptime,
                cas,
                value: it.value().to_vec(),
            }
        })
        .collect()
}

fn bin(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn export_then_import_into_an_empty_dir_keeps_every_item() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let csv = tmp.path().join("export.csv");
    let seeded_at = memcached_lite::rules::clock::system_now();
    let seed = tmp.path().join("seed.csv");
    seed_csv(&seed, seeded_at);
    bin(&[
        "import",
        seed.to_str().unwrap(),
        "--data-dir",
        a.to_str().unwrap(),
    ]);
    let mut server = common::Server::start_in(&a, &["--mirror-interval", "60s"]);
    let loaded_at = memcached_lite::rules::clock::system_now();
    load(&server);
    let loaded_by = memcached_lite::rules::clock::system_now();
    assert!(server.stop().success());

    let out = bin(&[
        "export",
        "--data-dir",
        a.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("exported {N} items")));
    // The mirror written at shutdown is exactly the store (its rows in no
    // particular order, the export's in key order).
    let rows = |path: &Path| {
        let mut reader =
            memcached_lite::csv::format::Rows::new(std::fs::File::open(path).unwrap(), 1 << 20);
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row().unwrap() {
            rows.push(row);
        }
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    };
    let mirror = rows(&a.join("store.csv"));
    assert_eq!(mirror.len(), N);
    assert!(mirror == rows(&csv), "mirror and export differ");

    let out = bin(&[
        "import",
        csv.to_str().unwrap(),
        "--data-dir",
        b.to_str().unwrap(),
    ]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains(&format!("imported {N} items")),
        "{summary}"
    );

    let (src, dst) = (items(&a), items(&b));
    assert_eq!(src.len(), N);
    assert!(src == dst, "imported store differs from the exported one");
    let mut expected: Vec<_> = (0..N).map(|i| (key(i), i)).collect();
    expected.sort();
    for ((k, i), got) in expected.into_iter().zip(&src) {
        assert_eq!(
            (k, flags(i), value(i)),
            (got.key.clone(), got.flags, got.value.clone())
        );
        let want_exp = exptime(i);
        let when = match (want_exp, i < SEEDED) {
            (0, _) => 0..=0,
            (_, true) => seeded_at + want_exp..=seeded_at + want_exp,
            (_, false) => loaded_at + want_exp..=loaded_by + want_exp,
        };
        if i < SEEDED {
            assert_eq!(got.cas, 1000 + i as u64, "imported cas kept");
        }
        assert!(
            when.contains(&got.exptime),
            "item {i}: exptime {} not in {when:?}",
            got.exptime
        );
    }

    // A client sees the same items, and new writes get CAS values above the imported ones.
    let max_cas = src.iter().map(|it| it.cas).max().unwrap();
    let server = common::Server::start_in(&b, &["--no-csv-mirror"]);
    let mut c = server.connect();
    let reply = c.until_end("gets ключ:0:日本\r\n".as_bytes());
    let cas = src.iter().find(|it| it.key == key(0)).unwrap().cas;
    assert_eq!(
        reply,
        format!(
            "VALUE ключ:0:日本 0 {} {cas}\r\nplain value 0\r\nEND\r\n",
            "plain value 0".len()
        )
    );
    assert_eq!(c.line(b"set fresh 0 0 1\r\nx\r\n"), "STORED\r\n");
    let reply = c.until_end(b"gets fresh\r\n");
    let fresh: u64 = reply.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(
        fresh > max_cas,
        "new cas {fresh} must exceed imported max {max_cas}"
    );
}
