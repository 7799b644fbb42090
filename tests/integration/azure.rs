//! Shared Key signing against the Azurite blob emulator.
//!
//! Needs `CUSTODY_TEST_AZURE_BLOB_ENDPOINT=http://127.0.0.1:PORT/devstoreaccount1`
//! (an Azurite blob service started with `--skipApiVersionCheck`, never
//! `--loose`; see docs/testing.md). Without it the tests print why and pass,
//! except under `CI=true`, where a missing emulator is a failure.

use azure_core::http::{RequestContent, StatusCode};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::{BlockBlobClientStageBlockOptions, BlockLookupList};
use custody::store::azure_auth::{SharedKeyCredential, blob_container_client};
use md5::{Digest, Md5};

const ENDPOINT_VAR: &str = "CUSTODY_TEST_AZURE_BLOB_ENDPOINT";

/// The Azurite blob endpoint, or `None` (after saying why) when it is not
/// configured outside CI.
pub fn azurite_endpoint() -> Option<String> {
    crate::common::emulator(ENDPOINT_VAR)
}

/// A container name no other test run will use.
pub fn unique_container(tag: &str) -> String {
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

// ---- AzureBlobStore against Azurite ----

use custody::store::azure_blob::AzureBlobStore;
use custody::store::{EvidenceStore, EvidenceStream, ObjectKey, StoreError};

/// A store on a fresh container, under prefix `evidence/run`.
async fn azure_store(endpoint: &str, tag: &str) -> (AzureBlobStore, BlobContainerClient) {
    let container = unique_container(tag);
    let admin = blob_container_client(endpoint, &container, SharedKeyCredential::azurite())
        .expect("admin client");
    admin.create(None).await.expect("create container");
    let client = blob_container_client(endpoint, &container, SharedKeyCredential::azurite())
        .expect("store client");
    let store = AzureBlobStore::new(client, "devstoreaccount1", &container, "evidence/run");
    assert_eq!(
        store.location(),
        format!("az://devstoreaccount1/{container}/evidence/run")
    );
    (store, admin)
}

fn patterned(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

fn chunked(data: &[u8], size: usize) -> EvidenceStream {
    let parts: Vec<std::io::Result<bytes::Bytes>> = data
        .chunks(size)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(parts))
}

#[tokio::test]
async fn azure_store_round_trip_in_several_blocks() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let (store, admin) = azure_store(&endpoint, "store").await;
    let data = patterned(17 << 20, 7);
    let key = ObjectKey::new("cases/c1/artefacts/disk.img.zst").unwrap();

    let stored = store.put(&key, chunked(&data, 1 << 20)).await.expect("put");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.key, key);
    assert!(stored.etag.is_some(), "{stored:?}");

    // Five blocks (4 × 4 MiB + 1 MiB) were committed, with metadata.
    let blob = admin.blob_client("evidence/run/cases/c1/artefacts/disk.img.zst");
    let props = blob.get_properties(None).await.expect("properties");
    use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders as _;
    let meta = props.metadata().expect("metadata");
    assert_eq!(
        meta.get("custody_key").map(String::as_str),
        Some(key.as_str()),
        "{meta:?}"
    );
    let blocks = blob
        .block_blob_client()
        .get_block_list(azure_storage_blob::models::BlockListType::Committed, None)
        .await
        .expect("block list")
        .into_model()
        .expect("block list body");
    assert_eq!(
        blocks.committed_blocks.map(|b| b.len()),
        Some(5),
        "17 MiB in 4 MiB blocks"
    );

    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut store.get(&key).await.expect("get"), &mut back)
        .await
        .expect("read");
    assert_eq!(
        custody::evidence::sha256_hex(&back),
        custody::evidence::sha256_hex(&data)
    );

    let off = (4 << 20) - 10;
    let range = store.get_range(&key, off, 100).await.expect("range");
    assert_eq!(range.as_ref(), &data[off as usize..off as usize + 100]);
    let tail = store
        .get_range(&key, data.len() as u64 - 5, 100)
        .await
        .expect("tail range");
    assert_eq!(tail.as_ref(), &data[data.len() - 5..]);
    assert_eq!(store.size(&key).await.expect("size"), data.len() as u64);

    let small = ObjectKey::new("cases/c1/manifest.json").unwrap();
    store
        .put_bytes(&small, bytes::Bytes::from_static(b"{}"))
        .await
        .expect("small put");
    assert_eq!(
        store.list("cases/c1/").await.expect("list"),
        vec![key.clone(), small.clone()]
    );
    assert_eq!(store.list("").await.expect("list all").len(), 2);

    let err = store
        .put(&key, chunked(b"other bytes", 4))
        .await
        .expect_err("a second put must be refused");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(store.size(&key).await.expect("size"), data.len() as u64);

    // An empty object: committed from an empty block list, read back empty.
    let empty = ObjectKey::new("cases/c2/empty").unwrap();
    let stored = store
        .put(&empty, Box::pin(futures::stream::empty()))
        .await
        .expect("empty put");
    assert_eq!(stored.size, 0);
    assert_eq!(store.size(&empty).await.expect("size"), 0);
    assert!(store.get_bytes(&empty).await.expect("get empty").is_empty());
    assert!(
        store
            .get_range(&empty, 0, 10)
            .await
            .expect("range of empty")
            .is_empty()
    );

    let missing = ObjectKey::new("cases/c1/nope").unwrap();
    assert!(matches!(
        store.size(&missing).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&missing).await,
        Err(StoreError::NotFound { .. })
    ));

    admin.delete(None).await.expect("delete container");
}

