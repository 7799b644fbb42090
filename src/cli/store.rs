//! `custody store check URL`: what a store offers for evidence, before the
//! first write. `custody store sas URL` (feature `azure`): a narrow,
//! expiring Azure credential to hand to someone who must not hold the
//! account key. A cloud URL this build has no backend for goes to
//! [`crate::store::open`], which refuses it naming the missing feature.

use anyhow::Context;
use clap::Subcommand;

use super::{Env, Outcome};
use crate::store::Preflight;
#[cfg(feature = "azure")]
use crate::store::azure_blob::AzureBlobStore;
#[cfg(feature = "aws")]
use crate::store::s3::{S3Options, S3Store};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check a store: exists, writable, versioning and Object Lock (S3),
    /// immutability where visible (Azure).
    Check {
        /// Store URL (default: the configured store).
        url: Option<String>,
        /// Exit 1 unless the store is write-once (S3: versioning and Object
        /// Lock; Azure: a verified immutability policy or legal hold).
        #[arg(long)]
        require_worm: bool,
    },
    /// Mint an account SAS for an Azure storage account from the key in
    /// AZURE_STORAGE_KEY and print it (the token is a secret: it goes to
    /// stdout only).
    #[cfg(feature = "azure")]
    Sas {
        /// az://account/container (only the account is used).
        url: String,
        /// Letters of racwdl: read, add, create, write, delete, list.
        #[arg(long, default_value = "rl")]
        permissions: String,
        /// Lifetime in hours (at most 168).
        #[arg(long, default_value_t = 8)]
        hours: u32,
    },
}

pub async fn run(env: &Env, cmd: StoreCommand) -> anyhow::Result<Outcome> {
    let (url, require_worm) = match cmd {
        StoreCommand::Check { url, require_worm } => (url, require_worm),
        #[cfg(feature = "azure")]
        StoreCommand::Sas {
            url,
            permissions,
            hours,
        } => return sas(env, &url, &permissions, hours),
    };
    let url = url.unwrap_or_else(|| env.config.store.clone());
    let p = match url::Url::parse(&url) {
        #[cfg(feature = "aws")]
        Ok(u) if u.scheme() == "s3" => {
            S3Store::from_url(
                &u,
                &env.aws_options,
                S3Options::from_settings(&env.config.s3),
            )
            .await
            .with_context(|| format!("cannot open {}", crate::config::redact_url(&url)))?
            .preflight()
            .await
        }
        #[cfg(feature = "azure")]
        Ok(u) if matches!(u.scheme(), "az" | "https" | "http") => {
            AzureBlobStore::from_url(&u, env.aws_options.endpoint.as_deref(), false)
                .await
                .with_context(|| format!("cannot open {}", crate::config::redact_url(&url)))?
                .preflight()
                .await
        }
        _ => local_check(env, &url).await?,
    };
    env.print(&p, || {
        let mut s = format!(
            "store       {}\nexists      {}\nwritable    {}\nversioning  {}\n",
            p.location, p.exists, p.writable, p.versioning,
        );
        match &p.immutability {
            Some(i) => s.push_str(&format!("immutable   {i}\n")),
            None => s.push_str(&format!(
                "object lock {}{}\n",
                if p.object_lock { "enabled" } else { "off" },
                p.default_retention
                    .as_deref()
                    .map(|r| format!(" (default retention {r})"))
                    .unwrap_or_default()
            )),
        }
        for f in &p.findings {
            s.push_str(&format!("WARNING     {f}\n"));
        }
        s
    })?;
    if !p.exists || !p.writable {
        anyhow::bail!(
            "{} cannot take evidence: {}",
            p.location,
            p.findings.join("; ")
        );
    }
    // The store custody mirrors its ledger to: every object there must be the ledger's own.
    if url == env.config.store && env.store_is_cloud() && env.ledger_paths().exists() {
        let problems = env.check_mirror().await?;
        for m in &problems {
            eprintln!("error: ledger mirror: {m}");
        }
        if !problems.is_empty() {
            return Ok(Outcome::VerificationFailed);
        }
    }
    if require_worm && !p.is_worm() {
        eprintln!(
            "error: {} is not write-once storage ({})",
            p.location,
            if p.immutability.is_some() {
                "a verified immutability policy or legal hold is required"
            } else {
                "versioning and Object Lock are required"
            }
        );
        return Ok(Outcome::VerificationFailed);
    }
    Ok(Outcome::Ok)
}

/// A local directory: it can be written, and it is never write-once.
async fn local_check(env: &Env, url: &str) -> anyhow::Result<Preflight> {
    let store = crate::store::open(url, &env.aws_options, &env.config.s3, &env.config.azure)
        .await
        .with_context(|| format!("cannot open {}", crate::config::redact_url(url)))?;
    let probe = crate::store::ObjectKey::new(format!(
        ".custody-preflight-{}",
        uuid::Uuid::new_v4().simple()
    ))?;
    let mut p = Preflight {
        location: store.location(),
        exists: true,
        versioning: "Off".into(),
        ..Preflight::default()
    };
    match store
        .put_bytes(&probe, bytes::Bytes::from_static(b"probe"))
        .await
    {
        Ok(_) => {
            p.writable = true;
            if let Some(path) = url::Url::parse(&store.location())
                .ok()
                .and_then(|u| u.to_file_path().ok())
            {
                let _ = tokio::fs::remove_file(path.join(probe.as_str())).await;
            }
        }
        Err(e) => p.findings.push(crate::error_chain(&e)),
    }
    p.findings.push(
        "a local directory is not write-once storage: anyone with write access can change evidence"
            .into(),
    );
    Ok(p)
}

#[cfg(feature = "azure")]
fn sas(env: &Env, url: &str, permissions: &str, hours: u32) -> anyhow::Result<Outcome> {
    let u = url::Url::parse(url).with_context(|| format!("{url:?} is not an az:// URL"))?;
    anyhow::ensure!(
        u.scheme() == "az" && u.query().is_none(),
        "{} is not an az://account/container URL",
        crate::config::redact_url(url)
    );
    let account = u.host_str().unwrap_or_default();
    let key = std::env::var(crate::store::azure_blob::KEY_VAR).with_context(|| {
        format!(
            "set {} to the key of storage account {account:?}",
            crate::store::azure_blob::KEY_VAR
        )
    })?;
    let cred = crate::store::azure_auth::SharedKeyCredential::new(account, key)?;
    // Plain http only where an emulator is named as the endpoint.
    let allow_http = env
        .aws_options
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let token = crate::store::azure_sas::account_sas(
        &cred,
        permissions,
        time::OffsetDateTime::now_utc(),
        time::Duration::hours(i64::from(hours)),
        allow_http,
    )?;
    tracing::info!(
        account,
        permissions = token.permissions(),
        hours,
        "minted an account SAS"
    );
    super::write_stdout(format!("{}\n", token.secret()).as_bytes())?;
    Ok(Outcome::Ok)
}
