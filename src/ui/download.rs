//! An artefact's download. Up to `check_first` bytes it is read whole and
//! both digests checked before the first byte leaves. A larger one is
//! streamed: the raw bytes leave as they
//! decode from the store, a few MiB in flight at most, and both digests are
//! checked as they pass. The ledger entry (`exported`) is written once the
//! last byte has matched, before the transfer is allowed to end; a mismatch,
//! or an entry that cannot be written, cuts the transfer short instead, so
//! the client is left with an incomplete download, never with a complete
//! copy of altered bytes or of bytes nobody recorded taking.

use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::auth::Who;
use super::{Ui, error_chain};
use crate::evidence::model::Artefact;
use crate::ids::CaseId;
use crate::store::EvidenceStore;

/// Bytes per message, and messages in flight.
const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// Writes the decoded bytes into the response's channel, a chunk at a time;
/// blocking (it runs on the store reader's thread).
struct ToClient {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl Write for ToClient {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx.blocking_send(Ok(Bytes::from(full))).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the client abandoned the download",
                )
            })?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The response headers of a download of `a` (`length` when known first).
fn headers(a: &Artefact, length: Option<u64>) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    let mut put = |k: header::HeaderName, v: String| {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put(header::CONTENT_TYPE, "application/octet-stream".into());
    put(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{}.raw\"", a.id),
    );
    if let Some(n) = length {
        put(header::CONTENT_LENGTH, n.to_string());
    }
    put(
        header::HeaderName::from_static("x-custody-raw-sha256"),
        a.raw.sha256.clone(),
    );
    h
}

/// Writes the download's ledger entry naming the analyst; off the async threads.
async fn record(
    ui: &Arc<Ui>,
    analyst: &str,
    case: &CaseId,
    a: &Artefact,
    streamed: bool,
) -> Result<u64, String> {
    let (ui, case, analyst, evidence) = (
        ui.clone(),
        case.clone(),
        analyst.to_owned(),
        a.evidence_ref(),
    );
    let mut detail = serde_json::json!({
        "via": "workspace download",
        "checked": ["raw_sha256", "stored_sha256"],
    });
    if let (true, Some(d)) = (streamed, detail.as_object_mut()) {
        d.insert("streamed".into(), true.into());
    }
    tokio::task::spawn_blocking(move || {
        ui.record(
            &analyst,
            &case,
            crate::ledger::entry::Action::Exported,
            Some(evidence),
            detail,
        )
    })
    .await
    .unwrap_or_else(|e| Err(format!("the work stopped: {e}")))
}

/// The download of `a`: whole and checked when small, else streamed.
pub async fn send(
    ui: Arc<Ui>,
    who: Who,
    case: CaseId,
    a: Artefact,
    store: Arc<dyn EvidenceStore>,
) -> Result<Response, String> {
    if a.raw.size > ui.check_first {
        return Ok(stream(ui, who, case, a, store));
    }
    // Both digests are checked on the way out: what leaves is what was recorded.
    let bytes = crate::evidence::case::read_verified(store.as_ref(), &a)
        .await
        .map_err(|e| {
            tracing::error!(%case, artefact = %a.id, "a download failed its digests");
            error_chain(&e)
        })?;
    record(&ui, &who.analyst, &case, &a, false).await?;
    tracing::info!(analyst = %who.analyst, %case, artefact = %a.id, "artefact downloaded");
    Ok((headers(&a, None), bytes).into_response())
}

fn stream(
    ui: Arc<Ui>,
    who: Who,
    case: CaseId,
    a: Artefact,
    store: Arc<dyn EvidenceStore>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(IN_FLIGHT);
    let headers = headers(&a, Some(a.raw.size));
    tokio::spawn(async move {
        let out = ToClient {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let cut = |why: String| async {
            tracing::error!(analyst = %who.analyst, %case, artefact = %a.id, reason = %why, "a streamed download was cut short");
            let _ = tx.send(Err(std::io::Error::other(why))).await;
        };
        let rest = match crate::evidence::case::stream_verified(store.as_ref(), &a, out).await {
            Ok(w) => w.buf,
            Err(e) => return cut(error_chain(&e)).await,
        };
        // The last bytes wait for the entry: the transfer ends only once
        // the ledger names who took the copy.
        if let Err(e) = record(&ui, &who.analyst, &case, &a, true).await {
            return cut(format!("the download's ledger entry: {e}")).await;
        }
        if tx.send(Ok(Bytes::from(rest))).await.is_ok() {
            tracing::info!(analyst = %who.analyst, %case, artefact = %a.id, "artefact downloaded (streamed)");
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (headers, Body::from_stream(body)).into_response()
}
