//! Every module's `//!` map names all its submodules (issue 19).
//!
//! Reads every `.rs` file under `src/` (and under `crates/*/src/`, the
//! workspace's other crates), finds each `mod NAME;` it declares, whatever
//! its visibility, and fails unless `NAME` appears in that file's leading
//! `//!` block as `` `NAME` `` (which `[`NAME`]` contains). The only
//! declarations exempt are those under `#[cfg(test)]`: a test module is
//! not part of the architecture a map shows. Inline modules (`mod x { .. }`)
//! declare no file and are not checked.

use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The source roots checked: this crate's and each workspace crate's.
fn source_roots() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![root.join("src")];
    if let Ok(crates) = std::fs::read_dir(root.join("crates")) {
        let mut more: Vec<_> = crates
            .map(|c| c.unwrap().path().join("src"))
            .filter(|p| p.is_dir())
            .collect();
        more.sort();
        roots.extend(more);
    }
    roots
}

/// The names of the out-of-line modules `src` declares (`mod NAME;`, any
/// visibility), except those under `#[cfg(test)]`.
fn declared_modules(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut test_only = false;
    for line in src.lines().map(str::trim) {
        // Attributes may share the line with the item: `#[cfg(test)] mod tests;`.
        let mut rest = line;
        while let Some(attr) = rest.strip_prefix("#[") {
            let Some(end) = attr.find(']') else { break };
            test_only |= attr[..end].replace(' ', "") == "cfg(test)";
            rest = attr[end + 1..].trim_start();
        }
        if rest.is_empty() && line.starts_with("#[") {
            continue; // attributes only: they apply to the next item
        }
        let item = match rest.strip_prefix("pub") {
            Some(r) if r.starts_with('(') => r.find(')').map_or(r, |i| &r[i + 1..]),
            Some(r) => r,
            None => rest,
        };
        if let Some(name) = item.trim_start().strip_prefix("mod ")
            && let Some(name) = name.trim().strip_suffix(';').map(str::trim)
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !test_only
        {
            names.push(name.to_owned());
        }
        if !rest.is_empty() && !rest.starts_with("//") {
            test_only = false;
        }
    }
    names
}

/// The leading `//!` block: inner doc lines before the first item.
fn module_doc(src: &str) -> String {
    src.lines()
        .map(str::trim_start)
        .take_while(|l| l.is_empty() || l.starts_with("//") || l.starts_with("#!["))
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_module_map_names_all_its_submodules() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for root in source_roots() {
        for file in rust_files(&root) {
            let src = std::fs::read_to_string(&file).unwrap();
            let doc = module_doc(&src);
            for name in declared_modules(&src) {
                checked += 1;
                if !doc.contains(&format!("`{name}`")) {
                    missing.push(format!("{}: `{name}`", file.display()));
                }
            }
        }
    }
    // Guards the parser: custody declares dozens of modules.
    assert!(checked > 50, "only {checked} module declarations found");
    assert!(
        missing.is_empty(),
        "these modules are missing from their parent's `//!` map:\n{}",
        missing.join("\n")
    );
}

#[test]
fn declarations_are_found_whatever_their_visibility_and_test_modules_are_exempt() {
    let src = "//! map\n\
               pub mod a;\n\
               mod b;\n\
               pub(crate) mod c;\n\
               #[cfg(test)]\n\
               mod tests;\n\
               #[cfg(test)] mod more_tests;\n\
               #[cfg(unix)]\n\
               pub mod d;\n\
               mod inline {}\n\
               // mod commented;\n\
               pub mod e;\n";
    assert_eq!(declared_modules(src), ["a", "b", "c", "d", "e"]);
    let src = "//! The map:\n//! - [`a`] first\n\n// a comment\n#![allow(x)]\n//! `b`\nmod a;\n//! not the map\n";
    assert_eq!(module_doc(src), " The map:\n - [`a`] first\n `b`");
}
