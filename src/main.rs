//! The `custody` binary: parse, set up logging, run, map the outcome to an
//! exit code (0 ok, 1 verification failed, 2 operational error).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use custody::cli::{self, Cli, Outcome};

/// How long an interrupted command may take to stop cleanly.
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// glibc's allocator serialises the timeline's parser and loader threads on
/// its arena locks and spends a fifth of a load in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything is created: evidence, manifests, the ledger, the
    // timeline, the spool and the queue are secrets of the investigated
    // machine, so whatever custody creates is 0600 (files) and 0700
    // (directories), for no other local user to read.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    init_logging(cli.global.verbose);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let result = runtime.block_on(async {
        let run = cli::run(cli, cancel.clone());
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => r,
            _ = tokio::signal::ctrl_c() => {
                // Ask the work to stop at its next frame, so it can record the
                // interruption in the ledger; if it is stuck on a read, drop it:
                // dropping a put in flight removes its temporary object.
                cancel.store(true, Ordering::SeqCst);
                match tokio::time::timeout(INTERRUPT_GRACE, &mut run).await {
                    Ok(Err(e)) => Err(e.context("interrupted")),
                    Ok(Ok(_)) | Err(_) => Err(anyhow::anyhow!("interrupted; nothing partial was recorded")),
                }
            }
        }
    });
    let code = match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::VerificationFailed) => 1,
        Err(e) => {
            // Errors quote what they could not read (an S3 key, a log line).
            let chain = custody::error_chain(e.as_ref());
            eprintln!("error: {}", custody::sanitize::term_lines(&chain));
            2
        }
    };
    // Do not wait for threads blocked on a source (a FIFO, a hung device).
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Logs on stderr. custody's own events follow `-v` (or `RUST_LOG`); every
/// other crate is capped at INFO, whatever `RUST_LOG` asks. Below INFO the
/// AWS SDK prints the resolved identity with its access key id (DEBUG),
/// and aws-sigv4, the smithy orchestrator and hyper print canonical
/// requests and headers: the session token, presigned URLs (TRACE). A
/// redacting layer was the alternative, but it would have to know every
/// field and header name of every SDK version (AWS, Azure, reqwest,
/// rustls); a cap cannot miss one. Without `-v` other crates show only
/// errors, so the SDK's multi-line credential-chain warnings stay quiet.
fn init_logging(verbose: u8) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let (own, others) = match verbose {
        0 => ("warn", "error"),
        1 => ("info", "warn"),
        2 => ("debug", "info"),
        _ => ("trace", "info"),
    };
    let asked = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{others},{CRATE}={own}")));
    let cap = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target(CRATE, LevelFilter::TRACE);
    // Each layer's filter must let an event through: the cap bounds RUST_LOG.
    tracing_subscriber::registry()
        .with(asked)
        .with(cap)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
}

/// The target prefix of custody's own events (its module paths).
const CRATE: &str = "custody";
