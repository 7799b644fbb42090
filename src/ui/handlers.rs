//! The workspace's routes. Pages read through the engine (cases from the
//! store, searches through `engine::search`); an analyst's mark on an event
//! is a signed ledger entry before it is kept beside the event. Every
//! response carries the security headers; every state change needs an
//! investigator and, from a browser, the session's CSRF token.

use std::sync::Arc;

use axum::extract::{Form, Path, Query as UrlQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::auth::{self, CSRF_HEADER, LOGIN_COOKIE, Role, SESSION_COOKIE, Who};
use super::pages::{self, ExploreParams, Extras};
use super::{Ui, error_chain};
use crate::engine::search::{self, SearchRequest};
use crate::ids::CaseId;
use crate::timeline::annotations::Mark;
use crate::timeline::query::Query;

pub(super) type Shared = Arc<Ui>;

/// What pages may load: our own script and style, nothing else, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Longest tag and comment kept.
const MAX_TAG: usize = 64;
const MAX_COMMENT: usize = 4000;
/// Rows per page of the explorer.
const PAGE_ROWS: usize = 100;
/// The facets the explorer shows.
/// How long a page's exact counts may take before a sample of the case
/// stands in for them (`exact=1` asks for them however long they take).
const BUDGET: std::time::Duration = std::time::Duration::from_millis(250);

pub const FACETS: &[&str] = &["action", "actor", "ip", "asn", "source", "outcome", "rule"];

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/", get(cases))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/cases/{case}", get(overview))
        .route("/cases/{case}/timeline", get(explorer))
        .route("/cases/{case}/events/{id}", get(event))
        .route("/cases/{case}/events/{id}/marks", post(mark))
        .route("/cases/{case}/events/{id}/raw", get(raw))
        .route("/cases/{case}/searches", post(save_search))
        .route("/cases/{case}/artefacts/{id}/download", post(download))
        .route("/api/cases", get(api_cases))
        .route("/api/cases/{case}/search", get(api_search))
        .route("/api/openapi.json", get(openapi))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}

pub(super) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (k, v) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The analyst behind a page request, or where to send them. With no
/// analyst configured, a first visit opens the operator's session.
pub(super) fn gate(ui: &Ui, headers: &HeaderMap) -> Result<(Who, Option<String>), Redirect> {
    if let Some(who) = ui.access.who(headers) {
        return Ok((who, None));
    }
    if let Some((id, who)) = ui.access.local_session() {
        let cookie = auth::set_cookie(SESSION_COOKIE, &id, Some(ui.access.lifetime()));
        return Ok((who, Some(cookie)));
    }
    Err(Redirect::to("/login"))
}

/// A page, with the session cookie a first visit opened.
pub(super) fn page(markup: maud::Markup, cookie: Option<String>) -> Response {
    let mut res = markup.into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

pub(super) fn error(status: StatusCode, who: Option<&Who>, message: &str) -> Response {
    (status, pages::error(who, status, message)).into_response()
}

/// Runs blocking timeline work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("the work stopped: {e}")))
}

/// The analyst of a page request and the case it names, or the response
/// that says why not (to sign in; no such case).
pub(super) fn page_case(
    ui: &Ui,
    headers: &HeaderMap,
    case: &str,
) -> Result<(Who, Option<String>, CaseId), Box<Response>> {
    let (who, cookie) = gate(ui, headers).map_err(|r| Box::new(r.into_response()))?;
    match parse_case(case) {
        Ok(c) => Ok((who, cookie, c)),
        Err(e) => Err(Box::new(error(StatusCode::NOT_FOUND, Some(&who), &e))),
    }
}

pub(super) fn parse_case(s: &str) -> Result<CaseId, String> {
    s.parse::<CaseId>()
        .map_err(|e| format!("not a case id: {e}"))
}

