//! Findings computed on a case's timeline, each pointing at its rows.
//!
//! - `shared_source_ip` / `shared_source_asn`: one source address or ASN
//!   that is new to two or more accounts within a window.
//! - `new_asn_then_rule`: a sign-in from an ASN the account never signed in
//!   from before, followed within hours by a new inbox rule or mail forwarding.
//! - `mail_burst`: after such a sign-in, a burst of sent mail from the account.
//! - `legacy_after_lockout`: legacy-protocol sign-in attempts after a lockout.
//!
//! A source is *new* to an account only when the account has signed in
//! successfully before, from elsewhere: an account's first appearance in
//! the timeline says nothing about what is usual for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::query::coded;
use super::store::{Row, Timeline, TimelineError};

const HOUR_US: i64 = 3_600_000_000;

/// The thresholds; the defaults are what docs/logs-and-timeline.md documents.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Window in which a new source shared by several accounts counts as shared.
    pub shared_window_h: i64,
    /// Accounts that must share a new source.
    pub shared_accounts: usize,
    /// How soon after a new-ASN sign-in a rule or forwarding counts.
    pub rule_within_h: i64,
    /// How long after a new-ASN sign-in a burst of mail counts.
    pub burst_within_h: i64,
    /// Sent mails within `burst_window_min` minutes that make a burst.
    pub burst_count: usize,
    pub burst_window_min: i64,
    /// How long after a lockout legacy attempts count.
    pub lockout_within_h: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shared_window_h: 24,
            shared_accounts: 2,
            rule_within_h: 24,
            burst_within_h: 48,
            burst_count: 20,
            burst_window_min: 60,
            lockout_within_h: 24,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub summary: String,
    pub accounts: Vec<String>,
    /// The source address or ASN, where the finding is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The timeline rows (event ids) it rests on, in time order.
    pub rows: Vec<i64>,
}

/// Client apps Entra ID counts as legacy authentication.
pub const LEGACY_CLIENTS: &[&str] = &[
    "imap4",
    "pop3",
    "authenticated smtp",
    "exchange activesync",
    "mapi over http",
    "other clients",
    "exchange web services",
    "autodiscover",
    "offline address book",
    "outlook anywhere (rpc over http)",
    "exchange online powershell",
];

const RULE_ACTIONS: &[&str] = &["new-inboxrule", "set-inboxrule", "updateinboxrules"];
const SEND_ACTIONS: &[&str] = &["send", "sendas", "sendonbehalf"];
/// Entra ID error 50053: the account is locked (or the IP is blocked).
const LOCKED_CODE: &str = "50053";

fn account(r: &Row) -> Option<String> {
    r.actor.as_deref().map(str::to_lowercase)
}

fn is_success(r: &Row) -> bool {
    r.outcome.as_deref() == Some("success")
}

fn is_rule_or_forwarding(r: &Row) -> bool {
    let a = r.action.to_ascii_lowercase();
    RULE_ACTIONS.contains(&a.as_str()) || r.attribute("forward_to").is_some()
}

fn is_lockout(r: &Row) -> bool {
    !is_success(r)
        && (r.attribute("error_code") == Some(LOCKED_CODE)
            || r.attribute("error_number") == Some(LOCKED_CODE)
            || r.attribute("logon_error")
                .is_some_and(|e| e.eq_ignore_ascii_case("IdsLocked")))
}

fn is_legacy(r: &Row) -> bool {
    r.attribute("client_app")
        .is_some_and(|c| LEGACY_CLIENTS.contains(&c.to_ascii_lowercase().as_str()))
}

/// An account's successful sign-in sources: settled (before `at`) and at `at`.
#[derive(Debug, Default)]
struct History {
    ips: HashSet<String>,
    asns: HashSet<i64>,
    at: i64,
    now_ips: HashSet<String>,
    now_asns: HashSet<i64>,
}

