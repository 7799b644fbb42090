//! The timeline database of one case: `HOME/timeline/<case>.sqlite`.
//!
//! SQLite, embedded, so there is no server to run. Events are rows with
//! indexes on time, actor, source address, ASN and action; free text goes
//! through an FTS5 index. Anyone can open the file with the `sqlite3`
//! shell:
//!
//! ```sql
//! events(id, time, source, account, actor, action, outcome, ipkey, asn, as_org, country,
//!        user_agent, artefact, rkey)
//! details(id, target, record_id, content, message, attributes, member, locator)   -- id = events.id
//! terms(id, value)                         -- each repeated value once
//! events_text                              -- a view of events with the values in place
//! events_fts(message, detail)              -- contentless FTS5, rowid = events.id
//! counts(field, key, n)                   -- events per value of each field, kept as loads finish
//! ingested(artefact, format, at, events, duplicates, same_id, problems)
//! problems(artefact, member, locator, message)
//! searches(name, query, facets, saved)
//! ```
//! `time` is microseconds since the epoch (UTC); `ipkey` the address as 16
//! bytes (IPv4-mapped), so CIDR blocks are index ranges; `attributes` a JSON
//! object. The columns whose values repeat (source, account, actor, action,
//! outcome, as_org, country, user_agent, artefact, member) hold ids of
//! `terms`, and the wide values sit in `details`: `events` stays narrow, so
//! building its indexes and counting by its columns reads little and
//! compares integers. `rkey` is the first 8 bytes of SHA-256 over the source
//! and the record id, the key duplicates are found by; `content` the first 8
//! bytes of SHA-256 over the record's own bytes ([`super::parse::Record`]).
//! A record is dropped as a duplicate only when its source, record id and
//! content all equal a loaded one's; the same source and id with other
//! content is loaded, and counted in `same_id` (a source reusing ids, or
//! a record altered between two copies). The timeline is derived: the evidence is the artefacts, and
//! `custody logs index --rebuild` makes it again from them. Saved searches
//! are the only thing kept across a rebuild.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::Serialize;

use super::fts_build::{self, FtsBuild};
use super::geoip::GeoIp;
use super::parse::Sink;
use super::query::{Field, Query, coded, ip_from_key, ip_key, show_time};
use super::{Event, Problem};
use crate::ids::CaseId;

/// 3: `details.content` and `ingested.same_id`, so that only identical
/// records are duplicates.
const SCHEMA_VERSION: i64 = 3;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The key `counts` keeps events without a value under: term ids start
/// at 1, AS numbers at 0, addresses are blobs.
const NONE: i64 = -1;
/// Events per transaction: large enough that commits cost little, small
/// enough that a crash loses at most this much of an ingest in progress
/// (which is redone anyway, since the artefact is only marked ingested at the end).
const BATCH: usize = 10_000;
/// FTS5's buffer of new postings, in bytes: its default, and the size a
/// bulk run uses (a few segments per million events instead of hundreds).
const FTS_HASH: usize = 1 << 20;
const BULK_FTS_HASH: usize = 256 << 20;
/// FTS5's default merge setting, put back after a bulk run turns merging
/// off: later loads, row by row, write small segments that must be merged.
const FTS_AUTOMERGE: u32 = 4;
/// Bytes of the file a reader of whole index ranges maps rather than reads
/// (see [`Timeline::reader`]): a scan then copies nothing, a third of a
/// facet's time at ten million events. The build caps it (see
/// `.cargo/config.toml`).
const MMAP: u64 = 1 << 40;
/// Problems kept per artefact; the count covers them all.
const PROBLEMS_KEPT: usize = 1_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimelineError {
    #[error("cannot open the timeline {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the timeline {path} has schema version {found}; this custody reads {SCHEMA_VERSION} \
         (`custody logs index CASE --rebuild` makes it again from the evidence)"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("the timeline database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("a query thread stopped unexpectedly")]
    Panicked,
    #[error(transparent)]
    FtsBuild(#[from] super::fts_build::FtsBuildError),
    #[error("no saved search named `{0}` in this case")]
    NoSavedSearch(String),
    #[error("the saved search `{name}` no longer parses")]
    SavedQuery {
        name: String,
        #[source]
        source: super::query::QueryError,
    },
}

/// One event as stored, for output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: i64,
    pub time: String,
    pub source: String,
    pub account: Option<String>,
    pub actor: Option<String>,
    pub action: String,
    pub outcome: Option<String>,
    pub ip: Option<String>,
    pub asn: Option<i64>,
    pub as_org: Option<String>,
    pub country: Option<String>,
    pub user_agent: Option<String>,
    pub target: Option<String>,
    pub record_id: Option<String>,
    pub message: String,
    pub attributes: BTreeMap<String, String>,
    /// The artefact, the member file in it and the record's place: the way
    /// back to hashed evidence.
    pub artefact: String,
    pub member: String,
    pub locator: String,
    #[serde(skip)]
    pub time_us: i64,
}

impl Row {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
}

/// What loading one artefact did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub artefact: String,
    pub format: String,
    pub events: u64,
    /// Records already in the timeline, byte for byte under the same source
    /// and record id (the same export twice, an overlapping export, a record
    /// repeated inside one export): dropped.
    pub duplicates: u64,
    /// Records whose source and record id were already in the timeline
    /// with other content: loaded, and counted here.
    pub same_id_different_content: u64,
    /// The first of them, each with where both copies are.
    pub same_id_samples: Vec<SameId>,
    /// VPC flow log rows whose `log-status` is `NODATA` (no traffic in the
    /// interval) or `SKIPDATA` (records skipped: a gap in the logging).
    /// Kept as events; counted here.
    pub nodata: u64,
    pub skipdata: u64,
    pub problems: u64,
    /// The first problems, each with its place.
    pub problem_samples: Vec<Problem>,
    pub first: Option<String>,
    pub last: Option<String>,
    /// Events kept per hour (UTC), so a gap or an abrupt end shows.
    pub per_hour: BTreeMap<String, u64>,
    /// Hours between the first and the last event with no event at all:
    /// for an export of busy logs, a sign of lost or cut pages.
    pub empty_hours: Vec<String>,
    /// Set when the artefact was already in the timeline and nothing was done.
    pub already: bool,
}

impl IngestReport {
    /// What a person should know of the load beyond its counts, a line
    /// each: the gaps of flow logging, and records that share an id with
    /// another yet differ (with where the first few are).
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.nodata + self.skipdata > 0 {
            out.push(format!(
                "flow log gaps: {} NODATA rows (no traffic in the interval) and {} SKIPDATA rows \
                 (records skipped: flows not logged), kept as events (action:flow.nodata, action:flow.skipdata)",
                self.nodata, self.skipdata
            ));
        }
        if self.same_id_different_content > 0 {
            out.push(format!(
                "{} records share a record id with one loaded before but differ: both kept",
                self.same_id_different_content
            ));
            for s in &self.same_id_samples {
                out.push(format!(
                    "  {} {}: first at {}, again at {}",
                    s.source, s.record_id, s.first, s.second
                ));
            }
        }
        out
    }
}

/// A record loaded under a source and record id already in the timeline,
/// with other content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SameId {
    pub source: String,
    pub record_id: String,
    /// `artefact member locator` of the copy loaded first, and of this one.
    pub first: String,
    pub second: String,
}

/// How many [`SameId`] a report lists.
const SAME_ID_KEPT: usize = 20;

/// A facet: the most common values of a field under a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facet {
    pub field: String,
    pub values: Vec<FacetValue>,
    /// The events under the query, when this facet counted all of them
    /// (every group of a coded field is read): the count a caller would
    /// otherwise scan for again.
    #[serde(skip)]
    pub total: Option<u64>,
    /// Counted on a sample of the case and scaled (see [`super::sample`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacetValue {
    pub value: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub start: String,
    pub count: u64,
}

/// An event's place in the timeline's order: its time, then its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time_us: i64,
    pub id: i64,
}

impl Cursor {
    pub fn of(row: &Row) -> Self {
        Self {
            time_us: row.time_us,
            id: row.id,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.time_us, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a place in the timeline (TIME_US.ID, as a page's links give it)")
        };
        let (t, i) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            time_us: t.parse().map_err(|_| bad())?,
            id: i.parse().map_err(|_| bad())?,
        })
    }
}

/// Where a page of rows starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// After this many matching events.
    Offset(usize),
    /// Just after an event, going forward.
    After(Cursor),
    /// Just before an event, going back.
    Before(Cursor),
}

/// An artefact's load into the timeline (see [`Timeline::ingested`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub format: String,
    pub events: u64,
    pub problems: u64,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedSearch {
    pub name: String,
    pub query: String,
    pub facets: Vec<String>,
    pub saved: String,
}

/// One value seen with another: an account from a source, a source for an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seen {
    pub value: String,
    pub first: String,
    pub last: String,
    pub events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

#[derive(Debug)]
pub struct Timeline {
    pub(super) conn: Connection,
    path: PathBuf,
    bulk: Option<Bulk>,
}

