//! Architecture test: the modules under `src/` form layers, and a module may
//! only name the modules its row of [`LAYERS`] lists (plus itself).
//!
//! Bottom to top: `config` and `rules` name nothing; `store` persists; `kv` is
//! the only door to the store; `state`, `report` and `metrics` sit on `kv`;
//! the front ends (`memcache`, `http`) sit on those; `server` wires the
//! process and is named only from `src/main.rs`; `tools` are plain clients.
//! A module missing from the table is itself a failure.
//!
//! To add an edge on purpose: edit its row in `LAYERS` (and the comment
//! saying why), and say why in the commit message. Std only: this file
//! compiles alone with `rustc --edition 2021 --test tests/architecture.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// (module, modules it may name): the one place where edges are allowed.
/// A module may always name itself.
#[rustfmt::skip]
const LAYERS: &[(&str, &[&str])] = &[
    // flags and env: the bottom layer
    ("config",   &[]),
    // memcached's input rules (key, numbers, exptime, clock): pure functions
    ("rules",    &[]),
    // sled persistence, index, write-behind, group commit
    ("store",    &["rules", "config"]),
    // Raft plumbing (log on disk, messages, forming a group), generic over
    // what is replicated; uses the store's fdatasync helper for its log
    ("replica",  &["store", "config"]),
    // memcached semantics + lock manager; the only door to the store; in a
    // group it proposes writes through replica and applies committed ones
    ("kv",       &["replica", "store", "rules", "config"]),
    // secrets and constant-time checks
    ("auth",     &["config"]),
    // bind (backlog), TLS, connection limits
    ("net",      &["config"]),
    // AppState shared by the front ends
    ("state",    &["kv", "config"]),
    // `stats` values, rusage, version
    ("report",   &["state", "kv", "rules", "config"]),
    // Prometheus handles and render(&AppState)
    ("metrics",  &["state", "kv", "rules", "config"]),
    // CSV format, export, import, mirror (counts its work in metrics)
    ("csv",      &["kv", "rules", "config", "metrics"]),
    // memcached front end: text, binary and meta protocols, SASL
    ("memcache", &["kv", "rules", "config", "state", "report", "metrics", "net", "auth"]),
    // HTTP/JSON front end; also serves the CSV export
    ("http",     &["kv", "rules", "config", "state", "report", "metrics", "net", "auth", "csv"]),
    // process wiring: builds the state and starts every front end
    ("server",   &["config", "rules", "store", "replica", "kv", "auth", "net", "state", "report", "metrics",
                   "csv", "memcache", "http"]),
    // bench, replay, healthcheck: clients, nothing of the server
    ("tools",    &[]),
];

/// Most lines of non-test code (before the first `#[cfg(test)]`) in one file.
const MAX_NON_TEST_LINES: usize = 600;

/// Named only from `src/main.rs`.
const MAIN_ONLY: &str = "server";

#[derive(Debug)]
struct Violation {
    /// `src/http/items.rs:12: http -> memcache`, or `src/x.rs: module x`.
    edge: String,
    /// The line to print: the edge and why it is refused.
    message: String,
}

fn allowed(module: &str) -> Option<&'static [&'static str]> {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, deps)| *deps)
}

