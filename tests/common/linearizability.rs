//! A linearizability checker for histories of memcached registers, in the
//! style of Knossos and Porcupine: Wing & Gong's search with Lowe's
//! memoization over (set of linearized operations, model state), one key at
//! a time (a history is linearizable iff each key's sub-history is, since
//! the keys are independent registers).
//!
//! The model is a register per key holding a value or nothing:
//! - `get` returns the value or a miss;
//! - `set` stores;
//! - `cas` is memcached's `gets` + `cas`: the client recorded the value its
//!   `gets` saw and the `cas` succeeds (`STORED`) iff the register still
//!   holds that value; `EXISTS` iff it holds another, `NOT_FOUND` iff
//!   empty. Every write of a test writes a value of its own, so a value
//!   names exactly one write, hence one CAS unique, and comparing values
//!   is comparing CAS uniques;
//! - `delete` empties it (`DELETED` iff it held a value).
//!
//! Each operation carries the times it was invoked and answered. An
//! operation whose outcome the client does not know (a timeout, a lost
//! connection, `SERVER_ERROR no quorum`: such a write may still be
//! committed later) has no return time: as in Knossos it may take effect
//! at any point after its invocation, or never. It is placed at infinity
//! and allowed any outcome, so linearizing it after every other operation
//! is the same as it never happening. Reads whose outcome is unknown carry
//! no information and should simply not be recorded.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Get,
    Set(String),
    /// Compare (with the value a preceding `gets` saw) and set.
    Cas {
        expected: String,
        new: String,
    },
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// What a get returned: the value, or None for a miss.
    Value(Option<String>),
    Stored,
    Exists,
    NotFound,
    Deleted,
    /// No answer: may have taken effect, or not.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Operation {
    /// Which client issued it (for reports only).
    pub client: usize,
    pub key: String,
    pub input: Input,
    pub output: Output,
    /// Invocation and answer times, in any monotonic unit (e.g. ns since
    /// the test began); `ret` is None when the outcome is unknown.
    pub call: u64,
    pub ret: Option<u64>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: u64| t as f64 / 1e6;
        let ret = self
            .ret
            .map_or_else(|| "never".to_string(), |r| format!("{:.3}ms", ms(r)));
        write!(
            f,
            "client {} {:?} {:?} -> {:?} [{:.3}ms, {ret}]",
            self.client,
            self.key,
            self.input,
            self.output,
            ms(self.call)
        )
    }
}

/// The register's state: its value, if any.
type State = Option<String>;

/// The state after `input` answered `output` from `state`, or None if the
/// register could not have answered that.
fn step(state: &State, input: &Input, output: &Output) -> Option<State> {
    use Output::*;
    match (input, output) {
        (Input::Get, Value(v)) => (v == state).then(|| state.clone()),
        (Input::Get, Unknown) => Some(state.clone()),
        (Input::Set(v), Stored | Unknown) => Some(Some(v.clone())),
        (Input::Cas { expected, new }, Stored) => {
            (state.as_ref() == Some(expected)).then(|| Some(new.clone()))
        }
        (Input::Cas { expected, .. }, Exists) => {
            (state.is_some() && state.as_ref() != Some(expected)).then(|| state.clone())
        }
        (Input::Cas { .. }, NotFound) => state.is_none().then_some(None),
        (Input::Cas { expected, new }, Unknown) => Some(if state.as_ref() == Some(expected) {
            Some(new.clone())
        } else {
            state.clone()
        }),
        (Input::Delete, Deleted) => state.is_some().then_some(None),
        (Input::Delete, NotFound) => state.is_none().then_some(None),
        (Input::Delete, Unknown) => Some(None),
        _ => None,
    }
}

#[derive(Debug)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable { keys: usize, ops: usize },
    /// This key's history has none.
    Violation { key: String, report: String },
    /// The search for this key gave up after its step budget.
    GaveUp { key: String },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }
}

/// Checks every key's sub-history; the first key without a linearization
/// (in key order) is reported. `budget` bounds the search steps per key.
pub fn check(history: &[Operation], budget: u64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, ops) in &by_key {
        match check_register(ops, budget) {
            Search::Found => {}
            Search::None(report) => {
                return Verdict::Violation {
                    key: key.to_string(),
                    report,
                }
            }
            Search::GaveUp => {
                return Verdict::GaveUp {
                    key: key.to_string(),
                }
            }
        }
    }
    Verdict::Linearizable {
        keys: by_key.len(),
        ops: history.len(),
    }
}

