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

/// The register's state: 0 for empty, else the value's number (values
/// are interned: the search compares and hashes numbers, not strings).
type State = u64;

/// An operation with interned values.
#[derive(Clone, Copy)]
enum Compact {
    Get(State),
    GetUnknown,
    Set,
    Cas {
        expected: State,
        new: State,
    },
    CasExists(State),
    CasNotFound,
    CasUnknown {
        expected: State,
        new: State,
    },
    Delete {
        found: bool,
    },
    DeleteUnknown,
    /// An answer the register can never give (e.g. a set answering
    /// NOT_FOUND).
    Impossible,
}

/// The register model: the state after `op` from `state`, or None if the
/// register could not have answered as `op` says it did.
fn step(state: State, op: Compact, set_value: State) -> Option<State> {
    match op {
        Compact::Get(v) => (v == state).then_some(state),
        Compact::GetUnknown => Some(state),
        // A set always stores (an unknown one is linearized last if it
        // never took effect).
        Compact::Set => Some(set_value),
        Compact::Cas { expected, new } => (state == expected).then_some(new),
        Compact::CasExists(expected) => (state != 0 && state != expected).then_some(state),
        Compact::CasNotFound => (state == 0).then_some(0),
        Compact::CasUnknown { expected, new } => Some(if state == expected { new } else { state }),
        Compact::Delete { found } => ((state != 0) == found).then_some(0),
        Compact::DeleteUnknown => Some(0),
        Compact::Impossible => None,
    }
}

/// Interns `ops`' values: (compact ops, each op's set value, names).
fn intern(ops: &[Operation]) -> (Vec<Compact>, Vec<State>, Vec<String>) {
    let mut names: Vec<String> = vec!["(empty)".into()];
    let mut ids: std::collections::HashMap<String, State> = std::collections::HashMap::new();
    let mut id = |v: &str| -> State {
        if let Some(&i) = ids.get(v) {
            return i;
        }
        names.push(v.to_string());
        let i = (names.len() - 1) as State;
        ids.insert(v.to_string(), i);
        i
    };
    let mut compact = Vec::with_capacity(ops.len());
    let mut set_values = Vec::with_capacity(ops.len());
    for op in ops {
        use Output::*;
        let mut set_value = 0;
        let c = match (&op.input, &op.output) {
            (Input::Get, Value(None)) => Compact::Get(0),
            (Input::Get, Value(Some(v))) => Compact::Get(id(v)),
            (Input::Get, Unknown) => Compact::GetUnknown,
            (Input::Set(v), Stored | Unknown) => {
                set_value = id(v);
                Compact::Set
            }
            (Input::Cas { expected, new }, Stored) => Compact::Cas {
                expected: id(expected),
                new: id(new),
            },
            (Input::Cas { expected, .. }, Exists) => Compact::CasExists(id(expected)),
            (Input::Cas { .. }, NotFound) => Compact::CasNotFound,
            (Input::Cas { expected, new }, Unknown) => Compact::CasUnknown {
                expected: id(expected),
                new: id(new),
            },
            (Input::Delete, Deleted) => Compact::Delete { found: true },
            (Input::Delete, NotFound) => Compact::Delete { found: false },
            (Input::Delete, Unknown) => Compact::DeleteUnknown,
            _ => Compact::Impossible,
        };
        compact.push(c);
        set_values.push(set_value);
    }
    (compact, set_values, names)
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

    let (compact, set_values, names) = intern(ops);
    let mut state: State = 0;
    // The memo's key: the linearized set's bits, then the state.
    let words = ops.len().div_ceil(64);
    let mut key: Vec<u64> = vec![0; words + 1];
    let mut memo: HashSet<Vec<u64>> = HashSet::new();
    // (invocation event, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut best: (usize, Vec<usize>, State) = (0, Vec::new(), 0);
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
            if let Some(next) = step(state, compact[op], set_values[op]) {
                key[op / 64] |= 1 << (op % 64);
                key[words] = next;
                if !memo.contains(key.as_slice()) {
                    memo.insert(key.clone());
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    lift(&mut events, entry);
                    entry = events[0].next;
                    continue;
                }
                key[op / 64] &= !(1 << (op % 64));
            }
            entry = events[entry].next;
        } else {
            // The answer of an operation not linearized yet: dead end.
            if best.1.is_empty() || stack.len() > best.0 {
                // The operations that could come next: answered ones
                // first (unknown outcomes fit anywhere, late).
                let (mut pending, mut unknown) = (Vec::new(), Vec::new());
                let mut e = events[0].next;
                while e != NIL && pending.len() < 8 {
                    if events[e].answer.is_some() {
                        let op = events[e].op;
                        if ops[op].ret.is_some() {
                            pending.push(op);
                        } else if unknown.len() < 3 {
                            unknown.push(op);
                        }
                    }
                    e = events[e].next;
                }
                pending.extend(unknown);
                best = (stack.len(), pending, state);
            }
            let Some((e, before)) = stack.pop() else {
                return Search::None(report(ops, &best, &names));
            };
            let op = events[e].op;
            key[op / 64] &= !(1 << (op % 64));
            state = before;
            unlift(&mut events, e);
            entry = events[e].next;
        }
    }
    Search::Found
}

