//! The server's source tree keeps its layers (`docs/architecture.md`, "Layers"): this test reads
//! `server/src`, finds which file refers to which through `crate::…`, `super::…` and the
//! composition root's `use` lines, and fails on an import cycle between files or on an edge
//! that runs against the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which rooms a room may refer to, besides itself. `lib` is the composition root: it may refer
/// to every room, and no room refers to it.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "lib",
        &[
            "config",
            "error",
            "limits",
            "metrics",
            "transport",
            "reviews",
            "documents",
            "storage",
            "ops",
            "cluster",
        ],
    ),
    // Storage only for the readiness probe, which reports the store's health; the cluster for
    // the link's sub-streams that carry forwarded clients.
    (
        "transport",
        &[
            "error",
            "limits",
            "metrics",
            "documents",
            "storage",
            "cluster",
        ],
    ),
    (
        "reviews",
        &["error", "limits", "metrics", "documents", "storage"],
    ),
    ("documents", &["limits", "metrics", "storage"]),
    ("storage", &["limits"]),
    ("ops", &["storage", "reviews"]),
    // Cluster mode (issue 18): leases and document ownership in PostgreSQL. Documents use it
    // through a trait of their own (`documents/route.rs`), never by name. Limits for the link's
    // frame size.
    ("cluster", &["storage", "limits"]),
    // Reviews for the settings and the clock of webhooks.
    (
        "config",
        &["limits", "storage", "documents", "transport", "reviews"],
    ),
    ("metrics", &["storage"]),
    ("error", &[]),
    ("limits", &[]),
];

/// A source file's module path (`documents/doc.rs` → `["documents", "doc"]`).
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The room a file belongs to: its top folder, or its own name at the top.
fn room_of(file: &str) -> &str {
    file.split('/')
        .next()
        .unwrap_or(file)
        .trim_end_matches(".rs")
}

fn sources(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under src");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// Splits `a::b::C` into identifiers.
fn path_after(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(after) = rest.strip_prefix("::") {
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if end == 0 {
            break;
        }
        parts.push(after[..end].to_owned());
        rest = &after[end..];
    }
    parts
}

/// Every file each file refers to.
fn edges(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<String> = sources(root)
        .into_iter()
        .filter(|f| f != "main.rs")
        .collect();
    let by_module: BTreeMap<Vec<String>, String> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    // The longest module prefix of a path is the file it names.
    let resolve = |path: &[String]| {
        (0..=path.len())
            .rev()
            .find_map(|n| by_module.get(&path[..n]).cloned())
    };
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        let text = std::fs::read_to_string(root.join(file)).expect("read file");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut targets = BTreeSet::new();
        for (keyword, base) in [
            ("crate", Vec::new()),
            ("super", me[..me.len().saturating_sub(1)].to_vec()),
        ] {
            for (at, _) in code.match_indices(keyword) {
                let before = code[..at].chars().last();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                // `pub(crate)` and `pub(super)` name no module.
                let named = path_after(&code[at + keyword.len()..]);
                if named.is_empty() {
                    continue;
                }
                let mut path = base.clone();
                path.extend(named);
                if let Some(target) = resolve(&path) {
                    targets.insert(target);
                }
            }
        }
        // The root and folder modules also name their children without `crate::`.
        if file == "lib.rs" || file.ends_with("mod.rs") {
            for line in code.lines() {
                let line = line.trim_start().trim_start_matches("pub ");
                if let Some(used) = line.strip_prefix("use ") {
                    let mut path = me.clone();
                    path.extend(path_after(&format!("::{used}")));
                    if path.len() > me.len() {
                        if let Some(target) = resolve(&path) {
                            targets.insert(target);
                        }
                    }
                }
            }
        }
        targets.remove(file);
        graph.insert(file.clone(), targets);
    }
    graph
}

/// Cycles that another piece of work removes. Remove an entry once its cycle is gone; the test
/// then keeps it gone. (The document owner ↔ registry cycle went with the Sans-IO document core,
/// issue 22: the owner reports leaving memory through `documents::doc::Unload`.)
const KNOWN_CYCLES: &[(&str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_file_imports_from_a_file_that_imports_it() {
    let graph = edges(&src());
    let mut cycles = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if from < to
                && graph.get(to).is_some_and(|back| back.contains(from))
                && !KNOWN_CYCLES.contains(&(from.as_str(), to.as_str()))
            {
                cycles.push(format!("{from} ↔ {to}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn dependencies_run_one_way_between_rooms() {
    let graph = edges(&src());
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        let room = room_of(from);
        let Some(may) = allowed.get(room) else {
            wrong.push(format!(
                "{from}: room `{room}` is not in the table of this test"
            ));
            continue;
        };
        for to in tos {
            let target = room_of(to);
            if target != room && !may.contains(&target) {
                wrong.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "edges against the layers: {wrong:#?}");
}

#[test]
fn the_table_of_rooms_has_no_cycle() {
    // A room may not be allowed, directly or through others, to refer back to itself.
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (start, _) in ALLOWED {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = allowed[start].to_vec();
        while let Some(room) = todo.pop() {
            assert_ne!(
                room, *start,
                "the table lets `{start}` refer back to itself"
            );
            if seen.insert(room) {
                todo.extend(allowed.get(room).copied().unwrap_or_default());
            }
        }
    }
}

#[test]
fn the_scan_sees_edges() {
    // The two tests above pass vacuously if the scan finds nothing: it must see the known edges.
    let graph = edges(&src());
    let of = |f: &str| graph.get(f).cloned().unwrap_or_default();
    assert!(
        of("lib.rs").iter().any(|t| t.starts_with("transport/")),
        "{graph:#?}"
    );
    assert!(
        of("documents/doc.rs")
            .iter()
            .any(|t| t.starts_with("storage/")),
        "{graph:#?}"
    );
}
