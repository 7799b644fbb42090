//! The HTTP side: alert intake, job and case views, health and metrics.
//!
//! An alert is answered `202` with its job ids only once the queue has it
//! on disk. Everything wrong with a request gets a 4xx with a JSON body
//! naming what was wrong, and nothing is queued; while the queue or the
//! ledger cannot take more, alerts get a 503 and `/readyz` says why.
//!
//! Before authentication a request costs little: the signature header (or
//! the bearer token) is checked before the body is read, the body is read
//! under `body_timeout_secs` and never past `max_body`, and [`serve`] bounds
//! connections and their idle time ([`super::conn`]). Jobs, cases and
//! metrics need a credential too: the read token, any source's credential,
//! or (when a source is unauthenticated, so the server trusts loopback) a
//! loopback client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::auth::{Auth, AuthError};
use super::config::ServeConfig;
use super::conn::{self, Peer};
use crate::queue::{JobState, Queue, Submit};

/// 16 MiB: how much of a refused request's body is read and thrown away
/// so that its sender reads the answer (a 413, say) instead of a reset
/// (closing a socket with unread data sends RST). Costs time, never memory;
/// a sender past this is not making an honest mistake.
const DRAIN_MAX: u64 = 16 << 20;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabel {
    source: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The server's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    received: Family<SourceLabel, Counter>,
    accepted: Family<SourceLabel, Counter>,
    rejected: Family<RejectLabel, Counter>,
    jobs: Family<StateLabel, Gauge>,
    /// Raw bytes of the artefacts jobs acquired.
    pub bytes_acquired: Counter,
    throttled: Counter,
    notifications: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("custody");
        let m = Self {
            received: Family::default(),
            accepted: Family::default(),
            rejected: Family::default(),
            jobs: Family::default(),
            bytes_acquired: Counter::default(),
            throttled: Counter::default(),
            notifications: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "alerts_received",
            "Alert requests received, by source",
            m.received.clone(),
        );
        registry.register(
            "alerts_accepted",
            "Alerts accepted and queued, by source",
            m.accepted.clone(),
        );
        registry.register(
            "alerts_rejected",
            "Alert requests refused, by source and reason",
            m.rejected.clone(),
        );
        registry.register("jobs", "Jobs by state", m.jobs.clone());
        registry.register(
            "bytes_acquired",
            "Raw bytes of the evidence jobs acquired",
            m.bytes_acquired.clone(),
        );
        registry.register(
            "api_throttled",
            "API requests held back by custody's own rate budgets",
            m.throttled.clone(),
        );
        registry.register(
            "notifications",
            "Job notifications, by outcome (delivered, given_up)",
            m.notifications.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub fn notified(&self, delivered: bool) {
        self.notifications
            .get_or_create(&OutcomeLabel {
                outcome: if delivered { "delivered" } else { "given_up" }.to_owned(),
            })
            .inc();
    }

    fn reject(&self, source: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabel {
                source: source.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// What the handlers share.
pub struct Shared {
    pub config: ServeConfig,
    pub queue: Queue,
    pub metrics: Metrics,
    pub notifier: super::notify::Notifier,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// New jobs for the workers.
    pub jobs: tokio::sync::mpsc::UnboundedSender<String>,
    /// Set on SIGTERM: `/readyz` turns 503 and new alerts are refused.
    pub draining: AtomicBool,
    /// Set on Ctrl-C: work in progress stops; an interrupted job is left
    /// running on disk, so it runs again after a restart.
    pub cancel: Arc<AtomicBool>,
    /// Whether jobs can record in the ledger now.
    pub recording: Readiness,
    /// The analysts' workspace, when `[ui]` is configured.
    pub ui: Option<Arc<crate::ui::Ui>>,
}

/// Whether the ledger can take entries now.
pub trait Recording: Send + Sync {
    /// `Err` with the reason while it cannot (a commit failed and the ledger
    /// cannot be reopened yet). May reopen the ledger: called off the runtime.
    fn ready(&self) -> Result<(), crate::ledger::LedgerError>;
}

/// 1 s: while the ledger cannot record, how long one answer to "can it
/// now?" stands, so a burst of alerts on a full disk costs one probe.
pub const RECHECK: Duration = Duration::from_secs(1);

/// The ledger's readiness as intake sees it. Asking the ledger takes its
/// lock (a commit in progress holds it through an fsync), so it is asked
/// only after a job could not record, until it says yes again; until then
/// intake answers at once.
pub struct Readiness {
    recording: Arc<dyn Recording>,
    recheck: Duration,
    /// Why the ledger could not record, and when it was last asked.
    down: std::sync::Mutex<Option<(String, Option<tokio::time::Instant>)>>,
}

impl Readiness {
    pub fn new(recording: Arc<dyn Recording>) -> Self {
        Self::with_recheck(recording, RECHECK)
    }

    pub fn with_recheck(recording: Arc<dyn Recording>, recheck: Duration) -> Self {
        Self {
            recording,
            recheck,
            down: std::sync::Mutex::new(None),
        }
    }

    fn down(&self) -> std::sync::MutexGuard<'_, Option<(String, Option<tokio::time::Instant>)>> {
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A job could not record: the ledger is asked again before the next alert is taken.
    pub fn failed(&self, why: &str) {
        let mut down = self.down();
        if down.is_none() {
            *down = Some((why.to_owned(), None));
        }
    }

    /// `Err` with the reason while the ledger cannot record.
    pub async fn check(&self) -> Result<(), String> {
        let now = tokio::time::Instant::now();
        match self.down().as_ref() {
            None => return Ok(()),
            Some((why, Some(at))) if now.duration_since(*at) < self.recheck => {
                return Err(why.clone());
            }
            Some(_) => {}
        }
        let recording = self.recording.clone();
        let answer = tokio::task::spawn_blocking(move || {
            recording.ready().map_err(|e| crate::error_chain(&e))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the ledger check stopped ({e})")));
        let mut down = self.down();
        match answer {
            Ok(()) => {
                *down = None;
                Ok(())
            }
            Err(why) => {
                *down = Some((why.clone(), Some(now)));
                Err(why)
            }
        }
    }
}

/// A ledger that always records; for tests of everything else.
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysRecording;

impl Recording for AlwaysRecording {
    fn ready(&self) -> Result<(), crate::ledger::LedgerError> {
        Ok(())
    }
}

type AppState = Arc<Shared>;

/// Serves the API on `listener` until `shutdown` completes, with the
/// connection limits and deadlines of the configuration.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let c = &state.config.server;
    let limits = conn::Limits {
        max: c.max_connections,
        per_ip: c.max_connections_per_ip,
        header_timeout: Duration::from_secs(c.header_timeout_secs),
    }
    .within_fd_limit();
    let app = router(state).into_make_service_with_connect_info::<Peer>();
    axum::serve(conn::Guarded::new(listener, limits), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The router.
pub fn router(state: AppState) -> axum::Router {
    let ui = state.ui.clone();
    let api = axum::Router::new()
        .route("/v1/alerts/{source}", post(post_alert))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/cases/{id}", get(get_case))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            refuse(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            )
        })
        .with_state(state);
    // The workspace's pages share the listener, its limits and its spans.
    let all = match ui {
        Some(ui) => api.merge(crate::ui::router(ui)),
        None => api,
    };
    all.layer(axum::middleware::from_fn(request_span))
        .layer(axum::middleware::from_fn(conn::track))
}

/// The route template a request's span is named by, also left in the
/// request for the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate(pub String);

/// The route a request matched, as its template (`/v1/jobs/{id}`), or
/// `unmatched`: span names and fields stay few and never carry what a
/// client put in the path.
fn route_of(req: &axum::extract::Request) -> String {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned())
}

/// Runs each request in a span named by its route template, and logs its
/// status and time at debug.
async fn request_span(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let route = route_of(&req);
    let span = tracing::info_span!("request", method = %req.method(), route = %route);
    req.extensions_mut().insert(RouteTemplate(route));
    let started = std::time::Instant::now();
    async move {
        let response = next.run(req).await;
        tracing::debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

fn refuse(status: StatusCode, reason: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message, "reason": reason })),
    )
        .into_response()
}

/// Refuses a request after reading and throwing away what is left of its
/// body (up to [`DRAIN_MAX`], within the body timeout), so its sender
/// reads the answer rather than a reset; the connection is closed after.
async fn refuse_draining(
    body: Body,
    timeout: Duration,
    status: StatusCode,
    reason: &str,
    message: String,
) -> Response {
    let _ = read_body(body, 0, timeout).await;
    closing(refuse(status, reason, message))
}

fn closing(mut r: Response) -> Response {
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    r
}

/// Why a body was not read whole.
#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    /// Over the limit; what followed was drained, up to [`DRAIN_MAX`].
    TooLarge,
    /// Not received whole in time.
    TimedOut,
    /// The connection broke (or was closed to make room) mid-body.
    Broken,
}

/// Reads a body of at most `limit` bytes within `timeout`. Past the limit
/// the rest is read and dropped (up to [`DRAIN_MAX`]), never kept.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Vec<u8>, BodyError> {
    use futures::StreamExt as _;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut frames = body.into_data_stream();
    let mut out = Vec::new();
    let mut seen = 0u64;
    let limit64 = limit as u64;
    loop {
        let frame = match tokio::time::timeout_at(deadline, frames.next()).await {
            Err(_) => {
                return Err(if seen > limit64 {
                    BodyError::TooLarge
                } else {
                    BodyError::TimedOut
                });
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        seen += frame.len() as u64;
        if seen > limit64.saturating_add(DRAIN_MAX) {
            return Err(BodyError::TooLarge);
        }
        if seen <= limit64 {
            out.extend_from_slice(&frame);
        }
    }
    if seen > limit64 {
        Err(BodyError::TooLarge)
    } else {
        Ok(out)
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn auth_reason(e: &AuthError) -> &'static str {
    match e {
        AuthError::Stale { .. } => "stale_timestamp",
        AuthError::Missing(_) => "missing_credentials",
        _ => "bad_credentials",
    }
}

/// The alert's body, within the size and time limits; or the answer that
/// refuses it.
async fn read_alert_body(
    st: &AppState,
    source: &str,
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
) -> Result<Vec<u8>, Response> {
    let limit = st.config.server.max_body;
    let too_large = || {
        st.metrics.reject(source, "too_large");
        closing(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over the {limit}-byte limit"),
        ))
    };
    let declared = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > (limit as u64).saturating_add(DRAIN_MAX)) {
        // Too much even to drain: answer now and close.
        return Err(too_large());
    }
    match read_body(body, limit, timeout).await {
        Ok(b) => Ok(b),
        Err(BodyError::TooLarge) => Err(too_large()),
        Err(BodyError::TimedOut) => {
            st.metrics.reject(source, "body_timeout");
            Err(closing(refuse(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {} s", timeout.as_secs()),
            )))
        }
        Err(BodyError::Broken) => {
            st.metrics.reject(source, "cut_off");
            Err(closing(refuse(
                StatusCode::BAD_REQUEST,
                "cut_off",
                "the body was cut off".into(),
            )))
        }
    }
}

/// Queues each alert (a duplicate gets its first job back) and answers 202
/// with their jobs; 503 when one could not be written, for the sender to
/// deliver again.
async fn enqueue(st: &AppState, source: &str, alerts: Vec<crate::alert::Alert>) -> Response {
    let mut accepted = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let value = match serde_json::to_value(&alert) {
            Ok(v) => v,
            Err(e) => {
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
            }
        };
        let submitted = st
            .queue
            .enqueue(Submit {
                source: source.to_owned(),
                alert_id: alert.id.clone(),
                entities: alert.entities.join_keys(),
                alert: value,
            })
            .await;
        match submitted {
            Ok(e) => {
                if !e.duplicate {
                    let _ = st.jobs.send(e.job.clone());
                    st.metrics
                        .accepted
                        .get_or_create(&SourceLabel {
                            source: source.to_owned(),
                        })
                        .inc();
                }
                accepted.push(serde_json::json!({
                    "alert": alert.id,
                    "job": e.job,
                    "case": e.case,
                    "duplicate": e.duplicate,
                }));
            }
            Err(e) => {
                // Not on disk: the sender must deliver again.
                tracing::error!(error = %e, "cannot queue an alert");
                st.metrics.reject(source, "queue_unavailable");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_unavailable",
                    "the alert could not be stored; deliver again".into(),
                );
            }
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": accepted })),
    )
        .into_response()
}