fn report(ops: &[Operation], best: &(usize, Vec<usize>, State), names: &[String]) -> String {
    let (depth, pending, state) = best;
    let state = &names[*state as usize];
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
        assert!(report.contains("holds \"b\""), "{report}");
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

    /// A random history of a real register: six clients, each operation
    /// taking effect at a distinct instant inside its [call, ret]
    /// interval; some writes lose their answer.
    fn random_history(rng: &mut fastrand::Rng, round: usize, n: usize) -> Vec<Operation> {
        let clients = 6;
        let mut reg: Option<String> = None;
        let mut seen: Vec<Option<String>> = vec![None; clients];
        // Clients' next free time; every client runs sequentially.
        let mut free = vec![0u64; clients];
        let mut points: Vec<(u64, usize)> = Vec::new();
        let mut plans = Vec::new();
        for i in 0..n {
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
        ops.into_iter().map(Option::unwrap).collect()
    }

    #[test]
    fn random_linearizable_histories_are_accepted_within_the_budget() {
        let mut rng = fastrand::Rng::with_seed(12);
        for round in 0..20 {
            let h = random_history(&mut rng, round, 400);
            let started = std::time::Instant::now();
            let v = check(&h, 5_000_000);
            assert!(v.is_linearizable(), "round {round}: {v:?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
    }

    /// The same histories with one read planted: after a set `w2` that
    /// began once a set `w1` was acknowledged, and after `w2` itself was
    /// acknowledged, a read returns `w1`'s value. No linearization exists
    /// (values are unique), however long the history.
    #[test]
    fn a_stale_read_planted_in_a_random_history_is_caught() {
        let mut rng = fastrand::Rng::with_seed(99);
        for round in 0..20 {
            let mut h = random_history(&mut rng, round, 400);
            let sets: Vec<&Operation> = h
                .iter()
                .filter(|o| matches!(o.input, Input::Set(_)) && o.output == Output::Stored)
                .collect();
            let pair = sets.iter().enumerate().find_map(|(i, w1)| {
                sets[i + 1..]
                    .iter()
                    .filter(|w2| w2.call > w1.ret.unwrap())
                    .nth(rng.usize(..3))
                    .map(|w2| (w1.input.clone(), w2.ret.unwrap()))
            });
            let (Input::Set(old), after) = pair.expect("two sets in a row") else {
                unreachable!()
            };
            let call = after + 1 + rng.u64(0..100);
            h.push(get(99, Some(&old), call, call + 1 + rng.u64(0..100)));
            match check(&h, 5_000_000) {
                Verdict::Violation { report, .. } => {
                    assert!(report.contains("client 99"), "{report}")
                }
                v => panic!("round {round}: planted stale read of {old} not caught: {v:?}"),
            }
        }
    }
}
