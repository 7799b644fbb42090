//! A large artefact's download, streamed: the raw bytes leave as they
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

pub fn stream(
    ui: Arc<Ui>,
    who: Who,
    case: CaseId,
    a: Artefact,
    store: Arc<dyn EvidenceStore>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(IN_FLIGHT);
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.raw\"", a.id),
        ),
        (header::CONTENT_LENGTH, a.raw.size.to_string()),
        (
            header::HeaderName::from_static("x-custody-raw-sha256"),
            a.raw.sha256.clone(),
        ),
    ];
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
        let (ui2, case2, analyst, evidence) = (
            ui.clone(),
            case.clone(),
            who.analyst.clone(),
            a.evidence_ref(),
        );
        let recorded = tokio::task::spawn_blocking(move || {
            ui2.record(
                &analyst,
                &case2,
                crate::ledger::entry::Action::Exported,
                Some(evidence),
                serde_json::json!({
                    "via": "workspace download",
                    "checked": ["raw_sha256", "stored_sha256"],
                    "streamed": true,
                }),
            )
        })
        .await
        .unwrap_or_else(|e| Err(format!("the work stopped: {e}")));
        if let Err(e) = recorded {
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