async fn post_alert(
    State(st): State<AppState>,
    Path(source): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let peer = conn::peer(&parts.extensions).cloned();
    let headers = parts.headers;
    let timeout = Duration::from_secs(st.config.server.body_timeout_secs);
    let Some(src) = st.config.source(&source).cloned() else {
        st.metrics.reject("unknown", "unknown_source");
        // Naming the configured sources would hand out the URLs to try.
        return refuse_draining(
            body,
            timeout,
            StatusCode::NOT_FOUND,
            "unknown_source",
            "unknown alert source".into(),
        )
        .await;
    };
    st.metrics
        .received
        .get_or_create(&SourceLabel {
            source: source.clone(),
        })
        .inc();
    if st.draining.load(Ordering::SeqCst) {
        st.metrics.reject(&source, "shutting_down");
        return refuse_draining(
            body,
            timeout,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; deliver again later".into(),
        )
        .await;
    }
    let now = st.clock.now().unix_timestamp();
    let window = st.config.server.replay_window_secs;
    // What the headers alone can refuse is refused before the body is read.
    if let Some(auth) = &src.auth
        && let Err(e) = super::auth::precheck(
            auth,
            header(&headers, super::auth::SIGNATURE_HEADER),
            header(&headers, "authorization"),
            now,
            window,
        )
    {
        let reason = auth_reason(&e);
        st.metrics.reject(&source, reason);
        return refuse_draining(
            body,
            timeout,
            StatusCode::UNAUTHORIZED,
            reason,
            e.to_string(),
        )
        .await;
    }
    let body = match read_alert_body(&st, &source, &headers, body, timeout).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    if let Some(auth) = &src.auth
        && let Err(e) = super::auth::check(
            auth,
            header(&headers, super::auth::SIGNATURE_HEADER),
            header(&headers, "authorization"),
            &body,
            now,
            window,
        )
    {
        let reason = auth_reason(&e);
        st.metrics.reject(&source, reason);
        return refuse(StatusCode::UNAUTHORIZED, reason, e.to_string());
    }
    if let Some(p) = &peer {
        p.authenticated();
    }
    let limits = crate::alert::Limits {
        max_entities: st.config.server.max_entities,
        max_findings: st.config.server.max_findings,
    };
    let alerts = match crate::alert::parse(src.kind.as_str(), &body, &limits) {
        Ok(a) => a,
        Err(e) => {
            st.metrics.reject(&source, e.reason());
            let status = if e.reason() == "malformed_json" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return refuse(status, e.reason(), e.to_string());
        }
    };
    // An alert accepted now could not be acted on: the sender keeps it and
    // delivers again, rather than custody holding a job it cannot record.
    if let Err(why) = unready(&st).await {
        tracing::warn!(reason = %why, "refusing an alert: not ready");
        st.metrics.reject(&source, "not_ready");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("{why}; deliver again later"),
        );
    }
    enqueue(&st, &source, alerts).await
}