async fn login_page(State(ui): State<Shared>) -> Response {
    if !ui.access.has_analysts() {
        return Redirect::to("/").into_response();
    }
    let token = auth::token();
    page(
        pages::login(&token, None, ui.oidc.as_ref().map(|o| o.label())),
        Some(auth::set_cookie(LOGIN_COOKIE, &token, None)),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    csrf: String,
}

async fn login(State(ui): State<Shared>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    // The form's token must be the one its page set, so no other site
    // can sign a browser in under its own account.
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !auth::same(&expected, &f.csrf) {
        return error(
            StatusCode::FORBIDDEN,
            None,
            "the sign-in form is stale or did not come from this workspace; open it again",
        );
    }
    let ui2 = ui.clone();
    let (name, password) = (f.name.clone(), f.password);
    let id = tokio::task::spawn_blocking(move || ui2.access.sign_in(&name, &password))
        .await
        .ok()
        .flatten();
    match id {
        Some(id) => {
            tracing::info!(analyst = %f.name, "analyst signed in");
            let mut res = Redirect::to("/").into_response();
            if let Ok(c) = HeaderValue::from_str(&auth::set_cookie(
                SESSION_COOKIE,
                &id,
                Some(ui.access.lifetime()),
            )) {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
        None => {
            tracing::warn!("a sign-in failed");
            let token = auth::token();
            let mut res = page(
                pages::login(
                    &token,
                    Some("The name or the password is wrong."),
                    ui.oidc.as_ref().map(|o| o.label()),
                ),
                Some(auth::set_cookie(LOGIN_COOKIE, &token, None)),
            );
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            res
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

async fn logout(State(ui): State<Shared>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Some(who) = ui.access.who(&headers)
        && csrf_ok(&who, &headers, &f.csrf)
    {
        ui.access.sign_out(&headers);
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(c) = HeaderValue::from_str(&auth::set_cookie(
        SESSION_COOKIE,
        "",
        Some(std::time::Duration::ZERO),
    )) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// A browser's state change carries its session's token (form field or
/// header); a bearer token is not sent by browsers on their own.
fn csrf_ok(who: &Who, headers: &HeaderMap, form: &str) -> bool {
    match &who.csrf {
        None => true,
        Some(t) => {
            let sent = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(form);
            !sent.is_empty() && auth::same(t, sent)
        }
    }
}

async fn cases(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    let (who, cookie) = match gate(&ui, &headers) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let listed = match ui.app.store().await {
        Ok(store) => crate::evidence::case::list_cases(store.as_ref())
            .await
            .map_err(|e| error_chain(&e)),
        Err(e) => Err(error_chain(&e)),
    };
    let ui2 = ui.clone();
    let (activity, jobs) = blocking(move || {
        let activity = super::ledger_view::case_activity(&ui2.app.ledger_paths());
        let jobs =
            crate::queue::Queue::snapshot(&crate::queue::Queue::path_in(&ui2.app.config.home))
                .map_err(|e| error_chain(&e))?
                .into_iter()
                .fold(std::collections::BTreeMap::new(), |mut m, j| {
                    *m.entry(j.case.to_string()).or_insert(0usize) += 1;
                    m
                });
        Ok((activity, jobs))
    })
    .await
    .unwrap_or_default();
    // Cases only the ledger or a job knows (a record-only alert's) too.
    let listed = listed.map(|mut list| {
        let known: std::collections::BTreeSet<String> =
            list.iter().map(|c| c.case.to_string()).collect();
        let others: std::collections::BTreeSet<&String> = activity
            .keys()
            .chain(jobs.keys())
            .filter(|c| !known.contains(*c))
            .collect();
        list.extend(others.into_iter().filter_map(|c| {
            Some(crate::evidence::case::CaseSummary {
                case: c.parse().ok()?,
                artefacts: 0,
                raw_bytes: 0,
                stored_bytes: 0,
            })
        }));
        list.sort_by(|a, b| a.case.as_str().cmp(b.case.as_str()));
        list
    });
    match listed {
        Ok(list) => page(pages::cases(&who, &list, &activity, &jobs), cookie),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

async fn overview(
    State(ui): State<Shared>,
    Path(case): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (who, cookie, case) = match page_case(&ui, &headers, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let artefacts = match case_artefacts(&ui, &case).await {
        Ok(a) => a,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    };
    let ui2 = ui.clone();
    let case2 = case.clone();
    let (ui3, case3) = (ui.clone(), case.clone());
    let jobs = blocking(move || {
        crate::queue::Queue::snapshot(&crate::queue::Queue::path_in(&ui3.app.config.home))
            .map_err(|e| error_chain(&e))
    })
    .await
    .map(|all| all.into_iter().filter(|j| j.case == case3).collect());
    let jobs: Vec<_> = match jobs {
        Ok(j) => j,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    };
    let loaded = blocking(move || {
        let ledger = super::ledger_view::CaseLedger::read(&ui2.app.ledger_paths(), &case2);
        let Ok(tl) = crate::engine::logs::existing_timeline(&ui2.app, &case2) else {
            return Ok((None, ledger));
        };
        let e = |e: crate::engine::search::SearchError| error_chain(&e);
        let span = tl.span().map_err(|e| error_chain(&e))?;
        let width_us = bucket_width(span);
        let summary = search::search(
            &tl,
            &SearchRequest {
                case: case2.clone(),
                query: Query::parse("").map_err(|e| e.to_string())?,
                facets: ["actor", "ip", "asn", "action"].map(String::from).to_vec(),
                top: 10,
                histogram: Some(width_us),
                limit: 0,
                from: crate::timeline::store::Page::Offset(0),
                budget: Some(BUDGET),
            },
        )
        .map_err(e)?;
        let detections = tl.detections().map_err(|e| error_chain(&e))?;
        let ingested = tl.ingested().map_err(|e| error_chain(&e))?;
        Ok((
            Some(pages::CaseTimeline {
                summary,
                detections,
                ingested,
                span,
                width_us,
            }),
            ledger,
        ))
    })
    .await;
    match loaded {
        Ok((None, ledger))
            if artefacts.is_none() && ledger.entries.is_empty() && jobs.is_empty() =>
        {
            error(
                StatusCode::NOT_FOUND,
                Some(&who),
                &format!(
                    "no case {case}: nothing in the store, the ledger, the timelines or the jobs"
                ),
            )
        }
        Ok((timeline, ledger)) => page(
            pages::overview(
                &who,
                &case,
                &pages::Overview {
                    artefacts: artefacts.unwrap_or_default(),
                    timeline,
                    ledger,
                    jobs,
                },
            ),
            cookie,
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

/// A case's artefacts; `None` when the store has no such case (one only
/// the ledger, a timeline or a job knows, such as a record-only alert's).
pub(super) async fn case_artefacts(
    ui: &Ui,
    case: &CaseId,
) -> Result<Option<Vec<crate::evidence::model::Artefact>>, String> {
    let store = ui.app.store().await.map_err(|e| error_chain(&e))?;
    match crate::evidence::case::artefacts(store.as_ref(), case).await {
        Ok(a) => Ok(Some(a)),
        Err(crate::evidence::case::EvidenceError::NoSuchCase { .. }) => Ok(None),
        Err(e) => Err(error_chain(&e)),
    }
}

/// Histogram bucket widths, the narrowest that keeps a case's span to
/// about [`MAX_BUCKETS`] bars.
const WIDTHS_US: [i64; 9] = [
    60_000_000,
    300_000_000,
    900_000_000,
    3_600_000_000,
    10_800_000_000,
    21_600_000_000,
    86_400_000_000,
    604_800_000_000,
    2_592_000_000_000,
];
const MAX_BUCKETS: i64 = 120;

pub fn bucket_width(span: Option<(i64, i64)>) -> i64 {
    let len = span.map_or(0, |(a, b)| b.saturating_sub(a));
    WIDTHS_US
        .into_iter()
        .find(|w| len / w < MAX_BUCKETS)
        .unwrap_or(2_592_000_000_000)
}

/// A search of the case's timeline for a page or the API.
async fn run_search(
    ui: &Shared,
    case: CaseId,
    p: &ExploreParams,
    limit: usize,
) -> Result<(search::SearchResults, Extras), (StatusCode, String)> {
    let query = Query::parse(&p.q).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let from = p.page().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let ui2 = ui.clone();
    let exact = p.exact;
    blocking(move || {
        let tl =
            crate::engine::logs::existing_timeline(&ui2.app, &case).map_err(|e| error_chain(&e))?;
        let span = tl.span().map_err(|e| error_chain(&e))?;
        let width_us = bucket_width(span);
        let res = search::search(
            &tl,
            &SearchRequest {
                case,
                query,
                facets: FACETS.iter().map(|f| (*f).to_owned()).collect(),
                top: 10,
                histogram: Some(width_us),
                limit,
                from,
                budget: (!exact).then_some(BUDGET),
            },
        )
        .map_err(|e| error_chain(&e))?;
        let ids: Vec<i64> = res.rows.iter().map(|r| r.id).collect();
        let marks = tl.standing(&ids).map_err(|e| error_chain(&e))?;
        // A saved search that no longer parses shows without a count.
        let saved = tl
            .saved_searches()
            .map_err(|e| error_chain(&e))?
            .into_iter()
            .map(|s| {
                let n = Query::parse(&s.query)
                    .ok()
                    .and_then(|q| search::count_within(&tl, &q, BUDGET).ok());
                (s, n)
            })
            .collect();
        Ok((
            res,
            Extras {
                marks,
                span,
                width_us,
                saved,
            },
        ))
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn explorer(
    State(ui): State<Shared>,
    Path(case): Path<String>,
    UrlQuery(p): UrlQuery<ExploreParams>,
    headers: HeaderMap,
) -> Response {
    let (who, cookie, case) = match page_case(&ui, &headers, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match run_search(&ui, case.clone(), &p, PAGE_ROWS).await {
        Ok((res, extras)) => page(
            pages::explorer(&who, &case, &p, &res, &extras, PAGE_ROWS),
            cookie,
        ),
        Err((StatusCode::BAD_REQUEST, e)) => {
            page(pages::explorer_error(&who, &case, &p, &e), cookie)
        }
        Err((s, e)) => error(s, Some(&who), &e),
    }
}

async fn openapi() -> Response {
    asset("application/json", include_str!("assets/openapi.json"))
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn api_cases(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    if ui.access.who(&headers).is_none() {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "sign in, or send an analyst's bearer token",
        );
    }
    let listed = match ui.app.store().await {
        Ok(store) => crate::evidence::case::list_cases(store.as_ref())
            .await
            .map_err(|e| error_chain(&e)),
        Err(e) => Err(error_chain(&e)),
    };
    match listed {
        Ok(list) => axum::Json(list).into_response(),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn api_search(
    State(ui): State<Shared>,
    Path(case): Path<String>,
    UrlQuery(p): UrlQuery<ExploreParams>,
    headers: HeaderMap,
) -> Response {
    let Some(_who) = ui.access.who(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "sign in, or send an analyst's bearer token"})),
        )
            .into_response();
    };
    let case = match parse_case(&case) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": e})),
            )
                .into_response();
        }
    };
    match run_search(&ui, case, &p, PAGE_ROWS).await {
        Ok((res, _)) => axum::Json(res).into_response(),
        Err((s, e)) => (s, axum::Json(serde_json::json!({"error": e}))).into_response(),
    }
}

/// An event's row with its marks and how they stand, if the case has it.
async fn event_row(
    ui: &Shared,
    case: &CaseId,
    id: i64,
) -> Result<
    Option<(
        crate::timeline::store::Row,
        Vec<crate::timeline::annotations::Annotation>,
        crate::timeline::annotations::Standing,
    )>,
    String,
> {
    let (ui2, case2) = (ui.clone(), case.clone());
    blocking(move || {
        let tl = crate::engine::logs::existing_timeline(&ui2.app, &case2)
            .map_err(|e| error_chain(&e))?;
        let Some(row) = tl.rows_by_id(&[id]).map_err(|e| error_chain(&e))?.pop() else {
            return Ok(None);
        };
        let marks = tl.annotations(id).map_err(|e| error_chain(&e))?;
        let standing = tl.standing(&[id]).map_err(|e| error_chain(&e))?;
        Ok(Some((
            row,
            marks,
            standing.into_values().next().unwrap_or_default(),
        )))
    })
    .await
}

async fn event(
    State(ui): State<Shared>,
    Path((case, id)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Response {
    let (who, cookie, case) = match page_case(&ui, &headers, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let found = event_row(&ui, &case, id).await;
    match found {
        Ok(Some((row, marks, standing))) => {
            page(pages::event(&who, &case, &row, &marks, &standing), cookie)
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            Some(&who),
            &format!("case {case} has no event {id}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

/// The event's original record, read again from the store with both
/// digests checked: a view of evidence, so a ledger entry names who looked.
async fn raw(
    State(ui): State<Shared>,
    Path((case, id)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Response {
    let (who, cookie, case) = match page_case(&ui, &headers, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let row = match event_row(&ui, &case, id).await {
        Ok(Some((r, _, _))) => r,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                Some(&who),
                &format!("case {case} has no event {id}"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    };
    let record = match crate::engine::record::raw_record(&ui.app, &case, &row).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                Some(&who),
                &format!(
                    "artefact {} holds no record at {} {}",
                    row.artefact, row.member, row.locator
                ),
            );
        }
        Err(e) => {
            tracing::error!(%case, event = id, "a record could not be read back");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&who),
                &error_chain(&e),
            );
        }
    };
    let detail = serde_json::json!({
        "via": "workspace record view",
        "event": id,
        "artefact": record.artefact,
        "member": record.member,
        "locator": record.locator,
        "checked": { "raw_sha256": record.raw_sha256, "stored_sha256": record.stored_sha256 },
    });
    let (ui2, case2, analyst) = (ui.clone(), case.clone(), who.analyst.clone());
    let recorded = blocking(move || {
        ui2.record(
            &analyst,
            &case2,
            crate::ledger::entry::Action::Accessed,
            None,
            detail,
        )
    })
    .await;
    if let Err(e) = recorded {
        return error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e);
    }
    page(pages::raw_record(&who, &case, id, &record), cookie)
}

#[derive(Deserialize)]
struct MarkForm {
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    csrf: String,
}

/// Refuses a mark that is not one, or too long, or holds control characters.
fn check_mark(kind: &str, value: &str) -> Result<(Mark, String), String> {
    let mark = Mark::from_name(kind)
        .ok_or_else(|| format!("`{kind}` is not a mark: star, unstar, tag, untag or comment"))?;
    let value = value.trim();
    let bad = |max: usize, what: &str| -> Result<(), String> {
        if value.is_empty() {
            return Err(format!("an empty {what}"));
        }
        if value.chars().count() > max {
            return Err(format!("a {what} longer than {max} characters"));
        }
        if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(format!("a {what} with control characters"));
        }
        Ok(())
    };
    match mark {
        Mark::Star | Mark::Unstar => return Ok((mark, String::new())),
        Mark::Tag | Mark::Untag => bad(MAX_TAG, "tag")?,
        Mark::Comment => bad(MAX_COMMENT, "comment")?,
    }
    Ok((mark, value.to_owned()))
}

async fn mark(
    State(ui): State<Shared>,
    Path((case, id)): Path<(String, i64)>,
    headers: HeaderMap,
    Form(f): Form<MarkForm>,
) -> Response {
    let (who, case) = match investigator_change(&ui, &headers, &f.csrf, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (mark, value) = match check_mark(&f.kind, &f.value) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, Some(&who), &e),
    };
    let ui2 = ui.clone();
    let case2 = case.clone();
    let analyst = who.analyst.clone();
    let done = blocking(move || {
        let tl = crate::engine::logs::existing_timeline(&ui2.app, &case2)
            .map_err(|e| error_chain(&e))?;
        let Some(row) = tl.rows_by_id(&[id]).map_err(|e| error_chain(&e))?.pop() else {
            return Ok(None);
        };
        // The ledger first: a mark the ledger does not hold is not kept.
        let index = ui2.record(
            &analyst,
            &case2,
            crate::ledger::entry::Action::Annotated,
            None,
            serde_json::json!({
                "event": id,
                "mark": mark.name(),
                "value": value,
                "artefact": row.artefact,
                "member": row.member,
                "locator": row.locator,
                "record_id": row.record_id,
            }),
        )?;
        let at = crate::clock::rfc3339(ui2.app.clock.now());
        tl.annotate(id, mark, &value, &analyst, &at, index)
            .map_err(|e| error_chain(&e))?;
        Ok(Some(index))
    })
    .await;
    match done {
        Ok(Some(index)) => {
            tracing::info!(analyst = %who.analyst, %case, event = id, mark = mark.name(), ledger = index, "event marked");
            Redirect::to(&format!("/cases/{case}/events/{id}")).into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            Some(&who),
            &format!("case {case} has no event {id}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

#[derive(Deserialize)]
struct SaveForm {
    name: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    csrf: String,
}

/// Who may change something, or why not.
pub(super) fn may_change(
    who: Option<Who>,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Who, Box<Response>> {
    let Some(who) = who else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            None,
            "sign in first",
        )));
    };
    if !csrf_ok(&who, headers, csrf) {
        tracing::warn!(analyst = %who.analyst, "a change without its CSRF token was refused");
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            Some(&who),
            "refused: the request did not carry this session's CSRF token",
        )));
    }
    Ok(who)
}

/// An investigator's change to a case, with its CSRF token, or why not.
pub(super) fn investigator_change(
    ui: &Ui,
    headers: &HeaderMap,
    csrf: &str,
    case: &str,
) -> Result<(Who, CaseId), Box<Response>> {
    let (who, case) = analyst_request(ui, headers, csrf, case)?;
    if who.role != Role::Investigator {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            Some(&who),
            "refused: a read-only analyst changes nothing",
        )));
    }
    Ok((who, case))
}

/// Any analyst's recorded request on a case (a download, an export), with
/// its CSRF token, or why not.
pub(super) fn analyst_request(
    ui: &Ui,
    headers: &HeaderMap,
    csrf: &str,
    case: &str,
) -> Result<(Who, CaseId), Box<Response>> {
    let who = may_change(ui.access.who(headers), headers, csrf)?;
    match parse_case(case) {
        Ok(c) => Ok((who, c)),
        Err(e) => Err(Box::new(error(StatusCode::NOT_FOUND, Some(&who), &e))),
    }
}

async fn save_search(
    State(ui): State<Shared>,
    Path(case): Path<String>,
    headers: HeaderMap,
    Form(f): Form<SaveForm>,
) -> Response {
    let (who, case) = match investigator_change(&ui, &headers, &f.csrf, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let name = f.name.trim().to_owned();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return error(
            StatusCode::BAD_REQUEST,
            Some(&who),
            "a search's name is 1 to 64 letters, digits, '-', '_' and '.'",
        );
    }
    let query = match Query::parse(&f.q) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, Some(&who), &e.to_string()),
    };
    let ui2 = ui.clone();
    let case2 = case.clone();
    let analyst = who.analyst.clone();
    let name2 = name.clone();
    let done = blocking(move || {
        let tl = crate::engine::logs::existing_timeline(&ui2.app, &case2)
            .map_err(|e| error_chain(&e))?;
        let facets: Vec<String> = FACETS.iter().map(|f| (*f).to_owned()).collect();
        // The ledger first: a search the ledger does not hold is not saved.
        ui2.record(
            &analyst,
            &case2,
            crate::ledger::entry::Action::SearchSaved,
            None,
            serde_json::json!({ "name": name2, "query": query.text, "facets": facets }),
        )?;
        let at = crate::clock::rfc3339(ui2.app.clock.now());
        tl.save_search(&name2, &query.text, &facets, &at)
            .map_err(|e| error_chain(&e))?;
        Ok(query.text)
    })
    .await;
    match done {
        Ok(q) => {
            tracing::info!(analyst = %who.analyst, %case, search = %name, "search saved");
            Redirect::to(&pages::explorer_href(&case, &q, 0)).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

async fn download(
    State(ui): State<Shared>,
    Path((case, id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    // Reading is every analyst's; the ledger names who took a copy.
    let (who, case) = match analyst_request(&ui, &headers, &f.csrf, &case) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let fail = |e: String| error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e);
    let store = match ui.app.store().await {
        Ok(s) => s,
        Err(e) => return fail(error_chain(&e)),
    };
    let artefacts = match crate::evidence::case::artefacts(store.as_ref(), &case).await {
        Ok(a) => a,
        Err(e) => return fail(error_chain(&e)),
    };
    let Some(a) = artefacts.into_iter().find(|a| a.id.to_string() == id) else {
        return error(
            StatusCode::NOT_FOUND,
            Some(&who),
            &format!("case {case} holds no artefact {id}"),
        );
    };
    let (w, c) = (who.clone(), case.clone());
    super::download::send(ui, w, c, a, store)
        .await
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_stay_few() {
        assert_eq!(bucket_width(None), 60_000_000);
        assert_eq!(bucket_width(Some((0, 30 * 60_000_000))), 60_000_000);
        let day = 86_400_000_000;
        assert_eq!(bucket_width(Some((0, day))), 900_000_000);
        assert_eq!(bucket_width(Some((0, 3650 * day))), 2_592_000_000_000);
    }

    #[test]
    fn marks_are_checked() {
        assert_eq!(
            check_mark("star", "ignored"),
            Ok((Mark::Star, String::new()))
        );
        assert_eq!(
            check_mark("tag", " phishing "),
            Ok((Mark::Tag, "phishing".into()))
        );
        assert!(
            check_mark("delete", "x")
                .unwrap_err()
                .contains("not a mark")
        );
        assert!(check_mark("tag", "").unwrap_err().contains("empty"));
        assert!(
            check_mark("tag", &"x".repeat(65))
                .unwrap_err()
                .contains("longer")
        );
        assert!(
            check_mark("comment", "a\u{1b}[31mred")
                .unwrap_err()
                .contains("control")
        );
        assert!(check_mark("comment", "two\nlines").is_ok());
    }

    #[test]
    fn a_browser_change_needs_the_session_token() {
        let who = Who {
            analyst: "a".into(),
            role: Role::Investigator,
            csrf: Some("t0k".into()),
            signed_in: true,
        };
        let none = HeaderMap::new();
        assert!(!csrf_ok(&who, &none, ""));
        assert!(!csrf_ok(&who, &none, "t0x"));
        assert!(csrf_ok(&who, &none, "t0k"));
        let mut h = HeaderMap::new();
        h.insert(CSRF_HEADER, HeaderValue::from_static("t0k"));
        assert!(csrf_ok(&who, &h, ""));
        let bearer = Who { csrf: None, ..who };
        assert!(csrf_ok(&bearer, &none, ""));
    }
}
