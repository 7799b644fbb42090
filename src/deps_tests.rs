//! Which module may use which (issue 19): the layers stay one-way.
//!
//! - No import cycle between the crate's top-level modules, nor between the
//!   files of one directory (`store/azure_auth.rs` and `azure_sas.rs` once
//!   used each other).
//! - Nothing under `serve/` or `engine/` names `cli`: the server and the
//!   engine are driven by typed requests, never by command-line flags.
//! - Nothing under `cli/` names an AWS SDK type: clients come from
//!   `crate::aws::Aws`, the one factory.
//! - No two error types share a name (a `ConfigError` of the settings and
//!   another of the server once did).
//!
//! Uses are read from the source text: each `crate::NAME` and `super::NAME`
//! outside comments and outside `#[cfg(test)]` modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every production `.rs` file below `dir` with its code: comment lines and
/// test modules left out.
fn code_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let text = text
                    .split("#[cfg(test)]\nmod tests {")
                    .next()
                    .unwrap_or_default();
                let code: String = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .flat_map(|l| [l, "\n"])
                    .collect();
                out.push((path, code));
            }
        }
    }
    out.sort();
    out
}

/// The identifiers that follow each `prefix` in `code` (`crate::store::x`
/// gives `store`; `crate::{a, b::c}` gives `a` and `b`).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code.get(..i).and_then(|b| b.chars().last());
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = code.get(i + prefix.len()..).unwrap_or_default();
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            for part in group.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A cycle in `edges`, as the path that closes it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// The top-level module a file under `src/` belongs to.
fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn top_level_edges() -> BTreeMap<String, BTreeSet<String>> {
    let files = code_files(&src());
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| top_module(p)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in &files {
        let from = top_module(path);
        for to in names_after(code, "crate::") {
            if to != from && modules.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

#[test]
fn the_top_level_modules_have_no_import_cycle() {
    let edges = top_level_edges();
    assert!(
        edges.contains_key("engine"),
        "the scan found the modules: {edges:?}"
    );
    if let Some(c) = find_cycle(&edges) {
        panic!("import cycle between modules: {}", c.join(" -> "));
    }
}

#[test]
fn the_files_of_each_directory_have_no_import_cycle() {
    let mut by_dir: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (path, code) in code_files(&src()) {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || name == "lib" || name == "main" {
            continue;
        }
        let dir = path.parent().unwrap().to_path_buf();
        let rel = dir
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .replace('/', "::");
        let mut uses = names_after(&code, "super::");
        if !rel.is_empty() {
            uses.extend(names_after(&code, &format!("crate::{rel}::")));
        }
        uses.remove(&name);
        by_dir.entry(dir).or_default().insert(name, uses);
    }
    for (dir, files) in &by_dir {
        let siblings: BTreeSet<&String> = files.keys().collect();
        let edges: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|(f, uses)| {
                let to = uses
                    .iter()
                    .filter(|u| siblings.contains(u))
                    .cloned()
                    .collect();
                (f.clone(), to)
            })
            .collect();
        if let Some(c) = find_cycle(&edges) {
            panic!("import cycle in {}: {}", dir.display(), c.join(" -> "));
        }
    }
}

#[test]
fn the_server_and_the_engine_never_use_the_command_line() {
    for dir in ["serve", "engine"] {
        for (path, code) in code_files(&src().join(dir)) {
            let uses = names_after(&code, "crate::");
            assert!(!uses.contains("cli"), "{} uses crate::cli", path.display());
            assert!(!code.contains("super::cli"), "{} uses cli", path.display());
        }
    }
}

#[test]
fn the_command_line_names_no_aws_sdk_type() {
    for (path, code) in code_files(&src().join("cli")) {
        for sdk in ["aws_sdk_", "aws_config", "aws_smithy", "aws_types"] {
            assert!(
                !code.contains(sdk),
                "{} names {sdk}*: use crate::aws::Aws",
                path.display()
            );
        }
    }
}

#[test]
fn the_scan_sees_uses_and_cycles() {
    let uses = names_after(
        "use crate::{a, b::c};\nlet x = crate::d::e;\nmy_crate::z",
        "crate::",
    );
    assert_eq!(uses.into_iter().collect::<Vec<_>>(), ["a", "b", "d"]);
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("x".to_owned(), BTreeSet::from(["y".to_owned()])),
        ("y".to_owned(), BTreeSet::from(["x".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&edges).unwrap(), ["x", "y", "x"]);
}

#[test]
fn each_error_type_name_means_one_thing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in [root.join("src"), root.join("crates")] {
        for (path, code) in code_files(&dir) {
            for kind in ["pub enum ", "pub struct "] {
                for name in names_after(&code, kind) {
                    if !name.ends_with("Error") {
                        continue;
                    }
                    if let Some(first) = seen.insert(name.clone(), path.clone()) {
                        panic!(
                            "two error types named {name}: {} and {}",
                            first.display(),
                            path.display()
                        );
                    }
                }
            }
        }
    }
    assert!(
        seen.contains_key("EngineError"),
        "the scan found the error types"
    );
}
