//! Acquire a file into a local evidence store through the library, then read
//! it back and check both digests: the embedded default, no cloud account.
//!
//! cargo run --example acquire_and_verify -- PATH [STORE_DIR]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use custody::clock::SystemClock;
use custody::collect::Collector;
use custody::collect::file::FileCollector;
use custody::evidence::ArtefactKind;
use custody::evidence::case::{AcquireContext, verify_case};
use custody::evidence::pipeline::PipelineOptions;
use custody::ids::CaseId;
use custody::store::local::LocalStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: acquire_and_verify PATH [STORE_DIR]")?;
    let store_dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join("custody-example-store"),
    };
    let ctx = AcquireContext {
        store: Arc::new(LocalStore::new(&store_dir)),
        clock: Arc::new(SystemClock),
        progress: custody::progress::none(),
        cancel: Arc::new(AtomicBool::new(false)),
        pipeline: PipelineOptions::default(),
        recorder: None,
        resume_dir: None,
    };
    let case: CaseId = "example".parse()?;
    let collector = FileCollector {
        path: path.into(),
        kind: ArtefactKind::File,
        log_format: None,
    };
    let collected = collector.collect(&ctx, &case).await?;
    for a in &collected.artefacts {
        println!(
            "{} raw {} bytes sha256:{} -> {}",
            a.id, a.raw.size, a.raw.sha256, a.stored.key
        );
    }
    let v = verify_case(ctx.store.as_ref(), &case).await?;
    println!(
        "store {}: {} artefacts, all verified: {}",
        v.location,
        v.checks.len(),
        v.ok()
    );
    Ok(())
}
