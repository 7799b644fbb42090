//! `process`: what is inside a case's disk images, read in place from the
//! store, onto the case's timeline, with custody of every derived byte.
//!
//! For each image: its volumes and file systems are read through the seek
//! table ([`StoredImage`]); the catalogue's files (logs, journals, login
//! records, histories, persistence, accounts, event logs) become derived
//! artefacts of the case, each with both digests and a `derived` ledger
//! entry naming the parent, path, inode and extents; the full profile adds
//! the bodyfile of every name, whose rows are loaded into the timeline as
//! the walk writes it (`StreamedLoad`); the catalogue's files are loaded
//! after. A file system holding a node's containerd or Docker state gives
//! its container inventory and each container's writable layer, read
//! offline, as derived artefacts too. Processing an image again derives only what it has not derived
//! yet.

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
use crate::timeline::parse::{Format, bodyfile};
use crate::timeline::store::{IngestReport, Timeline, TimelineError};

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
    #[error("loading bodyfile {artefact} into the timeline failed")]
    Bodyfile {
        artefact: ArtefactId,
        #[source]
        source: TimelineError,
    },
    #[error("the thread loading bodyfile {artefact} into the timeline stopped unexpectedly")]
    LoaderStopped { artefact: ArtefactId },
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
    /// Container runtime state found in the image's file systems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainersReport>,
}