/// Every `.rs` file under `src_root`, relative to it, sorted as shown
/// (`kv.rs` before `kv/meta.rs`).
fn sources(src_root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let dir = fs::read_dir(root.join(rel));
        let dir = dir.unwrap_or_else(|e| panic!("reading {}: {e}", root.join(rel).display()));
        for entry in dir {
            let rel = rel.join(entry.expect("directory entry").file_name());
            if root.join(&rel).is_dir() {
                walk(root, &rel, out);
            } else if rel.extension().is_some_and(|x| x == "rs") {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(src_root, Path::new(""), &mut out);
    out.sort_by_key(|rel| shown(rel));
    out
}

/// `http/items.rs` as `src/http/items.rs`, with `/` on every platform.
fn shown(rel: &Path) -> String {
    let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
    format!("src/{}", parts.join("/"))
}

/// `rel` (relative to src/) as `["http", "routes", "items"]`; `mod.rs` is its
/// directory; `lib.rs` and `main.rs` are the crate root `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let rel = rel.with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
    if parts == ["lib"] || parts == ["main"] || parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The code's identifiers, `::` and other punctuation characters, each with
/// its line. Comments, strings and char literals are skipped; `'a` stays code.
fn tokens(src: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let start = i;
        if (c[i], at(i + 1)) == ('/', '/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if (c[i], at(i + 1)) == ('/', '*') {
            let mut depth = 0; // block comments nest
            while i < c.len() {
                match (c[i], at(i + 1)) {
                    ('/', '*') => (depth, i) = (depth + 1, i + 2),
                    ('*', '/') => (depth, i) = (depth - 1, i + 2),
                    _ => i += 1,
                }
                if depth == 0 {
                    break;
                }
            }
        } else if c[i] == '"' || (c[i] == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'')) {
            i = skip_quoted(&c, i);
        } else if is_ident(c[i]) {
            while is_ident(at(i)) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let hashes = c[i..].iter().take_while(|&&h| h == '#').count();
            if (word == "r" || word == "br") && at(i + hashes) == '"' {
                // Raw string: ends at `"` followed by as many `#`.
                i += hashes + 1;
                while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                    i += 1;
                }
                i += 1 + hashes;
            } else if word == "b" && (at(i) == '"' || at(i) == '\'') {
                i = skip_quoted(&c, i);
            } else {
                out.push((word, line));
            }
        } else {
            let len = if (c[i], at(i + 1)) == (':', ':') {
                2
            } else {
                1
            };
            if !c[i].is_whitespace() {
                out.push((c[i..i + len].iter().collect(), line));
            }
            i += len;
        }
        line += c[start..i.min(c.len())]
            .iter()
            .filter(|&&ch| ch == '\n')
            .count();
    }
    out
}

