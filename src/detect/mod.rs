//! Detections over a case's events: Sigma rules and lists of indicators.
//!
//! - [`rules`]: rule files read and sorted into what is evaluated and what
//!   is set aside (with why); custody's own rules (`detection_rules/`).
//! - [`subject`]: a record as the rules see it: its original fields, the
//!   names other tools give them, custody's normalised event.
//! - [`ioc`]: indicator lists (plain text, CSV, MISP events) and their matching.
//!
//! The rules read the original records, not the timeline's columns: each
//! log artefact is parsed again from its verified bytes and every record is
//! handed with its event to a [`Scan`], which evaluates the rules whose
//! `logsource` names the event's source and matches the indicators. Each
//! record finds its timeline row by its place (member and locator); a
//! record the timeline dropped as a duplicate has no row and adds nothing.
//! Correlation rules are then replayed over the matches in time order
//! ([`Detector::finish`]). What comes out is a list of [`NewDetection`]s,
//! one per rule and actor (per firing for a correlation, per indicator for
//! a list), each naming its rows.

pub mod ioc;
pub mod rules;
pub mod subject;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rsigma_eval::{
    CorrelationConfig, CorrelationEngine, CorrelationEventMode, Engine, Event as _, JsonEvent,
    ResultBody, TimestampFallback,
};
use serde_json::Value;

use crate::timeline::Event;
use crate::timeline::parse::{InflateLimits, Record, Sink};
use ioc::Matcher;
use rules::RuleSet;
use subject::Subject;

pub use crate::timeline::detections::{NewDetection, Place, RowMap};

/// Events a correlation firing keeps as its rows: Sigma's own cap is 10,
/// too few to show a burst of 60 mails; beyond this many the first ones stand
/// for the rest (the detail says how many there were).
const MAX_CORRELATION_ROWS: usize = 10_000;

/// What the rules know of one loaded rule, by its key.
#[derive(Debug, Clone)]
struct Meta {
    title: String,
    level: String,
    tags: Vec<String>,
    file: String,
    id: Option<String>,
}

/// A match a correlation may count, kept until every record is read.
#[derive(Debug, Clone)]
struct CorrInput {
    time_us: i64,
    row: i64,
    result: rsigma_eval::EvaluationResult,
    /// The fields correlations group and count by, as the rule's record had them.
    fields: serde_json::Map<String, Value>,
}

/// Rules and lists ready to evaluate, shared by every thread of a scan.
pub struct Detector {
    engines: HashMap<&'static str, Engine>,
    meta: HashMap<String, Meta>,
    /// Rules correlations count (by id and by name), with the fields they
    /// need from each match.
    counted: HashMap<String, Vec<String>>,
    /// Rules whose own matches are not findings (counted by a correlation
    /// that does not `generate` them).
    hidden: HashSet<String>,
    correlations: Vec<(String, rsigma_parser::CorrelationRule)>,
    counted_rules: Vec<rsigma_parser::SigmaRule>,
    iocs: Matcher,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("sources", &self.engines.keys().collect::<Vec<_>>())
            .field("rules", &self.meta.len())
            .field("correlations", &self.correlations.len())
            .finish_non_exhaustive()
    }
}

fn level_name(l: Option<rsigma_parser::Level>) -> String {
    use rsigma_parser::Level;
    match l {
        Some(Level::Informational) => "informational",
        Some(Level::Low) => "low",
        Some(Level::Medium) | None => "medium",
        Some(Level::High) => "high",
        Some(Level::Critical) => "critical",
    }
    .to_owned()
}

/// A rule's key: its id, else its title.
pub fn rule_key(id: Option<&str>, title: &str) -> String {
    id.map_or_else(|| format!("title:{title}"), str::to_owned)
}

