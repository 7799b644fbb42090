//! The stores' sections of custody.toml. Always built, whichever backends
//! this build has, so a configuration reads the same everywhere.

/// `[s3]` in custody.toml: how evidence is written to S3.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    /// Retention mode on buckets with Object Lock: `compliance`, `governance` or `off`.
    pub object_lock: String,
    /// Days each object is retained under Object Lock.
    pub retention_days: u32,
    /// SSE-KMS key id or ARN for evidence objects.
    pub kms_key: Option<String>,
    /// Refuse to write unless the bucket is write-once (versioning and Object Lock).
    pub require_worm: bool,
    /// Attempts per S3 request, the first included: throttling and transient
    /// errors are retried with exponential backoff and jitter; access errors never.
    pub max_attempts: u32,
}

impl Default for S3Settings {
    fn default() -> Self {
        // COMPLIANCE for a year: no one, root included, can shorten it or delete the evidence meanwhile.
        Self {
            object_lock: "compliance".into(),
            retention_days: 365,
            kms_key: None,
            require_worm: false,
            max_attempts: 5,
        }
    }
}

/// `[azure]` in custody.toml: how evidence is written to Azure Blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureSettings {
    /// Refuse to write unless the container's immutability (a time-based
    /// retention policy or a legal hold) is verified.
    pub require_worm: bool,
}
