//! The durable alert queue: an alert is on disk (fsynced) before the server
//! answers `202`, so a crash after that loses nothing.
//!
//! One append-only file of JSON lines: an `accepted` record per job (the
//! alert, its de-duplication key, its case and the entities the case was
//! joined by), then `state` records as the job runs. Appends from all
//! requests go through one writer thread that writes whatever has queued
//! up and fsyncs once for the lot (group commit), so durability costs one
//! fsync per batch rather than per alert. On open the file is replayed; a
//! torn last line (a crash mid-append, never acknowledged) is cut, while an
//! unreadable line before it is corruption and refused; except a line that
//! ends in a whole record, which older versions left after a failed append
//! (its fragment, then the next record): the fragment is dropped.
//!
//! A failed append (a full disk, an I/O error) is undone before anyone is
//! answered: the file is cut back to its length before the batch and
//! fsynced, so the next append never lands on a fragment. When even that
//! fails the writer stops, and every later append is refused (503) rather
//! than written after bytes nobody can account for.
//!
//! Finished jobs older than a retention age are dropped by [`Queue::compact`]:
//! the file is rewritten without them (temporary file, fsync, rename, fsync
//! of the directory) by the writer thread itself, so no append interleaves.
//!
//! The same alert delivered twice (same source and alert id) is one job:
//! the key is reserved before the write, so a second delivery racing the
//! first waits for the first's fsync and gets the same job id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read as _, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::CaseId;

/// Records written per fsync at most.
const MAX_BATCH: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("cannot open the queue {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "line {line} of the queue {path} is unreadable ({message}); refusing to guess what it held"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot write to the queue: {0}")]
    Write(String),
    #[error("no job {0}")]
    NoJob(String),
    /// The writer stopped after a failure it could not undo (the reason).
    #[error("{0}")]
    Stopped(String),
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Record {
    Accepted {
        job: String,
        source: String,
        alert_id: String,
        case: CaseId,
        #[serde(with = "time::serde::rfc3339")]
        received: OffsetDateTime,
        /// The entity keys the case was joined by (`instance:i-…`, `ip:…`).
        entities: Vec<String>,
        alert: serde_json::Value,
    },
    State {
        job: String,
        state: JobState,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<serde_json::Value>,
    },
    /// The job's notification was delivered, or given up on.
    Notified {
        job: String,
        delivered: bool,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        detail: serde_json::Value,
    },
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub source: String,
    pub alert_id: String,
    pub case: CaseId,
    #[serde(with = "time::serde::rfc3339")]
    pub received: OffsetDateTime,
    pub state: JobState,
    /// Each state change with its time and detail, in order.
    pub steps: Vec<serde_json::Value>,
    pub alert: serde_json::Value,
    /// Its notification (if its rule has one) was delivered or given up on.
    pub notified: bool,
    /// When it reached done or failed: what compaction ages it by.
    #[serde(skip)]
    pub finished_at: Option<OffsetDateTime>,
}

/// What to queue.
#[derive(Debug, Clone)]
pub struct Submit {
    pub source: String,
    pub alert_id: String,
    /// Keys of the entities shared alerts join a case by.
    pub entities: Vec<String>,
    pub alert: serde_json::Value,
}

/// The answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub job: String,
    pub case: CaseId,
    /// The alert was already queued: this is the job it made.
    pub duplicate: bool,
}

type Ack = tokio::sync::watch::Receiver<Option<Result<(), String>>>;

/// Where the writer says whether an append is on disk.
type Written = tokio::sync::oneshot::Sender<Result<(), String>>;

/// What the writer thread is asked to do.
enum Msg {
    /// A line to append, and where to say whether it is on disk.
    Append(Vec<u8>, Written),
    /// Rewrite the file without these jobs' records; answers the bytes dropped.
    Compact(
        BTreeSet<String>,
        tokio::sync::oneshot::Sender<Result<u64, String>>,
    ),
}

/// What the writer appends to: the queue file, or in tests one whose disk
/// fills at a chosen byte.
trait Sink: Send + 'static {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Appends go to `file` from now on (the queue was rewritten).
    fn replace(&mut self, file: File);
}

impl Sink for File {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn replace(&mut self, file: File) {
        *self = file;
    }
}

