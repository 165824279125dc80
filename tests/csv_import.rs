//! `import` through the real binary: refuses a data dir a live server holds,
//! reports a malformed row by line and applies nothing, prints a summary.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(args)
        .env("MEMCACHED_LITE_LOG", "warn")
        .output()
        .unwrap()
}

fn export(dir: &Path) -> String {
    let out = bin(&["export", "--data-dir", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const GOOD: &str = "key,flags,exptime,cas,encoding,value\n\
    alpha,1,0,10,utf8,\"a,b\"\"c\"\"\r\nd\"\n\
    beta,2,0,11,base64,AP8=\n\
    gamma,0,1,12,utf8,expired long ago\n";

#[test]
fn import_refuses_a_data_dir_a_live_server_holds() {
    let server = common::Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("in.csv");
    std::fs::write(&csv, GOOD).unwrap();
    let out = bin(&[
        "import",
        csv.to_str().unwrap(),
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot import") && err.contains("held by a running server"),
        "{err}"
    );
    let mut c = server.connect();
    assert_eq!(c.until_end(b"get alpha\r\n"), "END\r\n");
}

#[test]
fn a_malformed_row_is_reported_by_line_and_nothing_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, csv) = (tmp.path().join("data"), tmp.path().join("in.csv"));
    let d = dir.to_str().unwrap();
    std::fs::write(&csv, GOOD).unwrap();
    let out = bin(&["import", csv.to_str().unwrap(), "--data-dir", d]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    // No progress bar off a terminal: just the summary line.
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.starts_with("imported 2 items (1 expired rows skipped"),
        "{summary}"
    );
    let before = export(&dir);
    assert_eq!(before, "key,flags,exptime,cas,encoding,value\nalpha,1,0,10,utf8,\"a,b\"\"c\"\"\r\nd\"\nbeta,2,0,11,base64,AP8=\n");

    // Row 2 is fine, the row on line 4 (after a two-line quoted value) is not.
    std::fs::write(
        &csv,
        "key,flags,exptime,cas,encoding,value\nnew,0,0,0,utf8,\"x\ny\"\nbad,0,soon,0,utf8,v\n",
    )
    .unwrap();
    for mode in ["replace", "merge"] {
        let out = bin(&[
            "import",
            csv.to_str().unwrap(),
            "--data-dir",
            d,
            "--mode",
            mode,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("line 4")
                && err.contains("exptime is not an unsigned integer")
                && err.contains("nothing was imported"),
            "{err}"
        );
        assert_eq!(export(&dir), before, "{mode} applied part of a bad file");
    }

    std::fs::write(
        &csv,
        "key,flags,exptime,cas,encoding,value\nnew,5,0,0,utf8,fresh\n",
    )
    .unwrap();
    let out = bin(&[
        "import",
        csv.to_str().unwrap(),
        "--data-dir",
        d,
        "--mode",
        "replace",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("2 existing items removed, 1 given a new cas"));
    let after = export(&dir);
    assert!(
        after.starts_with("key,flags,exptime,cas,encoding,value\nnew,5,0,")
            && after.lines().count() == 2,
        "{after}"
    );
    let cas: u64 = after
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(cas > 11, "fresh cas {cas} must be above the imported ones");
}
