//! The reference in `docs/` against the code: the error table against the
//! code table, the configuration reference against `config/default.toml`.
//! No server: these read files.

use std::collections::{BTreeMap, BTreeSet};

use lakehouse::codes::ErrorCode;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_error_table_is_the_code_table() {
    let docs = read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md"));
    let table = docs
        .split("### Errors")
        .nth(1)
        .expect("docs/errors.md has an Errors section");
    // A row reads `| status | `code` — meaning |`: the code is the cell's
    // first backticked word (the meaning may quote others).
    let code = regex::Regex::new(r"^`([a-z_]+)`").unwrap();
    let mut documented = BTreeSet::new();
    for row in table.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(status) = cells.get(1).and_then(|s| s.parse::<u16>().ok()) else {
            continue;
        };
        if let Some(captures) = code.captures(cells[2]) {
            documented.insert((status, captures[1].to_string()));
        }
    }
    let in_code: BTreeSet<(u16, String)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.status().as_u16(), c.as_str().to_string()))
        .collect();
    let missing: Vec<_> = in_code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        missing.is_empty(),
        "in the code, not in docs/errors.md: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in docs/errors.md, not in the code: {stale:?}"
    );
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let unique: BTreeSet<&str> = codes.iter().copied().collect();
    assert_eq!(unique.len(), codes.len(), "every code is unique");
}

/// What `docs/configuration.md` writes for a key that has no value.
const UNSET: &str = "unset";

/// The rows of the tables headed `| Key | Default | Meaning |`: key →
/// default, both without their backticks.
fn documented_settings(docs: &str) -> BTreeMap<String, String> {
    let key = regex::Regex::new(r"^`([a-z0-9_]+(?:\.[a-z0-9_]+)+)`$").unwrap();
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in docs.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.get(1) == Some(&"Key") && cells.get(2) == Some(&"Default") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let Some(captures) = cells.get(1).and_then(|c| key.captures(*c)) else {
            // The `|---|` line under the header.
            continue;
        };
        let name = captures[1].to_string();
        let default = cells.get(2).copied().unwrap_or("");
        let Some(default) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
            panic!("docs/configuration.md: the default of `{name}` is not in backticks: {line}");
        };
        let previous = rows.insert(name.clone(), default.to_string());
        assert!(
            previous.is_none(),
            "docs/configuration.md documents `{name}` twice"
        );
    }
    rows
}

/// Every leaf of `table` as `section.key` → value. A table is a leaf
/// itself when the docs have a row for it (an inline table such as
/// `matrix.playbook_hnsw` is one setting).
fn flatten(
    prefix: &str,
    table: &toml::Table,
    documented: &BTreeMap<String, String>,
    into: &mut BTreeMap<String, toml::Value>,
) {
    for (name, value) in table {
        let dotted = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) if !documented.contains_key(&dotted) => {
                flatten(&dotted, inner, documented, into)
            }
            _ => {
                into.insert(dotted, value.clone());
            }
        }
    }
}

/// A value as the docs write it: strings raw (an empty one is `unset`),
/// numbers and booleans as Rust prints them, arrays and tables as TOML.
fn render(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) if s.is_empty() => UNSET.to_string(),
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => value.to_string(),
    }
}

fn without_spaces(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Whether the documented default is the value: as rendered (spaces
/// aside), or, for numbers, arrays and tables, the same value once parsed
/// back (`1.0` and `1`, `1_000` and `1000`, keys in another order).
fn matches(value: &toml::Value, documented: &str) -> bool {
    if without_spaces(&render(value)) == without_spaces(documented) {
        return true;
    }
    match value {
        toml::Value::String(_) | toml::Value::Boolean(_) | toml::Value::Datetime(_) => false,
        _ => match format!("v = {documented}").parse::<toml::Table>() {
            Ok(parsed) => parsed.get("v") == Some(value),
            Err(_) => false,
        },
    }
}

#[test]
fn the_configuration_reference_is_config_default_toml() {
    let text = read(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"));
    let table: toml::Table = text.parse().expect("config/default.toml parses");
    let docs = read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ));
    let documented = documented_settings(&docs);
    assert!(
        !documented.is_empty(),
        "docs/configuration.md has no `| Key | Default | Meaning |` rows"
    );
    let mut defaults = BTreeMap::new();
    flatten("", &table, &documented, &mut defaults);

    let missing: Vec<String> = defaults
        .iter()
        .filter(|(key, _)| !documented.contains_key(key.as_str()))
        .map(|(key, value)| format!("{key} = {}", render(value)))
        .collect();
    let different: Vec<String> = defaults
        .iter()
        .filter_map(|(key, value)| {
            let written = documented.get(key.as_str())?;
            (!matches(value, written)).then(|| {
                format!(
                    "{key}: config/default.toml has `{}`, the docs say `{written}`",
                    render(value)
                )
            })
        })
        .collect();
    // A documented key that default.toml does not set must be documented
    // as unset, and named in one of its comments (an optional setting).
    let stale: Vec<String> = documented
        .iter()
        .filter(|(key, _)| !defaults.contains_key(key.as_str()))
        .filter(|(key, written)| {
            let leaf = key.rsplit('.').next().unwrap_or(key.as_str());
            written.as_str() != UNSET || !text.contains(leaf)
        })
        .map(|(key, written)| format!("{key} (documented as `{written}`)"))
        .collect();

    assert!(
        missing.is_empty(),
        "in config/default.toml, no row in docs/configuration.md:\n  {}",
        missing.join("\n  ")
    );
    assert!(
        different.is_empty(),
        "defaults in docs/configuration.md differ from config/default.toml:\n  {}",
        different.join("\n  ")
    );
    assert!(
        stale.is_empty(),
        "in docs/configuration.md, not in config/default.toml (a key it leaves unset \
         is documented as `{UNSET}` and named in its comments):\n  {}",
        stale.join("\n  ")
    );
}