#[derive(Default)]
struct State {
    // B-trees, not hash maps: a hash map doubling under hundreds of
    // thousands of jobs moves them all while intake waits on this lock.
    jobs: BTreeMap<String, Job>,
    /// (source, alert id) → job id, and the fsync to wait for when the
    /// job's record is still being written.
    keys: BTreeMap<(String, String), (String, Option<Ack>)>,
    /// entity key → (case, last time an alert named it).
    entities: BTreeMap<String, (CaseId, OffsetDateTime)>,
    order: Vec<String>,
}

/// The queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    state: Arc<Mutex<State>>,
    writer: std::sync::mpsc::Sender<Msg>,
    /// Why the writer stopped, once it has: nothing more can be queued.
    down: Arc<Mutex<Option<String>>>,
    clock: Arc<dyn crate::clock::Clock>,
    /// Alerts sharing an entity within this window join the same case.
    case_window: time::Duration,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-applied record:
    // every change is a single insert. Keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queue {
    /// Where `custody serve` keeps its queue under a custody home.
    pub fn path_in(home: &Path) -> std::path::PathBuf {
        home.join("serve").join("queue.jsonl")
    }

    /// The jobs in the queue file at `path` as it stands, oldest first,
    /// read without opening the queue: nothing is written or cut, so a
    /// reader (the workspace) may look while the server appends. A torn
    /// last record is left out; no file is no job.
    pub fn snapshot(path: &Path) -> Result<Vec<Job>, QueueError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(QueueError::Open {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut state = State::default();
        replay(&mut file, path, &mut state)?;
        let State {
            mut jobs, order, ..
        } = state;
        Ok(order.iter().filter_map(|id| jobs.remove(id)).collect())
    }

    /// Opens (or creates) the queue file at `path` and replays it.
    pub fn open(
        path: &Path,
        clock: Arc<dyn crate::clock::Clock>,
        case_window: time::Duration,
    ) -> Result<Self, QueueError> {
        Self::open_on(path, clock, case_window, |f| Box::new(f))
    }

    /// [`Queue::open`], with the writer appending through `sink`.
    fn open_on(
        path: &Path,
        clock: Arc<dyn crate::clock::Clock>,
        case_window: time::Duration,
        sink: impl FnOnce(File) -> Box<dyn Sink>,
    ) -> Result<Self, QueueError> {
        let open_err = |source| QueueError::Open {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::private_fs::create_dir_all(dir).map_err(open_err)?;
        remove_stale_compactions(dir);
        let existed = path.exists();
        // Alerts name instances, addresses and principals: the owner's alone.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        if !existed {
            // The new file's name must survive a power cut as its records do.
            crate::private_fs::fsync_dir(dir).map_err(open_err)?;
        }
        let mut state = State::default();
        let good = replay(&mut file, path, &mut state)?;
        let len = file.metadata().map_err(open_err)?.len();
        if good < len {
            tracing::warn!(path = %path.display(), cut = len - good, "cutting a torn last record of the queue (never acknowledged)");
            file.set_len(good).map_err(open_err)?;
            file.sync_data().map_err(open_err)?;
        }
        file.seek(SeekFrom::End(0)).map_err(open_err)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let down = Arc::new(Mutex::new(None));
        let writer = Writer {
            sink: sink(file),
            len: good,
            path: path.to_owned(),
            down: down.clone(),
        };
        std::thread::Builder::new()
            .name("custody-queue".into())
            .spawn(move || writer.run(&rx))
            .map_err(open_err)?;
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            writer: tx,
            down,
            clock,
            case_window,
        })
    }

    /// `Err` with the reason once the queue can take nothing more (its
    /// writer stopped after a failure it could not undo).
    pub fn health(&self) -> Result<(), QueueError> {
        match lock(&self.down).as_ref() {
            Some(why) => Err(QueueError::Stopped(why.clone())),
            None => Ok(()),
        }
    }

    fn stopped(&self) -> QueueError {
        QueueError::Write(
            lock(&self.down)
                .clone()
                .unwrap_or_else(|| "the queue writer stopped".into()),
        )
    }

    async fn append(&self, record: &Record) -> Result<(), QueueError> {
        let mut line = serde_json::to_vec(record).map_err(|e| QueueError::Write(e.to_string()))?;
        line.push(b'\n');
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer
            .send(Msg::Append(line, tx))
            .map_err(|_| self.stopped())?;
        rx.await
            .map_err(|_| self.stopped())?
            .map_err(QueueError::Write)
    }

    /// Queues an alert durably; the same (source, alert id) again is the
    /// same job. Returns once the job is on disk.
    pub async fn enqueue(&self, s: Submit) -> Result<Enqueued, QueueError> {
        let key = (s.source.clone(), s.alert_id.clone());
        let now = self.clock.now();
        enum Next {
            Duplicate(String, Option<Ack>),
            Write(
                Record,
                tokio::sync::watch::Sender<Option<Result<(), String>>>,
            ),
        }
        // Decided under the lock, awaited after it is released.
        let next = {
            let mut st = lock(&self.state);
            if let Some((job, pending)) = st.keys.get(&key).cloned() {
                Next::Duplicate(job, pending)
            } else {
                let case = s
                    .entities
                    .iter()
                    .filter_map(|e| st.entities.get(e))
                    .filter(|(_, seen)| now - *seen <= self.case_window)
                    .max_by_key(|(_, seen)| *seen)
                    .map(|(c, _)| c.clone())
                    .unwrap_or_else(|| CaseId::generate(now));
                let job = format!("j-{}", uuid::Uuid::now_v7().simple());
                let (ack_tx, ack_rx) = tokio::sync::watch::channel(None);
                st.keys.insert(key.clone(), (job.clone(), Some(ack_rx)));
                for e in &s.entities {
                    st.entities.insert(e.clone(), (case.clone(), now));
                }
                Next::Write(
                    Record::Accepted {
                        job,
                        source: s.source,
                        alert_id: s.alert_id,
                        case,
                        received: now,
                        entities: s.entities,
                        alert: s.alert,
                    },
                    ack_tx,
                )
            }
        };
        let (record, ack_tx) = match next {
            Next::Write(r, a) => (r, a),
            Next::Duplicate(job, pending) => {
                if let Some(mut ack) = pending {
                    // The first delivery is still being written: its outcome is ours.
                    let r = ack
                        .wait_for(Option::is_some)
                        .await
                        .map_err(|_| QueueError::Write("the queue writer stopped".into()))?
                        .clone();
                    if let Some(Err(e)) = r {
                        return Err(QueueError::Write(e));
                    }
                }
                let case = lock(&self.state)
                    .jobs
                    .get(&job)
                    .map(|j| j.case.clone())
                    .ok_or_else(|| QueueError::NoJob(job.clone()))?;
                return Ok(Enqueued {
                    job,
                    case,
                    duplicate: true,
                });
            }
        };
        let written = self.append(&record).await;
        let mut st = lock(&self.state);
        let Record::Accepted { job, case, .. } = &record else {
            return Err(QueueError::Write("not an accepted record".into()));
        };
        match &written {
            Ok(()) => {
                apply(&mut st, record.clone());
                let _ = ack_tx.send(Some(Ok(())));
                Ok(Enqueued {
                    job: job.clone(),
                    case: case.clone(),
                    duplicate: false,
                })
            }
            Err(e) => {
                st.keys.remove(&key);
                let _ = ack_tx.send(Some(Err(e.to_string())));
                Err(QueueError::Write(e.to_string()))
            }
        }
    }

    /// Records a job's new state durably.
    pub async fn set_state(
        &self,
        job: &str,
        state: JobState,
        detail: Option<serde_json::Value>,
    ) -> Result<(), QueueError> {
        if !lock(&self.state).jobs.contains_key(job) {
            return Err(QueueError::NoJob(job.to_owned()));
        }
        let record = Record::State {
            job: job.to_owned(),
            state,
            at: self.clock.now(),
            detail,
        };
        self.append(&record).await?;
        apply(&mut lock(&self.state), record);
        Ok(())
    }

    pub fn job(&self, id: &str) -> Option<Job> {
        lock(&self.state).jobs.get(id).cloned()
    }

    /// The jobs of a case, in the order they were accepted.
    pub fn case_jobs(&self, case: &str) -> Vec<Job> {
        let st = lock(&self.state);
        st.order
            .iter()
            .filter_map(|id| st.jobs.get(id))
            .filter(|j| j.case.as_str() == case)
            .cloned()
            .collect()
    }

    /// Jobs accepted but not finished, oldest first: after a restart these
    /// run (or resume) again.
    pub fn unfinished(&self) -> Vec<Job> {
        let st = lock(&self.state);
        st.order
            .iter()
            .filter_map(|id| st.jobs.get(id))
            .filter(|j| !j.state.finished())
            .cloned()
            .collect()
    }

    /// Finished jobs whose notification was neither delivered nor given up
    /// on, oldest first: a crash cut their delivery off.
    pub fn unnotified(&self) -> Vec<Job> {
        let st = lock(&self.state);
        st.order
            .iter()
            .filter_map(|id| st.jobs.get(id))
            .filter(|j| j.state.finished() && !j.notified)
            .cloned()
            .collect()
    }

    /// Records durably that `job`'s notification was delivered (or, with
    /// `delivered` false, given up on), so a restart does not send it again.
    pub async fn set_notified(
        &self,
        job: &str,
        delivered: bool,
        detail: serde_json::Value,
    ) -> Result<(), QueueError> {
        if !lock(&self.state).jobs.contains_key(job) {
            return Err(QueueError::NoJob(job.to_owned()));
        }
        let record = Record::Notified {
            job: job.to_owned(),
            delivered,
            at: self.clock.now(),
            detail,
        };
        self.append(&record).await?;
        apply(&mut lock(&self.state), record);
        Ok(())
    }

    /// Drops jobs that finished more than `age` ago, from the file and
    /// from memory; returns how many. Their (source, alert id) is forgotten
    /// with them: the same alert delivered after that is a new job.
    /// Entities last seen outside the case window are forgotten too.
    pub async fn compact(&self, age: time::Duration) -> Result<usize, QueueError> {
        let now = self.clock.now();
        let cutoff = now - age;
        let old: BTreeSet<String> = lock(&self.state)
            .jobs
            .values()
            .filter(|j| j.state.finished() && j.finished_at.is_some_and(|t| t <= cutoff))
            .map(|j| j.id.clone())
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer
            .send(Msg::Compact(old.clone(), tx))
            .map_err(|_| self.stopped())?;
        let dropped = rx
            .await
            .map_err(|_| self.stopped())?
            .map_err(QueueError::Write)?;
        let mut st = lock(&self.state);
        st.jobs.retain(|id, _| !old.contains(id));
        st.keys.retain(|_, (id, _)| !old.contains(id));
        st.order.retain(|id| !old.contains(id));
        let window = self.case_window;
        st.entities.retain(|_, (_, seen)| now - *seen <= window);
        tracing::info!(jobs = old.len(), bytes = dropped, "queue compacted");
        Ok(old.len())
    }

    /// Jobs per state, for the metrics.
    pub fn counts(&self) -> HashMap<JobState, u64> {
        let mut out = HashMap::new();
        for j in lock(&self.state).jobs.values() {
            *out.entry(j.state).or_insert(0) += 1;
        }
        out
    }
}