impl History {
    /// Moves the sources of an earlier instant into the settled history.
    fn settle(&mut self, t: i64) {
        if t != self.at {
            self.ips.extend(self.now_ips.drain());
            self.asns.extend(self.now_asns.drain());
            self.at = t;
        }
    }
}

/// A successful sign-in from a source the account had not used before.
#[derive(Debug, Clone)]
struct NewSource {
    row: i64,
    time: i64,
    account: String,
}

/// Sign-ins of all sources, in time order.
const SIGNINS: &str = "(source IN (SELECT id FROM terms WHERE value = 'entra_signin') \
     OR action IN (SELECT id FROM terms WHERE value COLLATE NOCASE IN ('UserLoggedIn', 'UserLoginFailed')))";

pub fn compute(tl: &Timeline, o: &Options) -> Result<Vec<Finding>, TimelineError> {
    let signins = tl.rows_where(SIGNINS, Vec::new())?;
    let mut by_ip: BTreeMap<String, Vec<NewSource>> = BTreeMap::new();
    let mut by_asn: BTreeMap<i64, Vec<NewSource>> = BTreeMap::new();
    // (account, sign-in row, time)
    let mut new_asn_signins: Vec<(String, i64, i64)> = Vec::new();
    // Per account, what it signed in from before the current instant; the
    // sign-ins of one instant are judged together against that (a client
    // that signs in over two networks at once is not new to either).
    let mut history: HashMap<String, History> = HashMap::new();
    for r in signins.iter().filter(|r| is_success(r)) {
        let Some(acct) = account(r) else { continue };
        let h = history.entry(acct.clone()).or_default();
        h.settle(r.time_us);
        let known = !h.ips.is_empty() || !h.asns.is_empty();
        let new = |seen: bool| known && !seen;
        if let Some(ip) = &r.ip {
            if new(h.ips.contains(ip)) && !h.now_ips.contains(ip) {
                by_ip.entry(ip.clone()).or_default().push(NewSource {
                    row: r.id,
                    time: r.time_us,
                    account: acct.clone(),
                });
            }
            h.now_ips.insert(ip.clone());
        }
        if let Some(asn) = r.asn {
            if new(h.asns.contains(&asn)) && !h.now_asns.contains(&asn) {
                by_asn.entry(asn).or_default().push(NewSource {
                    row: r.id,
                    time: r.time_us,
                    account: acct.clone(),
                });
                new_asn_signins.push((acct.clone(), r.id, r.time_us));
            }
            h.now_asns.insert(asn);
        }
    }
    let mut out = Vec::new();
    for (ip, news) in &by_ip {
        if let Some(f) = shared("shared_source_ip", ip.clone(), news, o) {
            out.push(f);
        }
    }
    for (asn, news) in &by_asn {
        if let Some(f) = shared("shared_source_asn", format!("AS{asn}"), news, o) {
            out.push(f);
        }
    }
    out.extend(after_new_asn(tl, &new_asn_signins, o)?);
    out.extend(legacy_after_lockout(&signins, o));
    Ok(out)
}

/// The new-source sign-ins that fall in some window with enough accounts.
fn shared(kind: &'static str, source: String, news: &[NewSource], o: &Options) -> Option<Finding> {
    let window = o.shared_window_h * HOUR_US;
    let mut rows = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for (i, n) in news.iter().enumerate() {
        let group: Vec<&NewSource> = news
            .iter()
            .skip(i)
            .take_while(|m| m.time - n.time <= window)
            .collect();
        let distinct: BTreeSet<&str> = group.iter().map(|m| m.account.as_str()).collect();
        if distinct.len() >= o.shared_accounts {
            rows.extend(group.iter().map(|m| m.row));
            accounts.extend(distinct.into_iter().map(str::to_owned));
        }
    }
    if accounts.is_empty() {
        return None;
    }
    let accounts: Vec<String> = accounts.into_iter().collect();
    Some(Finding {
        kind,
        summary: format!(
            "{source} is new to {} accounts within {} h: {}",
            accounts.len(),
            o.shared_window_h,
            accounts.join(", ")
        ),
        accounts,
        source: Some(source),
        rows: rows.into_iter().collect(),
    })
}

