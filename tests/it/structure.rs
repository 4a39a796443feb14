//! The shape of `src/`: no import cycle between its top-level modules.
//!
//! A module may use its own children, and `cmd/` (the commands) may use everything below it; but
//! if `a` imports from `b` and `b`, directly or through others, imports from `a`, neither can be
//! read, tested or moved without the other. This test reads the `crate::` paths of every file
//! under `src/` (outside comments), builds the graph "top-level module of the importing file ->
//! top-level module it names", and fails naming each cycle with the file and line of every arrow.
//!
//! It reads source text, not the compiler's view: `super::` paths are not followed (they stay
//! inside a module by the house style), and a `crate::` path inside a string would count. Both
//! keep the check small and err on the side of reporting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One arrow of the graph and where it was first seen.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn no_import_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(
        edges.values().map(BTreeMap::len).sum::<usize>() > 10,
        "the reader found almost no imports under {}: it is broken",
        src.display()
    );
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules of src/:\n{}",
        cycles.join("\n")
    );
}

/// The reader itself: a grouped import, a nested group, a path in code and a commented path.
#[test]
fn the_reader_sees_grouped_and_inline_paths_but_not_comments() {
    let text = "use crate::{a::X, b::{self, Y}};\n\
                // use crate::c::Z;\n\
                /// [`crate::d`]\n\
                fn f() { crate::e::g(); let s = \"x\"; } // crate::h\n";
    let named: BTreeSet<String> = imports(text).into_iter().map(|(m, _)| m).collect();
    let expect: BTreeSet<String> = ["a", "b", "e"].iter().map(|s| s.to_string()).collect();
    assert_eq!(named, expect);
}

fn graph(src: &Path) -> Edges {
    let mut edges = Edges::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("under src");
        let Some(from) = top_module(rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (to, line) in imports(&text) {
            if to != from {
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    edges
}

/// `source/sqs/body.rs` -> `source`, `config.rs` -> `config`; the crate roots belong to no module.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_owned()),
        None => Some(first),
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every top-level module a `crate::` path in `text` names, with its 1-based line.
fn imports(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = strip_comment(line);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `cognito_resend::` or `my_crate::` is not `crate::`.
            let before = &rest[..at];
            let ident_before = before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            rest = &rest[at + "crate::".len()..];
            if ident_before {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::X, b::{self, Y}}`: the first segment of each top-level item. The
                // group may span lines: read on from here through the rest of the text.
                let tail: String = std::iter::once(group.to_owned())
                    .chain(
                        text.lines()
                            .skip(n + 1)
                            .map(|l| strip_comment(l).to_owned()),
                    )
                    .collect::<Vec<_>>()
                    .join("\n");
                for item in top_level_items(&tail) {
                    let name = leading_ident(item.trim());
                    if !name.is_empty() && name != "self" {
                        found.push((name.to_owned(), n + 1));
                    }
                }
            } else {
                let name = leading_ident(rest);
                if !name.is_empty() {
                    found.push((name.to_owned(), n + 1));
                }
            }
        }
    }
    found
}

/// The items of a brace group up to its closing brace, split at top-level commas.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

fn leading_ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The line without its `//` comment (a `//` inside a string literal is taken as a comment too:
/// that only hides text, never invents an import).
fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// One line per strongly connected group of modules: a cycle through it, arrow by arrow.
fn cycles(edges: &Edges) -> Vec<String> {
    let nodes: BTreeSet<&String> = edges
        .keys()
        .chain(edges.values().flat_map(|m| m.keys()))
        .collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for &node in &nodes {
        if reported.contains(node) || !reach(node).contains(node) {
            continue;
        }
        // The group: every module `node` reaches that reaches `node` back.
        let group: BTreeSet<String> = reach(node)
            .into_iter()
            .filter(|m| reach(m).contains(node))
            .collect();
        reported.extend(group.iter().cloned());
        let inside: Vec<String> = group
            .iter()
            .flat_map(|a| {
                edges[a]
                    .iter()
                    .filter(|(b, _)| group.contains(*b))
                    .map(move |(b, at)| format!("    {a} -> {b} ({at})"))
            })
            .collect();
        out.push(format!(
            "  {{{}}}: {}\n  every arrow inside it:\n{}",
            group.iter().cloned().collect::<Vec<_>>().join(", "),
            path_back(edges, node, &group),
            inside.join("\n")
        ));
    }
    out
}

/// A shortest cycle from `start` back to itself inside `group`, each arrow with where it is.
fn path_back(edges: &Edges, start: &String, group: &BTreeSet<String>) -> String {
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    'search: while let Some(n) = queue.pop_front() {
        for next in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
            if !group.contains(next) || prev.contains_key(next) {
                continue;
            }
            prev.insert(next.clone(), n.clone());
            if next == start {
                break 'search;
            }
            queue.push_back(next.clone());
        }
    }
    let mut hops = Vec::new();
    let mut at = start.clone();
    loop {
        let from = prev[&at].clone();
        hops.push(format!("{from} -> {at} ({})", edges[&from][&at]));
        at = from;
        if &at == start {
            break;
        }
    }
    hops.reverse();
    hops.join(", ")
}