/// A bulk run under way: the timeline it will replace, the (source,
/// record id) pairs loaded so far with their content, and the full-text
/// index built beside.
#[derive(Debug)]
struct Bulk {
    timeline: Connection,
    seen: HashMap<(&'static str, String), SeenRecord>,
    fts: FtsBuild,
}

/// The contents loaded under one (source, record id) in a bulk run.
#[derive(Debug)]
struct SeenRecord {
    /// The first one's content and row.
    content: Option<i64>,
    row: i64,
    /// Other contents under the same id, each loaded (rare).
    more: Vec<Option<i64>>,
}

/// What became of a record with an id.
enum Verdict {
    New,
    Duplicate,
    /// The id is known with other content: the row holding the first copy.
    SameId(i64),
}

pub fn path_for(home: &Path, case: &CaseId) -> PathBuf {
    home.join("timeline").join(format!("{case}.sqlite"))
}

/// The secondary indexes. A load into an empty timeline builds them once
/// at the end (a sort), instead of row by row (a random insert into each).
/// The address and ASN indexes hold the actor, so a pivot reads no rows.
/// ASNs come only with `--geoip`, hence the partial index.
const INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS events_time ON events(time);
    CREATE INDEX IF NOT EXISTS events_actor ON events(actor, time);
    CREATE INDEX IF NOT EXISTS events_ip ON events(ipkey, actor, time);
    CREATE INDEX IF NOT EXISTS events_asn ON events(asn, actor, time) WHERE asn IS NOT NULL;
    CREATE INDEX IF NOT EXISTS events_action ON events(action, time);
    CREATE INDEX IF NOT EXISTS events_record ON events(rkey) WHERE rkey IS NOT NULL;";
/// The columns of a [`Row`], values in place of term ids; `events_text` is
/// the same for readers of the file.
const COLUMNS: &str = "id, time, (SELECT value FROM terms WHERE terms.id = events.source), \
     (SELECT value FROM terms WHERE terms.id = events.account), \
     (SELECT value FROM terms WHERE terms.id = events.actor), \
     (SELECT value FROM terms WHERE terms.id = events.action), \
     (SELECT value FROM terms WHERE terms.id = events.outcome), ipkey, asn, \
     (SELECT value FROM terms WHERE terms.id = events.as_org), \
     (SELECT value FROM terms WHERE terms.id = events.country), \
     (SELECT value FROM terms WHERE terms.id = events.user_agent), target, record_id, message, attributes, \
     (SELECT value FROM terms WHERE terms.id = events.artefact), \
     (SELECT value FROM terms WHERE terms.id = details.member), locator";
/// Where [`COLUMNS`] come from.
const JOINED: &str = "events JOIN details USING (id)";
const NAMES: &str = "id, time, source, account, actor, action, outcome, ipkey, asn, as_org, country, \
     user_agent, target, record_id, message, attributes, artefact, member, locator";

fn create_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(&format!(
        "BEGIN;
         CREATE TABLE IF NOT EXISTS terms(id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE);
         CREATE INDEX IF NOT EXISTS terms_nocase ON terms(value COLLATE NOCASE);
         CREATE TABLE IF NOT EXISTS events(
           id INTEGER PRIMARY KEY,
           time INTEGER NOT NULL,
           source INTEGER NOT NULL,
           account INTEGER,
           actor INTEGER,
           action INTEGER NOT NULL,
           outcome INTEGER,
           ipkey BLOB,
           asn INTEGER,
           as_org INTEGER,
           country INTEGER,
           user_agent INTEGER,
           artefact INTEGER NOT NULL,
           rkey INTEGER);
         CREATE TABLE IF NOT EXISTS counts(
           field TEXT NOT NULL, key NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (field, key)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS details(
           id INTEGER PRIMARY KEY,
           target TEXT,
           record_id TEXT,
           content INTEGER,
           message TEXT NOT NULL,
           attributes TEXT,
           member INTEGER NOT NULL,
           locator TEXT NOT NULL);
         CREATE VIEW IF NOT EXISTS events_text({NAMES}) AS SELECT {COLUMNS} FROM {JOINED};
         {FTS_TABLE};
         CREATE TABLE IF NOT EXISTS ingested(
           artefact TEXT PRIMARY KEY, format TEXT NOT NULL, at TEXT NOT NULL,
           events INTEGER NOT NULL, duplicates INTEGER NOT NULL, same_id INTEGER NOT NULL DEFAULT 0,
           problems INTEGER NOT NULL, state TEXT NOT NULL, first_id INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS problems(
           artefact TEXT NOT NULL, member TEXT NOT NULL, locator TEXT NOT NULL, message TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS searches(
           name TEXT PRIMARY KEY, query TEXT NOT NULL, facets TEXT NOT NULL, saved TEXT NOT NULL);
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
}

/// What `custody detect` and the trail's check store (see [`super::detections`]).
const DETECTIONS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS detections(
      id INTEGER PRIMARY KEY, kind TEXT NOT NULL, rule TEXT NOT NULL, title TEXT NOT NULL,
      level TEXT NOT NULL, tags TEXT NOT NULL, actors TEXT NOT NULL, detail TEXT NOT NULL,
      first INTEGER, last INTEGER, at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS detections_rule ON detections(kind, rule);
    CREATE TABLE IF NOT EXISTS detection_rows(
      detection INTEGER NOT NULL, event INTEGER NOT NULL, PRIMARY KEY (detection, event)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS detection_rows_event ON detection_rows(event, detection);
    CREATE TABLE IF NOT EXISTS detect_runs(
      at TEXT NOT NULL, rules INTEGER NOT NULL, lists INTEGER NOT NULL, records INTEGER NOT NULL);";

/// Analysts' marks (see [`super::annotations`]), made where missing like the detections'.
const ANNOTATIONS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS annotations(
      id INTEGER PRIMARY KEY, event INTEGER NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
      analyst TEXT NOT NULL, at TEXT NOT NULL, ledger INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS annotations_event ON annotations(event, id);";

/// The full-text index: contentless (the text is in `details`), with
/// deletes (a load cut short is undone).
const FTS_TABLE: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
           message, detail, content='', contentless_delete=1)";

/// A bulk run's database while it is built, next to the timeline; it
/// replaces the timeline once whole, and a crash leaves only this to discard.
fn building_path(path: &Path) -> PathBuf {
    suffixed(path, ".building")
}

/// A bulk run's full-text index while it is built (see [`super::fts_build`]).
fn fts_building_path(path: &Path) -> PathBuf {
    suffixed(path, ".building-fts")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

impl Timeline {
    pub fn open(path: &Path) -> Result<Self, TimelineError> {
        if let Some(dir) = path.parent() {
            crate::private_fs::create_dir_all(dir).map_err(|source| TimelineError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| TimelineError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // The timeline is derived from the artefacts and rebuilt from them, so
        // a commit needs no fsync of its own: WAL with NORMAL stays consistent.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -262144;
             PRAGMA wal_autocheckpoint = 20000;",
        )
        .map_err(open_err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if found == 0 {
            create_schema(&conn).map_err(open_err)?;
        } else if found != SCHEMA_VERSION {
            return Err(TimelineError::Schema {
                path: path.to_path_buf(),
                found,
            });
        }
        // Detections have tables of their own, made where missing: queries
        // may name them before `custody detect` first ran.
        conn.execute_batch(DETECTIONS_SCHEMA).map_err(open_err)?;
        conn.execute_batch(ANNOTATIONS_SCHEMA).map_err(open_err)?;
        let mut tl = Self {
            conn,
            path: path.to_path_buf(),
            bulk: None,
        };
        tl.recover().map_err(open_err)?;
        Ok(tl)
    }

    /// A second, read-only connection to an opened timeline, for queries run
    /// side by side (one facet per core). `in_order` when the query reads
    /// whole index ranges (see [`Query::is_time_range`]): those pages are
    /// then read through a memory map, which copies nothing. Queries that
    /// pick events here and there use read calls, since a map faults on
    /// every scattered page (2.4 times slower at ten million events).
    pub fn reader(&self, in_order: bool) -> Result<Self, TimelineError> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| TimelineError::Open {
            path: self.path.clone(),
            source,
        })?;
        let mmap = if in_order { MMAP } else { 0 };
        conn.execute_batch(&format!("PRAGMA mmap_size = {mmap};"))
            .map_err(|source| TimelineError::Open {
                path: self.path.clone(),
                source,
            })?;
        Ok(Self {
            conn,
            path: self.path.clone(),
            bulk: None,
        })
    }

    /// Undoes what a load cut short left (a crash, a kill): its rows, and
    /// indexes a bulk load had not rebuilt yet.
    fn recover(&mut self) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let cut: Vec<(String, i64)> = {
            let mut stmt =
                tx.prepare("SELECT artefact, first_id FROM ingested WHERE state != 'done'")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (artefact, first) in &cut {
            tracing::warn!(%artefact, "the timeline load of this artefact was cut short; its rows are removed and it is loaded again next time");
            tx.execute(
                "DELETE FROM events_fts WHERE rowid IN (SELECT id FROM events WHERE id >= ?1
                   AND artefact = (SELECT id FROM terms WHERE value = ?2))",
                params![first, artefact],
            )?;
            tx.execute(
                "DELETE FROM details WHERE id IN (SELECT id FROM events WHERE id >= ?1
                   AND artefact = (SELECT id FROM terms WHERE value = ?2))",
                params![first, artefact],
            )?;
            tx.execute(
                "DELETE FROM events WHERE id >= ?1 AND artefact = (SELECT id FROM terms WHERE value = ?2)",
                params![first, artefact],
            )?;
            tx.execute("DELETE FROM problems WHERE artefact = ?1", [artefact])?;
            tx.execute("DELETE FROM ingested WHERE artefact = ?1", [artefact])?;
        }
        tx.execute_batch(INDEXES)?;
        tx.commit()
    }

    /// Starts a run of loads. On an empty timeline (a new case, a rebuild)
    /// the run builds a new database file with no journal and no indexes,
    /// catching duplicates in memory, and [`Timeline::end_bulk`] builds the
    /// indexes and the full-text index once, then puts the file in place of
    /// the timeline. Otherwise loads go row by row into the timeline.
    pub fn begin_bulk(&mut self) -> Result<bool, TimelineError> {
        let empty = self
            .conn
            .query_row("SELECT 1 FROM events LIMIT 1", [], |_| Ok(()))
            .optional()?
            .is_none();
        if !empty {
            return Ok(false);
        }
        let building = building_path(&self.path);
        let open_err = |source| TimelineError::Open {
            path: building.clone(),
            source,
        };
        match std::fs::remove_file(&building) {
            Ok(()) => {
                tracing::warn!(path = %building.display(), "discarding a timeline build that was cut short")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TimelineError::Dir {
                    path: building,
                    source,
                });
            }
        }
        let conn = Connection::open(&building).map_err(open_err)?;
        // Nothing in this file counts until it replaces the timeline, so it
        // needs no journal and no syncs until then. Its rows are appended in
        // rowid order, so a small page cache spills pages that are not read
        // again: memory stays low whatever the load's size (the 1M-event
        // load peaked at 635 MiB with 32 MiB here, 772 MiB with 256 MiB).
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA threads = 2;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -32768;",
        )
        .map_err(open_err)?;
        create_schema(&conn).map_err(open_err)?;
        // One transaction for the whole run: the file counts for nothing
        // until it is whole.
        conn.execute_batch("BEGIN;").map_err(open_err)?;
        // The full-text index is built beside, with a wide buffer: FTS5
        // writes a segment each time its buffer fills, then spends its time
        // merging them. Once copied in, it has the settings of row-by-row
        // loads.
        let fts = FtsBuild::start(
            fts_building_path(&self.path),
            &fts_build::Setup {
                table: FTS_TABLE,
                during: &format!(
                    "INSERT INTO events_fts(events_fts, rank) VALUES('hashsize', {BULK_FTS_HASH});
                     INSERT INTO events_fts(events_fts, rank) VALUES('automerge', 0)"
                ),
                after: &format!(
                    "INSERT INTO events_fts(events_fts, rank) VALUES('hashsize', {FTS_HASH});
                     INSERT INTO events_fts(events_fts, rank) VALUES('automerge', {FTS_AUTOMERGE})"
                ),
            },
        )?;
        let timeline = std::mem::replace(&mut self.conn, conn);
        self.bulk = Some(Bulk {
            seen: HashMap::default(),
            timeline,
            fts,
        });
        Ok(true)
    }

    /// Ends a bulk run: indexes, full-text index, saved searches carried
    /// over, the file synced and renamed over the timeline.
    pub fn end_bulk(&mut self) -> Result<(), TimelineError> {
        let Some(mut bulk) = self.bulk.take() else {
            return Ok(());
        };
        let building = building_path(&self.path);
        let started = std::time::Instant::now();
        // The full-text index is flushed on its thread while the indexes
        // are built here.
        bulk.fts.close();
        self.conn.execute_batch(&format!(
            "{INDEXES}
             UPDATE ingested SET state = 'done' WHERE state = 'loaded';
             COMMIT;"
        ))?;
        tracing::debug!(
            ms = started.elapsed().as_millis(),
            "built the timeline's indexes"
        );
        // Saved searches are all the replaced timeline held; they carry over.
        let searches: Vec<SavedSearch> = {
            let mut stmt = bulk
                .timeline
                .prepare("SELECT name, query, facets, saved FROM searches")?;
            stmt.query_map([], saved)?.collect::<Result<_, _>>()?
        };
        drop(bulk.timeline);
        for s in &searches {
            self.conn.execute(
                "INSERT OR REPLACE INTO searches(name, query, facets, saved) VALUES (?1, ?2, ?3, ?4)",
                params![s.name, s.query, s.facets.join(","), s.saved],
            )?;
        }
        let fresh = Connection::open_in_memory()?;
        let built = std::mem::replace(&mut self.conn, fresh);
        built.close().map_err(|(_, e)| e)?;
        bulk.fts.copy_into(&building)?;
        let io_err = |source| TimelineError::Dir {
            path: building.clone(),
            source,
        };
        std::fs::File::open(&building)
            .and_then(|f| f.sync_all())
            .map_err(io_err)?;
        // The replaced timeline is closed: a journal of it left now would be
        // read as the new file's.
        for suffix in ["-wal", "-shm"] {
            match std::fs::remove_file(suffixed(&self.path, suffix)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(e)),
                _ => {}
            }
        }
        std::fs::rename(&building, &self.path).map_err(io_err)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(io_err)?;
        }
        *self = Self::open(&self.path)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a transaction for a load's write unless a bulk run holds one
    /// open already; true when this call opened it.
    fn begin(&self) -> Result<bool, rusqlite::Error> {
        if self.bulk.is_some() {
            return Ok(false);
        }
        self.conn.execute_batch("BEGIN")?;
        Ok(true)
    }

    /// Closes what [`Timeline::begin`] opened: committed on success, rolled
    /// back on error.
    fn end<T>(&self, own: bool, r: Result<T, rusqlite::Error>) -> Result<T, rusqlite::Error> {
        if !own {
            return r;
        }
        match r {
            Ok(v) => self.conn.execute_batch("COMMIT").map(|()| v),
            Err(e) => {
                if let Err(rollback) = self.conn.execute_batch("ROLLBACK") {
                    tracing::warn!(error = %rollback, "rolling back a timeline write failed");
                }
                Err(e)
            }
        }
    }

    pub fn is_ingested(&self, artefact: &str) -> Result<bool, TimelineError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM ingested WHERE artefact = ?1 AND state IN ('done', 'loaded')",
                [artefact],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Starts the timeline at `path` over, empty, whatever custody made it
    /// (a rebuild): only its saved searches are kept.
    pub fn reset(path: &Path) -> Result<Self, TimelineError> {
        let searches: Vec<SavedSearch> = if path.exists() {
            let old = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|source| TimelineError::Open {
                    path: path.to_path_buf(),
                    source,
                })?;
            let has = old
                .query_row(
                    "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'searches'",
                    [],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if has {
                let mut stmt = old.prepare("SELECT name, query, facets, saved FROM searches")?;
                stmt.query_map([], saved)?.collect::<Result<_, _>>()?
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        for p in [
            path.to_path_buf(),
            suffixed(path, "-wal"),
            suffixed(path, "-shm"),
        ] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TimelineError::Dir { path: p, source: e });
                }
                _ => {}
            }
        }
        let tl = Self::open(path)?;
        for s in &searches {
            tl.conn.execute(
                "INSERT OR REPLACE INTO searches(name, query, facets, saved) VALUES (?1, ?2, ?3, ?4)",
                params![s.name, s.query, s.facets.join(","), s.saved],
            )?;
        }
        Ok(tl)
    }

    /// A sink that loads events of `artefact` into the timeline. Call
    /// [`Loader::finish`] to commit the rest and mark the artefact ingested.
    pub fn loader<'a>(
        &'a mut self,
        artefact: &str,
        format: &str,
        geoip: Option<&'a mut GeoIp>,
    ) -> Result<Loader<'a>, TimelineError> {
        // Marked as loading first: a load cut short is undone on the next open.
        self.conn.execute(
            "INSERT OR REPLACE INTO ingested(artefact, format, at, events, duplicates, problems, state, first_id)
             VALUES (?1, ?2, '', 0, 0, 0, 'loading', (SELECT ifnull(max(id), 0) + 1 FROM events))",
            params![artefact, format],
        )?;
        let terms = {
            let mut stmt = self.conn.prepare("SELECT value, id FROM terms")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        Ok(Loader {
            terms,
            tl: self,
            geoip,
            batch: Vec::with_capacity(BATCH),
            error: None,
            report: IngestReport {
                artefact: artefact.to_owned(),
                format: format.to_owned(),
                ..IngestReport::default()
            },
            problems: Vec::new(),
            hours: BTreeMap::new(),
            counts: HashMap::default(),
            ip_counts: HashMap::default(),
            first: None,
            last: None,
        })
    }

