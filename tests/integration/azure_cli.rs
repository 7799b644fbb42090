//! The custody command against Azurite: acquisition into `az://` stores,
//! verify and export from them, the preflight, SAS credentials, and faults
//! injected by the proxy in front of the emulator.

use custody::store::azure_auth::{AZURITE_KEY, SharedKeyCredential, blob_container_client};

use crate::azure::{azurite_endpoint, unique_container};
use crate::common::{Home, noise, stderr};
use crate::fault_proxy::{Fault, FaultProxy, Rule};

const ACCOUNT: &str = "devstoreaccount1";

/// Runs custody with the store on Azurite (`endpoint`), signed with the
/// emulator's well-known key unless `sas` is given.
fn run(home: &Home, endpoint: &str, sas: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = home.cmd();
    c.env_remove("AZURE_STORAGE_KEY")
        .env_remove("AZURE_STORAGE_SAS_TOKEN")
        .args(["--endpoint-url", endpoint]);
    match sas {
        Some(t) => c.env("AZURE_STORAGE_SAS_TOKEN", t),
        None => c.env("AZURE_STORAGE_KEY", AZURITE_KEY),
    };
    c.args(args).output().unwrap()
}

fn container(endpoint: &str, tag: &str) -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = unique_container(tag);
    let admin = blob_container_client(endpoint, &name, SharedKeyCredential::azurite()).unwrap();
    rt.block_on(admin.create(None)).unwrap();
    (name, rt)
}

fn blob_names(rt: &tokio::runtime::Runtime, endpoint: &str, container: &str) -> Vec<String> {
    use futures::StreamExt;
    let admin = blob_container_client(endpoint, container, SharedKeyCredential::azurite()).unwrap();
    rt.block_on(async {
        let mut pager = admin.list_blobs(None).unwrap();
        let mut out = Vec::new();
        while let Some(item) = pager.next().await {
            if let Some(n) = item.unwrap().name {
                out.push(n);
            }
        }
        out
    })
}

