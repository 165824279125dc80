//! The result of one run: counts, throughput and latency percentiles
//! computed from every recorded sample, printed for people or as one JSON
//! line for scripts (`bench/run.py`).

use hdrhistogram::Histogram;

/// Latencies are recorded in nanoseconds, 3 significant digits, up to 60 s.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds are valid")
}

/// Counts kept by each connection, merged at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub gets: u64,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

impl Counts {
    pub fn merge(&mut self, other: &Counts) {
        self.gets += other.gets;
        self.sets += other.sets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors += other.errors;
    }
}

/// Everything a run reports (serialized as one JSON object).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub server: String,
    pub protocol: String,
    pub connections: usize,
    pub pipeline: usize,
    pub ratio: String,
    pub data_size: usize,
    pub key_space: u64,
    pub key_pattern: String,
    /// The client always runs on one thread so it leaves the other core to the server.
    pub client_threads: usize,
    pub seconds: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub gets: u64,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Fills the latency fields of `report` from `hist` (nanoseconds).
pub fn latencies(report: &mut Report, hist: &Histogram<u64>) {
    let ms = |ns: u64| ns as f64 / 1e6;
    report.p50_ms = ms(hist.value_at_quantile(0.50));
    report.p99_ms = ms(hist.value_at_quantile(0.99));
    report.p999_ms = ms(hist.value_at_quantile(0.999));
    report.max_ms = ms(hist.max());
    report.mean_ms = hist.mean() / 1e6;
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "target {} ({}), {} connections, pipeline {}, set:get {}, {} B values, {} keys ({})",
            self.server,
            self.protocol,
            self.connections,
            self.pipeline,
            self.ratio,
            self.data_size,
            self.key_space,
            self.key_pattern
        )?;
        writeln!(
            f,
            "client: {} thread (tokio current_thread); client and server share the machine's cores",
            self.client_threads
        )?;
        writeln!(
            f,
            "{} ops in {:.2} s = {:.0} ops/s  (gets {}: hits {}, misses {}; sets {}; errors {})",
            self.ops,
            self.seconds,
            self.ops_per_sec,
            self.gets,
            self.hits,
            self.misses,
            self.sets,
            self.errors
        )?;
        write!(
            f,
            "latency ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        )
    }
}