fn after_new_asn(
    tl: &Timeline,
    signins: &[(String, i64, i64)],
    o: &Options,
) -> Result<Vec<Finding>, TimelineError> {
    let mut out = Vec::new();
    let rule_window = o.rule_within_h * HOUR_US;
    let burst_after = o.burst_within_h * HOUR_US;
    let burst_window = o.burst_window_min * 60_000_000;
    for (acct, row, t) in signins {
        let later = tl.rows_where(
            &format!(
                "{} AND time > ?2 AND time <= ?3",
                coded("actor", "= ?1 COLLATE NOCASE")
            ),
            vec![
                rusqlite::types::Value::Text(acct.clone()),
                rusqlite::types::Value::Integer(*t),
                rusqlite::types::Value::Integer(t + rule_window.max(burst_after)),
            ],
        )?;
        let rules: Vec<i64> = later
            .iter()
            .filter(|r| r.time_us - t <= rule_window && is_rule_or_forwarding(r))
            .map(|r| r.id)
            .collect();
        if !rules.is_empty() {
            out.push(Finding {
                kind: "new_asn_then_rule",
                summary: format!(
                    "{acct} signed in from a new ASN, then created an inbox rule or forwarding within {} h",
                    o.rule_within_h
                ),
                accounts: vec![acct.clone()],
                source: None,
                rows: std::iter::once(*row).chain(rules).collect(),
            });
        }
        let sends: Vec<&Row> = later
            .iter()
            .filter(|r| {
                r.time_us - t <= burst_after
                    && SEND_ACTIONS.contains(&r.action.to_ascii_lowercase().as_str())
            })
            .collect();
        let mut burst = BTreeSet::new();
        for (i, s) in sends.iter().enumerate() {
            let window: Vec<&&Row> = sends
                .iter()
                .skip(i)
                .take_while(|x| x.time_us - s.time_us < burst_window)
                .collect();
            if window.len() >= o.burst_count {
                burst.extend(window.iter().map(|x| x.id));
            }
        }
        if !burst.is_empty() {
            out.push(Finding {
                kind: "mail_burst",
                summary: format!(
                    "{acct} sent {} mails in bursts of {}+ within {} min, after signing in from a new ASN",
                    burst.len(),
                    o.burst_count,
                    o.burst_window_min
                ),
                accounts: vec![acct.clone()],
                source: None,
                rows: std::iter::once(*row).chain(burst).collect(),
            });
        }
    }
    Ok(out)
}

fn legacy_after_lockout(signins: &[Row], o: &Options) -> Vec<Finding> {
    let window = o.lockout_within_h * HOUR_US;
    // Each account's sign-ins, in time order: a lockout looks only at its own.
    let mut by_account: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in signins {
        if let Some(acct) = account(r) {
            by_account.entry(acct).or_default().push(r);
        }
    }
    let mut out = Vec::new();
    for (acct, rows) in by_account {
        // The lockout that opened the current window.
        let mut open: Option<i64> = None;
        for lock in rows.iter().filter(|r| is_lockout(r)) {
            if open.is_some_and(|start| lock.time_us - start <= window) {
                continue;
            }
            let attempts: Vec<i64> = rows
                .iter()
                .filter(|r| {
                    r.time_us > lock.time_us && r.time_us - lock.time_us <= window && is_legacy(r)
                })
                .map(|r| r.id)
                .collect();
            if attempts.is_empty() {
                continue;
            }
            open = Some(lock.time_us);
            out.push(Finding {
                kind: "legacy_after_lockout",
                summary: format!(
                    "{acct}: {} legacy-protocol sign-in attempts within {} h after a lockout",
                    attempts.len(),
                    o.lockout_within_h
                ),
                accounts: vec![acct.clone()],
                source: None,
                rows: std::iter::once(lock.id).chain(attempts).collect(),
            });
        }
    }
    out
}
