//! Shared Key signing against the Azurite blob emulator.
//!
//! Needs `CUSTODY_TEST_AZURE_BLOB_ENDPOINT=http://127.0.0.1:PORT/devstoreaccount1`
//! (an Azurite blob service started with `--skipApiVersionCheck`, never
//! `--loose`; see the README's test rig). Without it the tests print why and pass,
//! except under `CI=true`, where a missing emulator is a failure.

use azure_core::http::{RequestContent, StatusCode};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::{BlockBlobClientStageBlockOptions, BlockLookupList};
use custody::store::azure_auth::{SharedKeyCredential, blob_container_client};
use md5::{Digest, Md5};

const ENDPOINT_VAR: &str = "CUSTODY_TEST_AZURE_BLOB_ENDPOINT";

/// The Azurite blob endpoint, or `None` (after saying why) when it is not
/// configured outside CI.
fn azurite_endpoint() -> Option<String> {
    crate::common::emulator(ENDPOINT_VAR)
}

/// A container name no other test run will use.
fn unique_container(tag: &str) -> String {
    format!("custody-{tag}-{}", uuid::Uuid::new_v4().simple())
}

fn md5_of(data: &[u8]) -> Vec<u8> {
    Md5::digest(data).to_vec()
}

fn stage_options(md5: Vec<u8>) -> BlockBlobClientStageBlockOptions<'static> {
    BlockBlobClientStageBlockOptions {
        transactional_content_md5: Some(md5),
        ..Default::default()
    }
}

async fn created_container(
    endpoint: &str,
    tag: &str,
) -> Result<BlobContainerClient, Box<dyn std::error::Error>> {
    let container = unique_container(tag);
    let client = blob_container_client(endpoint, &container, SharedKeyCredential::azurite())?;
    client.create(None).await?;
    Ok(client)
}

#[tokio::test]
async fn azurite_staged_blocks_round_trip_and_wrong_key_is_refused() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let container = created_container(&endpoint, "roundtrip")
        .await
        .expect("create container");
    let blob = container.blob_client("cases/c1/disk.img");
    let block_blob = blob.block_blob_client();

    // Three blocks of different sizes and contents, each with its own MD5.
    let blocks: Vec<Vec<u8>> = vec![
        (0..100_000u32).map(|i| (i % 251) as u8).collect(),
        b"second block".to_vec(),
        vec![0xA5; 4096],
    ];
    let mut ids = Vec::new();
    for (i, data) in blocks.iter().enumerate() {
        // Block ids must all have the same length before base64.
        let id = format!("block-{i:06}").into_bytes();
        block_blob
            .stage_block(
                &id,
                data.len() as u64,
                RequestContent::from(data.clone()),
                Some(stage_options(md5_of(data))),
            )
            .await
            .unwrap_or_else(|e| panic!("stage block {i}: {e}"));
        ids.push(id);
    }
    let list = BlockLookupList {
        latest: Some(ids),
        ..Default::default()
    };
    block_blob
        .commit_block_list(list.try_into().expect("block list body"), None)
        .await
        .expect("put block list");

    let expected: Vec<u8> = blocks.concat();
    let got = blob
        .download(None)
        .await
        .expect("download")
        .body
        .collect()
        .await
        .expect("download body");
    assert_eq!(got.len(), expected.len());
    assert!(
        got.as_ref() == expected.as_slice(),
        "downloaded bytes differ"
    );

    // The same account with a different (well-formed) key must be refused.
    let wrong_key =
        SharedKeyCredential::new("devstoreaccount1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .expect("well-formed wrong key");
    let container_name = container
        .url()
        .path_segments()
        .and_then(|mut s| s.next_back())
        .expect("container name")
        .to_owned();
    let intruder = blob_container_client(&endpoint, &container_name, wrong_key).expect("client");
    let err = intruder
        .blob_client("cases/c1/disk.img")
        .get_properties(None)
        .await
        .expect_err("a wrong key must be refused");
    assert_eq!(err.http_status(), Some(StatusCode::Forbidden), "{err}");
    let err = intruder
        .get_properties(None)
        .await
        .expect_err("a wrong key must be refused");
    assert_eq!(err.http_status(), Some(StatusCode::Forbidden), "{err}");

    container.delete(None).await.expect("delete container");
}

#[tokio::test]
async fn azurite_rejects_block_with_wrong_content_md5() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let container = created_container(&endpoint, "badmd5")
        .await
        .expect("create container");
    let block_blob = container.blob_client("bad-md5.bin").block_blob_client();

    let data = b"the bytes that were actually sent".to_vec();
    let wrong_md5 = md5_of(b"the bytes the sender meant to send");
    let err = block_blob
        .stage_block(
            b"block-000000",
            data.len() as u64,
            RequestContent::from(data.clone()),
            Some(stage_options(wrong_md5)),
        )
        .await
        .expect_err("a block with a wrong Content-MD5 must be rejected");
    // Azure answers 400 `Md5Mismatch`; Azurite 3.35 answers 400
    // `InvalidOperation` "Provided contentMD5 doesn't match." for put block.
    assert_eq!(err.http_status(), Some(StatusCode::BadRequest), "{err}");
    assert!(err.to_string().to_lowercase().contains("md5"), "{err}");

    // The right MD5 for the same bytes is accepted, so the refusal above was
    // about the checksum and not about the request.
    block_blob
        .stage_block(
            b"block-000000",
            data.len() as u64,
            RequestContent::from(data.clone()),
            Some(stage_options(md5_of(&data))),
        )
        .await
        .expect("the correct MD5 is accepted");

    container.delete(None).await.expect("delete container");
}
