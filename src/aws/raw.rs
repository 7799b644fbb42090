//! [`RawBody`]: the body of an AWS answer as the service sent it, kept as
//! evidence. The SDK's types hold what the SDK understood; the bytes hold
//! what AWS said, fields the SDK does not know included.

use std::sync::{Arc, Mutex};

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
