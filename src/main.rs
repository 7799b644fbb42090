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
    let cli = Cli::parse();
    let default = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

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
            eprintln!("error: {}", custody::error_chain(e.as_ref()));
            2
        }
    };
    // Do not wait for threads blocked on a source (a FIFO, a hung device).
    runtime.shutdown_background();
    ExitCode::from(code)
}
