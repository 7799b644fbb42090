//! `custody store check URL`: what a store offers for evidence, before the first write.

use anyhow::Context;
use clap::Subcommand;

use super::{Env, Outcome};
use crate::store::s3::{Preflight, S3Options, S3Store};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check a store: exists, writable, versioning and Object Lock (S3).
    Check {
        /// Store URL (default: the configured store).
        url: Option<String>,
        /// Exit 1 unless the store is write-once (versioning and Object Lock).
        #[arg(long)]
        require_worm: bool,
    },
}

pub async fn run(env: &Env, cmd: StoreCommand) -> anyhow::Result<Outcome> {
    let StoreCommand::Check { url, require_worm } = cmd;
    let url = url.unwrap_or_else(|| env.config.store.clone());
    let p = match url::Url::parse(&url) {
        Ok(u) if u.scheme() == "s3" => {
            S3Store::from_url(
                &u,
                env.endpoint_url.as_deref(),
                S3Options::from_settings(&env.config.s3),
            )
            .await
            .with_context(|| format!("cannot open {}", crate::config::redact_url(&url)))?
            .preflight()
            .await
        }
        _ => local_check(env, &url).await?,
    };
    env.print(&p, || {
        let mut s = format!(
            "store       {}\nexists      {}\nwritable    {}\nversioning  {}\nobject lock {}{}\n",
            p.location,
            p.exists,
            p.writable,
            p.versioning,
            if p.object_lock { "enabled" } else { "off" },
            p.default_retention
                .as_deref()
                .map(|r| format!(" (default retention {r})"))
                .unwrap_or_default()
        );
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
    if require_worm && !p.is_worm() {
        eprintln!(
            "error: {} is not write-once storage (versioning and Object Lock are required)",
            p.location
        );
        return Ok(Outcome::VerificationFailed);
    }
    Ok(Outcome::Ok)
}

/// A local directory: it can be written, and it is never write-once.
async fn local_check(env: &Env, url: &str) -> anyhow::Result<Preflight> {
    let store = crate::store::open(url, env.endpoint_url.as_deref(), &env.config.s3)
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
