//! `detect`: Sigma rules and indicator lists over a case's timeline.
//!
//! Each log artefact the timeline holds is read again from the store
//! (both digests checked), parsed, and its records evaluated on worker
//! threads, one artefact each; the detections replace what an earlier run
//! of the same rules and lists stored in the timeline.

use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

use super::App;
use super::logs::{LogsError, existing_timeline};
use crate::detect::ioc::{IocError, IocList};
use crate::detect::rules::{RuleSet, RulesError, SetAside};
use crate::detect::{Detector, NewDetection, Partial};
use crate::evidence::case;
use crate::ids::CaseId;
use crate::timeline::ingest;
use crate::timeline::parse::Format;
use crate::timeline::store::TimelineError;

/// What to evaluate over which case.
#[derive(Debug, Clone)]
pub struct DetectRequest {
    pub case: CaseId,
    /// Rule files or directories of them.
    pub rules: Vec<PathBuf>,
    /// custody's own rules (`detection_rules/`) as well.
    pub builtin: bool,
    /// Indicator lists.
    pub iocs: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    #[error(transparent)]
    Logs(#[from] LogsError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Ioc(#[from] IocError),
    #[error("nothing to evaluate: no rule could be read and no indicator list was given")]
    Nothing,
    #[error("the timeline of case {case}")]
    Timeline {
        case: CaseId,
        #[source]
        source: TimelineError,
    },
    #[error("cannot read artefact {artefact} of case {case}")]
    Read {
        case: CaseId,
        artefact: String,
        #[source]
        source: Box<case::EvidenceError>,
    },
    #[error("the timeline names artefact {artefact}, which case {case} does not hold")]
    Missing { case: CaseId, artefact: String },
    #[error("a detection thread failed: {0}")]
    Worker(String),
}

/// A list as read, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ListRead {
    pub name: String,
    pub indicators: usize,
    pub skipped: usize,
    pub skipped_shown: Vec<String>,
}

/// What a run did and found.
#[derive(Debug, Clone, Serialize)]
pub struct DetectReport {
    pub case: CaseId,
    pub rule_files: usize,
    /// Rules evaluated (detection rules and correlations).
    pub rules_evaluated: usize,
    pub correlations: usize,
    /// Rules set aside, each once with why.
    pub set_aside: Vec<SetAside>,
    pub lists: Vec<ListRead>,
    pub artefacts: usize,
    /// Records evaluated.
    pub records: u64,
    /// Records whose rule or indicator matched but that have no timeline
    /// row (duplicates the timeline dropped).
    pub unplaced: u64,
    pub detections: Vec<NewDetection>,
}

impl DetectReport {
    /// Matched rules or indicators.
    pub fn found(&self) -> usize {
        self.detections.len()
    }
}

/// Reads the rules and lists a request names.
pub fn read_rules(
    rules: &[PathBuf],
    builtin: bool,
    iocs: &[PathBuf],
) -> Result<(RuleSet, Vec<IocList>), DetectError> {
    let mut set = if builtin {
        RuleSet::builtin()
    } else {
        RuleSet::default()
    };
    for p in rules {
        set.add_path(p)?;
    }
    set.settle();
    let mut lists = Vec::new();
    for p in iocs {
        lists.push(IocList::read(p)?);
    }
    Ok((set, lists))
}