#[test]
fn a_256_mib_artefact_round_trips_through_azure_blob() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let (name, rt) = container(&endpoint, "big");
    let home = Home::new();
    let src = home.path().join("big.img");
    let data = crate::common::mixed_bytes(256 << 20, 4);
    std::fs::write(&src, &data).unwrap();
    let store = format!("az://{ACCOUNT}/{name}/cases-root");
    let out = run(
        &home,
        &endpoint,
        None,
        &[
            "--json",
            "--store",
            &store,
            "acquire",
            "file",
            src.to_str().unwrap(),
            "--case",
            "big",
            "--verify",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &r["artefacts"][0];
    assert_eq!(r["verified"][0]["ok"], true, "{r}");
    assert_eq!(a["stored"]["location"], store.as_str());
    assert!(a["stored"]["etag"].is_string(), "{a}");
    assert_eq!(a["raw"]["sha256"], custody::evidence::sha256_hex(&data));

    // The blob carries the case, the artefact id and both digests.
    let id = a["id"].as_str().unwrap();
    let admin = blob_container_client(&endpoint, &name, SharedKeyCredential::azurite()).unwrap();
    let key = format!("cases-root/cases/big/artefacts/{id}.zst");
    let meta = rt.block_on(async {
        use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
        admin
            .blob_client(&key)
            .get_properties(None)
            .await
            .unwrap()
            .metadata()
            .unwrap()
    });
    assert_eq!(meta["custody_case"], "big");
    assert_eq!(meta["custody_artefact"], id);
    assert_eq!(
        meta["custody_raw_sha256"],
        a["raw"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        meta["custody_stored_sha256"],
        a["stored"]["sha256"].as_str().unwrap()
    );

    // verify and export read back from the container.
    let out = run(
        &home,
        &endpoint,
        None,
        &["--store", &store, "verify", "big"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dest = home.path().join("back.img");
    let out = run(
        &home,
        &endpoint,
        None,
        &[
            "--store",
            &store,
            "export",
            "big",
            id,
            "-o",
            dest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        custody::evidence::sha256_hex(&std::fs::read(&dest).unwrap()),
        custody::evidence::sha256_hex(&data)
    );
    // The ledger was mirrored to the container too.
    assert!(
        blob_names(&rt, &endpoint, &name)
            .iter()
            .any(|n| n.starts_with("cases-root/ledger/")),
        "{:?}",
        blob_names(&rt, &endpoint, &name)
    );
}

#[test]
fn preflight_on_azurite_and_a_read_only_sas() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let (name, _rt) = container(&endpoint, "check");
    let home = Home::new();
    let url = format!("az://{ACCOUNT}/{name}");
    let out = run(&home, &endpoint, None, &["--json", "store", "check", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["exists"], true);
    assert_eq!(p["writable"], true);
    assert_eq!(p["immutability"], "unverifiable", "{p}");
    assert_eq!(p["versioning"], "Unverifiable", "{p}");
    let out = run(
        &home,
        &endpoint,
        None,
        &["store", "check", &url, "--require-worm"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("immutability"), "{}", stderr(&out));

    // A read-and-list SAS minted from the key: it can check but not write.
    let out = run(
        &home,
        &endpoint,
        None,
        &["store", "sas", &url, "--permissions", "rl", "--hours", "1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        token.contains("sig=") && token.contains("sp=rl"),
        "a SAS token"
    );
    assert!(!stderr(&out).contains("sig="), "the token is never logged");
    let out = run(
        &home,
        &endpoint,
        Some(&token),
        &["--json", "store", "check", &url],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["exists"], true, "{p}");
    assert_eq!(p["writable"], false, "{p}");
    assert!(p["findings"].to_string().contains("SAS token"), "{p}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));
    assert!(!stderr(&out).contains("sig="), "{}", stderr(&out));

    // An acquisition through the read-only SAS records nothing.
    let src = home.path().join("f.bin");
    std::fs::write(&src, noise(1 << 20, 3)).unwrap();
    let out = run(
        &home,
        &endpoint,
        Some(&token),
        &[
            "--store",
            &url,
            "acquire",
            "file",
            src.to_str().unwrap(),
            "--case",
            "ro",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(
        &home,
        &endpoint,
        None,
        &["--json", "--store", &url, "cases"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"ro\""));
}

#[test]
fn azure_uploads_retry_throttling_not_access_errors_and_a_cut_upload_resumes() {
    let Some(endpoint) = azurite_endpoint() else {
        return;
    };
    let (name, rt) = container(&endpoint, "faults");
    let (proxy, via) = rt.block_on(FaultProxy::start(&endpoint));
    let home = Home::new();
    let src = home.path().join("disk.img");
    // Five 4 MiB blocks.
    std::fs::write(&src, noise(18 << 20, 9)).unwrap();
    let store = format!("az://{ACCOUNT}/{name}");
    let acquire = |case: &str| {
        run(
            &home,
            &via,
            None,
            &[
                "--store",
                &store,
                "acquire",
                "file",
                src.to_str().unwrap(),
                "--case",
                case,
            ],
        )
    };

    // Throttled twice: retried, and the blob is committed.
    proxy.rule(Rule {
        op: "StageBlock",
        path: "artefacts",
        pass: 1,
        times: 2,
        fault: Fault::Status(503, "ServerBusy"),
    });
    let out = acquire("slow");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        proxy.count_on("StageBlock", "artefacts"),
        5 + 2,
        "two throttled blocks retried"
    );

    // Access denied: not retried.
    proxy.heal();
    proxy.reset_counts();
    proxy.rule(Rule {
        op: "StageBlock",
        path: "artefacts",
        pass: 0,
        times: 1000,
        fault: Fault::Status(403, "AuthorizationPermissionMismatch"),
    });
    let out = acquire("denied");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let tries = proxy.count_on("StageBlock", "artefacts");
    assert!((1..=4).contains(&tries), "{tries} StageBlock requests");

    // The service stops half-way: nothing is committed or recorded.
    proxy.heal();
    proxy.rule(Rule {
        op: "StageBlock",
        path: "artefacts",
        pass: 2,
        times: 1,
        fault: Fault::Die,
    });
    let out = acquire("cut");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let names = blob_names(&rt, &endpoint, &name);
    assert!(
        !names
            .iter()
            .any(|n| n.contains("cases/cut/") || n.contains("cases/denied/")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("cases/slow/manifests/")),
        "{names:?}"
    );
    let out = home.run(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The blocks staged before the cut are journalled; the rerun of the same
    // command stages only the others and commits the blob.
    let confirmed = journalled_blocks(&home, "cases/cut/");
    assert!(confirmed >= 2, "{confirmed} blocks journalled");
    proxy.heal();
    proxy.reset_counts();
    let out = run(
        &home,
        &via,
        None,
        &[
            "--json",
            "--store",
            &store,
            "acquire",
            "file",
            src.to_str().unwrap(),
            "--case",
            "cut",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = r["artefacts"][0]["stored"]["size"].as_u64().unwrap();
    let blocks = stored.div_ceil(4 << 20) as usize;
    let sent = proxy.count_on("StageBlock", "artefacts") as usize;
    assert_eq!(
        sent + confirmed,
        blocks,
        "{sent} sent again, {confirmed} journalled, {blocks} in all"
    );
    assert!(
        r["artefacts"][0]["notes"]
            .to_string()
            .contains("resumed the upload")
    );
    assert_eq!(
        journalled_blocks(&home, "cases/cut/"),
        0,
        "the journal is removed"
    );
    let out = run(
        &home,
        &endpoint,
        None,
        &["--store", &store, "verify", "cut"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Blocks recorded in the upload journal whose key contains `key`.
fn journalled_blocks(home: &Home, key: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(home.path().join("uploads")) else {
        return 0;
    };
    rd.flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .filter(|t| t.lines().next().is_some_and(|h| h.contains(key)))
        .map(|t| t.lines().count() - 1)
        .sum()
}
