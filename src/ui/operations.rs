//! The operations pages: the webhook server's jobs (each alert and its
//! steps) and the readiness audits (runs, the score over time, what
//! changed, the latest findings). Both read what their writers keep on
//! disk without opening it for writing, so `custody ui` shows them while
//! `custody serve` or a scheduled audit runs.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use super::error_chain;
use super::handlers::{Shared, blocking, error, gate, page};
use super::operations_pages;
use crate::queue::{Job, Queue};

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/jobs", get(jobs))
        .route("/readiness", get(readiness))
}

/// Every job in the server's queue under this home, oldest first.
pub fn all_jobs(ui: &super::Ui) -> Result<Vec<Job>, String> {
    Queue::snapshot(&Queue::path_in(&ui.app.config.home)).map_err(|e| error_chain(&e))
}

async fn jobs(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    let (who, cookie) = match gate(&ui, &headers) {
        Ok(w) => w,
        Err(r) => return axum::response::IntoResponse::into_response(r),
    };
    let ui2 = ui.clone();
    match blocking(move || all_jobs(&ui2)).await {
        Ok(list) => page(operations_pages::jobs(&who, &list), cookie),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

#[cfg(feature = "readiness")]
async fn readiness(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    use crate::readiness::history::History;
    let (who, cookie) = match gate(&ui, &headers) {
        Ok(w) => w,
        Err(r) => return axum::response::IntoResponse::into_response(r),
    };
    let path = History::path_in(&ui.app.config.home);
    let loaded = blocking(move || {
        if !path.exists() {
            return Ok(None);
        }
        let h = History::open(&path).map_err(|e| error_chain(&e))?;
        let runs = h.runs().map_err(|e| error_chain(&e))?;
        let all = h.all().map_err(|e| error_chain(&e))?;
        let latest = match runs.iter().max_by_key(|r| (r.started, r.id)) {
            Some(r) => h.findings(r.id).map_err(|e| error_chain(&e))?,
            None => Vec::new(),
        };
        Ok(Some(operations_pages::Readiness {
            trend: crate::readiness::score::trend(&all),
            days: crate::readiness::score::latest_per_day(&all)
                .into_iter()
                .filter_map(|d| runs.iter().find(|r| r.id == d.id).cloned())
                .collect(),
            runs,
            latest,
        }))
    })
    .await;
    match loaded {
        Ok(r) => page(operations_pages::readiness(&who, r.as_ref()), cookie),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

#[cfg(not(feature = "readiness"))]
async fn readiness(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    let (who, _) = match gate(&ui, &headers) {
        Ok(w) => w,
        Err(r) => return axum::response::IntoResponse::into_response(r),
    };
    error(
        StatusCode::NOT_FOUND,
        Some(&who),
        "this custody was built without readiness audits (feature `readiness`)",
    )
}