impl Detector {
    pub fn new(rules: &RuleSet, iocs: Vec<ioc::IocList>) -> Self {
        let mut engines: HashMap<&'static str, Engine> = HashMap::new();
        let mut meta = HashMap::new();
        for l in &rules.rules {
            for s in &l.sources {
                // Compiled when the rules were read; this cannot fail now.
                let _ = engines.entry(s).or_default().add_rule(&l.rule);
            }
            meta.insert(
                rule_key(l.rule.id.as_deref(), &l.rule.title),
                Meta {
                    title: l.rule.title.clone(),
                    level: level_name(l.rule.level),
                    tags: l.rule.tags.clone(),
                    file: l.file.clone(),
                    id: l.rule.id.clone(),
                },
            );
        }
        let mut counted: HashMap<String, Vec<String>> = HashMap::new();
        let mut hidden = HashSet::new();
        // A rule one correlation `generate`s stays a finding whatever the others say.
        let mut generated = HashSet::new();
        for (file, c) in &rules.correlations {
            let mut fields: Vec<String> = c.group_by.clone();
            if let rsigma_parser::CorrelationCondition::Threshold { field: Some(f), .. } =
                &c.condition
            {
                fields.extend(f.iter().cloned());
            }
            for r in &c.rules {
                let mut mine = fields.clone();
                for a in &c.aliases {
                    if let Some(f) = a.mapping.get(r) {
                        mine.push(f.clone());
                    }
                }
                let entry = counted.entry(r.clone()).or_default();
                for f in mine {
                    if !entry.contains(&f) {
                        entry.push(f);
                    }
                }
                if c.generate {
                    generated.insert(r.clone());
                } else {
                    hidden.insert(r.clone());
                }
            }
            meta.insert(
                rule_key(c.id.as_deref(), &c.title),
                Meta {
                    title: c.title.clone(),
                    level: level_name(c.level),
                    tags: c.tags.clone(),
                    file: file.clone(),
                    id: c.id.clone(),
                },
            );
        }
        hidden.retain(|r| !generated.contains(r));
        let counted_rules = rules
            .rules
            .iter()
            .filter(|l| {
                [l.rule.id.as_deref(), l.rule.name.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|k| counted.contains_key(k))
            })
            .map(|l| l.rule.clone())
            .collect();
        Self {
            engines,
            meta,
            counted,
            hidden,
            correlations: rules.correlations.clone(),
            counted_rules,
            iocs: Matcher::new(iocs),
        }
    }