    pub fn count(&self, q: &Query) -> Result<u64, TimelineError> {
        if q.is_empty() {
            // Every event has a source.
            let n: i64 = self.conn.query_row(
                "SELECT coalesce(sum(n), 0) FROM counts WHERE field = ?1",
                [Field::Source.column()],
                |r| r.get(0),
            )?;
            return Ok(count(n));
        }
        let (cond, params) = q.to_sql();
        let n: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM events WHERE {cond}"),
            params_from_iter(params),
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Matching events in time order, from `offset`, at most `limit`.
    pub fn rows(&self, q: &Query, limit: usize, offset: usize) -> Result<Vec<Row>, TimelineError> {
        self.page(q, limit, &Page::Offset(offset), false)
    }

    /// [`Self::rows`] read by walking the time index and testing each
    /// event, for a query that keeps a good share of the case: the first
    /// rows come at once, where an index on the query's own terms would
    /// find every match and sort them all for the first hundred.
    pub fn rows_walking_time(
        &self,
        q: &Query,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Row>, TimelineError> {
        self.page(q, limit, &Page::Offset(offset), true)
    }

    /// At most `limit` matching events in time order from `from`, along
    /// the time index when `walk_time` (see [`Self::rows_walking_time`]).
    /// A cursor costs the same on the millionth page as on the first; an
    /// offset reads every event before it.
    pub fn page(
        &self,
        q: &Query,
        limit: usize,
        from: &Page,
        walk_time: bool,
    ) -> Result<Vec<Row>, TimelineError> {
        use rusqlite::types::Value as V;
        let (cond, mut params) = q.to_sql();
        let events = if walk_time {
            "events INDEXED BY events_time JOIN details USING (id)"
        } else {
            JOINED
        };
        let mut push = |v: i64| {
            params.push(V::Integer(v));
            params.len()
        };
        let (seek, order, offset) = match *from {
            Page::Offset(o) => (String::new(), "", o),
            Page::After(Cursor { time_us, id }) => {
                let (t, i) = (push(time_us), push(id));
                (
                    format!(" AND time >= ?{t} AND (time > ?{t} OR id > ?{i})"),
                    "",
                    0,
                )
            }
            Page::Before(Cursor { time_us, id }) => {
                let (t, i) = (push(time_us), push(id));
                (
                    format!(" AND time <= ?{t} AND (time < ?{t} OR id < ?{i})"),
                    " DESC",
                    0,
                )
            }
        };
        let l = push(i64::try_from(limit).unwrap_or(i64::MAX));
        let o = push(i64::try_from(offset).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {COLUMNS} FROM {events} WHERE ({cond}){seek}
             ORDER BY time{order}, id{order} LIMIT ?{l} OFFSET ?{o}"
        );
        let mut rows = self.select(&sql, params)?;
        if order.is_empty() {
            return Ok(rows);
        }
        rows.reverse();
        Ok(rows)
    }

    /// Events by id, in time order.
    pub fn rows_by_id(&self, ids: &[i64]) -> Result<Vec<Row>, TimelineError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM {JOINED} WHERE id = ?1"))?;
        for id in ids {
            if let Some(r) = stmt.query_row([id], row).optional()? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| (r.time_us, r.id));
        Ok(out)
    }

    fn select(
        &self,
        sql: &str,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<Row>, TimelineError> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params_from_iter(params), row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every event in time order, for exports and findings, one at a time.
    pub fn each(
        &self,
        q: &Query,
        mut f: impl FnMut(Row) -> Result<(), TimelineError>,
    ) -> Result<(), TimelineError> {
        let (cond, params) = q.to_sql();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM {JOINED} WHERE {cond} ORDER BY time, id"
        ))?;
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            f(row(r)?)?;
        }
        Ok(())
    }

    pub fn facet(&self, q: &Query, field: Field, top: usize) -> Result<Facet, TimelineError> {
        let (cond, mut params) = q.to_sql();
        let col = field.column();
        let mut total = None;
        let values = if q.is_empty() && !field.in_details() {
            self.kept_counts(field, top)?
        } else if field.is_coded() {
            // Counted by id (integers, off the index), then named.
            let sql = format!(
                "SELECT t.value, c.n FROM (SELECT {col} AS k, count(*) AS n FROM events WHERE {cond} GROUP BY {col}) c
                 LEFT JOIN terms t ON t.id = c.k"
            );
            let mut stmt = self.conn.prepare(&sql)?;
            let counts = stmt
                .query_map(params_from_iter(params), |r| {
                    Ok((r.get::<_, Option<String>>(0)?, count(r.get(1)?)))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let values: Vec<FacetValue> = fold_case(counts, |n| *n, |a, b| *a += b)
                .into_iter()
                .map(|(value, count)| FacetValue { value, count })
                .collect();
            total = Some(values.iter().map(|v| v.count).sum());
            top_values(values, top)
        } else if field == Field::Asn {
            // The ASN index leaves out events with none (all of them without
            // --geoip): those are counted as the rest.
            let sql = format!(
                "SELECT asn, count(*) FROM events WHERE ({cond}) AND asn IS NOT NULL GROUP BY asn"
            );
            let mut stmt = self.conn.prepare(&sql)?;
            let mut values = stmt
                .query_map(params_from_iter(params), |r| {
                    Ok(FacetValue {
                        value: Some(format!("AS{}", r.get::<_, i64>(0)?)),
                        count: count(r.get(1)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let none = self
                .count(q)?
                .saturating_sub(values.iter().map(|v| v.count).sum());
            if none > 0 {
                values.push(FacetValue {
                    value: None,
                    count: none,
                });
            }
            top_values(values, top)
        } else {
            params.push(rusqlite::types::Value::Integer(
                i64::try_from(top).unwrap_or(i64::MAX),
            ));
            let from = if field.in_details() { JOINED } else { "events" };
            let sql = format!(
                "SELECT {col}, count(*) FROM {from} WHERE {cond} GROUP BY {col} ORDER BY 2 DESC, 1 LIMIT ?{}",
                params.len()
            );
            let mut stmt = self.conn.prepare(&sql)?;
            stmt.query_map(params_from_iter(params), |r| {
                let value = match field {
                    Field::Ip => r
                        .get::<_, Option<Vec<u8>>>(0)?
                        .and_then(|k| ip_from_key(&k))
                        .map(|ip| ip.to_string()),
                    _ => r.get::<_, Option<String>>(0)?,
                };
                Ok(FacetValue {
                    value,
                    count: count(r.get(1)?),
                })
            })?
            .collect::<Result<_, _>>()?
        };
        Ok(Facet {
            field: field.name().to_owned(),
            values,
            total,
            estimated: false,
        })
    }

    /// A facet of every event, from the counts kept as loads finish rather
    /// than a scan of them all.
    fn kept_counts(&self, field: Field, top: usize) -> Result<Vec<FacetValue>, TimelineError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.key, c.n, t.value FROM counts c
             LEFT JOIN terms t ON t.id = c.key AND typeof(c.key) = 'integer'
             WHERE c.field = ?1",
        )?;
        let counts = stmt
            .query_map([field.column()], |r| {
                let key = r.get_ref(0)?;
                let value = match (field, key) {
                    (_, rusqlite::types::ValueRef::Integer(NONE)) => None,
                    (Field::Ip, rusqlite::types::ValueRef::Blob(k)) => {
                        ip_from_key(k).map(|ip| ip.to_string())
                    }
                    (Field::Asn, rusqlite::types::ValueRef::Integer(n)) => Some(format!("AS{n}")),
                    _ => r.get::<_, Option<String>>(2)?,
                };
                Ok((value, count(r.get(1)?)))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let values: Vec<FacetValue> = if field.is_coded() {
            fold_case(counts, |n| *n, |a, b| *a += b)
        } else {
            counts
        }
        .into_iter()
        .map(|(value, count)| FacetValue { value, count })
        .collect();
        Ok(top_values(values, top))
    }

    /// Each artefact loaded into the timeline, by id: its format, events,
    /// problems and state (`done`; anything else is a load cut short).
    pub fn ingested(&self) -> Result<BTreeMap<String, Ingested>, TimelineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT artefact, format, events, problems, state FROM ingested")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Ingested {
                    format: r.get(1)?,
                    events: count(r.get(2)?),
                    problems: count(r.get(3)?),
                    state: r.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The first and last event time (µs), if there is any event.
    pub fn span(&self) -> Result<Option<(i64, i64)>, TimelineError> {
        let (first, last): (Option<i64>, Option<i64>) = self
            .conn
            // One aggregate a subquery: SQLite reads a min or a max off
            // the index only when it is the query's sole aggregate.
            .query_row(
                "SELECT (SELECT min(time) FROM events), (SELECT max(time) FROM events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        Ok(first.zip(last))
    }

    pub fn histogram(&self, q: &Query, bucket_us: i64) -> Result<Vec<Bucket>, TimelineError> {
        let (cond, mut params) = q.to_sql();
        params.push(rusqlite::types::Value::Integer(bucket_us.max(1)));
        let b = params.len();
        let sql = format!(
            "SELECT (time / ?{b}) * ?{b} AS start, count(*) FROM events WHERE {cond} GROUP BY start ORDER BY start"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let out = stmt
            .query_map(params_from_iter(params), |r| {
                Ok(Bucket {
                    start: show_time(r.get(0)?),
                    count: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    pub fn save_search(
        &self,
        name: &str,
        query: &str,
        facets: &[String],
        now: &str,
    ) -> Result<(), TimelineError> {
        self.conn.execute(
            "INSERT INTO searches(name, query, facets, saved) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET query = excluded.query, facets = excluded.facets, saved = excluded.saved",
            params![name, query, facets.join(","), now],
        )?;
        Ok(())
    }

    pub fn saved_search(&self, name: &str) -> Result<SavedSearch, TimelineError> {
        self.conn
            .query_row(
                "SELECT name, query, facets, saved FROM searches WHERE name = ?1",
                [name],
                saved,
            )
            .optional()?
            .ok_or_else(|| TimelineError::NoSavedSearch(name.to_owned()))
    }

    pub fn saved_searches(&self) -> Result<Vec<SavedSearch>, TimelineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, query, facets, saved FROM searches ORDER BY name")?;
        let out = stmt.query_map([], saved)?.collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Accounts seen with a source: `cond` selects the source's events.
    pub fn accounts_where(
        &self,
        cond: &str,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<Seen>, TimelineError> {
        let sql = format!(
            "SELECT t.value, a.first, a.last, a.n FROM (
               SELECT actor, min(time) AS first, max(time) AS last, count(*) AS n FROM events
               WHERE actor IS NOT NULL AND ({cond}) GROUP BY actor) a
             JOIN terms t ON t.id = a.actor"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let seen = stmt
            .query_map(params_from_iter(params), |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    (r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, count(r.get(3)?)),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = fold_case(
            seen,
            |(_, _, n)| *n,
            |a, b| *a = (a.0.min(b.0), a.1.max(b.1), a.2 + b.2),
        );
        seen.sort_by(|a, b| (a.1.0, &a.0).cmp(&(b.1.0, &b.0)));
        Ok(seen
            .into_iter()
            .map(|(value, (first, last, events))| Seen {
                value: value.unwrap_or_default(),
                first: show_time(first),
                last: show_time(last),
                events,
                asn: None,
                as_org: None,
                country: None,
            })
            .collect())
    }

    /// Source addresses seen for an account, with their ASN.
    pub fn sources_of(&self, account: &str) -> Result<Vec<Seen>, TimelineError> {
        let actor = coded("actor", "= ?1 COLLATE NOCASE");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT s.k, s.first, s.last, s.n, s.asn,
               (SELECT value FROM terms WHERE id = s.org), (SELECT value FROM terms WHERE id = s.country)
             FROM (SELECT ipkey AS k, min(time) AS first, max(time) AS last, count(*) AS n,
                     max(asn) AS asn, max(as_org) AS org, max(country) AS country
                   FROM events WHERE {actor} AND ipkey IS NOT NULL GROUP BY ipkey) s
             ORDER BY s.first, s.k"
        ))?;
        let out = stmt
            .query_map([account], |r| {
                let key: Vec<u8> = r.get(0)?;
                Ok(Seen {
                    value: ip_from_key(&key).map(|i| i.to_string()).unwrap_or_default(),
                    first: show_time(r.get(1)?),
                    last: show_time(r.get(2)?),
                    events: count(r.get(3)?),
                    asn: r.get(4)?,
                    as_org: r.get(5)?,
                    country: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Events under an SQL condition of this module's callers, in time order.
    pub(crate) fn rows_where(
        &self,
        cond: &str,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<Row>, TimelineError> {
        self.select(
            &format!("SELECT {COLUMNS} FROM {JOINED} WHERE {cond} ORDER BY time, id"),
            params,
        )
    }
}

/// The key a record is known by: its source and id, hashed so the index on
/// it holds integers. Equal keys are checked against the id itself.
fn record_key(source: &str, id: &str) -> i64 {
    use sha2::Digest;
    let d = sha2::Sha256::new()
        .chain_update(source)
        .chain_update([0u8])
        .chain_update(id)
        .finalize();
    d.first_chunk::<8>().map_or(0, |b| i64::from_be_bytes(*b))
}

/// Where a stored event came from: `artefact member locator`.
fn place_of(conn: &Connection, id: i64) -> Result<String, rusqlite::Error> {
    conn.query_row(
        "SELECT (SELECT value FROM terms WHERE terms.id = events.artefact),
                (SELECT value FROM terms WHERE terms.id = details.member), locator
         FROM events JOIN details USING (id) WHERE id = ?1",
        [id],
        |r| {
            Ok(place_text(
                &r.get::<_, String>(0)?,
                &r.get::<_, String>(1)?,
                &r.get::<_, String>(2)?,
            ))
        },
    )
}

fn place_text(artefact: &str, member: &str, locator: &str) -> String {
    if member.is_empty() {
        format!("{artefact} {locator}")
    } else {
        format!("{artefact} {member} {locator}")
    }
}

/// The `top` commonest values, ties by value.
pub(super) fn top_values(mut values: Vec<FacetValue>, top: usize) -> Vec<FacetValue> {
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(top);
    values
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Groups that differ only in ASCII case made one, as the query's field
/// terms match them (`actor:ALICE@contoso.com` finds `alice@contoso.com`);
/// the group shows the spelling with the most weight.
pub(super) fn fold_case<T>(
    groups: Vec<(Option<String>, T)>,
    weight: impl Fn(&T) -> u64,
    merge: impl Fn(&mut T, T),
) -> Vec<(Option<String>, T)> {
    let mut by_key: std::collections::HashMap<Option<String>, (Option<String>, u64, T)> =
        std::collections::HashMap::with_capacity(groups.len());
    for (value, v) in groups {
        let key = value.as_ref().map(|s| s.to_ascii_lowercase());
        let w = weight(&v);
        match by_key.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((value, w, v));
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let g = e.get_mut();
                if (w, std::cmp::Reverse(&value)) > (g.1, std::cmp::Reverse(&g.0)) {
                    g.0 = value;
                    g.1 = w;
                }
                merge(&mut g.2, v);
            }
        }
    }
    by_key
        .into_values()
        .map(|(value, _, v)| (value, v))
        .collect()
}

fn saved(r: &rusqlite::Row<'_>) -> rusqlite::Result<SavedSearch> {
    let facets: String = r.get(2)?;
    Ok(SavedSearch {
        name: r.get(0)?,
        query: r.get(1)?,
        facets: facets
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        saved: r.get(3)?,
    })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let time_us: i64 = r.get(1)?;
    let key: Option<Vec<u8>> = r.get(7)?;
    let attributes: Option<String> = r.get(15)?;
    Ok(Row {
        id: r.get(0)?,
        time: show_time(time_us),
        time_us,
        source: r.get(2)?,
        account: r.get(3)?,
        actor: r.get(4)?,
        action: r.get(5)?,
        outcome: r.get(6)?,
        ip: key.and_then(|k| ip_from_key(&k)).map(|i| i.to_string()),
        asn: r.get(8)?,
        as_org: r.get(9)?,
        country: r.get(10)?,
        user_agent: r.get(11)?,
        target: r.get(12)?,
        record_id: r.get(13)?,
        message: r.get(14)?,
        attributes: attributes
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default(),
        artefact: r.get(16)?,
        member: r.get(17)?,
        locator: r.get(18)?,
    })
}

/// Loads one artefact's events in batches (see [`Timeline::loader`]).
pub struct Loader<'a> {
    tl: &'a mut Timeline,
    /// Every term of the timeline by value: the ids the rows hold.
    terms: HashMap<String, i64>,
    geoip: Option<&'a mut GeoIp>,
    batch: Vec<Event>,
    error: Option<rusqlite::Error>,
    report: IngestReport,
    problems: Vec<Problem>,
    hours: BTreeMap<i64, u64>,
    /// Events per value of each counted field in this load (key [`NONE`]
    /// for none), added to `counts` when the load is recorded.
    counts: HashMap<(&'static str, i64), u64>,
    ip_counts: HashMap<Option<[u8; 16]>, u64>,
    first: Option<i64>,
    last: Option<i64>,
}

impl Sink for Loader<'_> {
    fn event(&mut self, event: Event) {
        if event.source == "vpc_flow" {
            match event.action.as_str() {
                super::parse::aws::FLOW_NODATA => self.report.nodata += 1,
                super::parse::aws::FLOW_SKIPDATA => self.report.skipdata += 1,
                _ => {}
            }
        }
        self.batch.push(event);
        if self.batch.len() >= BATCH
            && self.error.is_none()
            && let Err(e) = self.flush()
        {
            self.error = Some(e);
        }
    }

    fn problem(&mut self, problem: Problem) {
        self.report.problems += 1;
        if self.problems.len() < PROBLEMS_KEPT {
            self.problems.push(problem);
        }
    }
}

const HOUR_US: i64 = 3_600_000_000;

/// What free text finds besides the summary: the target, the user agent and
/// the attributes' values (their names would only add noise and cost). A
/// value the summary already holds as whole words is left out: it finds
/// the same rows, and a file-system row's summary names its path, size,
/// inode and mode, half of what the index would otherwise hold twice.
fn fts_detail(e: &Event) -> String {
    let mut out = String::new();
    for v in e
        .target
        .iter()
        .chain(e.user_agent.iter())
        .chain(e.attributes.iter().map(|(_, v)| v))
    {
        if v.is_empty() || holds_words(&e.message, v) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(v);
    }
    out
}

/// Whether `text` holds `v` with no letter or digit right before or after
/// it, so that the full-text tokenizer reads the same words from it.
/// Values are short and many: a scan for the first byte costs less here
/// than building a substring searcher for each.
fn holds_words(text: &str, v: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let (t, n) = (text.as_bytes(), v.as_bytes());
    let Some(&first) = n.first() else {
        return false;
    };
    let mut from = 0;
    while let Some(i) = t.get(from..).and_then(|rest| memchr::memchr(first, rest)) {
        let at = from + i;
        from = at + 1;
        if t.get(at..at + n.len()) != Some(n) {
            continue;
        }
        // `v` begins and ends on whole characters, so both cuts are on
        // character boundaries.
        let before = text.get(..at).and_then(|t| t.chars().next_back());
        let after = text.get(at + n.len()..).and_then(|t| t.chars().next());
        if !word(before) && !word(after) {
            return true;
        }
    }
    false
}

/// An event's attributes as one JSON object, keys in order; of a key
/// given twice, the last value (as a map built from them would keep).
fn attributes_json(attributes: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Stable: of equal keys, the last given stays last.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut kept: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
    for p in pairs {
        match kept.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => kept.push(p),
        }
    }
    struct Map<'a>(&'a [(&'a str, &'a str)]);
    impl Serialize for Map<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
    serde_json::to_string(&Map(&kept)).unwrap_or_default()
}

impl Loader<'_> {
    fn flush(&mut self) -> Result<(), rusqlite::Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let own = self.tl.begin()?;
        let r = self.insert_batch();
        self.tl.end(own, r)
    }

    fn insert_batch(&mut self) -> Result<(), rusqlite::Error> {
        let tx = &self.tl.conn;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO events(time, source, account, actor, action, outcome, ipkey, asn,
                   as_org, country, user_agent, artefact, rkey)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut ins_details = tx.prepare_cached(
                "INSERT INTO details(id, target, record_id, content, message, attributes, member, locator)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut known = tx.prepare_cached(
                "SELECT id, content FROM events JOIN details USING (id)
                 WHERE rkey = ?1 AND events.source = ?2 AND details.record_id = ?3
                 ORDER BY id",
            )?;
            let mut fts = tx.prepare_cached(
                "INSERT INTO events_fts(rowid, message, detail) VALUES (?1, ?2, ?3)",
            )?;
            // A bulk run's full-text rows go to its builder (see
            // [`super::fts_build`]), a batch at a time.
            let mut fts_rows: Option<Vec<fts_build::Row>> = self
                .tl
                .bulk
                .is_some()
                .then(|| Vec::with_capacity(self.batch.len()));
            let mut add = tx.prepare_cached(
                "INSERT INTO terms(value) VALUES (?1)
                 ON CONFLICT(value) DO UPDATE SET value = excluded.value RETURNING id",
            )?;
            let terms = &mut self.terms;
            let mut code = |v: Option<&str>| -> Result<Option<i64>, rusqlite::Error> {
                let Some(v) = v else { return Ok(None) };
                if let Some(id) = terms.get(v) {
                    return Ok(Some(*id));
                }
                let id: i64 = add.query_row([v], |r| r.get(0))?;
                terms.insert(v.to_owned(), id);
                Ok(Some(id))
            };
            let artefact = code(Some(&self.report.artefact))?;
            let mut batch = std::mem::take(&mut self.batch);
            for e in batch.drain(..) {
                let source = code(Some(e.source))?;
                let rkey = e.record_id.as_deref().map(|id| record_key(e.source, id));
                let mut verdict = Verdict::New;
                // A bulk run's key of this record in `seen`.
                let mut seen_key = None;
                if let (Some(rkey), Some(id)) = (rkey, &e.record_id) {
                    // A bulk run starts empty and remembers what it loaded;
                    // otherwise the timeline is asked.
                    verdict = match self.tl.bulk.as_mut() {
                        Some(bulk) => {
                            match bulk.seen.get(seen_key.insert((e.source, id.clone()))) {
                                None => Verdict::New,
                                Some(s)
                                    if s.content == e.content || s.more.contains(&e.content) =>
                                {
                                    Verdict::Duplicate
                                }
                                Some(s) => Verdict::SameId(s.row),
                            }
                        }
                        None => {
                            let rows = known
                                .query_map(params![rkey, source, id], |r| {
                                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                                })?
                                .collect::<Result<Vec<_>, _>>()?;
                            match rows.first() {
                                None => Verdict::New,
                                Some(_) if rows.iter().any(|(_, c)| *c == e.content) => {
                                    Verdict::Duplicate
                                }
                                Some((row, _)) => Verdict::SameId(*row),
                            }
                        }
                    };
                    if matches!(verdict, Verdict::Duplicate) {
                        self.report.duplicates += 1;
                        continue;
                    }
                }
                let place = match (e.ip, self.geoip.as_deref_mut()) {
                    (Some(ip), Some(g)) => g.lookup(ip),
                    _ => super::geoip::Place::default(),
                };
                let attributes = (!e.attributes.is_empty()).then(|| attributes_json(&e.attributes));
                let coded = [
                    (Field::Source, source),
                    (Field::Account, code(e.account.as_deref())?),
                    (Field::Actor, code(e.actor.as_deref())?),
                    (Field::Action, code(Some(&e.action))?),
                    (Field::Outcome, code(e.outcome.as_deref())?),
                    (Field::Asn, place.asn.map(i64::from)),
                    (Field::Org, code(place.org.as_deref())?),
                    (Field::Country, code(place.country.as_deref())?),
                    (Field::UserAgent, code(e.user_agent.as_deref())?),
                    (Field::Artefact, artefact),
                ];
                for (f, v) in coded {
                    *self
                        .counts
                        .entry((f.column(), v.unwrap_or(NONE)))
                        .or_default() += 1;
                }
                let key = e.ip.map(ip_key);
                *self.ip_counts.entry(key).or_default() += 1;
                let [_, account, actor, action, outcome, asn, org, country, ua, _] =
                    coded.map(|c| c.1);
                ins.execute(params![
                    e.time_us,
                    source,
                    account,
                    actor,
                    action,
                    outcome,
                    key.map(|k| k.to_vec()),
                    asn,
                    org,
                    country,
                    ua,
                    artefact,
                    rkey,
                ])?;
                let id = tx.last_insert_rowid();
                match verdict {
                    Verdict::New => {
                        if let (Some(bulk), Some(k)) = (self.tl.bulk.as_mut(), seen_key) {
                            bulk.seen.insert(
                                k,
                                SeenRecord {
                                    content: e.content,
                                    row: id,
                                    more: Vec::new(),
                                },
                            );
                        }
                    }
                    Verdict::SameId(first) => {
                        if let (Some(bulk), Some(k)) = (self.tl.bulk.as_mut(), &seen_key)
                            && let Some(s) = bulk.seen.get_mut(k)
                        {
                            s.more.push(e.content);
                        }
                        self.report.same_id_different_content += 1;
                        if self.report.same_id_samples.len() < SAME_ID_KEPT {
                            let first = place_of(tx, first)?;
                            self.report.same_id_samples.push(SameId {
                                source: e.source.to_owned(),
                                record_id: e.record_id.clone().unwrap_or_default(),
                                first,
                                second: place_text(&self.report.artefact, &e.member, &e.locator),
                            });
                        }
                    }
                    Verdict::Duplicate => {}
                }
                ins_details.execute(params![
                    id,
                    e.target,
                    e.record_id,
                    e.content,
                    e.message,
                    attributes,
                    code(Some(&e.member))?,
                    e.locator,
                ])?;
                let detail = fts_detail(&e);
                match fts_rows.as_mut() {
                    Some(rows) => rows.push((id, e.message, detail)),
                    None => {
                        fts.execute(params![id, e.message, detail])?;
                    }
                }
                self.report.events += 1;
                *self.hours.entry(e.time_us.div_euclid(HOUR_US)).or_default() += 1;
                self.first = Some(self.first.map_or(e.time_us, |f| f.min(e.time_us)));
                self.last = Some(self.last.map_or(e.time_us, |l| l.max(e.time_us)));
            }
            if let (Some(rows), Some(bulk)) = (fts_rows, self.tl.bulk.as_mut()) {
                bulk.fts.send(rows);
            }
            // The batch's buffer is kept for the next.
            self.batch = batch;
        }
        Ok(())
    }

    /// Commits what is left, records the problems and marks the artefact
    /// ingested, in one transaction.
    pub fn finish(mut self, now: &str) -> Result<IngestReport, TimelineError> {
        if let Some(e) = self.error.take() {
            return Err(e.into());
        }
        self.flush()?;
        let own = self.tl.begin()?;
        let r = self.record(now);
        self.tl.end(own, r)?;
        let mut report = self.report;
        report.problem_samples = self.problems.into_iter().take(20).collect();
        report.first = self.first.map(show_time);
        report.last = self.last.map(show_time);
        if let (Some(first), Some(last)) = (self.hours.keys().next(), self.hours.keys().next_back())
        {
            report.empty_hours = (*first..=*last)
                .filter(|h| !self.hours.contains_key(h))
                .map(|h| show_time(h * HOUR_US))
                .collect();
        }
        report.per_hour = self
            .hours
            .into_iter()
            .map(|(h, n)| (show_time(h * HOUR_US), n))
            .collect();
        Ok(report)
    }

    /// The problems and the artefact's state, in the load's transaction.
    fn record(&self, now: &str) -> Result<(), rusqlite::Error> {
        let tx = &self.tl.conn;
        {
            let mut p = tx.prepare_cached(
                "INSERT INTO problems(artefact, member, locator, message) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for pr in &self.problems {
                p.execute(params![
                    self.report.artefact,
                    pr.member,
                    pr.locator,
                    pr.message
                ])?;
            }
            let mut add = tx.prepare_cached(
                "INSERT INTO counts(field, key, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT(field, key) DO UPDATE SET n = n + excluded.n",
            )?;
            let n = |n: &u64| i64::try_from(*n).unwrap_or(i64::MAX);
            for ((field, key), c) in &self.counts {
                add.execute(params![field, key, n(c)])?;
            }
            for (key, c) in &self.ip_counts {
                match key {
                    Some(k) => add.execute(params![Field::Ip.column(), k.as_slice(), n(c)])?,
                    None => add.execute(params![Field::Ip.column(), NONE, n(c)])?,
                };
            }
            // In a bulk run the artefact is done once its indexes are built.
            let state = if self.tl.bulk.is_some() {
                "loaded"
            } else {
                "done"
            };
            tx.execute(
                "UPDATE ingested SET at = ?2, events = ?3, duplicates = ?4, problems = ?5, state = ?6,
                   same_id = ?7
                 WHERE artefact = ?1",
                params![
                    self.report.artefact,
                    now,
                    i64::try_from(self.report.events).unwrap_or(i64::MAX),
                    i64::try_from(self.report.duplicates).unwrap_or(i64::MAX),
                    i64::try_from(self.report.problems).unwrap_or(i64::MAX),
                    state,
                    i64::try_from(self.report.same_id_different_content).unwrap_or(i64::MAX),
                ],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::query::FIELDS;

    fn ev(t: i64, actor: &str, action: &str, ip: &str, id: &str) -> Event {
        let mut e = Event::new(t, "m365_ual", action);
        e.actor = Some(actor.to_owned());
        e.ip = ip.parse().ok();
        e.record_id = Some(id.to_owned());
        e.message = format!("{actor} {action} from {ip}");
        e.attributes.push(("subject".into(), "Q2 invoice".into()));
        e.locator = format!("row {id}");
        e
    }

    const H: i64 = HOUR_US;
    const T0: i64 = 1_622_505_600_000_000; // 2021-06-01T00:00:00Z

    fn loaded(dir: &Path) -> (Timeline, IngestReport) {
        let mut tl = Timeline::open(&dir.join("t.sqlite")).expect("open");
        let mut l = tl.loader("a1", "ual-csv", None).expect("loader");
        l.event(ev(
            T0,
            "alice@contoso.com",
            "UserLoggedIn",
            "203.0.113.10",
            "1",
        ));
        l.event(ev(
            T0 + H,
            "bob@contoso.com",
            "UserLoggedIn",
            "203.0.113.10",
            "2",
        ));
        l.event(ev(
            T0 + H + 5,
            "alice@contoso.com",
            "New-InboxRule",
            "203.0.113.10",
            "3",
        ));
        l.event(ev(
            T0 + 3 * H,
            "carol@contoso.com",
            "Send",
            "192.0.2.7",
            "4",
        ));
        l.event(ev(
            T0 + H,
            "bob@contoso.com",
            "UserLoggedIn",
            "203.0.113.10",
            "2",
        ));
        l.problem(Problem {
            member: String::new(),
            locator: "row 9 (line 10)".into(),
            message: "AuditData is not JSON".into(),
        });
        let report = l.finish("2026-12-01T00:00:00Z").expect("finish");
        (tl, report)
    }

    #[test]
    fn duplicates_are_dropped_and_hours_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let (tl, r) = loaded(dir.path());
        assert_eq!((r.events, r.duplicates, r.problems), (4, 1, 1));
        assert_eq!(r.empty_hours, ["2021-06-01T02:00:00Z"]);
        assert_eq!(
            r.per_hour.into_iter().collect::<Vec<_>>(),
            vec![
                ("2021-06-01T00:00:00Z".to_owned(), 1),
                ("2021-06-01T01:00:00Z".to_owned(), 2),
                ("2021-06-01T03:00:00Z".to_owned(), 1)
            ]
        );
        assert!(tl.is_ingested("a1").expect("q"));
        assert!(!tl.is_ingested("a2").expect("q"));
    }

    #[test]
    fn queries_facets_histogram_and_free_text() {
        let dir = tempfile::tempdir().expect("tmp");
        let (tl, _) = loaded(dir.path());
        let q = |s: &str| Query::parse(s).expect("query");
        let actions = |s: &str| -> Vec<String> {
            tl.rows(&q(s), 100, 0)
                .expect("rows")
                .into_iter()
                .map(|r| r.action)
                .collect()
        };
        assert_eq!(
            actions("ip:203.0.113.0/24 actor:ALICE@contoso.com"),
            ["UserLoggedIn", "New-InboxRule"]
        );
        assert_eq!(
            actions("action:send action:new-inboxrule"),
            ["New-InboxRule", "Send"]
        );
        assert_eq!(actions("-ip:203.0.113.0/24"), ["Send"]);
        assert_eq!(
            actions("after:2021-06-01T01:00:00Z before:2021-06-01T03:00:00Z"),
            ["UserLoggedIn", "New-InboxRule"]
        );
        assert_eq!(actions("carol invoice"), ["Send"]);
        assert_eq!(actions("action:*Inbox*"), ["New-InboxRule"]);
        let f = tl.facet(&q(""), Field::Ip, 10).expect("facet");
        assert_eq!(
            f.values[0],
            FacetValue {
                value: Some("203.0.113.10".into()),
                count: 3
            }
        );
        assert_eq!(
            f.values[1],
            FacetValue {
                value: Some("192.0.2.7".into()),
                count: 1
            }
        );
        let h = tl.histogram(&q(""), H).expect("histogram");
        assert_eq!(h.iter().map(|b| b.count).collect::<Vec<_>>(), [1, 2, 1]);
        assert_eq!(h[1].start, "2021-06-01T01:00:00Z");
        let row = &tl.rows(&q("action:Send"), 1, 0).expect("rows")[0];
        assert_eq!(
            (row.artefact.as_str(), row.locator.as_str()),
            ("a1", "row 4")
        );
        assert_eq!(row.attribute("subject"), Some("Q2 invoice"));
    }

    #[test]
    fn attributes_are_one_json_object_as_a_map_of_them_would_be() {
        let cases: [&[(&str, &str)]; 4] = [
            &[("b", "2"), ("a", "1")],
            &[("k", "first"), ("a", "x"), ("k", "last")],
            &[
                ("q\"uote", "line\nbreak"),
                ("ctl", "\u{1b}[31m"),
                ("é", "ü"),
            ],
            &[("same", "1"), ("same", "2"), ("same", "3")],
        ];
        for case in cases {
            let owned: Vec<(String, String)> = case
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let map: BTreeMap<&str, &str> = case.iter().copied().collect();
            assert_eq!(
                attributes_json(&owned),
                serde_json::to_string(&map).expect("json"),
                "{case:?}"
            );
        }
    }

    #[test]
    fn detail_leaves_out_only_values_the_summary_holds_as_whole_words() {
        assert!(holds_words(
            "mac. /etc/passwd (42 bytes, inode 573)",
            "/etc/passwd"
        ));
        assert!(holds_words("mac. /etc/passwd (42 bytes, inode 573)", "573"));
        // Inside a longer word, the tokenizer would not find it alone.
        assert!(!holds_words("inode 573", "57"));
        assert!(!holds_words("inode 573", "73"));
        assert!(!holds_words("uid 0", "1"));
        // A whole-word place after one inside a word; letters beyond ASCII
        // are letters too.
        assert!(holds_words("inode 5735, uid 573", "573"));
        assert!(!holds_words("é573 573é", "573"));
        assert!(holds_words("é573 ü 573", "573"));
        assert!(!holds_words("", "5"));
        let mut e = Event::new(T0, "fs", "m...");
        e.message = "m... /srv/x (7 bytes, inode 57)".into();
        e.target = Some("/srv/x".into());
        e.attributes = vec![
            ("inode".into(), "57".into()),
            ("uid".into(), "5".into()),
            ("size".into(), "7".into()),
        ];
        assert_eq!(fts_detail(&e), "5");
        // Free text still finds each value, from the summary or the detail.
        let dir = tempfile::tempdir().expect("tmp");
        let mut tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
        let mut l = tl.loader("a1", "bodyfile", None).expect("loader");
        l.event(e);
        l.finish("2026-12-01T00:00:00Z").expect("finish");
        for words in ["57", "5", "srv", "7 bytes"] {
            let q = Query::parse(words).expect("query");
            assert_eq!(tl.rows(&q, 10, 0).expect("rows").len(), 1, "{words}");
        }
        let q = Query::parse("573").expect("query");
        assert!(tl.rows(&q, 10, 0).expect("rows").is_empty());
    }

    #[test]
    fn saved_searches_survive_reopening_and_a_rebuild() {
        let dir = tempfile::tempdir().expect("tmp");
        let (tl, _) = loaded(dir.path());
        tl.save_search("rules", "action:New-InboxRule", &["actor".into()], "now")
            .expect("save");
        drop(tl);
        let tl = Timeline::open(&dir.path().join("t.sqlite")).expect("reopen");
        let s = tl.saved_search("rules").expect("saved");
        assert_eq!(
            (s.query.as_str(), s.facets.as_slice()),
            ("action:New-InboxRule", ["actor".to_owned()].as_slice())
        );
        drop(tl);
        let tl = Timeline::reset(&dir.path().join("t.sqlite")).expect("reset");
        assert_eq!(tl.count(&Query::default()).expect("count"), 0);
        assert_eq!(tl.saved_searches().expect("list").len(), 1);
        assert!(matches!(
            tl.saved_search("nope"),
            Err(TimelineError::NoSavedSearch(_))
        ));
    }

    #[test]
    fn a_load_cut_short_is_undone_on_the_next_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut tl, _) = loaded(dir.path());
        {
            let mut l = tl.loader("a2", "ual-csv", None).expect("loader");
            l.event(ev(
                T0,
                "mallory@contoso.com",
                "UserLoggedIn",
                "198.51.100.9",
                "9",
            ));
            l.flush().expect("flush");
            // Dropped without finish: a crash after a committed batch.
        }
        drop(tl);
        let tl = Timeline::open(&dir.path().join("t.sqlite")).expect("reopen");
        assert!(!tl.is_ingested("a2").expect("q"));
        assert_eq!(
            tl.count(&Query::parse("actor:mallory@contoso.com").expect("q"))
                .expect("count"),
            0
        );
        assert_eq!(
            tl.count(&Query::parse("").expect("q")).expect("count"),
            4,
            "a1 is whole"
        );
        assert_eq!(
            tl.count(&Query::parse("mallory").expect("q"))
                .expect("count"),
            0,
            "nor in full text"
        );
    }

    #[test]
    fn a_bulk_run_replaces_the_timeline_only_when_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.sqlite");
        let tl = Timeline::open(&path).expect("open");
        tl.save_search("keep", "action:Send", &[], "now")
            .expect("save");
        drop(tl);
        let load = |tl: &mut Timeline| {
            assert!(
                tl.begin_bulk().expect("bulk"),
                "an empty timeline loads in bulk"
            );
            let mut l = tl.loader("b1", "ual-csv", None).expect("loader");
            l.event(ev(
                T0,
                "alice@contoso.com",
                "UserLoggedIn",
                "203.0.113.10",
                "1",
            ));
            l.event(ev(T0 + 1, "alice@contoso.com", "Send", "203.0.113.10", "2"));
            l.event(ev(T0 + 1, "alice@contoso.com", "Send", "203.0.113.10", "2"));
            let r = l.finish("now").expect("finish");
            assert_eq!((r.events, r.duplicates), (2, 1));
        };
        // Cut short before the end: the timeline is as it was.
        let mut tl = Timeline::open(&path).expect("open");
        load(&mut tl);
        drop(tl);
        assert!(building_path(&path).exists());
        let mut tl = Timeline::open(&path).expect("reopen");
        assert_eq!(tl.count(&Query::default()).expect("count"), 0);
        // Run again to the end: the half-built file is discarded first.
        load(&mut tl);
        tl.end_bulk().expect("end");
        assert!(!building_path(&path).exists());
        assert_eq!(tl.count(&Query::default()).expect("count"), 2);
        assert_eq!(
            tl.count(&Query::parse("alice").expect("q")).expect("count"),
            2,
            "full text built"
        );
        assert!(tl.is_ingested("b1").expect("q"));
        assert_eq!(tl.saved_search("keep").expect("kept").query, "action:Send");
        let fts_config = |k: &str| -> i64 {
            tl.conn
                .query_row("SELECT v FROM events_fts_config WHERE k = ?1", [k], |r| {
                    r.get(0)
                })
                .expect("fts config")
        };
        assert_eq!(fts_config("automerge"), i64::from(FTS_AUTOMERGE));
        assert_eq!(fts_config("hashsize"), FTS_HASH as i64);
        // Now it holds events: later loads go row by row, duplicates caught by the index.
        assert!(!tl.begin_bulk().expect("bulk"));
        let mut l = tl.loader("b2", "ual-csv", None).expect("loader");
        l.event(ev(T0 + 1, "alice@contoso.com", "Send", "203.0.113.10", "2"));
        assert_eq!(l.finish("now").expect("finish").duplicates, 1);
    }

    #[test]
    fn a_bulk_runs_full_text_is_built_beside_and_copied_in_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.sqlite");
        // A builder's file left by a run that was killed is discarded.
        std::fs::write(fts_building_path(&path), b"not a database").expect("leftover");
        let mut tl = Timeline::open(&path).expect("open");
        assert!(tl.begin_bulk().expect("bulk"));
        let mut l = tl.loader("kept", "ual-csv", None).expect("loader");
        l.event(ev(T0, "alice@contoso.com", "Send", "203.0.113.10", "1"));
        l.finish("now").expect("finish");
        // A load whose rows were written but which was never finished (a
        // bodyfile not stored): its words go with its rows at the next open.
        let mut l = tl.loader("cut", "ual-csv", None).expect("loader");
        for i in 0..BATCH {
            let id = format!("c{i}");
            l.event(ev(T0 + 1, "mallory@evil.example", "Send", "192.0.2.1", &id));
        }
        drop(l);
        tl.end_bulk().expect("end");
        assert!(!fts_building_path(&path).exists());
        drop(tl);
        let tl = Timeline::open(&path).expect("reopen");
        let count = |q: &str| tl.count(&Query::parse(q).expect("q")).expect("count");
        assert_eq!(count("alice"), 1);
        assert_eq!(count("mallory"), 0);
        let indexed: i64 = tl
            .conn
            .query_row("SELECT count(*) FROM events_fts_docsize", [], |r| r.get(0))
            .expect("docsize");
        assert_eq!(indexed, 1, "the cut load's words are gone from the index");
        tl.conn
            .execute(
                "INSERT INTO events_fts(events_fts, rank) VALUES('integrity-check', 0)",
                [],
            )
            .expect("the copied index is consistent");
    }

    #[test]
    fn a_bulk_run_cut_short_leaves_no_full_text_build_behind() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.sqlite");
        let mut tl = Timeline::open(&path).expect("open");
        assert!(tl.begin_bulk().expect("bulk"));
        assert!(fts_building_path(&path).exists());
        let mut l = tl.loader("a", "ual-csv", None).expect("loader");
        for i in 0..BATCH {
            l.event(ev(
                T0,
                "alice@contoso.com",
                "Send",
                "203.0.113.10",
                &i.to_string(),
            ));
        }
        l.finish("now").expect("finish");
        drop(tl);
        assert!(!fts_building_path(&path).exists());
        let tl = Timeline::open(&path).expect("reopen");
        assert_eq!(tl.count(&Query::default()).expect("count"), 0);
    }

    #[test]
    fn coded_fields_match_and_count_across_case_and_details_fields_filter() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
        let mut l = tl.loader("c1", "ual-csv", None).expect("loader");
        let mut a = ev(T0, "Alice@Contoso.com", "Send", "203.0.113.10", "1");
        a.target = Some("mailbox/alice".into());
        l.event(a);
        l.event(ev(T0 + 1, "alice@contoso.com", "Send", "203.0.113.10", "2"));
        l.event(ev(T0 + 2, "alice@contoso.com", "send", "203.0.113.10", "3"));
        l.event(ev(T0 + 3, "bob@contoso.com", "Send", "192.0.2.7", "4"));
        l.finish("now").expect("finish");
        let q = |s: &str| Query::parse(s).expect("query");
        let actors = tl.facet(&q(""), Field::Actor, 10).expect("facet");
        assert_eq!(
            actors.values,
            [
                FacetValue {
                    value: Some("alice@contoso.com".into()),
                    count: 3
                },
                FacetValue {
                    value: Some("bob@contoso.com".into()),
                    count: 1
                }
            ],
            "case variants are one value, shown as the commonest spelling"
        );
        let actions = tl.facet(&q("actor:ALICE@contoso.com"), Field::Action, 10);
        assert_eq!(actions.expect("facet").values[0].count, 3);
        // No --geoip: every event is counted under no ASN.
        let asns = tl.facet(&q(""), Field::Asn, 10).expect("facet");
        assert_eq!(
            asns.values,
            [FacetValue {
                value: None,
                count: 4
            }]
        );
        assert_eq!(tl.count(&q("asn:64500")).expect("count"), 0);
        assert_eq!(tl.count(&q("target:mailbox/alice")).expect("count"), 1);
        assert_eq!(tl.count(&q("-target:mailbox/alice")).expect("count"), 3);
        assert_eq!(tl.count(&q("record:3")).expect("count"), 1);
        let seen = tl
            .accounts_where("ipkey IS NOT NULL", Vec::new())
            .expect("pivot");
        let seen: Vec<_> = seen.iter().map(|s| (s.value.as_str(), s.events)).collect();
        assert_eq!(seen, [("alice@contoso.com", 3), ("bob@contoso.com", 1)]);
        assert_eq!(
            tl.sources_of("ALICE@CONTOSO.COM").expect("sources")[0].events,
            3
        );
        // The stored row keeps each spelling as the evidence had it.
        let first = &tl.rows(&q(""), 1, 0).expect("rows")[0];
        assert_eq!(first.actor.as_deref(), Some("Alice@Contoso.com"));
    }

    #[test]
    fn counts_kept_per_load_agree_with_a_scan_for_every_field() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
        assert!(tl.begin_bulk().expect("bulk"));
        let mut l = tl.loader("k1", "ual-csv", None).expect("loader");
        l.event(ev(T0, "alice@contoso.com", "Send", "203.0.113.10", "1"));
        l.event(ev(T0 + 1, "Alice@contoso.com", "Send", "198.51.100.1", "2"));
        l.event(ev(T0 + 2, "bob@contoso.com", "UserLoggedIn", "x", "3"));
        l.finish("now").expect("finish");
        tl.end_bulk().expect("end");
        // A later load, row by row, with a duplicate: counted once.
        let mut l = tl.loader("k2", "ual-csv", None).expect("loader");
        l.event(ev(T0 + 3, "carol@contoso.com", "Send", "203.0.113.10", "4"));
        l.event(ev(T0 + 2, "bob@contoso.com", "UserLoggedIn", "x", "3"));
        let mut e = ev(T0 + 4, "dave@contoso.com", "Send", "192.0.2.1", "5");
        e.outcome = Some("Succeeded".into());
        e.user_agent = Some("Outlook".into());
        e.account = Some("contoso".into());
        l.event(e);
        assert_eq!(l.finish("now").expect("finish").duplicates, 1);
        let all = Query::default();
        let scanned = Query::parse("after:1970-01-01").expect("query");
        assert_eq!(tl.count(&all).expect("count"), 5);
        assert_eq!(tl.count(&scanned).expect("count"), 5);
        for (f, _) in FIELDS {
            if f.in_details() {
                continue;
            }
            let kept = tl.facet(&all, *f, 10).expect("kept");
            let scan = tl.facet(&scanned, *f, 10).expect("scan");
            assert_eq!(kept.values, scan.values, "{}", f.name());
            if f.is_coded() {
                assert_eq!(scan.total, Some(5), "{}: every event counted", f.name());
            }
        }
        let ips = tl.facet(&all, Field::Ip, 10).expect("kept");
        assert_eq!(
            ips.values[0],
            FacetValue {
                value: Some("203.0.113.10".into()),
                count: 2
            }
        );
    }

    #[test]
    fn a_timeline_of_an_older_schema_is_refused_and_reset_keeps_its_searches() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.sqlite");
        {
            let old = Connection::open(&path).expect("old");
            old.execute_batch(
                "CREATE TABLE events(id INTEGER PRIMARY KEY, actor TEXT);
                 CREATE TABLE searches(name TEXT PRIMARY KEY, query TEXT NOT NULL, facets TEXT NOT NULL, saved TEXT NOT NULL);
                 INSERT INTO searches VALUES ('rules', 'action:New-InboxRule', 'actor', 'then');
                 PRAGMA user_version = 2;",
            )
            .expect("old schema");
        }
        let err = Timeline::open(&path).expect_err("older schema");
        assert!(
            err.to_string().contains("--rebuild"),
            "names the way out: {err}"
        );
        let tl = Timeline::reset(&path).expect("reset");
        assert_eq!(tl.count(&Query::default()).expect("count"), 0);
        assert_eq!(
            tl.saved_search("rules").expect("kept").query,
            "action:New-InboxRule"
        );
    }

    #[test]
    fn pivots_from_a_source_and_from_an_account() {
        let dir = tempfile::tempdir().expect("tmp");
        let (tl, _) = loaded(dir.path());
        let lo = ip_key("203.0.113.10".parse().expect("ip")).to_vec();
        let seen = tl
            .accounts_where("ipkey = ?1", vec![rusqlite::types::Value::Blob(lo)])
            .expect("pivot");
        let names: Vec<_> = seen.iter().map(|s| (s.value.as_str(), s.events)).collect();
        assert_eq!(names, [("alice@contoso.com", 2), ("bob@contoso.com", 1)]);
        assert_eq!(seen[0].first, "2021-06-01T00:00:00Z");
        assert_eq!(seen[0].last, "2021-06-01T01:00:00.000005Z");
        let src = tl.sources_of("alice@contoso.com").expect("sources");
        assert_eq!(src.len(), 1);
        assert_eq!(src[0].value, "203.0.113.10");
    }

    // ---- duplicates: the same source, record id and content

    use crate::timeline::parse::{Collect, Format, parse_file};

    fn fixture(path: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/logs/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn parsed(format: Format, bytes: &[u8]) -> Vec<Event> {
        let mut c = Collect::default();
        parse_file(format, "", bytes, 2024, &mut c);
        assert_eq!(c.problems, vec![], "{format:?}");
        c.events
    }

    fn load_events(tl: &mut Timeline, artefact: &str, events: Vec<Event>) -> IngestReport {
        let mut l = tl.loader(artefact, "test", None).expect("loader");
        for e in events {
            l.event(e);
        }
        l.finish("now").expect("finish")
    }

    /// S3 server access log lines: `id` the request id, `key` the object.
    fn s3_line(id: &str, op: &str, key: &str, status: u16) -> String {
        format!(
            "9f2b7c1d4e5a6b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c example-finance-reports \
             [01/Jun/2024:08:17:31 +0000] 192.0.2.44 arn:aws:iam::111122223333:user/alice {id} {op} {key} \
             \"GET /{key} HTTP/1.1\" {status} - 48213 48213 41 38 \"-\" \"aws-cli/2.15.30\" - hostid SigV4 \
             TLS_AES_128_GCM_SHA256 AuthHeader example-finance-reports.s3.us-east-1.amazonaws.com TLSv1.3 - -\n"
        )
    }

    #[test]
    fn s3_access_lines_sharing_a_request_id_are_kept_unless_identical() {
        let a = s3_line(
            "8Q2EXAMPLE4ZT1K",
            "REST.GET.OBJECT",
            "2024/q1/payroll.csv",
            200,
        );
        let b = s3_line(
            "8Q2EXAMPLE4ZT1K",
            "REST.HEAD.OBJECT",
            "2024/q1/payroll.csv",
            200,
        );
        let c = s3_line(
            "8Q2EXAMPLE4ZT1K",
            "REST.GET.OBJECT",
            "2024/q1/payroll.csv",
            403,
        );
        let first = format!("{a}{b}{a}");
        let second = format!("{a}{c}");
        for bulk in [true, false] {
            let dir = tempfile::tempdir().expect("tmp");
            let mut tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
            // In bulk, duplicates are found in memory; row by row, the
            // timeline is asked.
            if bulk {
                assert!(tl.begin_bulk().expect("bulk"));
            }
            let r = load_events(&mut tl, "s1", parsed(Format::S3Access, first.as_bytes()));
            assert_eq!(
                (r.events, r.duplicates, r.same_id_different_content),
                (2, 1, 1),
                "bulk {bulk}"
            );
            assert_eq!(
                r.same_id_samples,
                [SameId {
                    source: "s3_access".into(),
                    record_id: "8Q2EXAMPLE4ZT1K".into(),
                    first: "s1 line 1".into(),
                    second: "s1 line 2".into(),
                }],
                "bulk {bulk}"
            );
            // Another file: the GET again (dropped) and the GET answered 403 (kept).
            let r = load_events(&mut tl, "s2", parsed(Format::S3Access, second.as_bytes()));
            assert_eq!(
                (r.events, r.duplicates, r.same_id_different_content),
                (1, 1, 1),
                "bulk {bulk}"
            );
            assert_eq!(r.same_id_samples[0].first, "s1 line 1", "bulk {bulk}");
            assert_eq!(r.same_id_samples[0].second, "s2 line 2", "bulk {bulk}");
            assert_eq!(
                r.notes(),
                [
                    "1 records share a record id with one loaded before but differ: both kept",
                    "  s3_access 8Q2EXAMPLE4ZT1K: first at s1 line 1, again at s2 line 2"
                ]
            );
            tl.end_bulk().expect("end");
            let q = Query::parse("record:8Q2EXAMPLE4ZT1K").expect("q");
            assert_eq!(tl.count(&q).expect("count"), 3, "bulk {bulk}");
            let same_id: i64 = tl
                .conn
                .query_row("SELECT sum(same_id) FROM ingested", [], |r| r.get(0))
                .expect("same_id");
            assert_eq!(same_id, 2, "bulk {bulk}");
        }
    }

    /// A CloudTrail log file of `records`, as CloudTrail writes them.
    fn trail_file(records: &[serde_json::Value]) -> Vec<u8> {
        let body: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        format!("{{\"Records\":[{}]}}", body.join(",")).into_bytes()
    }

    #[test]
    fn overlapping_cloudtrail_files_drop_identical_records_and_keep_altered_ones() {
        let all: serde_json::Value =
            serde_json::from_slice(&fixture("aws/cloudtrail.json")).expect("json");
        let records: Vec<serde_json::Value> = all["Records"]
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r.get("eventTime").is_some())
            .cloned()
            .collect();
        assert_eq!(records.len(), 6);
        let a = trail_file(&records[..4]);
        let b = trail_file(&records[2..]);
        let mut altered = records[3].clone();
        altered["errorCode"] = "AccessDenied".into();
        let c = trail_file(&[altered]);
        for bulk in [true, false] {
            let dir = tempfile::tempdir().expect("tmp");
            let mut tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
            if bulk {
                assert!(tl.begin_bulk().expect("bulk"));
            }
            let r = load_events(&mut tl, "a", parsed(Format::Cloudtrail, &a));
            assert_eq!((r.events, r.duplicates), (4, 0));
            let r = load_events(&mut tl, "b", parsed(Format::Cloudtrail, &b));
            assert_eq!(
                (r.events, r.duplicates, r.same_id_different_content),
                (2, 2, 0),
                "bulk {bulk}"
            );
            let r = load_events(&mut tl, "c", parsed(Format::Cloudtrail, &c));
            assert_eq!(
                (r.events, r.duplicates, r.same_id_different_content),
                (1, 0, 1),
                "bulk {bulk}"
            );
            assert_eq!(r.same_id_samples[0].first, "a Records[3]");
            assert_eq!(r.same_id_samples[0].second, "c Records[0]");
            tl.end_bulk().expect("end");
            assert_eq!(tl.count(&Query::default()).expect("count"), 7);
        }
    }

    #[test]
    fn flow_log_gaps_are_counted_in_the_report() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut tl = Timeline::open(&dir.path().join("t.sqlite")).expect("open");
        let r = load_events(
            &mut tl,
            "f",
            parsed(Format::VpcFlow, &fixture("aws/vpc-flow.log")),
        );
        assert_eq!((r.events, r.nodata, r.skipdata), (7, 1, 1));
        let r = load_events(
            &mut tl,
            "g",
            parsed(
                Format::VpcFlowCloudwatch,
                &fixture("aws/vpc-flow-cloudwatch.jsonl"),
            ),
        );
        assert_eq!((r.events, r.nodata, r.skipdata), (4, 1, 0));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(
            (json["nodata"].as_u64(), json["skipdata"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(
            tl.count(&Query::parse("action:flow.nodata").expect("q"))
                .expect("count"),
            2
        );
        assert!(
            r.notes()[0].starts_with("flow log gaps: 1 NODATA rows"),
            "{:?}",
            r.notes()
        );
    }
}
