//! Drives real commands through in-process servers and checks what their
//! `GET /metrics` reports: the recorded command metrics, and the values each
//! server reads from its own state at scrape time.

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

/// An in-process server on free ports: (memcached port, HTTP port, thread).
fn start(dir: &std::path::Path) -> (u16, u16, std::thread::JoinHandle<anyhow::Result<()>>) {
    let (port, hport) = (free_port(), free_port());
    let mut config = Config::for_data_dir(dir);
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.http_listen = format!("127.0.0.1:{hport}").parse().unwrap();
    config.enable_shutdown = true;
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(memcached_lite::server::serve(config))
    });
    (port, hport, server)
}

fn scrape(hport: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match reqwest::blocking::get(format!("http://127.0.0.1:{hport}/metrics")) {
            Ok(resp) => return resp.text().unwrap(),
            Err(e) if Instant::now() > deadline => panic!("no /metrics: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn metrics_report_commands_hits_items_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (port, hport, server) = start(dir.path());

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

    let text = scrape(hport);
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
    let text = memcached_lite::metrics::render_recorded();
    has(&text, "memcached_lite_store_sync_duration_seconds_count 1");
}

/// Two servers in one process: each `/metrics` shows its own store and
/// connections (no process-wide "last server registered wins").
#[test]
fn two_servers_in_one_process_report_their_own_values() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a_port, a_http, a) = start(a_dir.path());
    let (b_port, b_http, b) = start(b_dir.path());
    let http = reqwest::blocking::Client::new();
    scrape(a_http);
    scrape(b_http);
    for key in ["x", "y", "z"] {
        let status = http
            .put(format!("http://127.0.0.1:{a_http}/v1/keys/{key}"))
            .body("v")
            .send()
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    }
    has(&scrape(a_http), "memcached_lite_items 3");
    has(&scrape(b_http), "memcached_lite_items 0");
    for (port, server) in [(a_port, a), (b_port, b)] {
        connect(port).write_all(b"shutdown\r\n").unwrap();
        server.join().unwrap().unwrap();
    }
}
