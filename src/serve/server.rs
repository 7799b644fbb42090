//! The HTTP side: alert intake, job and case views, health and metrics.
//!
//! An alert is answered `202` with its job ids only once the queue has it
//! on disk. Everything wrong with a request gets a 4xx with a JSON body
//! naming what was wrong, and nothing is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::config::ServeConfig;
use super::queue::{JobState, Queue, Submit};

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
}

type AppState = Arc<Shared>;

/// The router.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
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
        .with_state(state)
}

fn refuse(status: StatusCode, reason: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message, "reason": reason })),
    )
        .into_response()
}

async fn post_alert(
    State(st): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(src) = st.config.source(&source).cloned() else {
        let known: Vec<&str> = st.config.sources.iter().map(|s| s.name.as_str()).collect();
        st.metrics.reject("unknown", "unknown_source");
        return refuse(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!(
                "unknown alert source; configured sources: {}",
                known.join(", ")
            ),
        );
    };
    st.metrics
        .received
        .get_or_create(&SourceLabel {
            source: source.clone(),
        })
        .inc();
    if st.draining.load(Ordering::SeqCst) {
        st.metrics.reject(&source, "shutting_down");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; deliver again later".into(),
        );
    }
    let limit = st.config.server.max_body;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            st.metrics.reject(&source, "too_large");
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over the {limit}-byte limit, or was cut off"),
            );
        }
    };
    if let Some(auth) = &src.auth {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = st.clock.now().unix_timestamp();
        if let Err(e) = super::auth::check(
            auth,
            header(super::auth::SIGNATURE_HEADER),
            header("authorization"),
            &body,
            now,
            st.config.server.replay_window_secs,
        ) {
            let reason = match e {
                super::auth::AuthError::Stale { .. } => "stale_timestamp",
                super::auth::AuthError::Missing(_) => "missing_credentials",
                _ => "bad_credentials",
            };
            st.metrics.reject(&source, reason);
            return refuse(StatusCode::UNAUTHORIZED, reason, e.to_string());
        }
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
                source: source.clone(),
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
                            source: source.clone(),
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
                st.metrics.reject(&source, "queue_unavailable");
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

async fn get_job(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.queue.job(&id) {
        Some(j) => Json(j).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "no_job", format!("no job {id:?}")),
    }
}

async fn get_case(State(st): State<AppState>, Path(id): Path<String>) -> Response {
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
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
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