enum Search {
    Found,
    None(String),
    GaveUp,
}

/// A set of operations (by index), hashable for the memo.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

const NIL: usize = usize::MAX;

/// One invocation or answer in the time-ordered, doubly linked list of
/// events the search takes operations out of and puts back into.
struct Event {
    op: usize,
    /// For an invocation: the index of its answer event.
    answer: Option<usize>,
    prev: usize,
    next: usize,
}

/// Wing & Gong with memoization (Lowe; Porcupine's `checkSingle`): walk
/// the pending invocations in time order; linearize the first one the
/// model allows whose (linearized set, state) is new, and restart from the
/// head; reaching an answer whose invocation is not linearized means the
/// current prefix cannot be extended: undo the last choice and try the
/// next invocation after it.
fn check_register(ops: &[Operation], budget: u64) -> Search {
    // Events sorted by time; at equal times invocations come first (the
    // operations overlap). An unknown outcome answers at infinity.
    let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        times.push((op.call, false, i));
        times.push((op.ret.unwrap_or(u64::MAX), true, i));
    }
    times.sort();
    // events[0] is the head sentinel.
    let mut events: Vec<Event> = vec![Event {
        op: NIL,
        answer: None,
        prev: NIL,
        next: NIL,
    }];
    let mut invocation_of = vec![NIL; ops.len()];
    for (k, &(_, is_answer, op)) in times.iter().enumerate() {
        let idx = k + 1;
        events.push(Event {
            op,
            answer: None,
            prev: idx - 1,
            next: if k + 1 < times.len() { idx + 1 } else { NIL },
        });
        if is_answer {
            events[invocation_of[op]].answer = Some(idx);
        } else {
            invocation_of[op] = idx;
        }
    }
    events[0].next = if times.is_empty() { NIL } else { 1 };

    fn lift(ev: &mut [Event], e: usize) {
        let (p, n) = (ev[e].prev, ev[e].next);
        ev[p].next = n;
        if n != NIL {
            ev[n].prev = p;
        }
        let a = ev[e].answer.expect("an invocation");
        let (p, n) = (ev[a].prev, ev[a].next);
        ev[p].next = n;
        if n != NIL {
            ev[n].prev = p;
        }
    }
    fn unlift(ev: &mut [Event], e: usize) {
        let a = ev[e].answer.expect("an invocation");
        let (p, n) = (ev[a].prev, ev[a].next);
        ev[p].next = a;
        if n != NIL {
            ev[n].prev = a;
        }
        let (p, n) = (ev[e].prev, ev[e].next);
        ev[p].next = e;
        if n != NIL {
            ev[n].prev = e;
        }
    }

    let mut state: State = None;
    let mut linearized = Bits::new(ops.len());
    let mut memo: HashSet<(Bits, State)> = HashSet::new();
    // (invocation event, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut best: (usize, Vec<usize>, State) = (0, Vec::new(), None);
    let mut steps = 0u64;
    let mut entry = events[0].next;
    while events[0].next != NIL {
        steps += 1;
        if steps > budget {
            return Search::GaveUp;
        }
        let op = events[entry].op;
        if events[entry].answer.is_some() {
            // An invocation: try to linearize it here.
            if let Some(next) = step(&state, &ops[op].input, &ops[op].output) {
                let mut with = linearized.clone();
                with.set(op);
                if memo.insert((with.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    linearized = with;
                    lift(&mut events, entry);
                    entry = events[0].next;
                    continue;
                }
            }
            entry = events[entry].next;
        } else {
            // The answer of an operation not linearized yet: dead end.
            if best.1.is_empty() || stack.len() > best.0 {
                let mut pending = Vec::new();
                let mut e = events[0].next;
                while e != NIL && pending.len() < 8 {
                    if events[e].answer.is_some() {
                        pending.push(events[e].op);
                    }
                    e = events[e].next;
                }
                best = (stack.len(), pending, state.clone());
            }
            let Some((e, before)) = stack.pop() else {
                return Search::None(report(ops, &best));
            };
            linearized.clear(events[e].op);
            state = before;
            unlift(&mut events, e);
            entry = events[e].next;
        }
    }
    Search::Found
}

