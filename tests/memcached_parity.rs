//! Small memcached parity points, each checked side by side against a real
//! memcached 1.6: `auth_cmds`/`auth_errors` on the `--auth-file` (`-Y`)
//! login path, `idle_timeout` in `stats settings`, and `cache_memlimit`
//! below 8 MiB.

mod common;
mod reference;

use std::net::SocketAddr;

use common::{Client, Server};
use reference::{exchange, Memcached};

/// One `STAT <name> <value>` of `stats [args]` (after authenticating with
/// `login`, when given).
fn stat(addr: SocketAddr, login: Option<&[u8]>, args: &str, name: &str) -> String {
    let mut c = Client::connect(addr);
    if let Some(login) = login {
        assert_eq!(c.line(login), "STORED\r\n");
    }
    let report = c.until_end(format!("stats {args}\r\n").trim_end_matches(' ').as_bytes());
    let prefix = format!("STAT {name} ");
    report
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
        .to_owned()
}

#[test]
fn auth_stats_count_like_memcached() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth");
    std::fs::write(&file, "alice:s3cret\n").unwrap();
    let file = file.to_str().unwrap();
    let ours = Server::start(&["--auth-file", file]);
    let theirs = Memcached::start(&["-Y", file]);
    let login: &[u8] = b"set a 0 0 12\r\nalice s3cret\r\n";
    // Commands before login, a malformed token and a wrong password: only
    // the two checked credentials count (and the wrong one as an error).
    let session: &[u8] = b"get k\r\nset a 0 0 5\r\nalice\r\nset a 0 0 11\r\nalice wrong\r\n";
    for addr in [ours.addr, theirs.addr] {
        exchange(addr, session);
        exchange(addr, session);
    }
    let ours_counts = ["auth_cmds", "auth_errors"].map(|n| stat(ours.addr, Some(login), "", n));
    let theirs_counts = ["auth_cmds", "auth_errors"].map(|n| stat(theirs.addr, Some(login), "", n));
    assert_eq!(theirs_counts, ["3", "2"], "memcached itself");
    assert_eq!(ours_counts, theirs_counts);
}

#[test]
fn stats_settings_show_idle_timeout() {
    let ours = Server::start(&["--idle-timeout", "45"]);
    let theirs = Memcached::start(&["-o", "idle_timeout=45"]);
    assert_eq!(stat(theirs.addr, None, "settings", "idle_timeout"), "45");
    assert_eq!(stat(ours.addr, None, "settings", "idle_timeout"), "45");
    let default = Server::start(&[]);
    assert_eq!(stat(default.addr, None, "settings", "idle_timeout"), "0");
}

#[test]
fn cache_memlimit_below_8m_is_refused_like_memcached() {
    let ours = Server::start(&[]);
    let theirs = Memcached::start(&[]);
    let script: &[u8] = b"cache_memlimit 7\r\ncache_memlimit 0\r\ncache_memlimit 1 noreply\r\n\
        cache_memlimit 8\r\ncache_memlimit 64\r\n";
    let want: &[u8] = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n\
        MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\nOK\r\nOK\r\n";
    assert_eq!(
        String::from_utf8_lossy(&exchange(theirs.addr, script)),
        String::from_utf8_lossy(want),
        "memcached itself"
    );
    // A refused limit leaves the old one in place.
    let mut c = ours.connect();
    let before = stat(ours.addr, None, "", "limit_maxbytes");
    assert_eq!(
        c.line(b"cache_memlimit 3\r\n"),
        "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
    );
    assert_eq!(stat(ours.addr, None, "", "limit_maxbytes"), before);
    assert_eq!(
        String::from_utf8_lossy(&exchange(ours.addr, script)),
        String::from_utf8_lossy(want)
    );
    assert_eq!(stat(ours.addr, None, "", "limit_maxbytes"), "67108864");
}