/// Skips a `"..."` or `'.'` literal starting at `i` (honouring `\` escapes).
fn skip_quoted(c: &[char], mut i: usize) -> usize {
    let quote = c[i];
    i += 1;
    while i < c.len() && c[i] != quote {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The first names of the path that starts at token `j`: `x` in `x::y`, each
/// top-level name of a group `{a::{b, c}, d}`, or `*` for a glob.
fn names_at(toks: &[(String, usize)], j: usize) -> Vec<(String, usize)> {
    match toks.get(j) {
        Some((t, _)) if t == "{" => {
            let (mut depth, mut names, mut expect_name) = (0, Vec::new(), true);
            for (t, line) in &toks[j..] {
                match t.as_str() {
                    "{" => depth += 1,
                    "}" if depth == 1 => break,
                    "}" => depth -= 1,
                    "," if depth == 1 => expect_name = true,
                    _ if depth == 1 && expect_name => {
                        names.push((t.clone(), *line));
                        expect_name = false;
                    }
                    _ => {}
                }
            }
            names
        }
        Some(tok) => vec![tok.clone()],
        None => Vec::new(),
    }
}

/// (line, top-level module) for every `crate::`, `memcached_lite::` and
/// `super::` path in one file.
fn named_modules(rel: &Path, src: &str) -> Vec<(usize, String)> {
    let toks = tokens(src);
    let file_path = module_path(rel);
    let (mut found, mut depth, mut inline): (Vec<_>, usize, Vec<(String, usize)>) =
        (Vec::new(), 0, Vec::new());
    let is = |k: usize, s: &str| toks.get(k).is_some_and(|(t, _)| t == s);
    for i in 0..toks.len() {
        let t = toks[i].0.as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if is(i + 2, "{") => inline.push((toks[i + 1].0.clone(), depth)),
            _ => {}
        }
        if !is(i + 1, "::") || is(i.wrapping_sub(1), "::") {
            continue;
        }
        let (base, next) = match t {
            // `memcached_lite::` is the library by name (main.rs); counted like `crate::`.
            "crate" | "memcached_lite" => (Vec::new(), i + 2),
            "super" => {
                let mut here: Vec<String> = file_path.clone();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                let mut j = i;
                while is(j, "super") && is(j + 1, "::") {
                    if here.pop().is_none() {
                        break;
                    }
                    j += 2;
                }
                (here, j)
            }
            _ => continue,
        };
        if let Some(top) = base.first() {
            found.push((toks[i].1, top.clone()));
            continue;
        }
        for (name, line) in names_at(&toks, next) {
            if name.chars().all(is_ident) && name != "self" && name != "super" {
                found.push((line, name));
            }
        }
    }
    found
}

/// Every forbidden edge (and every module missing from the table) under `src_root`.
fn violations(src_root: &Path) -> Vec<Violation> {
    let (mut out, mut unlisted) = (Vec::new(), BTreeSet::new());
    for rel in sources(src_root) {
        let shown = shown(&rel);
        let text = fs::read_to_string(src_root.join(&rel)).expect("readable source");
        let path = module_path(&rel);
        let from = match path.first() {
            Some(m) => m.clone(),
            None => rel.to_string_lossy().into_owned(), // lib.rs or main.rs
        };
        if !path.is_empty() && allowed(&from).is_none() {
            if unlisted.insert(from.clone()) {
                let edge = format!("{shown}: module {from}");
                let message = format!("{edge} is not in the layer table: add a row on purpose");
                out.push(Violation { edge, message });
            }
            continue;
        }
        let mut seen = BTreeSet::new();
        for (line, to) in named_modules(&rel, &text) {
            let deps = allowed(&from).unwrap_or(&[]);
            let why = match from.as_str() {
                // main.rs may name anything; its own `crate::` is the binary crate.
                "main.rs" => continue,
                _ if to == from => continue,
                _ if to == MAIN_ONLY => format!("{MAIN_ONLY} may be named only from src/main.rs"),
                "lib.rs" => "lib.rs only declares modules".to_string(),
                _ if deps.contains(&to.as_str()) => continue,
                _ if deps.is_empty() => format!("{from} may use nothing"),
                _ => format!("{from} may use: {}", deps.join(", ")),
            };
            if seen.insert((line, to.clone())) {
                let edge = format!("{shown}:{line}: {from} -> {to}");
                let message = format!("{edge} (not allowed; {why})");
                out.push(Violation { edge, message });
            }
        }
    }
    out
}

/// Files under `src_root` with more than [`MAX_NON_TEST_LINES`] non-test lines.
fn oversized(src_root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for rel in sources(src_root) {
        let text = fs::read_to_string(src_root.join(&rel)).expect("readable source");
        let lines = text
            .lines()
            .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
            .count();
        if lines > MAX_NON_TEST_LINES {
            out.push(format!(
                "{}: {lines} lines before #[cfg(test)] (limit {MAX_NON_TEST_LINES}): split it",
                shown(&rel)
            ));
        }
    }
    out
}

fn real_src() -> PathBuf {
    let root = std::env::var("CARGO_MANIFEST_DIR").map(PathBuf::from);
    root.unwrap_or_else(|_| std::env::current_dir().expect("current dir"))
        .join("src")
}

#[test]
fn src_follows_the_layer_table() {
    let found = violations(&real_src());
    let lines: Vec<&str> = found.iter().map(|v| v.message.as_str()).collect();
    assert!(lines.is_empty(), "layer violations:\n{}", lines.join("\n"));
}

#[test]
fn no_source_file_is_over_the_size_limit() {
    let found = oversized(&real_src());
    assert!(
        found.is_empty(),
        "files over the size limit:\n{}",
        found.join("\n")
    );
}

/// A throwaway `src/` tree in the temp dir, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(files: &[(&str, &str)]) -> Tree {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("arch-test-{}-{n}", std::process::id()));
        for (path, text) in files {
            let file = root.join(path);
            fs::create_dir_all(file.parent().expect("parent")).expect("create dir");
            fs::write(file, text).expect("write file");
        }
        Tree(root)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `edge` of each violation in a tree made of `files`.
fn check(files: &[(&str, &str)]) -> Vec<String> {
    let tree = Tree::new(files);
    let found = violations(&tree.0.join("src"));
    found.into_iter().map(|v| v.edge).collect()
}

#[test]
fn catches_a_front_end_naming_the_other() {
    let tree = Tree::new(&[("src/http/x.rs", "use crate::memcache::text;\n")]);
    let found = violations(&tree.0.join("src"));
    let lines: Vec<&str> = found.iter().map(|v| v.message.as_str()).collect();
    let allowed = "kv, rules, config, state, report, metrics, net, auth, csv";
    let line = format!("src/http/x.rs:1: http -> memcache (not allowed; http may use: {allowed})");
    assert_eq!(lines, [line]);
}

#[test]
fn catches_grouped_and_super_paths() {
    let grouped = "use crate::{\n    kv::Kv,\n    memcache,\n    state::{self, AppState},\n};\n";
    let nested = "use crate::{kv::{Kv, KvError}, memcache::{text, reply}};\n";
    // http::routes::y: `super` is http::routes, `super::super` is http (so
    // `super::super::memcache` is http's own child), `super::super::super` the root.
    let up = "fn f() {}\nuse super::super::super::memcache::reply;\nuse super::super::memcache;\n";
    let up_mod = "use super::memcache;\nuse super::super::kv;\n"; // csv/mod.rs: super is the root
    let files = [
        ("src/http/g.rs", grouped),
        ("src/http/n.rs", nested),
        ("src/http/routes/y.rs", up),
        ("src/csv/mod.rs", up_mod),
    ];
    let expected = [
        "src/csv/mod.rs:1: csv -> memcache",
        "src/http/g.rs:3: http -> memcache",
        "src/http/n.rs:1: http -> memcache",
        "src/http/routes/y.rs:2: http -> memcache",
    ];
    assert_eq!(check(&files), expected);
}

#[test]
fn catches_downward_edges_and_server() {
    let files = [
        ("src/kv/z.rs", "fn f() { crate::server::serve(); }\n"),
        ("src/store/w.rs", "fn f(_: crate::kv::Kv) {}\n"),
        (
            "src/csv/v.rs",
            "fn f() {\n    crate::memcache::text::valid_key(b\"k\");\n}\n",
        ),
        ("src/lib.rs", "pub mod kv;\npub use crate::kv::Kv;\n"),
    ];
    let expected = [
        "src/csv/v.rs:2: csv -> memcache",
        "src/kv/z.rs:1: kv -> server",
        "src/lib.rs:2: lib.rs -> kv",
        "src/store/w.rs:1: store -> kv",
    ];
    assert_eq!(check(&files), expected);
}

#[test]
fn ignores_comments_strings_and_test_module_super() {
    let text = r##"//! See [`crate::memcache`].
/// Like [`crate::memcache::text`].
fn f() -> &'static str {
    // crate::memcache
    /* crate::memcache /* nested */ crate::memcache */
    let _c = '"'; let _b = b"crate::memcache"; let _r = r#"crate::memcache " still "#;
    "crate::memcache \" crate::memcache"
}
#[cfg(test)]
mod tests {
    use super::*;
    mod deeper { use super::super::f; }
}
"##;
    assert_eq!(
        check(&[("src/kv/c.rs", text), ("src/kv.rs", text)]),
        [""; 0]
    );
}

