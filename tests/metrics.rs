//! Drives real commands through the in-process server and checks what
//! `metrics::render()` (the body of `GET /metrics`) reports.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use memcached_lite::config::Config;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("server did not start: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Sends `req` and reads reply lines until one equals `last`.
fn exchange(conn: &mut BufReader<TcpStream>, req: &str, last: &str) -> String {
    conn.get_mut().write_all(req.as_bytes()).unwrap();
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        assert!(
            conn.read_line(&mut line).unwrap() > 0,
            "closed; got {reply:?}"
        );
        reply.push_str(&line);
        if line == format!("{last}\r\n") {
            return reply;
        }
    }
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing {line:?} in:\n{text}"
    );
}

#[test]
fn render_reports_commands_hits_items_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = Config::for_data_dir(dir.path());
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.enable_shutdown = true;
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(memcached_lite::server::serve(config))
    });

    let mut c = BufReader::new(connect(port));
    exchange(&mut c, "set a 0 0 1\r\nx\r\n", "STORED");
    exchange(&mut c, "set b 0 0 2\r\nyy\r\n", "STORED");
    exchange(&mut c, "get a nope b\r\n", "END");
    exchange(&mut c, "gets nope\r\n", "END");
    exchange(
        &mut c,
        "incr a 1\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value",
    );
    exchange(&mut c, "bogus\r\n", "ERROR");

    let text = memcached_lite::metrics::render();
    let mc = r#"protocol="memcache""#;
    has(
        &text,
        &format!(r#"memcached_lite_commands_total{{{mc},command="set"}} 2"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_commands_total{{{mc},command="get"}} 1"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_commands_total{{{mc},command="gets"}} 1"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_commands_total{{{mc},command="incr"}} 1"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_commands_total{{{mc},command="delete"}} 0"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_get_hits_total{{{mc}}} 2"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_get_misses_total{{{mc}}} 2"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_protocol_errors_total{{{mc}}} 1"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_command_duration_seconds_count{{{mc},command="set"}} 2"#),
    );
    has(
        &text,
        &format!(
            r#"memcached_lite_command_duration_seconds_bucket{{{mc},command="set",le="+Inf"}} 2"#
        ),
    );
    has(&text, "memcached_lite_items 2");
    has(
        &text,
        &format!(r#"memcached_lite_curr_connections{{{mc}}} 1"#),
    );
    has(
        &text,
        &format!(r#"memcached_lite_connections_total{{{mc}}} 1"#),
    );
    has(&text, "memcached_lite_evictions_total 0");
    has(
        &text,
        "# TYPE memcached_lite_command_duration_seconds histogram",
    );
    has(
        &text,
        "# HELP memcached_lite_commands_total Commands executed, by protocol and command.",
    );
    let bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("memcached_lite_bytes "))
        .expect("bytes gauge")
        .parse()
        .unwrap();
    assert!(
        bytes >= 3.0,
        "bytes gauge {bytes} below the 3 value bytes stored"
    );

    // Closing is seen by the gauge; the final flush is timed.
    c.get_mut().write_all(b"shutdown\r\n").unwrap();
    server.join().unwrap().unwrap();
    let text = memcached_lite::metrics::render();
    has(&text, "memcached_lite_store_sync_duration_seconds_count 1");
}
