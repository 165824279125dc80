//! A whole-store command (`flush_all` walks every item) must not stall the
//! other connections, even with a single runtime worker (the default on a
//! 2-core machine): it runs under `block_in_place`, which hands the
//! worker's other connections to another thread meanwhile.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn other_connections_are_served_while_flush_all_walks_the_store() {
    const KEYS: usize = 100_000;
    let server = common::Server::start(&["--threads", "1", "--no-csv-mirror"]);
    let mut filler = server.connect();
    for chunk in 0..KEYS / 1000 {
        let batch: String = (0..1000)
            .map(|i| format!("set k{} 0 0 1 noreply\r\nx\r\n", chunk * 1000 + i))
            .collect();
        filler.send(batch.as_bytes());
    }
    assert!(filler.line(b"version\r\n").starts_with("VERSION"));

    let flushing = AtomicBool::new(true);
    let (took, worst, pings) = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let mut c = server.connect();
            let (mut worst, mut pings) = (Duration::ZERO, 0u64);
            while flushing.load(Ordering::Relaxed) {
                let t = Instant::now();
                assert!(c.line(b"version\r\n").starts_with("VERSION"));
                worst = worst.max(t.elapsed());
                pings += 1;
            }
            (worst, pings)
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut c = server.connect();
        let t = Instant::now();
        assert_eq!(c.line(b"flush_all\r\n"), "OK\r\n");
        let took = t.elapsed();
        flushing.store(false, Ordering::Relaxed);
        let (worst, pings) = pinger.join().unwrap();
        (took, worst, pings)
    });
    assert_eq!(server.connect().line(b"get k7\r\n"), "END\r\n");
    // The flush must last long enough for the comparison to mean anything.
    assert!(
        took > Duration::from_millis(200),
        "flush_all of {KEYS} keys took only {took:?}: use more keys"
    );
    assert!(
        worst < took / 3,
        "a `version` waited {worst:?} during a {took:?} flush_all ({pings} answered)"
    );
}