    /// Custody sources some rule reads.
    pub fn sources(&self) -> BTreeSet<&'static str> {
        self.engines.keys().copied().collect()
    }

    pub fn has_work(&self) -> bool {
        !self.engines.is_empty() || !self.iocs.is_empty()
    }

    /// Whether some rule or list reads the events of `format`.
    pub fn reads(&self, format: crate::timeline::parse::Format) -> bool {
        !self.iocs.is_empty() || self.engines.contains_key(format.source())
    }

    /// A sink for one artefact's records, placing them through `rows`.
    pub fn scan<'a>(&'a self, rows: &'a RowMap, limits: InflateLimits) -> Scan<'a> {
        Scan {
            det: self,
            rows,
            limits,
            out: Partial::default(),
        }
    }

    /// The fields a counted rule's matches must keep, by the rule's id or name.
    fn counted_fields(&self, rule: &rsigma_eval::EvaluationResult) -> Option<Vec<String>> {
        let by_id = rule
            .header
            .rule_id
            .as_deref()
            .and_then(|id| self.counted.get(id));
        let by_name = self
            .counted_rules
            .iter()
            .find(|r| {
                r.title == rule.header.rule_title
                    && r.id.as_deref() == rule.header.rule_id.as_deref()
            })
            .and_then(|r| r.name.as_deref())
            .and_then(|n| self.counted.get(n));
        match (by_id, by_name) {
            (None, None) => None,
            (a, b) => {
                let mut f: Vec<String> = a.into_iter().chain(b).flatten().cloned().collect();
                f.dedup();
                Some(f)
            }
        }
    }

    fn is_hidden(&self, r: &rsigma_eval::EvaluationResult) -> bool {
        if r.header
            .rule_id
            .as_deref()
            .is_some_and(|id| self.hidden.contains(id))
        {
            return true;
        }
        self.counted_rules.iter().any(|c| {
            c.title == r.header.rule_title
                && c.id.as_deref() == r.header.rule_id.as_deref()
                && c.name.as_deref().is_some_and(|n| self.hidden.contains(n))
        })
    }

    /// Every artefact's partial results, merged: the detections, with the
    /// correlations replayed over the counted matches in time order.
    pub fn finish(&self, mut all: Partial) -> Vec<NewDetection> {
        let mut out = Vec::new();
        for ((rule, actor), mut hits) in std::mem::take(&mut all.matches) {
            let Some(m) = self.meta.get(&rule) else {
                continue;
            };
            hits.sort_unstable();
            hits.dedup();
            let selections: BTreeSet<String> =
                all.selections.get(&rule).cloned().unwrap_or_default();
            out.push(NewDetection {
                kind: "sigma",
                rule: rule.clone(),
                title: m.title.clone(),
                level: m.level.clone(),
                tags: m.tags.clone(),
                actors: actor.into_iter().collect(),
                detail: serde_json::json!({
                    "rule_file": m.file,
                    "rule_id": m.id,
                    "matched_selections": selections,
                }),
                rows: hits.into_iter().map(|(_, row)| row).collect(),
            });
        }
        out.extend(self.correlate(std::mem::take(&mut all.counted)));
        for (hit, mut rows) in std::mem::take(&mut all.ioc) {
            let Some((list, ind)) = self.iocs.indicator(hit) else {
                continue;
            };
            rows.sort_unstable();
            rows.dedup();
            let actors: BTreeSet<String> = rows.iter().filter_map(|r| r.2.clone()).collect();
            out.push(NewDetection {
                kind: "ioc",
                rule: format!("{}:{}", list.name, ind.row),
                title: format!(
                    "{} {} from {} ({})",
                    ind.kind.name(),
                    ind.value,
                    list.name,
                    ind.row
                ),
                level: "high".into(),
                tags: Vec::new(),
                actors: actors.into_iter().collect(),
                detail: serde_json::json!({
                    "list": list.name,
                    "row": ind.row,
                    "kind": ind.kind,
                    "indicator": ind.value,
                }),
                rows: rows.into_iter().map(|(_, row, _)| row).collect(),
            });
        }
        out.sort_by(|a, b| {
            (a.kind, &a.title, &a.actors, a.rows.first()).cmp(&(
                b.kind,
                &b.title,
                &b.actors,
                b.rows.first(),
            ))
        });
        out
    }

    /// Replays the counted matches through rsigma-eval's correlation
    /// engine in time order; overlapping firings of one correlation for
    /// one group become one detection.
    fn correlate(&self, mut inputs: Vec<CorrInput>) -> Vec<NewDetection> {
        if self.correlations.is_empty() || inputs.is_empty() {
            return Vec::new();
        }
        let mut engine = CorrelationEngine::new(CorrelationConfig {
            timestamp_fallback: TimestampFallback::Skip,
            correlation_event_mode: CorrelationEventMode::Refs,
            max_correlation_events: MAX_CORRELATION_ROWS,
            ..CorrelationConfig::default()
        });
        for r in &self.counted_rules {
            // Both were compiled when the rules were read.
            let _ = engine.add_rule(r);
        }
        for (_, c) in &self.correlations {
            let _ = engine.add_correlation(c);
        }
        inputs.sort_by_key(|i| (i.time_us, i.row));
        let mut fired: Vec<Firing> = Vec::new();
        for i in inputs {
            let mut ev = i.fields;
            ev.insert("id".into(), Value::String(i.row.to_string()));
            let ev = Value::Object(ev);
            let secs = i.time_us.div_euclid(1_000_000);
            let results =
                engine.process_with_detections(&JsonEvent::borrow(&ev), vec![i.result], secs);
            for r in results {
                let ResultBody::Correlation(body) = &r.body else {
                    continue;
                };
                let key = rule_key(r.header.rule_id.as_deref(), &r.header.rule_title);
                let rows: BTreeSet<i64> = body
                    .event_refs
                    .iter()
                    .flatten()
                    .filter_map(|e| e.id.as_deref()?.parse().ok())
                    .collect();
                match fired.iter_mut().rev().find(|(k, g, seen, ..)| {
                    *k == key && *g == body.group_key && !seen.is_disjoint(&rows)
                }) {
                    Some((_, _, seen, value, _)) => {
                        seen.extend(rows);
                        *value = value.max(body.aggregated_value);
                    }
                    None => fired.push((
                        key,
                        body.group_key.clone(),
                        rows,
                        body.aggregated_value,
                        body.timespan_secs,
                    )),
                }
            }
        }
        fired
            .into_iter()
            .filter_map(|(key, group, rows, value, span)| {
                let m = self.meta.get(&key)?;
                Some(NewDetection {
                    kind: "sigma",
                    rule: key.clone(),
                    title: m.title.clone(),
                    level: m.level.clone(),
                    tags: m.tags.clone(),
                    actors: group.iter().map(|(_, v)| v.clone()).collect(),
                    detail: serde_json::json!({
                        "rule_file": m.file,
                        "rule_id": m.id,
                        "correlation": {
                            "group": group.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                            "largest_count": value,
                            "timespan_secs": span,
                        },
                    }),
                    rows: rows.into_iter().collect(),
                })
            })
            .collect()
    }
}

