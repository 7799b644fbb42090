//! `custody acquire lambda`: a Lambda function as AWS holds it, before the
//! next deployment replaces it.
//!
//! - One `cloud_resource` artefact: every answer as AWS sent it
//!   ([`RawBody`]): the function and its configuration (environment
//!   variables included: they are evidence, kept in the artefact, never
//!   logged), resource policy, versions, aliases, function URL configs,
//!   event source mappings, reserved concurrency, and each layer version.
//!   The presigned code locations are cut out: they are credentials.
//! - The code (a zip) and each layer's, downloaded and checked against the
//!   `CodeSha256` Lambda reports: bytes that do not match are refused,
//!   recorded `not_acquired` with both digests, and never stored.
//! - An image-based function: its image manifest from ECR by digest,
//!   checked against that digest.

use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{CollectError, Collected, Collector};
use crate::aws::raw::{Answers, RawBody, redact};
use crate::aws::{ApiError, ApiErrorKind};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire};
use crate::evidence::{ArtefactKind, Source};
use crate::ids::CaseId;
use crate::ledger::entry::Action;

/// Largest code download: Lambda's own limit is 250 MiB unzipped.
const MAX_CODE: u64 = 512 << 20;

#[derive(Debug, Clone)]
pub struct LambdaCollector {
    pub lambda: aws_sdk_lambda::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub http: reqwest::Client,
    /// A name or an ARN.
    pub function: String,
    pub qualifier: Option<String>,
    pub region: Option<String>,
    /// Where downloads wait for their check before they are stored.
    pub spool: PathBuf,
    /// The function's log group is read for this window.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub since: time::OffsetDateTime,
    pub until: time::OffsetDateTime,
}

/// A zip to download: what it is, where, and the digest Lambda reports.
struct Zip<'a> {
    what: &'a str,
    url: Option<&'a str>,
    want: Option<&'a str>,
}

fn cloud(e: ApiError) -> CollectError {
    CollectError::Cloud(Box::new(e))
}

/// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO@sha256:HEX`: the registry
/// (account), repository and digest; `None` for any other shape.
pub fn image_uri(uri: &str) -> Option<(String, String, String)> {
    let (repo, digest) = uri.split_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (host, repo) = repo.split_once('/')?;
    let account = host.split('.').next()?;
    if account.is_empty() || repo.is_empty() {
        return None;
    }
    Some((account.to_owned(), repo.to_owned(), digest.to_owned()))
}

/// Lambda's `CodeSha256`: the base64 of the SHA-256 of the zip.
pub fn code_sha256(bytes_digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes_digest)
}

impl LambdaCollector {
    fn source(&self, arn: &str, path: String) -> Source {
        Source {
            resource: arn.to_owned(),
            region: self.region.clone(),
            path: Some(path),
            ..Source::default()
        }
    }

