//! A bulk run's full-text index, built on a thread of its own in a file of
//! its own, then copied into the timeline being built.
//!
//! Indexing the words of every event is a third of a bulk load's work, and
//! one SQLite connection does its work on one core. Here the loader hands
//! each batch's (rowid, summary, detail) to a second connection, on a
//! second file, that builds the FTS5 index alongside; at the end its
//! shadow tables (FTS5's own ordinary tables) are copied into the
//! timeline's file, by a connection that has not opened the index, so no
//! cached state of FTS5 can disagree with what was copied.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};

/// Why a bulk run's full-text index could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FtsBuildError {
    #[error("cannot start the full-text index builder")]
    Start(#[source] std::io::Error),
    #[error("the full-text index builder stopped unexpectedly")]
    Stopped,
    #[error("the full-text index's own database")]
    Sql(#[from] rusqlite::Error),
}

/// One event's full-text columns: its rowid, summary and detail.
pub(super) type Row = (i64, String, String);

/// Batches waiting for the builder at most: the loader waits beyond.
const WAITING: usize = 2;
/// The builder's page cache, in KiB: its postings are held in FTS5's own
/// buffer until flushed, and the segments it writes need no cache to speak
/// of, so a bulk run's memory stays what one connection's was.
const CACHE_KIB: u32 = 16 << 10;

/// FTS5's shadow tables of `events_fts`: the index (`data`, `idx`), each
/// row's token counts (`docsize`) and its settings (`config`).
const SHADOW: [&str; 4] = [
    "events_fts_data",
    "events_fts_idx",
    "events_fts_docsize",
    "events_fts_config",
];

enum Msg {
    Rows(Vec<Row>),
    /// Every row has been sent: the index is flushed and committed.
    Finish,
}

/// The builder of one bulk run.
#[derive(Debug)]
pub(super) struct FtsBuild {
    path: PathBuf,
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<Result<(), rusqlite::Error>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rows(rows) => write!(f, "Rows({})", rows.len()),
            Self::Finish => f.write_str("Finish"),
        }
    }
}

/// How the builder's file is set up: the table declared as the timeline
/// declares it, `during` the build and `after` it (FTS5 settings written
/// into its `config`, which is copied with the rest).
pub(super) struct Setup<'a> {
    pub table: &'a str,
    pub during: &'a str,
    pub after: &'a str,
}

impl FtsBuild {
    /// Creates `path` afresh (a leftover of a run cut short is discarded)
    /// and starts the builder.
    pub(super) fn start(path: PathBuf, setup: &Setup<'_>) -> Result<Self, FtsBuildError> {
        remove(&path);
        let conn = Connection::open(&path)?;
        // Like the file the timeline is built in, this one counts for nothing
        // until copied in whole: no journal, no syncs.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -{CACHE_KIB};
             {table};
             {during};
             BEGIN;",
            table = setup.table,
            during = setup.during,
        ))?;
        let after = setup.after.to_owned();
        let (tx, rx) = std::sync::mpsc::sync_channel(WAITING);
        let thread = std::thread::Builder::new()
            .name("custody-fts".into())
            .spawn(move || build(&conn, &rx, &after))
            .map_err(FtsBuildError::Start)?;
        Ok(Self {
            path,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands a batch on. A builder that stopped takes no more; its error
    /// is met in [`FtsBuild::finish`].
    pub(super) fn send(&mut self, rows: Vec<Row>) {
        if let Some(tx) = &self.tx
            && tx.send(Msg::Rows(rows)).is_err()
        {
            self.tx = None;
        }
    }

    /// Tells the builder every row is sent: it flushes and commits while
    /// the caller goes on ([`FtsBuild::copy_into`] waits for it).
    pub(super) fn close(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Finish);
        }
    }

    /// Waits for the builder, then replaces the full-text index of the
    /// database at `into` (closed by every other connection) with its own,
    /// in one transaction. The builder's file is removed.
    pub(super) fn copy_into(mut self, into: &Path) -> Result<(), FtsBuildError> {
        self.close();
        let built = self
            .thread
            .take()
            .map_or(Err(FtsBuildError::Stopped), |t| {
                t.join().map_err(|_| FtsBuildError::Stopped)
            })?;
        built?;
        let conn = Connection::open(into)?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;",
        )?;
        conn.execute("ATTACH ?1 AS fts", params![self.path.to_string_lossy()])?;
        let mut sql = String::from("BEGIN;");
        for t in SHADOW {
            sql.push_str(&format!(
                "DELETE FROM main.{t}; INSERT INTO main.{t} SELECT * FROM fts.{t};"
            ));
        }
        sql.push_str("COMMIT; DETACH fts;");
        conn.execute_batch(&sql)?;
        conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

impl Drop for FtsBuild {
    /// A run ended without [`FtsBuild::copy_into`] (an error, a cut): the
    /// builder stops without flushing and its file is discarded.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        remove(&self.path);
    }
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a full-text index build");
        }
        _ => {}
    }
}

/// The builder's thread: rows until told to finish, then the settings the
/// timeline keeps and a commit. A closed channel without `Finish` is a run
/// given up: nothing more is written.
fn build(conn: &Connection, rx: &Receiver<Msg>, after: &str) -> Result<(), rusqlite::Error> {
    let mut ins =
        conn.prepare("INSERT INTO events_fts(rowid, message, detail) VALUES (?1, ?2, ?3)")?;
    for msg in rx {
        match msg {
            Msg::Rows(rows) => {
                for (id, message, detail) in rows {
                    ins.execute(params![id, message, detail])?;
                }
            }
            Msg::Finish => {
                drop(ins);
                return conn.execute_batch(&format!("{after}; COMMIT;"));
            }
        }
    }
    Ok(())
}
