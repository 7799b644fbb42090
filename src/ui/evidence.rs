//! The evidence routes: the evidence page, each ledger entry of a case
//! byte for byte with its inclusion proof, the case's bundle as a tar, and
//! a verification on demand. Exports and verifications are ledger entries
//! naming the analyst, like every other analyst's action.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::evidence_pages;
use super::handlers::{
    CsrfForm, Shared, analyst_request, blocking, case_artefacts, error, investigator_change, page,
    page_case,
};
use super::ledger_view::CaseLedger;
use super::{Ui, error_chain};
use crate::ids::CaseId;

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/cases/{case}/evidence", get(evidence))
        .route("/cases/{case}/ledger/{index}", get(entry))
        .route("/cases/{case}/ledger/{index}/proof", get(proof))
        .route("/cases/{case}/bundle", post(bundle))
        .route("/cases/{case}/verify", post(verify))
}

async fn evidence(
    State(ui): State<Shared>,
    Path(case): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (who, cookie, case) = match page_case(&ui, &headers, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let artefacts = match case_artefacts(&ui, &case).await {
        Ok(a) => a.unwrap_or_default(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    };
    let (ui2, case2) = (ui.clone(), case.clone());
    let ledger = blocking(move || Ok(CaseLedger::read(&ui2.app.ledger_paths(), &case2))).await;
    match ledger {
        Ok(l) => page(
            evidence_pages::evidence(&who, &case, &artefacts, &l),
            cookie,
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

/// Entry `index` of `case`, byte for byte, or the response saying why not.
async fn case_entry(
    ui: &Shared,
    case: &CaseId,
    index: u64,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let (ui2, case2) = (ui.clone(), case.clone());
    blocking(move || {
        crate::ledger::case_entries_in(&ui2.app.ledger_paths().entries(), &case2)
            .map_err(|e| error_chain(&e))
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?
    .into_iter()
    .find(|(i, _, _)| *i == index)
    .map(|(_, bytes, _)| bytes)
    .ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("ledger entry {index} is not an entry of case {case}"),
        )
    })
}

async fn entry(
    State(ui): State<Shared>,
    Path((case, index)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let (who, _, case) = match page_case(&ui, &headers, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match case_entry(&ui, &case, index).await {
        Ok(bytes) => attachment("application/json", &format!("{index}.json"), bytes),
        Err((s, e)) => error(s, Some(&who), &e),
    }
}

async fn proof(
    State(ui): State<Shared>,
    Path((case, index)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let (who, _, case) = match page_case(&ui, &headers, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // Only the case's own entries: a proof names the entry's hash.
    if let Err((s, e)) = case_entry(&ui, &case, index).await {
        return error(s, Some(&who), &e);
    }
    let (ui2, analyst) = (ui.clone(), who.analyst.clone());
    let proved = blocking(move || {
        ui2.with_recorder(&analyst, |_, r| {
            r.ledger
                .with(|l| l.prove(index))
                .map(|p| p.to_bytes())
                .map_err(|e| error_chain(&e))
        })
    })
    .await;
    match proved {
        Ok(bytes) => attachment(
            "text/plain; charset=utf-8",
            &format!("{index}.tlog-proof"),
            bytes,
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

fn attachment(kind: &str, name: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn bundle(
    State(ui): State<Shared>,
    Path(case): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    // Every analyst may take a copy; the ledger names who did.
    let (who, case) = match analyst_request(&ui, &headers, &f.csrf, &case) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let (ui2, case2, analyst) = (ui.clone(), case.clone(), who.analyst.clone());
    let made = blocking(move || tar_bundle(&ui2, &case2, &analyst)).await;
    match made {
        Ok(tar) => {
            tracing::info!(analyst = %who.analyst, %case, "case bundle exported");
            attachment("application/x-tar", &format!("{case}-bundle.tar"), tar)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}

/// The case's bundle, written to a private temporary directory through the
/// engine (which records the export), then put in a tar.
fn tar_bundle(ui: &Ui, case: &CaseId, analyst: &str) -> Result<Vec<u8>, String> {
    let dir = tempfile::Builder::new()
        .prefix("custody-bundle.")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let out = dir.path().join(format!("{case}-bundle"));
    let destination = format!("workspace download by {analyst}");
    let rt = tokio::runtime::Handle::current();
    ui.with_recorder(analyst, |app, recorder| {
        rt.block_on(crate::engine::bundle::export(
            app,
            recorder,
            case,
            &out,
            &destination,
        ))
        .map_err(|e| error_chain(&e))
    })?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(format!("{case}-bundle"), &out)
        .and_then(|()| tar.into_inner())
        .map_err(|e| format!("cannot write the bundle's tar: {e}"))
}

async fn verify(
    State(ui): State<Shared>,
    Path(case): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let (who, case) = match investigator_change(&ui, &headers, &f.csrf, &case) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (ui2, case2, analyst) = (ui.clone(), case.clone(), who.analyst.clone());
    let rt = tokio::runtime::Handle::current();
    let done = blocking(move || {
        ui2.with_recorder(&analyst, |app, recorder| {
            rt.block_on(crate::engine::verify::verify_case(app, recorder, &case2))
                .map_err(|e| error_chain(&e))
        })
    })
    .await;
    match done {
        Ok(v) => {
            tracing::info!(analyst = %who.analyst, %case, ok = v.verification.ok(), "case verified");
            page(evidence_pages::verification(&who, &case, &v), None)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&who), &e),
    }
}