#[test]
fn test_modules_obey_the_layers_too() {
    let text = "fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::super::memcache;\n}\n";
    let deeper = text.replace("super::super", "super::super::super");
    let files = [("src/kv.rs", text), ("src/kv/t.rs", &deeper)];
    let expected = [
        "src/kv.rs:4: kv -> memcache",
        "src/kv/t.rs:4: kv -> memcache",
    ];
    assert_eq!(check(&files), expected);
}

#[test]
fn catches_a_module_not_in_the_table() {
    let files = [
        ("src/newthing.rs", "use crate::kv;\n"),
        ("src/gadget/a.rs", ""),
    ];
    let expected = [
        "src/gadget/a.rs: module gadget",
        "src/newthing.rs: module newthing",
    ];
    assert_eq!(check(&files), expected);
}

#[test]
fn allows_listed_edges_and_main() {
    let files = [
        (
            "src/http/a.rs",
            "use crate::csv::export;\nuse crate::http::a;\n",
        ),
        (
            "src/main.rs",
            "fn main() { memcached_lite::server::serve(); }\nuse crate::cli;\n",
        ),
        ("src/lib.rs", "pub mod http;\npub mod server;\n"),
        ("src/server.rs", "use crate::{http, memcache, csv};\n"),
    ];
    assert_eq!(check(&files), [""; 0]);
}

#[test]
fn size_rule_counts_only_code_before_the_tests() {
    let lines = |n: usize| "fn f() {}\n".repeat(n);
    let tested = format!("{}#[cfg(test)]\n{}", lines(500), lines(300));
    let files = [("src/big.rs", lines(601)), ("src/edge.rs", lines(600))];
    let tree = Tree::new(&[
        (files[0].0, &files[0].1),
        (files[1].0, &files[1].1),
        ("src/t.rs", &tested),
    ]);
    let found = oversized(&tree.0.join("src"));
    assert_eq!(
        found,
        ["src/big.rs: 601 lines before #[cfg(test)] (limit 600): split it"]
    );
}