    /// Downloads `url` into the spool, hashing; `Ok(Err(got))` when the
    /// bytes are not what `want` (base64 SHA-256) says.
    async fn download(&self, url: &str, want: &str) -> Result<Result<PathBuf, String>, String> {
        tokio::fs::create_dir_all(&self.spool)
            .await
            .map_err(|e| format!("spool {}: {e}", self.spool.display()))?;
        let path = self.spool.join(format!("lambda-{}", uuid::Uuid::new_v4()));
        // The URL is a credential: errors name the host only.
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("download from {host}: {}", e.without_url()))?;
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut hash = Sha256::new();
        let mut n = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(format!("download from {host}: {}", e.without_url()));
                }
            };
            n += chunk.len() as u64;
            if n > MAX_CODE {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(format!("download from {host}: more than {MAX_CODE} bytes"));
            }
            hash.update(&chunk);
            if let Err(e) = file.write_all(&chunk).await {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(format!("{}: {e}", path.display()));
            }
        }
        file.flush().await.map_err(|e| e.to_string())?;
        let got = code_sha256(&hash.finalize());
        if got == want {
            Ok(Ok(path))
        } else {
            let _ = tokio::fs::remove_file(&path).await;
            Ok(Err(got))
        }
    }

    /// Takes one zip (the function's code or a layer's), checked first.
    async fn code(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        arn: &str,
        zip: Zip<'_>,
        out: &mut Collected,
    ) {
        let Zip { what, url, want } = zip;
        let (Some(url), Some(want)) = (url, want) else {
            out.failures.push(format!(
                "{what} of {arn}: Lambda gave no location or CodeSha256"
            ));
            return;
        };
        let fail = |out: &mut Collected, detail: serde_json::Value, msg: String| {
            self.refuse(ctx, case, arn, what, detail);
            out.failures.push(msg);
        };
        match self.download(url, want).await {
            Ok(Ok(path)) => {
                let file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        out.failures.push(format!("{what} of {arn}: {e}"));
                        return;
                    }
                };
                let size = file.metadata().map(|m| m.len()).ok();
                let r = acquire(
                    ctx,
                    AcquireRequest {
                        case: case.clone(),
                        kind: ArtefactKind::FunctionCode,
                        source: self.source(arn, what.to_owned()),
                        reader: Box::new(file),
                        size_hint: size,
                        notes: vec![format!("matches the CodeSha256 Lambda reports: {want}")],
                    },
                )
                .await;
                let _ = std::fs::remove_file(&path);
                match r {
                    Ok(a) => out.artefacts.push(a),
                    Err(e) => out
                        .failures
                        .push(format!("{what} of {arn}: {}", crate::error_chain(&e))),
                }
            }
            Ok(Err(got)) => {
                tracing::warn!(function = %arn, what, "code refused: its digest is not Lambda's");
                fail(
                    out,
                    serde_json::json!({
                        "what": what,
                        "reason": "the downloaded bytes do not match the CodeSha256 Lambda reports",
                        "code_sha256_reported": want,
                        "code_sha256_downloaded": got,
                    }),
                    format!(
                        "{what} of {arn} not acquired: Lambda reports CodeSha256 {want}, the downloaded bytes hash to {got}"
                    ),
                );
            }
            Err(e) => fail(
                out,
                serde_json::json!({ "what": what, "reason": e }),
                format!("{what} of {arn} not acquired: {e}"),
            ),
        }
    }

    /// Records `what` as not acquired, with `detail` saying why.
    fn refuse(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        arn: &str,
        what: &str,
        detail: serde_json::Value,
    ) {
        if let Some(rec) = &ctx.recorder
            && let Err(e) = rec.record(
                Some(case),
                Action::NotAcquired,
                None,
                Some(self.source(arn, what.to_owned())),
                Some(detail),
            )
        {
            tracing::error!(error = %crate::error_chain(&e), "cannot record a refusal");
        }
    }

    /// The function's log group for the window. A group that does not
    /// exist (a function that never ran or logs elsewhere) is recorded as
    /// not acquired with that reason, and is no failure of the acquisition.
    async fn log_group(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        arn: &str,
        group: &str,
        out: &mut Collected,
    ) {
        #[cfg(not(feature = "timeline"))]
        {
            let _ = (ctx, case);
            out.failures.push(format!(
                "log group {group} of {arn}: this build has no timeline feature to read it"
            ));
        }
        #[cfg(feature = "timeline")]
        self.log_group_timeline(ctx, case, arn, group, out).await;
    }

    #[cfg(feature = "timeline")]
    async fn log_group_timeline(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        arn: &str,
        group: &str,
        out: &mut Collected,
    ) {
        let logs = super::logs::CloudWatchLogs {
            logs: self.logs.clone(),
            group: group.to_owned(),
            region: self.region.clone(),
            format: crate::timeline::parse::Format::CloudwatchLogs,
            since: self.since,
            until: self.until,
            streams: Vec::new(),
            stream_prefix: None,
        };
        match logs.collect(ctx, case).await {
            Ok(c) => {
                out.artefacts.extend(c.artefacts);
                out.failures.extend(c.failures);
            }
            Err(e) => {
                let reason = crate::error_chain(&e);
                if reason.contains("ResourceNotFound") {
                    tracing::warn!(function = %arn, group, "the function's log group does not exist");
                    if let Some(rec) = &ctx.recorder
                        && let Err(e) = rec.record(
                            Some(case),
                            Action::NotAcquired,
                            None,
                            Some(self.source(arn, format!("log group {group}"))),
                            Some(serde_json::json!({
                                "what": "log group",
                                "reason": format!("log group {group} does not exist"),
                            })),
                        )
                    {
                        tracing::error!(error = %crate::error_chain(&e), "cannot record a missing log group");
                    }
                } else {
                    out.failures
                        .push(format!("log group {group} of {arn}: {reason}"));
                }
            }
        }
    }

    /// An image-based function's manifest, from ECR by digest.
    async fn manifest(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
        arn: &str,
        resolved: &str,
        out: &mut Collected,
    ) {
        let Some((registry, repo, digest)) = image_uri(resolved) else {
            out.failures.push(format!(
                "image of {arn}: {resolved:?} is not REGISTRY/REPO@sha256:DIGEST"
            ));
            return;
        };
        let r = self
            .ecr
            .batch_get_image()
            .registry_id(&registry)
            .repository_name(&repo)
            .image_ids(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_digest(&digest)
                    .build(),
            )
            .send()
            .await;
        let manifest = match r {
            Ok(o) => o
                .images()
                .first()
                .and_then(|i| i.image_manifest())
                .map(str::to_owned),
            Err(e) => {
                out.failures.push(format!(
                    "image manifest of {arn}: {}",
                    ApiError::sdk("read the image manifest of", resolved, e).message
                ));
                return;
            }
        };
        let Some(manifest) = manifest else {
            out.failures.push(format!(
                "image manifest of {arn}: ECR has no image {digest} in {repo}"
            ));
            return;
        };
        let got = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(manifest.as_bytes()))
        );
        if got != digest {
            tracing::warn!(function = %arn, "image manifest refused: its digest is not the one the function names");
            self.refuse(
                ctx,
                case,
                arn,
                "image manifest",
                serde_json::json!({
                    "what": "image manifest",
                    "reason": "ECR's manifest does not hash to the digest the function names",
                    "digest_named": digest,
                    "digest_of_manifest": got,
                }),
            );
            out.failures.push(format!(
                "image manifest of {arn} not acquired: the function names {digest}, ECR's manifest hashes to {got}"
            ));
            return;
        }
        match acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: ArtefactKind::CloudResource,
                source: self.source(arn, format!("image manifest {resolved}")),
                reader: Box::new(std::io::Cursor::new(manifest.into_bytes())),
                size_hint: None,
                notes: vec![format!("matches the digest the function names: {digest}")],
            },
        )
        .await
        {
            Ok(a) => out.artefacts.push(a),
            Err(e) => out.failures.push(format!(
                "image manifest of {arn}: {}",
                crate::error_chain(&e)
            )),
        }
    }
}