impl std::hash::Hash for JobState {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h);
    }
}

fn apply(st: &mut State, record: Record) {
    match record {
        Record::Accepted {
            job,
            source,
            alert_id,
            case,
            received,
            entities,
            alert,
        } => {
            st.keys
                .insert((source.clone(), alert_id.clone()), (job.clone(), None));
            for e in entities {
                let newer = st.entities.get(&e).is_none_or(|(_, t)| *t <= received);
                if newer {
                    st.entities.insert(e, (case.clone(), received));
                }
            }
            st.order.push(job.clone());
            st.jobs.insert(
                job.clone(),
                Job {
                    id: job,
                    source,
                    alert_id,
                    case,
                    received,
                    state: JobState::Queued,
                    steps: Vec::new(),
                    alert,
                    notified: false,
                    finished_at: None,
                },
            );
        }
        Record::State {
            job,
            state,
            at,
            detail,
        } => {
            if let Some(j) = st.jobs.get_mut(&job) {
                j.state = state;
                j.finished_at = state.finished().then_some(at);
                let at = at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                j.steps.push(serde_json::json!({
                    "state": state,
                    "at": at,
                    "detail": detail,
                }));
            }
        }
        Record::Notified {
            job,
            delivered,
            at,
            detail,
        } => {
            if let Some(j) = st.jobs.get_mut(&job) {
                j.notified = true;
                let at = at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                j.steps.push(serde_json::json!({
                    "notified": delivered,
                    "at": at,
                    "detail": detail,
                }));
            }
        }
    }
}