#[tokio::test]
async fn azure_store_failed_source_commits_nothing() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let (store, admin) = azure_store(&endpoint, "srcfail").await;
    let data = patterned(10 << 20, 3);
    let body = futures::StreamExt::chain(
        chunked(&data, 1 << 20),
        futures::stream::once(async { Err(std::io::Error::other("disk died")) }),
    );
    let key = ObjectKey::new("cases/c/artefacts/x.zst").unwrap();
    let err = store
        .put(&key, Box::pin(body))
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::SourceFailed { .. }), "{err}");
    assert!(store.list("").await.expect("list").is_empty());
    assert!(matches!(
        store.size(&key).await,
        Err(StoreError::NotFound { .. })
    ));
    admin.delete(None).await.expect("delete container");
}

#[tokio::test]
async fn azure_store_preflight_on_azurite() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let (store, admin) = azure_store(&endpoint, "preflight").await;
    let p = store.preflight().await;
    assert!(p.exists, "{p:?}");
    assert!(p.writable, "{p:?}");
    assert!(!p.object_lock, "{p:?}");
    // Azurite enforces neither immutability nor versioning: never reported as present.
    assert_eq!(p.versioning, "Unverifiable");
    assert_eq!(p.immutability.as_deref(), Some("unverifiable"));
    assert!(!p.is_worm());
    let findings = p.findings.join("\n");
    assert!(
        findings.contains("immutability") && findings.contains("unverifiable"),
        "{findings}"
    );
    assert!(findings.contains("versioning"), "{findings}");
    // The write probe left no blob behind.
    assert!(store.list("").await.expect("list").is_empty());

    // A container that does not exist.
    let gone = blob_container_client(
        &endpoint,
        &unique_container("absent"),
        SharedKeyCredential::azurite(),
    )
    .expect("client");
    let p = AzureBlobStore::new(gone, "devstoreaccount1", "absent", "")
        .preflight()
        .await;
    assert!(!p.exists && !p.writable, "{p:?}");
    admin.delete(None).await.expect("delete container");
}

#[tokio::test]
async fn azure_store_commit_never_overwrites_a_blob_that_appeared_meanwhile() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let (store, admin) = azure_store(&endpoint, "race").await;
    let key = ObjectKey::new("cases/c/race.bin").unwrap();
    let admin = std::sync::Arc::new(admin);
    let racer = admin.clone();
    // While the put is streaming (after its existence check), another writer
    // creates the blob: the commit (If-None-Match: *) must refuse.
    let body = futures::StreamExt::chain(
        chunked(&patterned(5 << 20, 9), 1 << 20),
        futures::stream::once(async move {
            racer
                .blob_client("evidence/run/cases/c/race.bin")
                .upload(RequestContent::from(b"the other writer".to_vec()), None)
                .await
                .expect("racing upload");
            Ok(bytes::Bytes::from_static(b"tail"))
        }),
    );
    let err = store
        .put(&key, Box::pin(body))
        .await
        .expect_err("the commit must not overwrite");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        store.get_bytes(&key).await.expect("read"),
        b"the other writer"
    );
    admin.delete(None).await.expect("delete container");
}
