//! The layering in ARCHITECTURE.md is true of the code: no module imports
//! one on a later line of the layer list, and every top-level module is
//! listed. Reads the sources as text (comments stripped), so it needs no
//! build of its own and fails on the line that breaks the rule.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn layers() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is at the crate root");
    let start = doc
        .find("<!-- layers -->")
        .expect("ARCHITECTURE.md has a <!-- layers --> block");
    let end = doc.find("<!-- /layers -->").expect("the layers block is closed");
    doc[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src is readable") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a line, without its comment (`//`, `///`, `//!`): an import
/// named in prose is not an import. A `//` inside a string literal ends the
/// line early, which can only hide an import, never invent one.
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// The top-level modules a line names through `crate::` paths, including
/// grouped ones (`use crate::{a::X, b};`).
fn crate_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let close = group.find('}').unwrap_or(group.len());
            for item in group[..close].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer() {
    let layers = layers();
    let rank: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut unlisted = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .expect("a path under src")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&own) = rank.get(top.as_str()) else {
            unlisted.push(top);
            continue;
        };
        let text = std::fs::read_to_string(f).expect("source is readable");
        for (n, line) in text.lines().enumerate() {
            for m in crate_refs(code(line)) {
                if m == top {
                    continue;
                }
                match rank.get(m.as_str()) {
                    Some(&r) if r < own => {}
                    Some(_) => wrong.push(format!(
                        "{}:{}: `{top}` imports `{m}`, which is not on an earlier line of the layer list",
                        rel.display(),
                        n + 1
                    )),
                    None => unlisted.push(m),
                }
            }
        }
    }
    unlisted.sort();
    unlisted.dedup();
    assert!(
        unlisted.is_empty(),
        "modules missing from ARCHITECTURE.md's layer list: {unlisted:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_imports_but_not_comments() {
    assert_eq!(crate_refs("use crate::{map::X, store};"), ["map", "store"]);
    assert_eq!(
        crate_refs("let x = crate::diff::f(crate::model::Y);"),
        ["diff", "model"]
    );
    assert!(crate_refs(code("/// see [`crate::store`]")).is_empty());
    let layers = layers();
    assert!(layers.len() > 5, "the layer list is read: {layers:?}");
    assert_eq!(layers[0], ["model", "text"]);
}
