//! [`RawBody`]: the body of an AWS answer as the service sent it, kept as
//! evidence. The SDK's types hold what the SDK understood; the bytes hold
//! what AWS said, fields the SDK does not know included.

use std::sync::{Arc, Mutex};

use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};

use super::{ApiError, ApiErrorKind};

use aws_sdk_lambda::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_lambda::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_lambda::error::BoxError;

/// An interceptor for one call: `client.op().customize().interceptor(raw.clone())`.
#[derive(Debug, Clone, Default)]
pub struct RawBody(Arc<Mutex<Option<Vec<u8>>>>);

impl RawBody {
    /// The body, once the call returned (successfully or not).
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|mut b| b.take())
    }

    /// The body as JSON, or its text as a string when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        match self.take() {
            Some(b) => serde_json::from_slice(&b)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&b).into())),
            None => serde_json::Value::Null,
        }
    }
}

impl Intercept for RawBody {
    fn name(&self) -> &'static str {
        "custody-raw-body"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(b) = context.response().body().bytes()
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(b.to_vec());
        }
        Ok(())
    }
}

/// Cuts presigned URLs (`Location` strings) out of an answer: they grant
/// access to what they name.
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "Location" && val.is_string() {
                    *val = "(presigned URL withheld)".into();
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A resource document made of API answers, each under its operation's
/// name, as the service sent it.
#[derive(Debug, Default)]
pub struct Answers {
    pub doc: serde_json::Map<String, serde_json::Value>,
    /// Calls that failed for another reason than a missing resource.
    pub notes: Vec<String>,
}

impl Answers {
    /// Keeps one call's answer (redacted). A resource that does not exist
    /// (no policy, no URL) is `null`; any other failure is kept in the
    /// document and named in `notes`.
    pub fn keep<T, E, R>(
        &mut self,
        key: &str,
        raw: &RawBody,
        r: Result<T, SdkError<E, R>>,
    ) -> Option<T>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match r {
            Ok(v) => {
                let mut body = raw.json();
                redact(&mut body);
                self.doc.insert(key.to_owned(), body);
                Some(v)
            }
            Err(e) => {
                let e = ApiError::sdk("read", key, e);
                if e.kind == ApiErrorKind::NotFound {
                    self.doc.insert(key.to_owned(), serde_json::Value::Null);
                } else {
                    self.notes.push(format!("{key}: {}", e.message));
                    self.doc
                        .insert(key.to_owned(), serde_json::json!({ "error": e.message }));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_locations_are_cut_out_everywhere() {
        let mut v = serde_json::json!({
            "Code": {"Location": "https://x.s3.amazonaws.com/f?X-Amz-Signature=abc", "RepositoryType": "S3"},
            "Content": [{"Location": "https://y/?sig"}],
            "Location": 5,
        });
        redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("X-Amz-Signature") && !s.contains("?sig"), "{s}");
        assert_eq!(v["Location"], 5, "only strings are URLs");
    }
}