/// Why new alerts cannot be taken now, if they cannot: the queue's writer
/// stopped, or the ledger cannot commit.
async fn unready(st: &AppState) -> Result<(), String> {
    st.queue
        .health()
        .map_err(|e| format!("the queue cannot take alerts ({e})"))?;
    st.recording
        .check()
        .await
        .map_err(|e| format!("the ledger cannot record ({e})"))
}

/// Lets a request read jobs, cases or metrics: the read token, any
/// source's credential (its bearer token, or its signature of an empty
/// body), or, when some source is unauthenticated (the server then trusts
/// loopback), a client on loopback.
fn read_refused(st: &Shared, parts: &axum::http::request::Parts) -> Option<Response> {
    let peer = conn::peer(&parts.extensions);
    let signature = header(&parts.headers, super::auth::SIGNATURE_HEADER);
    let authorization = header(&parts.headers, "authorization");
    let now = st.clock.now().unix_timestamp();
    let window = st.config.server.replay_window_secs;
    let credentials: Vec<&Auth> = st
        .config
        .read_token
        .iter()
        .chain(st.config.sources.iter().filter_map(|s| s.auth.as_ref()))
        .collect();
    let presented = signature.is_some() || authorization.is_some();
    let ok = presented
        && credentials
            .iter()
            .any(|a| super::auth::check(a, signature, authorization, b"", now, window).is_ok());
    let loopback_trusted = st.config.sources.iter().any(|s| s.auth.is_none())
        && peer.is_some_and(|p| p.addr.ip().is_loopback());
    if ok || loopback_trusted {
        if let Some(p) = peer {
            p.authenticated();
        }
        return None;
    }
    let (reason, what) = if presented {
        ("bad_credentials", "the credentials do not match")
    } else {
        ("missing_credentials", "credentials are needed")
    };
    Some(refuse(
        StatusCode::UNAUTHORIZED,
        reason,
        format!(
            "{what}: jobs, cases and metrics are read with the read token or a source's \
             (Authorization: Bearer TOKEN, or X-Custody-Signature of an empty body)"
        ),
    ))
}

