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
//! unreadable line before it is corruption and refused.
//!
//! The same alert delivered twice (same source and alert id) is one job:
//! the key is reserved before the write, so a second delivery racing the
//! first waits for the first's fsync and gets the same job id.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
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
/// A line to append and where to say whether it is on disk.
type Append = (Vec<u8>, tokio::sync::oneshot::Sender<Result<(), String>>);

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
    writer: std::sync::mpsc::Sender<Append>,
    clock: Arc<dyn crate::clock::Clock>,
    /// Alerts sharing an entity within this window join the same case.
    case_window: time::Duration,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave a half-applied record:
    // every change is a single insert. Keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queue {
    /// Opens (or creates) the queue file at `path` and replays it.
    pub fn open(
        path: &Path,
        clock: Arc<dyn crate::clock::Clock>,
        case_window: time::Duration,
    ) -> Result<Self, QueueError> {
        let open_err = |source| QueueError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(open_err)?;
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
        std::thread::Builder::new()
            .name("custody-queue".into())
            .spawn(move || write_loop(file, &rx))
            .map_err(open_err)?;
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            writer: tx,
            clock,
            case_window,
        })
    }

    async fn append(&self, record: &Record) -> Result<(), QueueError> {
        let mut line = serde_json::to_vec(record).map_err(|e| QueueError::Write(e.to_string()))?;
        line.push(b'\n');
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer
            .send((line, tx))
            .map_err(|_| QueueError::Write("the queue writer stopped".into()))?;
        rx.await
            .map_err(|_| QueueError::Write("the queue writer stopped".into()))?
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
            Err(e) => {
                pending_error = Some(QueueError::Corrupt {
                    path: path.to_owned(),
                    line: n,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(good)
}

fn write_loop(mut file: File, rx: &std::sync::mpsc::Receiver<Append>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|(b, _)| b.len()).sum());
        for (b, _) in &batch {
            buf.extend_from_slice(b);
        }
        let r = file
            .write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| e.to_string());
        if r.is_err() {
            // Whatever part of the batch reached the file is a torn tail at
            // worst; none of it was acknowledged.
            tracing::error!(error = ?r, "cannot write to the queue");
        }
        for (_, ack) in batch {
            let _ = ack.send(r.clone());
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
        let path = dir.path().join("queue.jsonl");
        let q = Queue::open(&path, clock(), time::Duration::hours(24)).expect("open");
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
}