#[async_trait]
impl Collector for LambdaCollector {
    fn describe(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("Lambda function {}:{q}", self.function),
            None => format!("Lambda function {}", self.function),
        }
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let l = &self.lambda;
        let f = self.function.as_str();
        let q = self.qualifier.clone();
        let mut answers = Answers::default();
        let raw = RawBody::default();
        let got = l
            .get_function()
            .function_name(f)
            .set_qualifier(q.clone())
            .customize()
            .interceptor(raw.clone())
            .send()
            .await;
        let function = match got {
            Ok(o) => {
                let mut body = raw.json();
                redact(&mut body);
                answers.doc.insert("GetFunction".into(), body);
                o
            }
            Err(e) => {
                let e = ApiError::sdk("read the Lambda function", f, e);
                return Err(if e.kind == ApiErrorKind::NotFound {
                    CollectError::Container(format!(
                        "Lambda function {f} does not exist (deleted, or another account or region): {}",
                        e.message
                    ))
                } else {
                    cloud(e)
                });
            }
        };
        let config = function.configuration();
        let arn = config
            .and_then(|c| c.function_arn())
            .unwrap_or(f)
            .to_owned();
        macro_rules! call {
            ($key:literal, $b:expr) => {{
                let raw = RawBody::default();
                let r = $b.customize().interceptor(raw.clone()).send().await;
                answers.keep($key, &raw, r)
            }};
        }
        call!(
            "GetPolicy",
            l.get_policy().function_name(f).set_qualifier(q.clone())
        );
        call!(
            "GetFunctionConcurrency",
            l.get_function_concurrency().function_name(f)
        );
        call!(
            "ListVersionsByFunction",
            l.list_versions_by_function()
                .function_name(f)
                .max_items(10_000)
        );
        call!(
            "ListAliases",
            l.list_aliases().function_name(f).max_items(10_000)
        );
        call!(
            "ListFunctionUrlConfigs",
            l.list_function_url_configs().function_name(f)
        );
        call!(
            "GetFunctionUrlConfig",
            l.get_function_url_config()
                .function_name(f)
                .set_qualifier(q.clone())
        );
        call!(
            "ListEventSourceMappings",
            l.list_event_source_mappings()
                .function_name(f)
                .max_items(10_000)
        );
        call!(
            "GetFunctionCodeSigningConfig",
            l.get_function_code_signing_config().function_name(f)
        );
        let layers: Vec<String> = config
            .map(|c| {
                c.layers()
                    .iter()
                    .filter_map(|x| x.arn().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut layer_code = Vec::new();
        let mut layer_docs = Vec::new();
        for layer in &layers {
            let raw = RawBody::default();
            match l
                .get_layer_version_by_arn()
                .arn(layer)
                .customize()
                .interceptor(raw.clone())
                .send()
                .await
            {
                Ok(o) => {
                    let mut body = raw.json();
                    redact(&mut body);
                    layer_docs.push(body);
                    if let Some(c) = o.content() {
                        layer_code.push((
                            layer.clone(),
                            c.location().map(str::to_owned),
                            c.code_sha256().map(str::to_owned),
                        ));
                    }
                }
                Err(e) => layer_docs.push(serde_json::json!({
                    "LayerVersionArn": layer,
                    "error": ApiError::sdk("read the layer", layer, e).message,
                })),
            }
        }
        answers
            .doc
            .insert("GetLayerVersionByArn".into(), layer_docs.into());
        let mut out = Collected::default();
        let json = serde_json::to_vec_pretty(&serde_json::json!({
            "format": "custody-lambda/1",
            "function": arn,
            "qualifier": q,
            "answers": answers.doc,
        }))
        .map_err(|e| CollectError::Container(e.to_string()))?;
        out.artefacts.push(
            acquire(
                ctx,
                AcquireRequest {
                    case: case.clone(),
                    kind: ArtefactKind::CloudResource,
                    source: self.source(&arn, "Lambda function and configuration".into()),
                    reader: Box::new(std::io::Cursor::new(json)),
                    size_hint: None,
                    notes: answers.notes,
                },
            )
            .await?,
        );
        let code = function.code();
        let sha = config.and_then(|c| c.code_sha256());
        // The resolved URI names the digest even when the function names a tag.
        let image = code.and_then(|c| {
            [c.resolved_image_uri(), c.image_uri()]
                .into_iter()
                .flatten()
                .find(|u| image_uri(u).is_some())
                .or(c.image_uri())
        });
        match image {
            Some(image) if code.and_then(|c| c.location()).is_none() => {
                self.manifest(ctx, case, &arn, image, &mut out).await;
            }
            _ => {
                let zip = Zip {
                    what: "code",
                    url: code.and_then(|c| c.location()),
                    want: sha,
                };
                self.code(ctx, case, &arn, zip, &mut out).await;
            }
        }
        let group = config
            .and_then(|c| c.logging_config())
            .and_then(|l| l.log_group())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let name = config.and_then(|c| c.function_name()).unwrap_or(f);
                format!("/aws/lambda/{name}")
            });
        self.log_group(ctx, case, &arn, &group, &mut out).await;
        for (layer, url, sha) in &layer_code {
            let what = format!("layer {layer}");
            let zip = Zip {
                what: &what,
                url: url.as_deref(),
                want: sha.as_deref(),
            };
            self.code(ctx, case, &arn, zip, &mut out).await;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2_image_uris_only_in_their_one_shape() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            image_uri(&format!(
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app@{d}"
            )),
            Some(("123456789012".into(), "team/app".into(), d.clone()))
        );
        for bad in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest".to_owned(),
            format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256@{d}"),
            "host/app@sha256:abc".to_owned(),
            format!("noslash@{d}"),
        ] {
            assert_eq!(image_uri(&bad), None, "{bad}");
        }
    }

    #[test]
    fn code_sha256_is_base64_of_the_digest() {
        // Lambda's CodeSha256 of an empty zip body is the base64 of SHA-256("").
        assert_eq!(
            code_sha256(&Sha256::digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