/// A correlation's firings for one group: (rule key, group, rows, largest
/// count, timespan in seconds).
type Firing = (String, Vec<(String, String)>, BTreeSet<i64>, f64, u64);

/// A rule's matches by (rule key, actor): (time, row) each.
type Matches = HashMap<(String, Option<String>), Vec<(i64, i64)>>;

/// What one artefact's records gave; merged across artefacts and threads.
#[derive(Debug, Default)]
pub struct Partial {
    /// (rule key, actor) → (time, row) of each match.
    matches: Matches,
    selections: HashMap<String, BTreeSet<String>>,
    counted: Vec<CorrInput>,
    ioc: HashMap<ioc::Hit, Vec<(i64, i64, Option<String>)>>,
    /// Records read.
    pub records: u64,
    /// Records with no timeline row (duplicates the timeline dropped).
    pub unplaced: u64,
    /// Records the parser could not read (reported when the timeline was loaded).
    pub problems: u64,
}

impl Partial {
    pub fn merge(&mut self, other: Partial) {
        for (k, v) in other.matches {
            self.matches.entry(k).or_default().extend(v);
        }
        for (k, v) in other.selections {
            self.selections.entry(k).or_default().extend(v);
        }
        self.counted.extend(other.counted);
        for (k, v) in other.ioc {
            self.ioc.entry(k).or_default().extend(v);
        }
        self.records += other.records;
        self.unplaced += other.unplaced;
        self.problems += other.problems;
    }
}

/// Evaluates one artefact's records as its parser hands them over.
pub struct Scan<'a> {
    det: &'a Detector,
    rows: &'a RowMap,
    limits: InflateLimits,
    pub out: Partial,
}

impl Scan<'_> {
    fn evaluate(&mut self, event: &Event, raw: Record<'_>) {
        self.out.records += 1;
        let engine = self.det.engines.get(event.source);
        if engine.is_none() && self.det.iocs.is_empty() {
            return;
        }
        // The row is looked up only once something matched: most records match nothing.
        let line = match raw.json {
            Some(_) => None,
            None => std::str::from_utf8(raw.bytes).ok(),
        };
        let subject = Subject {
            event,
            json: raw.json,
            line,
        };
        let results = engine.map(|e| e.evaluate(&subject)).unwrap_or_default();
        let hits = self.det.iocs.hits(&subject);
        if results.is_empty() && hits.is_empty() {
            return;
        }
        let Some(&row) = self
            .rows
            .get(&(event.member.clone(), event.locator.clone()))
        else {
            self.out.unplaced += 1;
            return;
        };
        for r in results {
            if let Some(fields) = self.det.counted_fields(&r) {
                let mut kept = serde_json::Map::new();
                for f in fields {
                    if let Some(v) = subject
                        .get_field(&f)
                        .and_then(|v| v.as_str().map(|s| s.into_owned()))
                    {
                        kept.insert(f, Value::String(v));
                    }
                }
                self.out.counted.push(CorrInput {
                    time_us: event.time_us,
                    row,
                    result: r.clone(),
                    fields: kept,
                });
            }
            if self.det.is_hidden(&r) {
                continue;
            }
            let key = rule_key(r.header.rule_id.as_deref(), &r.header.rule_title);
            if let ResultBody::Detection(d) = &r.body {
                self.out
                    .selections
                    .entry(key.clone())
                    .or_default()
                    .extend(d.matched_selections.iter().cloned());
            }
            self.out
                .matches
                .entry((key, event.actor.clone()))
                .or_default()
                .push((event.time_us, row));
        }
        for h in hits {
            self.out
                .ioc
                .entry(h)
                .or_default()
                .push((event.time_us, row, event.actor.clone()));
        }
    }
}

impl Sink for Scan<'_> {
    fn event(&mut self, event: Event) {
        // A parser that hands over no record: the event's message stands for it.
        let message = event.message.clone();
        self.evaluate(&event, Record::bytes(message.as_bytes()));
    }
    fn problem(&mut self, _: crate::timeline::Problem) {
        self.out.problems += 1;
    }
    fn record(&mut self, event: Event, raw: Record<'_>) {
        self.evaluate(&event, raw);
    }
    fn inflate_limits(&self) -> InflateLimits {
        self.limits
    }
}

/// Rules set aside, grouped for a summary: (kind, reason) → count.
pub type Reasons = BTreeMap<(&'static str, String), usize>;

#[cfg(test)]
mod tests;