/// Replays the file into `state`; returns the length of its intact prefix.
fn replay(file: &mut File, path: &Path, state: &mut State) -> Result<u64, QueueError> {
    let mut reader = BufReader::new(&mut *file);
    let mut good = 0u64;
    let mut line = Vec::new();
    let mut n = 0usize;
    let mut pending_error: Option<QueueError> = None;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| QueueError::Open {
                path: path.to_owned(),
                source,
            })?;
        if read == 0 {
            break;
        }
        n += 1;
        // A line after an unreadable one means the damage is not a torn tail.
        if let Some(e) = pending_error.take() {
            return Err(e);
        }
        let complete = line.last() == Some(&b'\n');
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) if complete => {
                apply(state, r);
                good += read as u64;
            }
            Ok(_) => {}
            Err(e) => match salvage(&line).filter(|_| complete) {
                Some((cut, r)) => {
                    tracing::warn!(path = %path.display(), line = n, cut, "dropping the fragment of an append that failed (never acknowledged) before a whole record");
                    apply(state, r);
                    good += read as u64;
                }
                None => {
                    pending_error = Some(QueueError::Corrupt {
                        path: path.to_owned(),
                        line: n,
                        message: e.to_string(),
                    });
                }
            },
        }
    }
    Ok(good)
}