async fn get_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    if let Some(r) = read_refused(&st, &parts) {
        return r;
    }
    match st.queue.job(&id) {
        Some(j) => Json(j).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "no_job", format!("no job {id:?}")),
    }
}

async fn get_case(
    State(st): State<AppState>,
    Path(id): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    if let Some(r) = read_refused(&st, &parts) {
        return r;
    }
    let jobs = st.queue.case_jobs(&id);
    if jobs.is_empty() {
        return refuse(
            StatusCode::NOT_FOUND,
            "no_case",
            format!("no case {id:?} among the server's jobs"),
        );
    }
    let state = if jobs.iter().all(|j| j.state == JobState::Done) {
        "done"
    } else if jobs.iter().any(|j| j.state == JobState::Failed) {
        "failed"
    } else {
        "open"
    };
    Json(serde_json::json!({ "case": id, "state": state, "jobs": jobs })).into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    match unready(&st).await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(st): State<AppState>, parts: axum::http::request::Parts) -> Response {
    if let Some(r) = read_refused(&st, &parts) {
        return r;
    }
    for state in [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
    ] {
        let n = st.queue.counts().get(&state).copied().unwrap_or(0);
        st.metrics
            .jobs
            .get_or_create(&StateLabel {
                state: state.as_str().to_owned(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let waits = crate::aws::rate::WAITS.load(Ordering::Relaxed);
    let seen = st.metrics.throttled.get();
    if waits > seen {
        st.metrics.throttled.inc_by(waits - seen);
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &st.metrics.registry) {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;

    const SECRET: &str = "gd-secret";
    const TOKEN: &str = "edr-token";
    const READ: &str = "read-token";

    /// A ledger whose readiness the test sets.
    #[derive(Default)]
    struct Switch(Mutex<Option<String>>);

    impl Recording for Switch {
        fn ready(&self) -> Result<(), crate::ledger::LedgerError> {
            match self.0.lock().expect("lock").clone() {
                Some(why) => Err(crate::ledger::LedgerError::Io {
                    op: "cannot write",
                    path: why.into(),
                    source: std::io::Error::from_raw_os_error(28),
                }),
                None => Ok(()),
            }
        }
    }

    struct Running {
        addr: String,
        shared: Arc<Shared>,
        switch: Arc<Switch>,
        _jobs: tokio::sync::mpsc::UnboundedReceiver<String>,
        _dir: tempfile::TempDir,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    /// The server on a free loopback port, with `extra` in `[server]` and
    /// `sources` after the hmac and bearer ones.
    async fn start(extra: &str, sources: &str) -> Running {
        let text = format!(
            "[server]\nbind = \"127.0.0.1:0\"\nread_token_env = \"READ\"\n{extra}\n\
             [[source]]\nname = \"gd\"\nkind = \"generic\"\nauth = \"hmac\"\nsecret_env = \"GD\"\n\
             [[source]]\nname = \"edr\"\nkind = \"generic\"\nauth = \"bearer\"\nsecret_env = \"EDR\"\n\
             {sources}"
        );
        let env = |k: &str| match k {
            "GD" => Some(SECRET.to_owned()),
            "EDR" => Some(TOKEN.to_owned()),
            "READ" => Some(READ.to_owned()),
            _ => None,
        };
        let config =
            ServeConfig::parse(&text, std::path::Path::new("serve.toml"), &env).expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let queue = Queue::open(
            &dir.path().join("queue.jsonl"),
            clock.clone(),
            time::Duration::hours(1),
        )
        .expect("queue");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let switch = Arc::new(Switch::default());
        let shared = Arc::new(Shared {
            config,
            queue,
            metrics: Metrics::default(),
            notifier: super::super::notify::Notifier::new(&[]).expect("notifier"),
            clock,
            jobs: tx,
            draining: AtomicBool::new(false),
            cancel: Arc::new(AtomicBool::new(false)),
            recording: Readiness::with_recheck(switch.clone(), Duration::ZERO),
            ui: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, shared.clone(), async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            shared,
            switch,
            _jobs: rx,
            _dir: dir,
            _stop: stop,
        }
    }

    /// One request; the status and body, or the I/O error that ended it.
    async fn http(
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(addr).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        s.write_all(body).await?;
        read_answer(&mut s).await
    }

    async fn read_answer(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn alert(id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "time": "2026-11-30T10:00:00Z", "severity": 5, "title": "t",
            "entities": { "ips": ["203.0.113.9"] }
        }))
        .expect("json")
    }

    fn signed(body: &[u8]) -> Vec<(&'static str, String)> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        vec![(
            "X-Custody-Signature",
            super::super::auth::sign(SECRET.as_bytes(), now, body),
        )]
    }

    fn bearer(token: &str) -> Vec<(&'static str, String)> {
        vec![("Authorization", format!("Bearer {token}"))]
    }

    async fn post(addr: &str, id: &str) -> (u16, serde_json::Value) {
        let body = alert(id);
        let (status, text) = http(addr, "POST", "/v1/alerts/gd", &signed(&body), &body)
            .await
            .expect("post");
        (status, serde_json::from_str(&text).expect("json"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_spans_are_named_by_route_template_never_by_the_path() {
        async fn echo(axum::Extension(r): axum::Extension<RouteTemplate>) -> String {
            r.0
        }
        let app = axum::Router::new()
            .route("/v1/jobs/{id}", get(echo))
            .fallback(echo)
            .layer(axum::middleware::from_fn(request_span));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        for (path, want) in [
            ("/v1/jobs/job-from-the-path", "/v1/jobs/{id}"),
            ("/no/such/secret-route", "unmatched"),
        ] {
            let (status, body) = http(&addr, "GET", path, &[], b"").await.expect("get");
            assert_eq!((status, body.as_str()), (200, want), "{path}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn w1_job_case_and_metrics_views_need_credentials() {
        let srv = start("", "").await;
        let (status, v) = post(&srv.addr, "a-1").await;
        assert_eq!(status, 202, "{v}");
        let job = v["accepted"][0]["job"].as_str().expect("job").to_owned();
        let case = v["accepted"][0]["case"].as_str().expect("case").to_owned();
        let paths = [
            format!("/v1/jobs/{job}"),
            format!("/v1/cases/{case}"),
            "/metrics".to_owned(),
        ];
        let empty_signed = signed(b"");
        let wrong_signature = vec![(
            "X-Custody-Signature",
            super::super::auth::sign(b"not the secret", 0, b""),
        )];
        for path in &paths {
            let get = |h: Vec<(&'static str, String)>| {
                let (addr, path) = (srv.addr.clone(), path.clone());
                async move { http(&addr, "GET", &path, &h, b"").await.expect("get") }
            };
            // Refused with nothing, a wrong token or a wrong signature, on
            // loopback too: every source here authenticates.
            for (h, reason) in [
                (vec![], "missing_credentials"),
                (bearer("nope"), "bad_credentials"),
                (wrong_signature.clone(), "bad_credentials"),
            ] {
                let (status, body) = get(h).await;
                assert_eq!(status, 401, "{path}: {body}");
                assert!(body.contains(reason), "{path}: {body}");
                assert!(!body.contains("a-1") && !body.contains("203.0.113.9"));
            }
            // The read token, a source's token, a source's signature of an empty body.
            for h in [bearer(READ), bearer(TOKEN), empty_signed.clone()] {
                let (status, body) = get(h).await;
                assert_eq!(status, 200, "{path}: {body}");
            }
        }
        // Health checks stay open.
        for path in ["/healthz", "/readyz"] {
            assert_eq!(
                http(&srv.addr, "GET", path, &[], b"").await.expect("get").0,
                200
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn w1_an_unauthenticated_server_serves_its_views_to_loopback() {
        let srv = start(
            "",
            "[[source]]\nname = \"local\"\nkind = \"generic\"\nauth = \"none\"\n",
        )
        .await;
        let (status, body) = http(&srv.addr, "GET", "/metrics", &[], b"")
            .await
            .expect("get");
        assert_eq!(status, 200, "{body}");
        // The handlers only trust loopback on a peer they know: a request
        // that did not come through the listener is refused.
        let parts = axum::http::Request::new(()).into_parts().0;
        assert!(read_refused(&srv.shared, &parts).is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn w3_the_unknown_source_answer_names_no_source() {
        let srv = start("", "").await;
        let (status, body) = http(&srv.addr, "POST", "/v1/alerts/nope", &[], b"{}")
            .await
            .expect("post");
        assert_eq!(status, 404);
        assert!(body.contains("unknown_source"), "{body}");
        assert!(!body.contains("gd") && !body.contains("edr"), "{body}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn q2_while_the_ledger_cannot_record_alerts_get_503_and_readyz_says_why() {
        let srv = start("", "").await;
        *srv.switch.0.lock().expect("lock") = Some("entries.jsonl".into());
        // Until a job fails to record, intake does not ask the ledger.
        let (status, v) = post(&srv.addr, "before-a-job-failed").await;
        assert_eq!(status, 202, "{v}");
        srv.shared.recording.failed("No space left on device");
        let (status, v) = post(&srv.addr, "while-full").await;
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["reason"], "not_ready", "{v}");
        let (status, why) = http(&srv.addr, "GET", "/readyz", &[], b"")
            .await
            .expect("readyz");
        assert_eq!(status, 503);
        assert!(
            why.contains(
                "the ledger cannot record (cannot write entries.jsonl: No space left on device"
            ),
            "{why}"
        );
        // Room again: the same alert is taken.
        *srv.switch.0.lock().expect("lock") = None;
        let (status, v) = post(&srv.addr, "while-full").await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["accepted"][0]["duplicate"], false, "{v}");
        let (status, _) = http(&srv.addr, "GET", "/readyz", &[], b"")
            .await
            .expect("readyz");
        assert_eq!(status, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_bodies_get_their_413_not_a_reset_while_still_sending() {
        let srv = start("", "").await;
        let size = 2_000_000;
        for attempt in 0..25 {
            let mut s = TcpStream::connect(&srv.addr).await.expect("connect");
            let head = format!(
                "POST /v1/alerts/edr HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: {size}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.expect("head");
            // In chunks, as a sender on a real network does; the server may
            // answer before the last one.
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < size {
                let n = chunk.len().min(size - sent);
                s.write_all(chunk.get(..n).expect("chunk"))
                    .await
                    .unwrap_or_else(|e| panic!("try {attempt}: sending after {sent} bytes: {e}"));
                sent += n;
                if sent % (256 * 1024) == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let (status, body) = read_answer(&mut s)
                .await
                .unwrap_or_else(|e| panic!("try {attempt}: no answer: {e}"));
            assert_eq!(status, 413, "try {attempt}: {body}");
            assert!(body.contains("too_large"), "{body}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn w2_500_half_sent_connections_do_not_delay_a_signed_alert() {
        // The per-address limit (64) binds first, then the total.
        for (limits, most) in [
            ("", 64),
            ("max_connections = 100\nmax_connections_per_ip = 1000", 100),
        ] {
            let srv = start(limits, "").await;
            // Half a head, a whole head and half a body, and nothing at all.
            let mut held = Vec::new();
            for i in 0..500 {
                let mut s = TcpStream::connect(&srv.addr).await.expect("connect");
                let part: &[u8] = match i % 3 {
                    0 => b"POST /v1/alerts/gd HTTP/1.1\r\nHost: x\r\n",
                    1 => b"POST /v1/alerts/edr HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n{\"id\":",
                    _ => b"",
                };
                s.write_all(part).await.expect("write");
                held.push(s);
            }
            for round in 0..3 {
                let started = Instant::now();
                let (status, v) = post(&srv.addr, &format!("real-{round}")).await;
                let took = started.elapsed();
                assert_eq!(status, 202, "{limits}: {v}");
                assert!(
                    took < Duration::from_secs(1),
                    "{limits}: the alert took {took:?}"
                );
            }
            // The server holds no more than its limit of them: the rest were closed.
            let mut open = 0;
            for s in &mut held {
                let mut b = [0u8; 1];
                if tokio::time::timeout(Duration::from_millis(20), s.read(&mut b))
                    .await
                    .is_err()
                {
                    open += 1;
                }
            }
            assert!(open <= most, "{limits}: {open} of 500 still open");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn w2_a_half_sent_head_is_closed_after_the_header_timeout() {
        let srv = start("header_timeout_secs = 1", "").await;
        let mut s = TcpStream::connect(&srv.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0) | Err(_))),
            "still open after {:?}: {r:?}",
            started.elapsed()
        );
        // A keep-alive connection is idle after its answer and closed the same way.
        let mut s = TcpStream::connect(&srv.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        assert!(r.is_ok(), "the idle connection was not closed");
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn w2_a_slow_body_is_refused_after_the_body_timeout() {
        let srv = start("body_timeout_secs = 1", "").await;
        let mut s = TcpStream::connect(&srv.addr).await.expect("connect");
        s.write_all(
            format!(
                "POST /v1/alerts/edr HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let r = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut s)).await;
        let (status, body) = r.expect("answered in time").expect("answer");
        assert_eq!(status, 408, "{body}");
    }
}