/// A node's containers found in one file system of an image: their
/// inventory and each writable layer became derived artefacts.
#[derive(Debug, Serialize)]
pub struct ContainersReport {
    pub volume: String,
    /// Where the state is (`/var/lib`: the volume is the node's root).
    pub prefix: &'static str,
    /// The runtimes, with where their state is.
    pub runtimes: Vec<String>,
    pub containers: usize,
    /// Writable layers derived now.
    pub layers: usize,
    /// What could not be read of the runtimes' state.
    pub problems: Vec<String>,
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

/// Derived artefacts of a parent, by `(volume, path, inode, extents
/// digest)` for files; what custody wrote from it (its bodyfile, container
/// inventories and layers), by `(kind, volume, path)`.
#[derive(Default)]
struct Before {
    files: HashSet<(String, String, u64, String)>,
    written: HashSet<(&'static str, String, String)>,
    bodyfile: bool,
}

/// Which derived artefacts already exist for `parent`.
fn derived_before(all: &[Artefact], parent: &ArtefactId) -> Before {
    let mut b = Before::default();
    for a in all {
        let Some(d) = &a.derived else { continue };
        if &d.parent != parent {
            continue;
        }
        if a.kind == ArtefactKind::Bodyfile {
            b.bodyfile = true;
        } else if let (Some(path), Some(inode)) = (&d.path, d.inode) {
            b.files
                .insert((d.volume.clone(), path.clone(), inode, d.extents_sha256()));
        } else if let Some(path) = &d.path {
            b.written
                .insert((a.kind.as_str(), d.volume.clone(), path.clone()));
        }
    }
    b
}

/// What custody wrote from a parent: no extents, its digests its custody.
fn written_by_custody(parent: &Artefact, volume: &str, path: String) -> Derivation {
    Derivation {
        parent: parent.id.clone(),
        parent_sha256: parent.raw.sha256.clone(),
        volume: volume.to_owned(),
        fs: "custody".into(),
        path: Some(path),
        inode: None,
        modified_us: None,
        extents: Vec::new(),
    }
}

/// A path of a volume as the report shows it: bare on a whole image.
fn on_volume(volume: &str, path: &str) -> String {
    if volume == scan::WHOLE {
        path.to_owned()
    } else {
        format!("{volume}:{path}")
    }
}

/// The containers of each node's file system found in the image: its
/// inventory, then each container's writable layer, as derived artefacts
/// (read offline: nothing in the image runs). Failures are listed; only a
/// ledger that cannot record stops.
async fn derive_containers(
    ctx: &AcquireContext,
    parent: &Artefact,
    scan: &Scan,
    before: &Before,
    out: &mut DerivedOut,
) -> Result<Vec<ContainersReport>, ProcessError> {
    let mut reports = Vec::new();
    for v in &scan.volumes {
        let Some(off) = v.containers.clone() else {
            continue;
        };
        let reading = off.clone();
        let inv = match tokio::task::spawn_blocking(move || reading.inventory()).await {
            Ok(inv) => inv,
            Err(e) => {
                out.failures.push(format!(
                    "{}: the container inventory did not finish: {e}",
                    on_volume(&v.name, off.prefix)
                ));
                continue;
            }
        };
        let mut rep = ContainersReport {
            volume: v.name.clone(),
            prefix: off.prefix,
            runtimes: inv.runtimes.clone(),
            containers: inv.containers.len(),
            layers: 0,
            problems: inv.problems.clone(),
        };
        let path = format!("containers in {}", off.prefix);
        if before
            .written
            .contains(&("container_inventory", v.name.clone(), path.clone()))
        {
            out.already += 1;
        } else {
            let json = serde_json::to_vec_pretty(&inv).map_err(|e| ProcessError::Scan {
                artefact: parent.id.clone(),
                source: std::io::Error::other(e),
            })?;
            let shown = on_volume(&v.name, &path);
            let req = AcquireRequest {
                case: parent.case.clone(),
                kind: ArtefactKind::ContainerInventory,
                source: derived_source(parent, shown.clone(), None),
                reader: Box::new(std::io::Cursor::new(json)),
                size_hint: None,
                notes: inv.problems.clone(),
            };
            let d = written_by_custody(parent, &v.name, path);
            out.store(ctx, req, d, shown).await?;
        }
        for r in &inv.containers {
            let Some(plan) = off.layer_plan(r) else {
                continue;
            };
            let path = plan.upper.display().to_string();
            if before
                .written
                .contains(&("container_layer", v.name.clone(), path.clone()))
            {
                out.already += 1;
                continue;
            }
            let shown = on_volume(
                &v.name,
                &format!("{path} (writable layer of {})", r.label()),
            );
            let req = AcquireRequest {
                case: parent.case.clone(),
                kind: ArtefactKind::ContainerLayer,
                source: derived_source(parent, shown.clone(), None),
                reader: Box::new(crate::collect::container::layer::start(plan)),
                size_hint: None,
                notes: r.problems.clone(),
            };
            let d = written_by_custody(parent, &v.name, path);
            if out.store(ctx, req, d, shown).await? {
                rep.layers += 1;
            }
        }
        reports.push(rep);
    }
    Ok(reports)
}

/// What an image's derivations made, and what failed.
#[derive(Default)]
struct DerivedOut {
    made: Vec<Artefact>,
    derived: Vec<DerivedSummary>,
    failures: Vec<String>,
    already: usize,
}

impl DerivedOut {
    /// Stores one artefact custody wrote from the parent; whether it was.
    async fn store(
        &mut self,
        ctx: &AcquireContext,
        req: AcquireRequest,
        d: Derivation,
        shown: String,
    ) -> Result<bool, ProcessError> {
        match case::acquire_derived(ctx, req, d).await {
            Ok(a) => {
                self.derived.push(DerivedSummary {
                    artefact: a.id.clone(),
                    kind: a.kind.as_str(),
                    path: shown,
                    size: a.raw.size,
                    format: None,
                });
                self.made.push(a);
                Ok(true)
            }
            Err(e @ EvidenceError::Ledger(_)) => Err(e.into()),
            Err(e) => {
                self.failures
                    .push(format!("{shown}: {}", crate::error_chain(&e)));
                Ok(false)
            }
        }
    }
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
    // Opened by the first image whose bodyfile is loaded as it is written,
    // else when what was derived is loaded.
    let mut tl: Option<Timeline> = None;
    let mut streamed: Vec<IngestReport> = Vec::new();
    for parent in parents {
        let index = (!req.no_index).then_some(&mut tl);
        let report = process_image(app, &ctx, &all, parent, req.profile, index).await?;
        let Some((report, made, loaded)) = report else {
            skipped.push(format!(
                "{} ({}): holds no volume custody reads",
                parent.id,
                parent.kind.as_str()
            ));
            continue;
        };
        new.extend(made);
        streamed.extend(loaded);
        images.push(report);
    }
    let timeline = if req.no_index {
        Vec::new()
    } else {
        let done: HashSet<&str> = streamed.iter().map(|r| r.artefact.as_str()).collect();
        let rest: Vec<Artefact> = new
            .into_iter()
            .filter(|a| !done.contains(a.id.as_str()))
            .collect();
        let mut reports = load(app, &ctx, &req.case, &rest, tl).await?;
        // The catalogue's files first, then the bodyfile, as before.
        reports.extend(streamed);
        reports
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

/// What one image gave: its report, the artefacts derived, and the
/// timeline loads already done (its bodyfile, loaded as it was written).
type ImageOutcome = (ImageReport, Vec<Artefact>, Vec<IngestReport>);

/// Reads one image and derives what it holds; `None` when a file artefact
/// holds no volume custody reads (a log, a document). With `index`, a
/// bodyfile is loaded into the case's timeline (opened there when it is not
/// yet) while the walk writes it, on another thread, and recorded as loaded
/// once its artefact is stored.
async fn process_image(
    app: &App,
    ctx: &AcquireContext,
    all: &[Artefact],
    parent: &Artefact,
    profile: Profile,
    index: Option<&mut Option<Timeline>>,
) -> Result<Option<ImageOutcome>, ProcessError> {
    let key = case::object_key(&parent.case, &parent.id).map_err(EvidenceError::from)?;
    let img = Arc::new(
        StoredImage::open(ctx.store.clone(), key)
            .await
            .map_err(|source| ProcessError::Open {
                artefact: parent.id.clone(),
                source,
            })?,
    );
    let before = derived_before(all, &parent.id);
    let want_bodyfile = profile == Profile::Full && !before.bodyfile;
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
    // The bodyfile's rows go into the timeline as the walk writes it, under
    // the id its artefact will have.
    let mut streaming = match (&spool, index) {
        (Some(_), Some(slot)) => {
            let tl = match slot.take() {
                Some(tl) => tl,
                None => open_for_load(app, &parent.case)?,
            };
            Some((
                StreamedLoad::start(tl, crate::clock::rfc3339(app.clock.now())),
                slot,
            ))
        }
        _ => None,
    };
    let chunks = streaming.as_mut().and_then(|(s, _)| s.chunks.take());
    let cancel = app.cancel.clone();
    let reader: Arc<dyn custody_disk::ReadAt> = img.clone();
    let (scan, spool) = tokio::task::spawn_blocking(move || {
        let mut spool = spool;
        let scan = match spool.as_mut() {
            Some(s) => {
                let mut tee = Tee {
                    file: s.as_file_mut(),
                    chunks,
                    pending: Vec::new(),
                };
                let scan = scan::scan(reader, profile, Some(&mut tee), &cancel);
                tee.finish();
                scan
            }
            None => scan::scan(reader, profile, None, &cancel),
        };
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
        // No bodyfile is kept: its rows, not recorded as loaded, are undone.
        if let Some((load, slot)) = streaming {
            *slot = Some(load.end(None)?.0);
        }
        return Ok(None);
    }
    let mut made = Vec::new();
    let mut loaded = Vec::new();
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
        if before.files.contains(&ident) {
            already += 1;
            continue;
        }
        // Bare paths only for a file system on the whole image: a partition
        // or a logical volume (several may share a disk with no table) is
        // named, as in the bodyfile.
        let shown = if f.volume == scan::WHOLE {
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
    let mut written = DerivedOut::default();
    let containers = derive_containers(ctx, parent, &scan, &before, &mut written).await?;
    made.extend(written.made);
    derived.extend(written.derived);
    failures.extend(written.failures);
    already += written.already;
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
        let chosen = streaming.as_ref().map(|(l, _)| l.id.clone());
        let stored = match chosen {
            Some(id) => case::acquire_derived_as(ctx, req, d, id).await,
            None => case::acquire_derived(ctx, req, d).await,
        };
        // Rows loaded as the bodyfile was written count once its artefact is
        // stored and recorded; otherwise they are undone.
        if let Some((load, slot)) = streaming.take() {
            let (tl, report) = load.end(stored.as_ref().ok().map(|a| &a.id))?;
            *slot = Some(tl);
            loaded.extend(report);
        }
        let a = stored?;
        derived.push(DerivedSummary {
            artefact: a.id.clone(),
            kind: a.kind.as_str(),
            path: "bodyfile".into(),
            size: a.raw.size,
            format: Some(Format::Bodyfile.name()),
        });
        made.push(a);
    }
    if let Some((load, slot)) = streaming {
        *slot = Some(load.end(None)?.0);
    }
    Ok(Some((
        ImageReport {
            artefact: parent.id.clone(),
            scan,
            derived,
            already,
            failures,
            containers,
        },
        made,
        loaded,
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
    load(app, &ctx, case, new, None).await
}

fn load_err(case: &CaseId, source: ingest::IngestError) -> ProcessError {
    ProcessError::Load {
        case: case.clone(),
        source: Box::new(source),
    }
}

/// The case's timeline, a bulk run begun (see [`Timeline::begin_bulk`]).
fn open_for_load(app: &App, case: &CaseId) -> Result<Timeline, ProcessError> {
    let mut tl = super::logs::open_timeline(app, case)?;
    tl.begin_bulk()
        .map_err(|e| load_err(case, ingest::IngestError::Timeline(e)))?;
    Ok(tl)
}

/// Loads what was derived into the case's timeline (`tl` when a bodyfile's
/// load opened it already), and ends the bulk run.
async fn load(
    app: &App,
    ctx: &AcquireContext,
    case: &CaseId,
    new: &[Artefact],
    tl: Option<Timeline>,
) -> Result<Vec<IngestReport>, ProcessError> {
    let items: Vec<(&Artefact, Format)> = new
        .iter()
        .filter_map(|a| ingest::format_of(a).map(|f| (a, f)))
        .collect();
    let mut tl = match tl {
        Some(tl) => tl,
        None if items.is_empty() => return Ok(Vec::new()),
        None => open_for_load(app, case)?,
    };
    let now = crate::clock::rfc3339(app.clock.now());
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
    .map_err(|e| load_err(case, e))?;
    tl.end_bulk()
        .map_err(|e| load_err(case, ingest::IngestError::Timeline(e)))?;
    Ok(reports)
}

/// Bodyfile bytes handed to the loading thread at once, about.
const CHUNK: usize = 256 << 10;
/// Chunks waiting for the loading thread at most: the walk waits beyond.
const CHUNKS_WAITING: usize = 8;

/// A bodyfile's rows loaded into the timeline on a thread of their own
/// while the walk writes it: the walk and the loader use both cores, where
/// loading the stored bodyfile afterwards used one. The rows name the
/// artefact the bodyfile will be stored as, and count (are recorded as
/// loaded) only once it is: a load not ended with the artefact's id leaves
/// them marked as loading, and the timeline undoes them when it is next
/// opened.
struct StreamedLoad {
    id: ArtefactId,
    chunks: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    decide: std::sync::mpsc::SyncSender<bool>,
    thread: std::thread::JoinHandle<(Timeline, Result<Option<IngestReport>, TimelineError>)>,
}

impl StreamedLoad {
    fn start(tl: Timeline, now: String) -> Self {
        let id = ArtefactId::generate();
        let (chunks, chunk_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_WAITING);
        let (decide, decide_rx) = std::sync::mpsc::sync_channel::<bool>(1);
        let name = id.to_string();
        let thread = std::thread::spawn(move || {
            let mut tl = tl;
            let result = (|| {
                let mut loader = tl.loader(&name, Format::Bodyfile.name(), None)?;
                let mut line = 1usize;
                for chunk in chunk_rx {
                    line += bodyfile::bodyfile_from(&chunk, line, &mut loader);
                }
                match decide_rx.recv() {
                    Ok(true) => loader.finish(&now).map(Some),
                    _ => Ok(None),
                }
            })();
            (tl, result)
        });
        Self {
            id,
            chunks: Some(chunks),
            decide,
            thread,
        }
    }

    /// Ends the load: recorded as loaded when `stored` is the id the
    /// bodyfile was stored under, else left to be undone. Gives the
    /// timeline back.
    fn end(
        mut self,
        stored: Option<&ArtefactId>,
    ) -> Result<(Timeline, Option<IngestReport>), ProcessError> {
        drop(self.chunks.take());
        let _ = self.decide.send(stored == Some(&self.id));
        let (tl, result) = self
            .thread
            .join()
            .map_err(|_| ProcessError::LoaderStopped {
                artefact: self.id.clone(),
            })?;
        let report = result.map_err(|e| ProcessError::Bodyfile {
            artefact: self.id.clone(),
            source: e,
        })?;
        Ok((tl, report))
    }
}

/// The walk's bodyfile, written to the spool and handed, a chunk of whole
/// lines at a time, to the loading thread. A loader that stopped takes no
/// more; its error is met when the load ends.
struct Tee<'a> {
    file: &'a mut std::fs::File,
    chunks: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    pending: Vec<u8>,
}

impl Tee<'_> {
    fn hand_on(&mut self, all: bool) {
        let Some(tx) = &self.chunks else {
            self.pending.clear();
            return;
        };
        let cut = if all {
            self.pending.len()
        } else {
            match self.pending.iter().rposition(|&b| b == b'\n') {
                Some(at) => at + 1,
                None => return,
            }
        };
        let rest = self.pending.split_off(cut);
        let chunk = std::mem::replace(&mut self.pending, rest);
        if !chunk.is_empty() && tx.send(chunk).is_err() {
            self.chunks = None;
        }
    }

    /// Hands on what is left, and closes the loader's input.
    fn finish(mut self) {
        self.hand_on(true);
    }
}

impl std::io::Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        if self.chunks.is_some() {
            self.pending
                .extend_from_slice(buf.get(..n).unwrap_or_default());
            if self.pending.len() >= CHUNK {
                self.hand_on(false);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::timeline::query::Query;

    /// A bodyfile of `n` names, each with two distinct times (two rows).
    fn body(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            writeln!(
                out,
                "0|/dir/file-{i}|{}|r/rrw-r--r--|0|0|{i}|1700000000|1700000100|1700000000|0",
                i + 11
            )
            .unwrap();
        }
        out
    }

    fn rows(tl: &Timeline) -> Vec<(String, String, String)> {
        tl.rows(&Query::parse("").unwrap(), 100_000, 0)
            .unwrap()
            .into_iter()
            .map(|r| (r.target.unwrap_or_default(), r.action, r.locator))
            .collect()
    }

    /// Writes `bytes` through a tee in pieces of `piece` bytes, then ends the
    /// load as `stored` says; the timeline as a reader then sees it.
    fn stream(dir: &std::path::Path, bytes: &[u8], piece: usize, keep: bool) -> Timeline {
        let path = dir.join("t.sqlite");
        let mut tl = Timeline::open(&path).unwrap();
        assert!(tl.begin_bulk().unwrap());
        let mut load = StreamedLoad::start(tl, "2026-12-03T00:00:00Z".into());
        let mut spool = std::fs::File::create(dir.join("spool")).unwrap();
        let mut tee = Tee {
            file: &mut spool,
            chunks: load.chunks.take(),
            pending: Vec::new(),
        };
        for part in bytes.chunks(piece) {
            tee.write_all(part).unwrap();
            // Whole lines handed on now and then, as a full buffer does.
            tee.hand_on(false);
        }
        tee.finish();
        assert_eq!(std::fs::read(dir.join("spool")).unwrap(), bytes);
        let id = load.id.clone();
        let (mut tl, report) = load.end(keep.then_some(&id)).unwrap();
        assert_eq!(report.is_some(), keep);
        tl.end_bulk().unwrap();
        drop(tl);
        Timeline::open(&path).unwrap()
    }

    #[test]
    fn rows_loaded_as_the_bodyfile_is_written_equal_those_of_the_whole_file() {
        let bytes = body(500);
        // The oracle: the whole file, loaded at once through the parser.
        let whole_dir = tempfile::tempdir().unwrap();
        let mut whole = Timeline::open(&whole_dir.path().join("t.sqlite")).unwrap();
        let mut l = whole.loader("a-whole", "bodyfile", None).unwrap();
        bodyfile::bodyfile(&bytes, &mut l);
        l.finish("2026-12-03T00:00:00Z").unwrap();
        let want = rows(&whole);
        assert_eq!(want.len(), 1000);
        // Pieces that cut lines anywhere, and one byte at a time at the end.
        for piece in [7, 4096, 100_000] {
            let dir = tempfile::tempdir().unwrap();
            let tl = stream(dir.path(), &bytes, piece, true);
            assert_eq!(rows(&tl), want, "pieces of {piece}");
        }
    }

    #[test]
    fn rows_of_a_bodyfile_that_was_not_stored_are_undone() {
        let dir = tempfile::tempdir().unwrap();
        let tl = stream(dir.path(), &body(50), 333, false);
        assert!(rows(&tl).is_empty(), "{:?}", rows(&tl).first());
    }
}
