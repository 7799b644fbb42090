//! Analysts' marks on events, kept beside them: stars, tags and comments
//! made in the workspace. Each is first a signed ledger entry (the record a
//! court sees); this table is what pages show, and names that entry.
//!
//! ```sql
//! annotations(id, event, kind, value, analyst, at, ledger)  -- event = events.id
//! ```
//! `kind` is `star`, `unstar`, `tag`, `untag` or `comment`; an event is
//! starred, or holds a tag, when the latest such mark says so. The table
//! is made where missing when a timeline is opened (`store.rs`).

use rusqlite::params;
use serde::Serialize;

use super::store::{Timeline, TimelineError};

/// What an analyst did to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Star,
    Unstar,
    Tag,
    Untag,
    Comment,
}

impl Mark {
    pub fn name(self) -> &'static str {
        match self {
            Self::Star => "star",
            Self::Unstar => "unstar",
            Self::Tag => "tag",
            Self::Untag => "untag",
            Self::Comment => "comment",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [
            Self::Star,
            Self::Unstar,
            Self::Tag,
            Self::Untag,
            Self::Comment,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub id: i64,
    pub event: i64,
    pub kind: String,
    pub value: String,
    pub analyst: String,
    pub at: String,
    /// The index of its ledger entry.
    pub ledger: u64,
}

/// An event's marks as they stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub starred: bool,
    pub tags: Vec<String>,
    pub comments: usize,
}

impl Timeline {
    /// Keeps a mark whose ledger entry is `ledger`.
    pub fn annotate(
        &self,
        event: i64,
        mark: Mark,
        value: &str,
        analyst: &str,
        at: &str,
        ledger: u64,
    ) -> Result<i64, TimelineError> {
        self.conn.execute(
            "INSERT INTO annotations(event, kind, value, analyst, at, ledger) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![event, mark.name(), value, analyst, at, i64::try_from(ledger).unwrap_or(i64::MAX)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every mark on `event`, oldest first.
    pub fn annotations(&self, event: i64) -> Result<Vec<Annotation>, TimelineError> {
        self.annotation_rows(
            "SELECT id, event, kind, value, analyst, at, ledger FROM annotations WHERE event = ?1 ORDER BY id",
            params![event],
        )
    }

    /// The latest marks of the case, newest first: who did what and when.
    pub fn recent_annotations(&self, limit: usize) -> Result<Vec<Annotation>, TimelineError> {
        self.annotation_rows(
            "SELECT id, event, kind, value, analyst, at, ledger FROM annotations ORDER BY id DESC LIMIT ?1",
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// How each of `events` stands (events with no mark are left out).
    pub fn standing(
        &self,
        events: &[i64],
    ) -> Result<std::collections::BTreeMap<i64, Standing>, TimelineError> {
        let mut out: std::collections::BTreeMap<i64, Standing> = Default::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, value FROM annotations WHERE event = ?1 ORDER BY id")?;
        for &e in events {
            let mut s = Standing::default();
            let mut any = false;
            let rows = stmt.query_map([e], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (kind, value) = row?;
                any = true;
                match Mark::from_name(&kind) {
                    Some(Mark::Star) => s.starred = true,
                    Some(Mark::Unstar) => s.starred = false,
                    Some(Mark::Tag) if !s.tags.contains(&value) => s.tags.push(value),
                    Some(Mark::Untag) => s.tags.retain(|t| *t != value),
                    Some(Mark::Comment) => s.comments += 1,
                    _ => {}
                }
            }
            if any {
                out.insert(e, s);
            }
        }
        Ok(out)
    }

    fn annotation_rows(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Annotation>, TimelineError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok(Annotation {
                id: r.get(0)?,
                event: r.get(1)?,
                kind: r.get(2)?,
                value: r.get(3)?,
                analyst: r.get(4)?,
                at: r.get(5)?,
                ledger: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
