//! `memcached-lite replay` against the real server: the shipped scenarios
//! pass (twice, they are re-runnable), and a wrong expectation fails the run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    (1..=3)
        .map(|i| dir.join(format!("client{i}.json")))
        .collect()
}

fn replay(server: &common::Server, out: &Path, extra: &[&str], files: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(["replay", "--server", &server.addr.to_string(), "--out"])
        .arg(out)
        .args(extra)
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn shipped_scenarios_pass_concurrently_and_log_every_reply() {
    let server = common::Server::start(&[]);
    let out = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let run = replay(&server, out.path(), &[], &scenarios());
        let table = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{table}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(table.matches("PASS").count(), 3, "{table}");
    }
    let log = std::fs::read_to_string(out.path().join("client2.out")).unwrap();
    assert!(
        log.contains("===== #6 add c2:lastName [ok]\nNOT_STORED\r\n"),
        "{log}"
    );
    assert!(
        log.contains("VALUE c2:lastName 0 7\r\nCchopra\r\nEND\r\n"),
        "{log}"
    );
    // The clients really wrote to the server.
    let mut c = server.connect();
    assert_eq!(
        c.until_end(b"get c3:class\r\n"),
        "VALUE c3:class 0 18\r\nDistributedSystems\r\nEND\r\n"
    );

    let only = tempfile::tempdir().unwrap();
    let run = replay(&server, only.path(), &["--clients", "2"], &scenarios());
    assert!(run.status.success());
    assert!(only.path().join("client2.out").exists() && !only.path().join("client3.out").exists());
}

#[test]
fn a_wrong_expectation_or_a_broken_script_fails_the_run() {
    let server = common::Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let wrong = tmp.path().join("wrong.json");
    std::fs::write(
        &wrong,
        r#"[{"type": "set", "key": "w", "value": "x", "expected": "STORED\r\n"},
            {"type": "add", "key": "w", "value": "y", "expected": "STORED\r\n"}]"#,
    )
    .unwrap();
    let broken = tmp.path().join("broken.json");
    std::fs::write(&broken, r#"[{"type": "frobnicate", "key": "w"}]"#).unwrap();
    let out = tmp.path().join("out");

    let run = replay(
        &server,
        &out,
        &[],
        &[scenarios()[0].clone(), wrong.clone(), broken],
    );
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(!run.status.success(), "{table}");
    assert!(
        table.contains("PASS") && table.contains("FAIL") && table.contains("unknown request type"),
        "{table}"
    );
    let log = std::fs::read_to_string(out.join("wrong.out")).unwrap();
    assert!(
        log.contains("[MISMATCH]\nNOT_STORED\r\n----- expected\nSTORED\r\n"),
        "{log}"
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("2 of 3 clients failed"));
}
