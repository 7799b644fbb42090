//! `process`: what is inside a case's disk images, read in place from the
//! store, onto the case's timeline, with custody of every derived byte.
//!
//! For each image: its volumes and file systems are read through the seek
//! table ([`StoredImage`]); the catalogue's files (logs, journals, login
//! records, histories, persistence, accounts, event logs) become derived
//! artefacts of the case, each with both digests and a `derived` ledger
//! entry naming the parent, path, inode and extents; the full profile adds
//! the bodyfile of every name. Both are then loaded into the timeline.
//! Processing an image again derives only what it has not derived yet.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use super::App;
use crate::evidence::case::{self, AcquireContext, AcquireRequest, EvidenceError};
use crate::evidence::{Artefact, ArtefactKind, Derivation, Source};
use crate::ids::{ArtefactId, CaseId};
use crate::process::derived::ExtentReader;
use crate::process::image::StoredImage;
use crate::process::scan::{self, Found, Profile, Scan};
use crate::timeline::ingest;
use crate::timeline::parse::Format;
use crate::timeline::store::IngestReport;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    #[error(transparent)]
    App(#[from] super::AppError),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error("artefact {artefact} is a {kind}, not a disk image")]
    NotAnImage {
        artefact: ArtefactId,
        kind: &'static str,
    },
    #[error("cannot read artefact {artefact} in place")]
    Open {
        artefact: ArtefactId,
        #[source]
        source: crate::evidence::seekable::ReadError,
    },
    #[error("reading the image of artefact {artefact} failed")]
    Scan {
        artefact: ArtefactId,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the bodyfile of artefact {artefact}")]
    Spool {
        artefact: ArtefactId,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Logs(#[from] super::logs::LogsError),
    #[error("loading derived artefacts into the timeline of case {case} failed")]
    Load {
        case: CaseId,
        #[source]
        source: Box<ingest::IngestError>,
    },
}

/// What to process.
#[derive(Debug, Clone)]
pub struct ProcessRequest {
    pub case: CaseId,
    /// The images; empty: every disk image of the case (and every file
    /// artefact that holds a volume custody reads).
    pub artefacts: Vec<ArtefactId>,
    pub profile: Profile,
    /// Skip loading into the timeline.
    pub no_index: bool,
}

/// What one image gave.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub artefact: ArtefactId,
    #[serde(flatten)]
    pub scan: Scan,
    /// Derived artefacts made now.
    pub derived: Vec<DerivedSummary>,
    /// Derived earlier and left alone.
    pub already: usize,
    /// Files that could not be derived, and why.
    pub failures: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DerivedSummary {
    pub artefact: ArtefactId,
    pub kind: &'static str,
    pub path: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub case: CaseId,
    pub profile: Profile,
    pub images: Vec<ImageReport>,
    /// Artefacts that were not images, and why they were passed over.
    pub skipped: Vec<String>,
    pub timeline: Vec<IngestReport>,
}

fn is_image_kind(kind: ArtefactKind) -> bool {
    matches!(kind, ArtefactKind::DiskImage | ArtefactKind::File)
}

/// Which derived artefacts already exist for `parent`: by
/// `(volume, path, inode, extents digest)`, and whether its bodyfile does.
fn derived_before(
    all: &[Artefact],
    parent: &ArtefactId,
) -> (HashSet<(String, String, u64, String)>, bool) {
    let mut files = HashSet::new();
    let mut bodyfile = false;
    for a in all {
        let Some(d) = &a.derived else { continue };
        if &d.parent != parent {
            continue;
        }
        if a.kind == ArtefactKind::Bodyfile {
            bodyfile = true;
        } else if let (Some(path), Some(inode)) = (&d.path, d.inode) {
            files.insert((d.volume.clone(), path.clone(), inode, d.extents_sha256()));
        }
    }
    (files, bodyfile)
}

fn derived_source(parent: &Artefact, path: String, format: Option<Format>) -> Source {
    Source {
        resource: parent.source.resource.clone(),
        host: parent.source.host.clone(),
        path: Some(path),
        region: parent.source.region.clone(),
        account: parent.source.account.clone(),
        log_format: format.map(|f| f.name().to_owned()),
    }
}

fn derivation(parent: &Artefact, f: &Found) -> Derivation {
    Derivation {
        parent: parent.id.clone(),
        parent_sha256: parent.raw.sha256.clone(),
        volume: f.volume.clone(),
        fs: f.fs.to_owned(),
        path: Some(f.path.clone()),
        inode: Some(f.inode),
        modified_us: f.modified_us,
        extents: f.extents.clone(),
    }
}

/// Processes the images of a case.
pub async fn process(app: &App, req: &ProcessRequest) -> Result<ProcessReport, ProcessError> {
    let mut ctx = app.acquire_context(app.recorder()?).await?;
    // Derived files are small and re-derivable: an interrupted one is
    // derived again, not resumed.
    ctx.resume_dir = None;
    let all = case::artefacts(ctx.store.as_ref(), &req.case).await?;
    let mut skipped = Vec::new();
    let parents: Vec<&Artefact> = if req.artefacts.is_empty() {
        // A file that holds logs (an exported log, a kept alert) is no image.
        all.iter()
            .filter(|a| {
                a.derived.is_none() && is_image_kind(a.kind) && a.source.log_format.is_none()
            })
            .collect()
    } else {
        let mut out = Vec::new();
        for id in &req.artefacts {
            let a =
                all.iter()
                    .find(|a| &a.id == id)
                    .ok_or_else(|| EvidenceError::NoSuchArtefact {
                        case: req.case.clone(),
                        artefact: id.clone(),
                    })?;
            if !is_image_kind(a.kind) || a.derived.is_some() {
                return Err(ProcessError::NotAnImage {
                    artefact: a.id.clone(),
                    kind: a.kind.as_str(),
                });
            }
            out.push(a);
        }
        out
    };
    let mut images = Vec::new();
    let mut new: Vec<Artefact> = Vec::new();
    for parent in parents {
        let report = process_image(app, &ctx, &all, parent, req.profile).await?;
        let Some((report, made)) = report else {
            skipped.push(format!(
                "{} ({}): holds no volume custody reads",
                parent.id,
                parent.kind.as_str()
            ));
            continue;
        };
        new.extend(made);
        images.push(report);
    }
    let timeline = if req.no_index {
        Vec::new()
    } else {
        load(app, &ctx, &req.case, &new).await?
    };
    Ok(ProcessReport {
        case: req.case.clone(),
        profile: req.profile,
        images,
        skipped,
        timeline,
    })
}

/// Processes what an acquisition or a response just took: its disk
/// images, at `profile` depth, into the case's timeline (the `--process`
/// of `acquire file|ebs` and `respond`, and a playbook rule's `process`).
pub async fn process_acquired(
    app: &App,
    case: &CaseId,
    acquired: &[Artefact],
    profile: Profile,
) -> Result<ProcessReport, ProcessError> {
    let artefacts: Vec<ArtefactId> = acquired
        .iter()
        .filter(|a| a.kind == ArtefactKind::DiskImage || a.kind == ArtefactKind::File)
        .map(|a| a.id.clone())
        .collect();
    if artefacts.is_empty() {
        return Ok(ProcessReport {
            case: case.clone(),
            profile,
            images: Vec::new(),
            skipped: Vec::new(),
            timeline: Vec::new(),
        });
    }
    process(
        app,
        &ProcessRequest {
            case: case.clone(),
            artefacts,
            profile,
            no_index: false,
        },
    )
    .await
}

/// Reads one image and derives what it holds; `None` when a file artefact
/// holds no volume custody reads (a log, a document).
async fn process_image(
    app: &App,
    ctx: &AcquireContext,
    all: &[Artefact],
    parent: &Artefact,
    profile: Profile,
) -> Result<Option<(ImageReport, Vec<Artefact>)>, ProcessError> {
    let key = case::object_key(&parent.case, &parent.id).map_err(EvidenceError::from)?;
    let img = Arc::new(
        StoredImage::open(ctx.store.clone(), key)
            .await
            .map_err(|source| ProcessError::Open {
                artefact: parent.id.clone(),
                source,
            })?,
    );
    let (before, bodyfile_before) = derived_before(all, &parent.id);
    let want_bodyfile = profile == Profile::Full && !bodyfile_before;
    // The bodyfile is spooled only when one is to be written.
    let spool = want_bodyfile
        .then(|| {
            let dir = app.config.home.join("spool");
            crate::private_fs::create_dir_all(&dir).and_then(|()| {
                tempfile::Builder::new()
                    .prefix("bodyfile-")
                    .tempfile_in(&dir)
            })
        })
        .transpose()
        .map_err(|source| ProcessError::Spool {
            artefact: parent.id.clone(),
            source,
        })?;
    let cancel = app.cancel.clone();
    let reader: Arc<dyn custody_disk::ReadAt> = img.clone();
    let (scan, spool) = tokio::task::spawn_blocking(move || {
        let mut spool = spool;
        let body = spool
            .as_mut()
            .map(|s| s.as_file_mut() as &mut dyn std::io::Write);
        let scan = scan::scan(reader, profile, body, &cancel);
        (scan, spool)
    })
    .await
    .map_err(|e| ProcessError::Scan {
        artefact: parent.id.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let scan = scan.map_err(|source| ProcessError::Scan {
        artefact: parent.id.clone(),
        source,
    })?;
    if parent.kind == ArtefactKind::File && scan.volumes.iter().all(|v| v.fs.is_none()) {
        return Ok(None);
    }
    let mut made = Vec::new();
    let mut derived = Vec::new();
    let mut failures = Vec::new();
    let mut already = 0;
    for f in &scan.found {
        let d = derivation(parent, f);
        let ident = (
            f.volume.clone(),
            f.path.clone(),
            f.inode,
            d.extents_sha256(),
        );
        if before.contains(&ident) {
            already += 1;
            continue;
        }
        let shown = if scan.scheme == custody_disk::volume::Scheme::None {
            f.path.clone()
        } else {
            format!("{}:{}", f.volume, f.path)
        };
        let req = AcquireRequest {
            case: parent.case.clone(),
            kind: ArtefactKind::Extracted,
            source: derived_source(parent, shown.clone(), f.format),
            reader: Box::new(ExtentReader::new(img.clone(), f.extents.clone(), f.size)),
            size_hint: Some(f.size),
            notes: Vec::new(),
        };
        match case::acquire_derived(ctx, req, d).await {
            Ok(a) => {
                derived.push(DerivedSummary {
                    artefact: a.id.clone(),
                    kind: a.kind.as_str(),
                    path: shown,
                    size: a.raw.size,
                    format: f.format.map(Format::name),
                });
                made.push(a);
            }
            // A ledger that cannot record stops the job: nothing may be
            // derived without its entry.
            Err(e @ EvidenceError::Ledger(_)) => return Err(e.into()),
            Err(e) => failures.push(format!("{shown}: {}", crate::error_chain(&e))),
        }
    }
    if let Some(spool) = spool {
        let file = spool.reopen().map_err(|source| ProcessError::Spool {
            artefact: parent.id.clone(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).ok();
        let req = AcquireRequest {
            case: parent.case.clone(),
            kind: ArtefactKind::Bodyfile,
            source: derived_source(parent, "bodyfile".into(), Some(Format::Bodyfile)),
            reader: Box::new(file),
            size_hint: size,
            notes: Vec::new(),
        };
        let d = Derivation {
            parent: parent.id.clone(),
            parent_sha256: parent.raw.sha256.clone(),
            volume: "all".into(),
            fs: "custody".into(),
            path: None,
            inode: None,
            modified_us: None,
            extents: Vec::new(),
        };
        let a = case::acquire_derived(ctx, req, d).await?;
        derived.push(DerivedSummary {
            artefact: a.id.clone(),
            kind: a.kind.as_str(),
            path: "bodyfile".into(),
            size: a.raw.size,
            format: Some(Format::Bodyfile.name()),
        });
        made.push(a);
    }
    Ok(Some((
        ImageReport {
            artefact: parent.id.clone(),
            scan,
            derived,
            already,
            failures,
        },
        made,
    )))
}

/// Loads artefacts of a case into its timeline, each as its format says
/// (what was derived; the alert a job kept).
pub async fn load_artefacts(
    app: &App,
    case: &CaseId,
    new: &[Artefact],
) -> Result<Vec<IngestReport>, ProcessError> {
    let ctx = app.acquire_context(app.recorder()?).await?;
    load(app, &ctx, case, new).await
}

/// Loads what was derived into the case's timeline (the catalogue's files
/// first, then the bodyfile).
async fn load(
    app: &App,
    ctx: &AcquireContext,
    case: &CaseId,
    new: &[Artefact],
) -> Result<Vec<IngestReport>, ProcessError> {
    let items: Vec<(&Artefact, Format)> = new
        .iter()
        .filter_map(|a| ingest::format_of(a).map(|f| (a, f)))
        .collect();
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tl = super::logs::open_timeline(app, case)?;
    let now = crate::clock::rfc3339(app.clock.now());
    let load_err = |source| ProcessError::Load {
        case: case.clone(),
        source: Box::new(source),
    };
    tl.begin_bulk()
        .map_err(|e| load_err(ingest::IngestError::Timeline(e)))?;
    // The loader's future holds its parser's channel, which is not `Send`:
    // it runs here, on this worker, as `logs` loads do.
    let reports = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(ingest::ingest_many(
            ctx.store.as_ref(),
            &mut tl,
            &items,
            ingest::LoadOptions {
                geoip: None,
                inflate: app.config.inflate,
            },
            &now,
        ))
    })
    .map_err(load_err)?;
    tl.end_bulk()
        .map_err(|e| load_err(ingest::IngestError::Timeline(e)))?;
    Ok(reports)
}
