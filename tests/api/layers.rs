//! The floors of `src/`: a module uses only modules below it, never one
//! above or beside it, so the import graph has no loop. (A module is a
//! top-level entry of `src/`; `scripts/import-graph.py` prints the graph.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top to bottom.
const FLOORS: &[&[&str]] = &[
    &["main"],
    &["startup", "doctor", "seed", "replay_cli"],
    // The HTTP door; it also serves the MCP door on `/mcp`.
    &["http"],
    &["mcp"],
    // The use cases, under both doors.
    &["service"],
    &["actors"],
    &["alarms"],
    &["supervision"],
    &["backup"],
    &["telemetry", "durability"],
    &["config", "redact"],
    &["domain"],
    &["codes"],
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules a file names (`crate::x`, `lakehouse::x`, and each
/// head of a `crate::{x, y::z}` group), comments left out.
fn used_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let path = regex::Regex::new(r"\b(?:crate|lakehouse)::([a-z_]+)").unwrap();
    let group = regex::Regex::new(r"\bcrate::\{([^}]*)\}").unwrap();
    let head = regex::Regex::new(r"(?:^|,)\s*([a-z_]+)").unwrap();
    let mut found: BTreeSet<String> = path
        .captures_iter(&code)
        .map(|c| c[1].to_string())
        .collect();
    for g in group.captures_iter(&code) {
        found.extend(head.captures_iter(&g[1]).map(|c| c[1].to_string()));
    }
    found
}

#[test]
fn every_module_uses_only_the_floors_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut unknown = BTreeSet::new();
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap();
        let module = top
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" {
            continue;
        }
        let Some(own) = floor_of(&module) else {
            unknown.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in used_modules(&text) {
            if used == module {
                continue;
            }
            match floor_of(&used) {
                Some(floor) if floor > own => {}
                Some(_) => upward.push(format!("{} uses {used}", relative.display())),
                None => {}
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules on no floor (add them to FLOORS in tests/api/layers.rs): {unknown:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that run up or sideways:\n{}",
        upward.join("\n")
    );
}