pub async fn detect(app: &App, req: &DetectRequest) -> Result<DetectReport, DetectError> {
    let (set, lists) = read_rules(&req.rules, req.builtin, &req.iocs)?;
    if set.rules.is_empty() && set.correlations.is_empty() && lists.is_empty() {
        return Err(DetectError::Nothing);
    }
    let list_reports: Vec<ListRead> = lists
        .iter()
        .map(|l| ListRead {
            name: l.name.clone(),
            indicators: l.indicators.len(),
            skipped: l.skipped_count,
            skipped_shown: l.skipped.clone(),
        })
        .collect();
    let replaced: Vec<(&str, String)> = set
        .rules
        .iter()
        .map(|l| {
            (
                "sigma",
                crate::detect::rule_key(l.rule.id.as_deref(), &l.rule.title),
            )
        })
        .chain(
            set.correlations
                .iter()
                .map(|(_, c)| ("sigma", crate::detect::rule_key(c.id.as_deref(), &c.title))),
        )
        .chain(lists.iter().flat_map(|l| {
            l.indicators
                .iter()
                .map(move |i| ("ioc", format!("{}:{}", l.name, i.row)))
        }))
        .collect();
    let detector = Detector::new(&set, lists);
    let mut tl = existing_timeline(app, &req.case)?;
    let tl_err = |source| DetectError::Timeline {
        case: req.case.clone(),
        source,
    };
    let loaded = tl.loaded_artefacts().map_err(tl_err)?;
    let store = app.store().await.map_err(LogsError::from)?;
    let artefacts = case::artefacts(store.as_ref(), &req.case)
        .await
        .map_err(|source| DetectError::Read {
            case: req.case.clone(),
            artefact: "(the case's list)".into(),
            source: Box::new(source),
        })?;
    let limits = app.config.inflate;
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(workers);
    let rx = Mutex::new(rx);
    let mut readers = Vec::with_capacity(workers);
    for _ in 0..workers {
        readers.push(tl.reader(false).map_err(tl_err)?);
    }
    let mut jobs = Vec::new();
    for l in &loaded {
        let Some(a) = artefacts.iter().find(|a| a.id.to_string() == l.artefact) else {
            return Err(DetectError::Missing {
                case: req.case.clone(),
                artefact: l.artefact.clone(),
            });
        };
        let Some(format) = Format::from_name(&l.format) else {
            continue;
        };
        // Only artefacts some rule or list reads are read again.
        if !detector.reads(format) {
            continue;
        }
        jobs.push((l, a, format));
    }
    let det = &detector;
    let jobs_ref = &jobs;
    let rx_ref = &rx;
    let merged = std::thread::scope(|scope| -> Result<Partial, DetectError> {
        let mut handles = Vec::new();
        for reader in readers {
            handles.push(scope.spawn(move || -> Result<Partial, TimelineError> {
                let mut part = Partial::default();
                let mut failed = None;
                loop {
                    // One job at a time; the sender closing ends the loop.
                    let next = match rx_ref.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok((i, bytes)) = next else { break };
                    // After a failure the jobs are still taken, so the
                    // reader never waits on a queue nobody empties.
                    if failed.is_some() {
                        continue;
                    }
                    let Some((l, a, format)) = jobs_ref.get(i) else {
                        continue;
                    };
                    match reader.rows_by_place(l) {
                        Ok(rows) => {
                            let mut scan = det.scan(&rows, limits);
                            ingest::parse_artefact(a, *format, &bytes, &mut scan);
                            part.merge(scan.out);
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                failed.map_or(Ok(part), Err)
            }));
        }
        let fed = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                for (i, (_, a, _)) in jobs.iter().enumerate() {
                    let bytes = case::read_verified(store.as_ref(), a)
                        .await
                        .map_err(|source| DetectError::Read {
                            case: req.case.clone(),
                            artefact: a.id.to_string(),
                            source: Box::new(source),
                        })?;
                    if tx.send((i, bytes)).is_err() {
                        break;
                    }
                }
                Ok::<(), DetectError>(())
            })
        });
        drop(tx);
        let mut all = Partial::default();
        for h in handles {
            match h.join() {
                Ok(Ok(p)) => all.merge(p),
                Ok(Err(e)) => return Err(tl_err(e)),
                Err(_) => return Err(DetectError::Worker("a thread panicked".into())),
            }
        }
        fed?;
        Ok(all)
    })?;
    let records = merged.records;
    let unplaced = merged.unplaced;
    let found = detector.finish(merged);
    let at = crate::clock::rfc3339(app.clock.now());
    tl.store_detections(
        &found,
        &replaced,
        &at,
        Some((
            set.rules.len() + set.correlations.len(),
            req.iocs.len(),
            records,
        )),
    )
    .map_err(tl_err)?;
    Ok(DetectReport {
        case: req.case.clone(),
        rule_files: set.files,
        rules_evaluated: set.rules.len() + set.correlations.len(),
        correlations: set.correlations.len(),
        set_aside: set.set_aside,
        lists: list_reports,
        artefacts: jobs.len(),
        records,
        unplaced,
        detections: found,
    })
}
