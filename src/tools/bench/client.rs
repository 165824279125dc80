//! The load loop: every connection keeps `pipeline` requests in flight,
//! writes each batch of new requests with one syscall, and times every
//! reply against its request's send time (replies come back in order).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::protocol::{self, Protocol, Reply};
use super::report::{self, Counts, Report};
use super::workload::{KeyPattern, Op, Ratio, Workload};
use super::{BenchArgs, Target};

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Stop issuing after this long; in-flight requests still complete.
    After(Duration),
    /// Issue exactly this many requests across all connections.
    Requests(u64),
}

/// AppState, read-mostly description of the run.
struct Plan {
    protocol: Protocol,
    ratio: Ratio,
    pattern: KeyPattern,
    key_space: u64,
    prefix: String,
    value: Vec<u8>,
    pipeline: usize,
    deadline: Option<Instant>,
    /// Requests still to issue (`Stop::Requests`).
    tickets: AtomicU64,
    sequence: Arc<AtomicU64>,
}

impl Plan {
    fn may_issue(&self, now: Instant) -> bool {
        match self.deadline {
            Some(deadline) => now < deadline,
            None => self
                .tickets
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1))
                .is_ok(),
        }
    }
}

/// Connects every connection, runs the load, merges the results.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let stop = args.stop()?;
    let mut streams = Vec::with_capacity(args.connections as usize);
    for _ in 0..args.connections {
        streams.push(connect(&args.server).await?);
    }
    let start = Instant::now();
    let plan = Arc::new(Plan {
        protocol: args.protocol,
        ratio: args.ratio,
        pattern: args.key_pattern,
        key_space: args.key_space,
        prefix: args.key_prefix.clone(),
        value: (0..args.data_size).map(|i| b'a' + (i % 26) as u8).collect(),
        pipeline: args.pipeline as usize,
        deadline: match stop {
            Stop::After(d) => Some(start + d),
            Stop::Requests(_) => None,
        },
        tickets: AtomicU64::new(match stop {
            Stop::Requests(n) => n,
            Stop::After(_) => 0,
        }),
        sequence: Arc::new(AtomicU64::new(0)),
    });
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| match s {
            Stream::Tcp(s) => tokio::spawn(drive(s, plan.clone(), i as u64)),
            Stream::Unix(s) => tokio::spawn(drive(s, plan.clone(), i as u64)),
        })
        .collect();
    let mut counts = Counts::default();
    let mut hist = report::new_histogram();
    for task in tasks {
        let (c, h) = task.await??;
        counts.merge(&c);
        hist.add(&h)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let ops = counts.gets + counts.sets;
    let mut report = Report {
        server: args.server.to_string(),
        protocol: format!("{:?}", args.protocol).to_lowercase(),
        connections: args.connections as usize,
        pipeline: args.pipeline as usize,
        ratio: args.ratio.to_string(),
        data_size: args.data_size as usize,
        key_space: args.key_space,
        key_pattern: format!("{:?}", args.key_pattern).to_lowercase(),
        client_threads: 1,
        seconds,
        ops,
        ops_per_sec: ops as f64 / seconds,
        gets: counts.gets,
        sets: counts.sets,
        hits: counts.hits,
        misses: counts.misses,
        errors: counts.errors,
        p50_ms: 0.0,
        p99_ms: 0.0,
        p999_ms: 0.0,
        max_ms: 0.0,
        mean_ms: 0.0,
    };
    report::latencies(&mut report, &hist);
    Ok(report)
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One connection to `target`, within 10 s.
async fn connect(target: &Target) -> anyhow::Result<Stream> {
    let connect = async {
        Ok::<_, std::io::Error>(match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Target::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| anyhow!("connecting to {target} timed out"))?
        .with_context(|| format!("connecting to {target}"))
}

/// One connection's loop.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    plan: Arc<Plan>,
    seed: u64,
) -> anyhow::Result<(Counts, Histogram<u64>)> {
    let mut work = Workload::new(
        plan.ratio,
        plan.pattern,
        plan.key_space,
        &plan.prefix,
        seed,
        plan.sequence.clone(),
    );
    let mut hist = report::new_histogram();
    let mut counts = Counts::default();
    let mut inflight: VecDeque<(Instant, Op)> = VecDeque::with_capacity(plan.pipeline);
    let mut out = Vec::with_capacity(plan.pipeline * (plan.value.len() + 64));
    let mut input: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let now = Instant::now();
        while inflight.len() < plan.pipeline && plan.may_issue(now) {
            let op = work.next_op();
            let key = work.next_key();
            match op {
                Op::Get => protocol::encode_get(plan.protocol, key, &mut out),
                Op::Set => protocol::encode_set(plan.protocol, key, &plan.value, &mut out),
            }
            inflight.push_back((now, op));
        }
        if inflight.is_empty() {
            return Ok((counts, hist));
        }
        if !out.is_empty() {
            stream.write_all(&out).await.context("sending requests")?;
            out.clear();
        }
        // Read until at least one reply is complete.
        loop {
            if input.capacity() - input.len() < 16 * 1024 {
                input.reserve(64 * 1024);
            }
            if stream
                .read_buf(&mut input)
                .await
                .context("reading replies")?
                == 0
            {
                bail!("server closed the connection");
            }
            let now = Instant::now();
            let mut at = 0;
            while let Some((reply, len)) = protocol::decode(plan.protocol, &input[at..])? {
                at += len;
                let (sent, op) = inflight
                    .pop_front()
                    .ok_or_else(|| anyhow!("server sent a reply nobody asked for"))?;
                hist.saturating_record(now.duration_since(sent).as_nanos().max(1) as u64);
                match op {
                    Op::Get => counts.gets += 1,
                    Op::Set => counts.sets += 1,
                }
                match reply {
                    Reply::Hit => counts.hits += 1,
                    Reply::Miss => counts.misses += 1,
                    Reply::Stored => {}
                    Reply::Error => counts.errors += 1,
                }
            }
            input.drain(..at);
            if at > 0 {
                break;
            }
        }
    }
}