fn report(ops: &[Operation], best: &(usize, Vec<usize>, State)) -> String {
    let (depth, pending, state) = best;
    let mut out = format!(
        "no linearization of {} operations; the longest linearizable prefix has {depth}, \
         after which the register holds {state:?} and none of the next operations fits:\n",
        ops.len()
    );
    for &op in pending {
        out.push_str(&format!("  {}\n", ops[op]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, input: Input, output: Output, call: u64, ret: Option<u64>) -> Operation {
        Operation {
            client,
            key: "k".into(),
            input,
            output,
            call,
            ret,
        }
    }
    fn set(c: usize, v: &str, call: u64, ret: u64) -> Operation {
        op(c, Input::Set(v.into()), Output::Stored, call, Some(ret))
    }
    fn get(c: usize, v: Option<&str>, call: u64, ret: u64) -> Operation {
        op(
            c,
            Input::Get,
            Output::Value(v.map(String::from)),
            call,
            Some(ret),
        )
    }
    fn cas(c: usize, expected: &str, new: &str, out: Output, call: u64, ret: u64) -> Operation {
        let input = Input::Cas {
            expected: expected.into(),
            new: new.into(),
        };
        op(c, input, out, call, Some(ret))
    }
    fn ok(h: &[Operation]) -> bool {
        match check(h, 1_000_000) {
            Verdict::Linearizable { .. } => true,
            Verdict::Violation { .. } => false,
            Verdict::GaveUp { key } => panic!("gave up on {key}"),
        }
    }

    #[test]
    fn a_sequential_register_history_is_linearizable() {
        assert!(ok(&[
            get(0, None, 0, 1),
            set(0, "a", 2, 3),
            get(1, Some("a"), 4, 5),
            cas(1, "a", "b", Output::Stored, 6, 7),
            cas(0, "a", "c", Output::Exists, 8, 9),
            get(0, Some("b"), 10, 11),
        ]));
        assert!(ok(&[]));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_rejected() {
        // `a` then `b` acknowledged; a read that began after `b`'s answer
        // still sees `a`: what a lagging replica serving reads alone does.
        let h = [
            set(0, "a", 0, 10),
            set(0, "b", 20, 30),
            get(1, Some("a"), 40, 50),
        ];
        let Verdict::Violation { key, report } = check(&h, 1_000_000) else {
            panic!("stale read accepted");
        };
        assert_eq!(key, "k");
        assert!(report.contains("Some(\"a\")"), "{report}");
        // The same read overlapping the write of `b` is fine.
        assert!(ok(&[
            set(0, "a", 0, 10),
            set(0, "b", 20, 45),
            get(1, Some("a"), 40, 50),
        ]));
    }

    #[test]
    fn reads_concurrent_with_a_write_may_not_go_back_in_time() {
        // While `b` is being written, one read sees `b`, a later one `a`.
        let h = [
            set(0, "a", 0, 10),
            set(0, "b", 20, 100),
            get(1, Some("b"), 30, 40),
            get(2, Some("a"), 50, 60),
        ];
        assert!(!ok(&h));
        // In the other order both are fine.
        let h = [
            set(0, "a", 0, 10),
            set(0, "b", 20, 100),
            get(1, Some("a"), 30, 40),
            get(2, Some("b"), 50, 60),
        ];
        assert!(ok(&h));
    }

    #[test]
    fn a_write_with_an_unknown_outcome_may_apply_late_or_never() {
        let unknown = |v: &str, call| op(3, Input::Set(v.into()), Output::Unknown, call, None);
        // Never seen: as if it never happened.
        assert!(ok(&[
            set(0, "a", 0, 10),
            unknown("x", 20),
            get(1, Some("a"), 30, 40),
        ]));
        // Seen long after its client gave up on it: it applied late.
        assert!(ok(&[
            set(0, "a", 0, 10),
            unknown("x", 20),
            get(1, Some("a"), 30, 40),
            get(1, Some("x"), 500, 510),
        ]));
        // But once seen, it stays applied.
        assert!(!ok(&[
            set(0, "a", 0, 10),
            unknown("x", 20),
            get(1, Some("x"), 30, 40),
            get(1, Some("a"), 50, 60),
        ]));
        // And not before it was sent.
        assert!(!ok(&[
            set(0, "a", 0, 10),
            get(1, Some("x"), 12, 15),
            unknown("x", 20),
        ]));
    }

    #[test]
    fn cas_succeeds_exactly_when_the_register_holds_the_value_seen() {
        // Two clients saw `a`; both cas succeeding is a lost update.
        let h = [
            set(0, "a", 0, 10),
            cas(1, "a", "b", Output::Stored, 20, 30),
            cas(2, "a", "c", Output::Stored, 40, 50),
        ];
        assert!(!ok(&h));
        // Concurrent: one of them must fail.
        let h = [
            set(0, "a", 0, 10),
            cas(1, "a", "b", Output::Stored, 20, 50),
            cas(2, "a", "c", Output::Exists, 30, 40),
            get(0, Some("b"), 60, 70),
        ];
        assert!(ok(&h));
        // EXISTS while the register holds the value seen is wrong.
        assert!(!ok(&[
            set(0, "a", 0, 10),
            cas(1, "a", "b", Output::Exists, 20, 30),
        ]));
        // NOT_FOUND only when empty.
        assert!(ok(&[cas(1, "a", "b", Output::NotFound, 0, 1)]));
        assert!(!ok(&[
            set(0, "a", 0, 10),
            cas(1, "a", "b", Output::NotFound, 20, 30)
        ]));
    }

    #[test]
    fn deletes_empty_the_register() {
        let del = |out, call, ret| op(0, Input::Delete, out, call, Some(ret));
        assert!(ok(&[
            set(0, "a", 0, 10),
            del(Output::Deleted, 20, 30),
            get(1, None, 40, 50),
            del(Output::NotFound, 60, 70),
        ]));
        assert!(!ok(&[
            set(0, "a", 0, 10),
            del(Output::Deleted, 20, 30),
            get(1, Some("a"), 40, 50),
        ]));
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut h = vec![
            set(0, "a", 0, 10),
            set(0, "b", 20, 30),
            get(1, Some("b"), 40, 50),
        ];
        let mut other = vec![
            set(0, "a", 0, 10),
            set(0, "b", 20, 30),
            get(1, Some("a"), 40, 50),
        ];
        for o in &mut other {
            o.key = "z".into();
        }
        h.extend(other);
        match check(&h, 1_000_000) {
            Verdict::Violation { key, .. } => assert_eq!(key, "z"),
            v => panic!("{v:?}"),
        }
    }

    /// Random histories of a real register: each operation takes effect at
    /// a distinct instant inside its [call, ret] interval, some writes lose
    /// their answer. The checker must find a linearization, quickly.
    #[test]
    fn random_linearizable_histories_are_accepted_within_the_budget() {
        let mut rng = fastrand::Rng::with_seed(12);
        for round in 0..20 {
            let clients = 6;
            let mut h = Vec::new();
            let mut reg: Option<String> = None;
            let mut seen: Vec<Option<String>> = vec![None; clients];
            // Clients' next free time; every client runs sequentially.
            let mut free = vec![0u64; clients];
            let mut points: Vec<(u64, usize)> = Vec::new();
            let mut plans = Vec::new();
            for i in 0..400 {
                let c = rng.usize(..clients);
                let call = free[c] + rng.u64(0..50);
                let point = call + 1 + rng.u64(0..100);
                let ret = point + 1 + rng.u64(0..100);
                free[c] = ret + 1;
                points.push((point * 1000 + i as u64, i));
                plans.push((c, call, ret, rng.u8(..4)));
            }
            points.sort();
            let mut ops: Vec<Option<Operation>> = vec![None; plans.len()];
            for (_, i) in points {
                let (c, call, ret, kind) = plans[i];
                let v = format!("v{round}.{i}");
                let (input, output) = match kind {
                    0 => {
                        reg = Some(v.clone());
                        (Input::Set(v), Output::Stored)
                    }
                    1 if seen[c].is_some() => {
                        let expected = seen[c].clone().unwrap();
                        let out = if reg.as_ref() == Some(&expected) {
                            reg = Some(v.clone());
                            Output::Stored
                        } else {
                            Output::Exists
                        };
                        (Input::Cas { expected, new: v }, out)
                    }
                    _ => {
                        seen[c] = reg.clone();
                        (Input::Get, Output::Value(reg.clone()))
                    }
                };
                let lost = !matches!(input, Input::Get) && rng.u8(..20) == 0;
                ops[i] = Some(Operation {
                    client: c,
                    key: "k".into(),
                    input,
                    output: if lost { Output::Unknown } else { output },
                    call,
                    ret: if lost { None } else { Some(ret) },
                });
            }
            let h2: Vec<Operation> = ops.into_iter().map(Option::unwrap).collect();
            h.extend(h2);
            let started = std::time::Instant::now();
            let v = check(&h, 5_000_000);
            assert!(v.is_linearizable(), "round {round}: {v:?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
    }
}
