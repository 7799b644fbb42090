//! Reports of the readiness history: JSON, CSV, OCSF Compliance Finding
//! records (class 2003), and one self-contained HTML page (no network: the
//! styles and the score chart, an inline SVG, are in the file).

use std::fmt::Write as _;

use serde_json::json;

use super::Status;
use super::catalogue::Catalogue;
use super::history::{Run, StoredFinding};
use super::score::{self, RunFindings, Trend};
use crate::sanitize::CsvCells;

/// Everything a report shows: the runs (oldest first), the reported run's
/// findings and their trend.
#[derive(Debug, Clone)]
pub struct ReportData<'a> {
    pub catalogue: &'a Catalogue,
    pub runs: Vec<Run>,
    /// The reported run (the latest unless asked otherwise).
    pub run: Run,
    pub findings: Vec<StoredFinding>,
    pub trend: Vec<Trend>,
    /// Every run's findings, for the grid.
    pub history: Vec<RunFindings>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn json(d: &ReportData<'_>) -> serde_json::Value {
    json!({
        "run": d.run,
        "findings": d.findings,
        "trend": d.trend,
        "runs": d.runs,
    })
}

/// One row per finding of the reported run. Text cells go through `cells`:
/// resource names and evidence come from the account (an IAM role name may
/// hold `+=,.@-`, a security group's `=+@()&`), and custody's own text is
/// treated the same so the rule has no exceptions; the run id and the days
/// failing in a row are numbers custody counts, written as they are.
pub fn csv(d: &ReportData<'_>, cells: CsvCells) -> Result<String, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "run",
        "started",
        "check",
        "title",
        "severity",
        "pillar",
        "account",
        "region",
        "resource",
        "status",
        "evidence",
        "remediation",
        "change",
        "first_seen",
        "failed_in_a_row",
    ];
    w.write_record(header).map_err(|e| e.to_string())?;
    for f in &d.findings {
        let k = &f.finding.key;
        let def = d.catalogue.get(&k.check);
        let t = d.trend.iter().find(|t| &t.key == k);
        let text = |s: &str| cells.text(s).into_owned();
        w.write_record([
            d.run.id.to_string(),
            text(&rfc3339(d.run.started)),
            text(&k.check),
            text(def.map_or("", |c| c.title.as_str())),
            text(def.map_or("", |c| c.severity.as_str())),
            text(def.map_or("", |c| c.pillar.as_str())),
            text(&k.account),
            text(&k.region),
            text(&k.resource),
            text(f.finding.status.as_str()),
            text(&f.finding.evidence),
            text(&f.remediation),
            text(
                &t.map(|t| format!("{:?}", t.change).to_lowercase())
                    .unwrap_or_default(),
            ),
            text(&t.map(|t| rfc3339(t.first_seen)).unwrap_or_default()),
            t.map(|t| t.failed_in_a_row.to_string()).unwrap_or_default(),
        ])
        .map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// OCSF 1.3 Compliance Finding records, one per finding of the reported run.
pub fn ocsf(d: &ReportData<'_>) -> serde_json::Value {
    let time_ms = (d.run.finished.unix_timestamp_nanos() / 1_000_000) as i64;
    let records: Vec<serde_json::Value> = d
        .findings
        .iter()
        .map(|f| {
            let k = &f.finding.key;
            let def = d.catalogue.get(&k.check);
            let severity_id = match def.map(|c| c.severity) {
                Some(super::catalogue::Severity::Critical) => 5,
                Some(super::catalogue::Severity::High) => 4,
                Some(super::catalogue::Severity::Medium) => 3,
                Some(super::catalogue::Severity::Low) => 2,
                None => 0,
            };
            let (status_id, status) = match f.finding.status {
                Status::Pass => (1, "Pass"),
                Status::Error => (2, "Warning"),
                Status::Fail => (3, "Fail"),
                Status::Skipped => (0, "Unknown"),
            };
            let provider = if k.check.starts_with("azure.") { "Azure" } else { "AWS" };
            let t = d.trend.iter().find(|t| &t.key == k);
            json!({
                "category_uid": 2,
                "category_name": "Findings",
                "class_uid": 2003,
                "class_name": "Compliance Finding",
                "activity_id": 1,
                "activity_name": "Create",
                "type_uid": 200301,
                "type_name": "Compliance Finding: Create",
                "time": time_ms,
                "severity_id": severity_id,
                "message": f.finding.evidence,
                "metadata": {
                    "version": "1.3.0",
                    "product": { "name": crate::TOOL_NAME, "vendor_name": crate::TOOL_NAME, "version": crate::TOOL_VERSION },
                    "extensions": [],
                    "labels": [format!("catalogue:{}", d.run.catalogue_version), format!("run:{}", d.run.id)],
                },
                "finding_info": {
                    "uid": format!("{}/{}/{}/{}", k.check, k.account, k.region, k.resource),
                    "title": def.map(|c| c.title.clone()).unwrap_or_default(),
                    "desc": def.map(|c| c.why.clone()).unwrap_or_default(),
                    "types": [def.map(|c| c.pillar.as_str()).unwrap_or_default()],
                    "first_seen_time": t.map(|t| (t.first_seen.unix_timestamp_nanos() / 1_000_000) as i64),
                },
                "compliance": {
                    "control": k.check,
                    "standards": ["custody readiness"],
                    "status_id": status_id,
                    "status": status,
                    "status_detail": f.finding.evidence,
                },
                "remediation": {
                    "desc": f.remediation,
                    "references": def.map(|c| c.references.clone()).unwrap_or_default(),
                },
                "cloud": { "provider": provider, "account": { "uid": k.account }, "region": k.region },
                "resources": [{ "uid": k.resource, "region": k.region }],
            })
        })
        .collect();
    serde_json::Value::Array(records)
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The score over time: one point per day (its latest run), as an inline SVG.
fn chart(runs: &[Run]) -> String {
    let days: Vec<&Run> = {
        let mut by_day: std::collections::BTreeMap<time::Date, &Run> =
            std::collections::BTreeMap::new();
        for r in runs {
            by_day.insert(r.started.date(), r);
        }
        by_day.into_values().collect()
    };
    let (w, h, pad) = (720.0_f64, 200.0_f64, 30.0_f64);
    let n = days.len().max(1) as f64;
    let x = |i: usize| pad + (w - 2.0 * pad) * if n > 1.0 { i as f64 / (n - 1.0) } else { 0.5 };
    let y = |s: f64| h - pad - (h - 2.0 * pad) * s / 100.0;
    let mut svg = format!(
        r##"<svg id="score-chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="score over time">"##
    );
    for s in [0.0, 50.0, 100.0] {
        let _ = write!(
            svg,
            r##"<line x1="{pad}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="4" y="{:.1}" font-size="10">{s:.0}</text>"##,
            w - pad,
            y(s) + 3.0,
            y = y(s)
        );
    }
    let points: Vec<String> = days
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.score.map(|s| format!("{:.1},{:.1}", x(i), y(s))))
        .collect();
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{}"/>"##,
        points.join(" ")
    );
    for (i, r) in days.iter().enumerate() {
        if let Some(s) = r.score {
            let color = if r.ready { "#1f5fbf" } else { "#c0392b" };
            let _ = write!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}"><title>{} score {s:.1}{}</title></circle><text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
                x(i),
                y(s),
                r.started.date(),
                if r.ready { "" } else { " NOT READY" },
                x(i),
                h - 8.0,
                r.started.date()
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The self-contained HTML report.
pub fn html(d: &ReportData<'_>) -> String {
    let days = score::latest_per_day(&d.history);
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |x| format!("{x:.1}"));
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>custody readiness, run {id}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} h1{{font-size:1.4em}}
.verdict{{font-size:1.2em;font-weight:bold;padding:.3em .6em;display:inline-block;border-radius:4px}}
.ready{{background:#d5f5e3}} .notready{{background:#fadbd8}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:3px 6px;font-size:12px;text-align:left;vertical-align:top}}
.PASS{{background:#d5f5e3}} .FAIL{{background:#f5b7b1}} .ERROR{{background:#fcf3cf}} .SKIPPED{{background:#eee}}
td.cell{{width:22px;text-align:center}}
</style></head><body>
<h1>custody readiness: run {id}</h1>
<p>{started} · accounts {accounts} · regions {regions} · catalogue <code>{cat}</code> · as {identity}</p>
<p><span class="verdict {vclass}">{verdict}</span> score <b>{score}</b></p>
"#,
        id = d.run.id,
        started = esc(&rfc3339(d.run.started)),
        accounts = esc(&d.run.scope.accounts.join(", ")),
        regions = esc(&d.run.scope.regions.join(", ")),
        cat = esc(&d.run.catalogue_version),
        identity = esc(&d.run.identity),
        vclass = if d.run.ready { "ready" } else { "notready" },
        verdict = if d.run.ready { "READY" } else { "NOT READY" },
        score = pct(d.run.score),
    );
    out.push_str("<table id=\"pillars\"><tr><th>pillar</th><th>score</th></tr>");
    if let Some(p) = d.run.pillars.as_object() {
        for (name, v) in p {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(name),
                pct(v.as_f64())
            );
        }
    }
    out.push_str("</table><h2>Score over time</h2>");
    out.push_str(&chart(&d.runs));
    // Runs by checks: one column per day (its latest run).
    out.push_str("<h2>Runs by checks</h2><table id=\"grid\"><tr><th>check</th>");
    for r in &days {
        let _ = write!(out, "<th title=\"run {}\">{}</th>", r.id, r.at.date());
    }
    out.push_str("</tr>");
    for c in &d.catalogue.checks {
        let statuses: Vec<Option<Status>> = days
            .iter()
            .map(|r| {
                let st: Vec<&Status> = r
                    .findings
                    .iter()
                    .filter(|f| f.key.check == c.id)
                    .map(|f| &f.status)
                    .collect();
                (!st.is_empty()).then(|| score::check_status(st.into_iter()))
            })
            .collect();
        if statuses.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(out, "<tr><td>{}</td>", esc(&c.id));
        for s in statuses {
            match s {
                Some(s) => {
                    let _ = write!(
                        out,
                        "<td class=\"cell {0}\" title=\"{0}\">{1}</td>",
                        s.as_str(),
                        s.as_str().get(..1).unwrap_or("")
                    );
                }
                None => out.push_str("<td class=\"cell\"></td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table><h2>Findings</h2><table id=\"findings\"><tr><th>status</th><th>check</th><th>severity</th><th>region</th><th>resource</th><th>evidence</th><th>change</th><th>remediation</th></tr>");
    let mut rows: Vec<&StoredFinding> = d.findings.iter().collect();
    let rank = |s: Status| match s {
        Status::Fail => 0,
        Status::Error => 1,
        Status::Pass => 2,
        Status::Skipped => 3,
    };
    rows.sort_by_key(|f| (rank(f.finding.status), f.finding.key.check.clone()));
    for f in rows {
        let k = &f.finding.key;
        let def = d.catalogue.get(&k.check);
        let change = d
            .trend
            .iter()
            .find(|t| &t.key == k)
            .map(|t| format!("{:?}", t.change).to_lowercase())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"{s}\"><td>{s}</td><td title=\"{title}\">{id}</td><td>{sev}</td><td>{region}</td><td>{res}</td><td>{ev}</td><td>{change}</td><td>{rem}</td></tr>",
            s = f.finding.status.as_str(),
            title = esc(def.map_or("", |c| c.title.as_str())),
            id = esc(&k.check),
            sev = def.map_or("", |c| c.severity.as_str()),
            region = esc(&k.region),
            res = esc(&k.resource),
            ev = esc(&f.finding.evidence),
            rem = if f.finding.status == Status::Fail {
                esc(&f.remediation)
            } else {
                String::new()
            },
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::Finding;
    use crate::readiness::history::Scope;

    fn one_finding(resource: &str, evidence: &str) -> (Catalogue, Run, Vec<StoredFinding>) {
        let catalogue = Catalogue::builtin().expect("catalogue");
        let at = time::macros::datetime!(2024-06-01 08:00 UTC);
        let run = Run {
            id: 1,
            started: at,
            finished: at,
            tool_version: "test".into(),
            catalogue_version: "test".into(),
            scope: Scope::default(),
            identity: "test".into(),
            score: None,
            ready: false,
            pillars: serde_json::Value::Null,
        };
        let finding = Finding::new(
            "aws.iam.forensic_role",
            "111122223333",
            "us-east-1",
            resource,
            Status::Fail,
            evidence,
        );
        let findings = vec![StoredFinding {
            finding,
            remediation: "-".into(),
        }];
        (catalogue, run, findings)
    }

    #[test]
    fn t1_readiness_csv_cells_cannot_start_a_formula() {
        // IAM role names may hold `+=,.@-`; security group names `=+@()&`.
        let (catalogue, run, findings) = one_finding(
            "=HYPERLINK(\"http://attacker.example/\",\"x\")",
            "@SUM(1+1)*cmd|' /C calc'!A0",
        );
        let data = ReportData {
            catalogue: &catalogue,
            runs: vec![run.clone()],
            run,
            findings,
            trend: Vec::new(),
            history: Vec::new(),
        };
        let read = |text: String| -> Vec<String> {
            let mut r = csv::Reader::from_reader(text.as_bytes());
            let row = r.records().next().expect("a row").expect("valid CSV");
            row.iter().map(str::to_owned).collect()
        };
        let row = read(csv(&data, CsvCells::Neutralised).expect("csv"));
        assert_eq!(row[8], "'=HYPERLINK(\"http://attacker.example/\",\"x\")");
        assert_eq!(row[10], "'@SUM(1+1)*cmd|' /C calc'!A0");
        assert_eq!(
            row[11], "-",
            "a lone dash is custody's 'none', not a formula"
        );
        for cell in &row {
            assert!(!cell.starts_with(['=', '+', '@', '\t', '\r']), "{cell}");
        }
        let raw = read(csv(&data, CsvCells::Raw).expect("csv"));
        assert_eq!(raw[8], "=HYPERLINK(\"http://attacker.example/\",\"x\")");
    }
}