/// A line that does not parse but ends with a whole record: the fragment of
/// an append that failed, and the next append written after it (queues
/// written before failed appends were undone). Returns the bytes dropped
/// and the record.
fn salvage(line: &[u8]) -> Option<(usize, Record)> {
    const START: &[u8] = b"{\"t\":\"";
    memchr::memmem::find_iter(line, START)
        .filter(|&i| i > 0)
        .find_map(|i| {
            let rest = line.get(i..)?;
            serde_json::from_slice::<Record>(rest).ok().map(|r| (i, r))
        })
}

/// Prefix of the temporary file a compaction writes beside the queue.
const COMPACTING: &str = ".queue.compact-";

/// Removes what a compaction cut off by a crash left (the queue file itself
/// is whole: the rewrite only replaces it by rename).
fn remove_stale_compactions(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(COMPACTING) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The writer thread's state.
struct Writer {
    sink: Box<dyn Sink>,
    /// The length of the file's intact records: where a failed append is cut back to.
    len: u64,
    path: PathBuf,
    down: Arc<Mutex<Option<String>>>,
}

impl Writer {
    fn run(mut self, rx: &std::sync::mpsc::Receiver<Msg>) {
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(m) => m,
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
            };
            let stop = match first {
                Msg::Compact(jobs, ack) => {
                    let r = self.compact(&jobs);
                    let stop = r.as_ref().err().and_then(|(_, stop)| stop.clone());
                    let _ = ack.send(r.map_err(|(e, _)| e));
                    stop
                }
                Msg::Append(line, ack) => {
                    let mut batch = vec![(line, ack)];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Msg::Append(l, a)) => batch.push((l, a)),
                            Ok(m) => {
                                next = Some(m);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.append(batch)
                }
            };
            if let Some(why) = stop {
                tracing::error!(path = %self.path.display(), error = %why, "the queue writer stopped: no alert is accepted until a restart");
                *lock(&self.down) = Some(why);
                // Dropping the receiver refuses every append still waiting, and every later one.
                return;
            }
        }
    }

    /// Writes and fsyncs a batch; on failure cuts the file back to where
    /// it was. Returns why the writer must stop, if it must.
    fn append(&mut self, batch: Vec<(Vec<u8>, Written)>) -> Option<String> {
        let mut buf = Vec::with_capacity(batch.iter().map(|(b, _)| b.len()).sum());
        for (b, _) in &batch {
            buf.extend_from_slice(b);
        }
        let written = self.sink.write_all(&buf).and_then(|()| self.sink.sync());
        let (answer, stop) = match written {
            Ok(()) => {
                self.len += buf.len() as u64;
                (Ok(()), None)
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot write to the queue; undoing the append");
                // None of the batch was acknowledged: take all of it back,
                // so the next append starts on a record boundary.
                let undone = self.sink.set_len(self.len).and_then(|()| self.sink.sync());
                let stop = undone
                    .err()
                    .map(|u| format!("an append failed ({e}) and could not be undone ({u})"));
                (Err(e.to_string()), stop)
            }
        };
        if let Some(why) = &stop {
            // Before anyone is answered, so no one sees the queue as healthy after.
            *lock(&self.down) = Some(why.clone());
        }
        for (_, ack) in batch {
            let _ = ack.send(answer.clone());
        }
        stop
    }

    /// Rewrites the file without `jobs`' records; returns the bytes
    /// dropped, or why not (and, when appends cannot go on, why the writer
    /// must stop).
    fn compact(&mut self, jobs: &BTreeSet<String>) -> Result<u64, (String, Option<String>)> {
        #[derive(Deserialize)]
        struct JobOf {
            job: String,
        }
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let failed = |e: io::Error| (e.to_string(), None);
        let mut tmp = tempfile::Builder::new()
            .prefix(COMPACTING)
            .tempfile_in(dir)
            .map_err(failed)?;
        let mut kept = 0u64;
        {
            let src = File::open(&self.path).map_err(failed)?;
            // Only what was acknowledged: a failed append was cut, but read
            // no further than the length the writer vouches for.
            let mut reader = BufReader::new(src.take(self.len));
            let mut out = io::BufWriter::new(tmp.as_file_mut());
            let mut line = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).map_err(failed)? == 0 {
                    break;
                }
                let drop =
                    serde_json::from_slice::<JobOf>(&line).is_ok_and(|r| jobs.contains(&r.job));
                if !drop {
                    out.write_all(&line).map_err(failed)?;
                    kept += line.len() as u64;
                }
            }
            out.flush().map_err(failed)?;
        }
        tmp.as_file().sync_all().map_err(failed)?;
        tmp.persist(&self.path)
            .map_err(|e| (e.error.to_string(), None))?;
        // From here the name holds the new file: appends must go to it.
        let reopened = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|f| crate::private_fs::fsync_dir(dir).map(|()| f));
        match reopened {
            Ok(f) => {
                self.sink.replace(f);
                let dropped = self.len - kept;
                self.len = kept;
                Ok(dropped)
            }
            Err(e) => {
                let why = format!("the compacted queue cannot be reopened: {e}");
                Err((why.clone(), Some(why)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Arc<dyn crate::clock::Clock> {
        Arc::new(crate::clock::SystemClock)
    }

    fn submit(id: &str, entities: &[&str]) -> Submit {
        Submit {
            source: "generic".into(),
            alert_id: id.into(),
            entities: entities.iter().map(|e| (*e).to_owned()).collect(),
            alert: serde_json::json!({ "id": id }),
        }
    }

    #[tokio::test]
    async fn jobs_survive_a_reopen_and_duplicates_are_one_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serve").join("queue.jsonl");
        let q = Queue::open(&path, clock(), time::Duration::hours(24)).expect("open");
        use std::os::unix::fs::PermissionsExt as _;
        for (p, want) in [(&path, 0o600), (&dir.path().join("serve"), 0o700)] {
            let mode = std::fs::metadata(p).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, want, "{}", p.display());
        }
        let a = q
            .enqueue(submit("a1", &["instance:i-1"]))
            .await
            .expect("a1");
        let again = q
            .enqueue(submit("a1", &["instance:i-1"]))
            .await
            .expect("a1 again");
        assert!(!a.duplicate && again.duplicate);
        assert_eq!(a.job, again.job);
        // Sharing an entity joins the case; no shared entity opens another.
        let b = q
            .enqueue(submit("b1", &["instance:i-1", "ip:203.0.113.9"]))
            .await
            .expect("b1");
        let c = q
            .enqueue(submit("c1", &["instance:i-2"]))
            .await
            .expect("c1");
        assert_eq!(a.case, b.case);
        assert_ne!(a.case, c.case);
        q.set_state(&a.job, JobState::Done, None)
            .await
            .expect("done");
        drop(q);

        let q = Queue::open(&path, clock(), time::Duration::hours(24)).expect("reopen");
        let unfinished: Vec<String> = q.unfinished().into_iter().map(|j| j.alert_id).collect();
        assert_eq!(unfinished, ["b1", "c1"]);
        let d = q
            .enqueue(submit("b1", &[]))
            .await
            .expect("b1 after restart");
        assert!(d.duplicate && d.case == b.case);
        let e = q
            .enqueue(submit("e1", &["ip:203.0.113.9"]))
            .await
            .expect("e1");
        assert_eq!(e.case, a.case, "the entity index is rebuilt from the file");
        assert_eq!(q.case_jobs(a.case.as_str()).len(), 3);
    }

    #[tokio::test]
    async fn concurrent_duplicates_make_one_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(
            &dir.path().join("q.jsonl"),
            clock(),
            time::Duration::hours(1),
        )
        .expect("open");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.enqueue(submit("same", &[])).await })
            })
            .collect();
        let mut jobs = std::collections::HashSet::new();
        let mut new = 0;
        for t in tasks {
            let e = t.await.expect("task").expect("enqueue");
            jobs.insert(e.job);
            new += usize::from(!e.duplicate);
        }
        assert_eq!((jobs.len(), new), (1, 1));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_corruption_before_it_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.jsonl");
        let q = Queue::open(&path, clock(), time::Duration::hours(1)).expect("open");
        q.enqueue(submit("x", &[])).await.expect("x");
        drop(q);
        let whole = std::fs::read(&path).expect("read");
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"t\":\"accepted\",\"job\":\"j-");
        std::fs::write(&path, &torn).expect("write");
        let q = Queue::open(&path, clock(), time::Duration::hours(1)).expect("torn tail");
        assert_eq!(q.unfinished().len(), 1);
        drop(q);
        assert_eq!(std::fs::read(&path).expect("read"), whole);

        let mut bad = b"not json\n".to_vec();
        bad.extend_from_slice(&whole);
        std::fs::write(&path, &bad).expect("write");
        let err = Queue::open(&path, clock(), time::Duration::hours(1)).expect_err("corrupt");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    /// A queue file whose disk fills after `room` more bytes (a write
    /// then stores what fits and fails, as a real one does), and whose
    /// truncation fails when `undo_fails` is set.
    struct Filling {
        file: File,
        room: Arc<Mutex<Option<usize>>>,
        undo_fails: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Sink for Filling {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            let mut room = lock(&self.room);
            match *room {
                Some(r) if r < buf.len() => {
                    Write::write_all(&mut self.file, buf.get(..r).unwrap_or_default())?;
                    *room = Some(0);
                    Err(io::Error::from_raw_os_error(libc::ENOSPC))
                }
                Some(r) => {
                    *room = Some(r - buf.len());
                    Write::write_all(&mut self.file, buf)
                }
                None => Write::write_all(&mut self.file, buf),
            }
        }
        fn sync(&mut self) -> io::Result<()> {
            self.file.sync_data()
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            if self.undo_fails.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.file.set_len(len)
        }
        fn replace(&mut self, file: File) {
            self.file = file;
        }
    }

    type Faults = (
        Arc<Mutex<Option<usize>>>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    fn filling(path: &Path) -> (Queue, Faults) {
        let room = Arc::new(Mutex::new(None));
        let undo_fails = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, u) = (room.clone(), undo_fails.clone());
        let q = Queue::open_on(path, clock(), time::Duration::hours(1), move |file| {
            Box::new(Filling {
                file,
                room: r,
                undo_fails: u,
            })
        })
        .expect("open");
        (q, (room, undo_fails))
    }

    #[tokio::test]
    async fn q1_enospc_append_is_rolled_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.jsonl");
        let (q, (room, _)) = filling(&path);
        let a = q.enqueue(submit("a", &[])).await.expect("a");
        let before = std::fs::read(&path).expect("read");
        // The disk fills part-way through the next record.
        *lock(&room) = Some(40);
        let err = q.enqueue(submit("b", &[])).await.expect_err("disk full");
        assert!(err.to_string().contains("No space left"), "{err}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "the fragment is cut back"
        );
        // Room again: the next record starts on a line of its own, and the
        // refused alert can be delivered again as a new job.
        *lock(&room) = None;
        let c = q.enqueue(submit("c", &[])).await.expect("c");
        let b = q.enqueue(submit("b", &[])).await.expect("b again");
        assert!(!b.duplicate);
        q.set_state(&a.job, JobState::Done, None)
            .await
            .expect("done");
        assert!(q.health().is_ok());
        drop(q);
        let q = Queue::open(&path, clock(), time::Duration::hours(1)).expect("reopens");
        let unfinished: Vec<String> = q.unfinished().into_iter().map(|j| j.id).collect();
        assert_eq!(unfinished, [c.job, b.job]);
    }

    #[tokio::test]
    async fn q1_an_append_that_cannot_be_undone_stops_the_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.jsonl");
        let (q, (room, undo_fails)) = filling(&path);
        q.enqueue(submit("a", &[])).await.expect("a");
        *lock(&room) = Some(10);
        undo_fails.store(true, std::sync::atomic::Ordering::SeqCst);
        q.enqueue(submit("b", &[])).await.expect_err("disk full");
        // The file now ends in bytes nobody vouches for: nothing more is
        // written after them, even with room again.
        *lock(&room) = None;
        let err = q.enqueue(submit("c", &[])).await.expect_err("stopped");
        assert!(err.to_string().contains("could not be undone"), "{err}");
        assert!(q.health().is_err());
        drop(q);
        // A restart cuts the fragment as a torn tail and keeps what was acknowledged.
        let q = Queue::open(&path, clock(), time::Duration::hours(1)).expect("reopens");
        let ids: Vec<String> = q.unfinished().into_iter().map(|j| j.alert_id).collect();
        assert_eq!(ids, ["a"]);
        q.enqueue(submit("c", &[]))
            .await
            .expect("c after the restart");
    }

    #[tokio::test]
    async fn q1_a_fragment_left_before_a_whole_record_is_dropped_not_fatal() {
        // What a failed append used to leave: a fragment, and the next
        // acknowledged record written right after it on the same line.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.jsonl");
        let q = Queue::open(&path, clock(), time::Duration::hours(1)).expect("open");
        q.enqueue(submit("a", &[])).await.expect("a");
        q.enqueue(submit("c", &[])).await.expect("c");
        drop(q);
        let text = std::fs::read_to_string(&path).expect("read");
        let (first, second) = text.split_once('\n').expect("two lines");
        let merged = format!("{first}\n{{\"t\":\"accepted\",\"job\":\"j-0{second}");
        std::fs::write(&path, merged).expect("write");
        let q = Queue::open(&path, clock(), time::Duration::hours(1)).expect("reopens");
        let ids: Vec<String> = q.unfinished().into_iter().map(|j| j.alert_id).collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[tokio::test]
    async fn queue_compaction_drops_finished_jobs_past_the_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.jsonl");
        let fixed = Arc::new(crate::clock::FixedClock::new(
            time::macros::datetime!(2026-12-01 00:00 UTC),
        ));
        let window = time::Duration::hours(1);
        let q = Queue::open(&path, fixed.clone(), window).expect("open");
        let old = q
            .enqueue(submit("old", &["ip:192.0.2.1"]))
            .await
            .expect("old");
        let failed = q.enqueue(submit("failed", &[])).await.expect("failed");
        let running = q.enqueue(submit("running", &[])).await.expect("running");
        q.set_state(&old.job, JobState::Done, None)
            .await
            .expect("done");
        q.set_state(&failed.job, JobState::Failed, None)
            .await
            .expect("failed");
        q.set_state(&running.job, JobState::Running, None)
            .await
            .expect("running");
        fixed.advance(time::Duration::hours(2));
        let recent = q.enqueue(submit("recent", &[])).await.expect("recent");
        q.set_state(&recent.job, JobState::Done, None)
            .await
            .expect("done");
        let age = time::Duration::hours(1);
        assert_eq!(q.compact(age).await.expect("compact"), 2);
        // What a compaction cut off by a crash would leave: removed on open.
        std::fs::write(dir.path().join(".queue.compact-cut"), b"x").expect("stale");
        // Gone from memory, and from the file (a reopen agrees).
        for q in [
            q.clone(),
            Queue::open(&path, fixed.clone(), window).expect("reopen"),
        ] {
            assert!(q.job(&old.job).is_none() && q.job(&failed.job).is_none());
            assert!(q.job(&running.job).is_some() && q.job(&recent.job).is_some());
            assert_eq!(q.case_jobs(old.case.as_str()).len(), 0);
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains(&old.job) && !text.contains(&failed.job),
            "{text}"
        );
        // Appends go on into the new file.
        let after = q
            .enqueue(submit("after", &["ip:192.0.2.1"]))
            .await
            .expect("after");
        assert_ne!(after.case, old.case, "the old job's entity is forgotten");
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .contains(&after.job)
        );
        assert_eq!(q.compact(age).await.expect("nothing more"), 0);
        // No temporary file is left beside the queue.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["queue.jsonl"]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the rewritten queue is the owner's alone"
        );
    }
}
