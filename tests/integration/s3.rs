//! The test rig reaches moto's S3 through the real AWS SDK.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

use crate::common::{emulator, mixed_bytes};

pub fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "custody-tests",
        ))
        .force_path_style(true)
        // moto answers unimplemented calls with HTTP 500; retries would only slow the failure.
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn s3_put_and_get_through_the_sdk() {
    let Some(endpoint) = emulator("CUSTODY_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&endpoint);
    let bucket = format!("rig-{}", uuid::Uuid::new_v4().simple());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let body = mixed_bytes(3 << 20, 11);
    s3.put_object()
        .bucket(&bucket)
        .key("cases/rig/object")
        .body(ByteStream::from(body.clone()))
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("put");
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("cases/rig/object")
        .send()
        .await
        .expect("get");
    let bytes = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(
        custody::evidence::sha256_hex(&bytes),
        custody::evidence::sha256_hex(&body)
    );
    let missing = s3.get_object().bucket(&bucket).key("nope").send().await;
    assert!(missing.is_err(), "a missing key must be an error");
}
