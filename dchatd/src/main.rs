//! dchatd: flags, configuration, logging, then `dchatd::run`.

use std::process::ExitCode;

use clap::Parser;
use dchatd::cli::Args;
use dchatd::error::EX_CONFIG;
use dchatd::{config, logging, systemd, RunOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", config::keys::default_file());
        return ExitCode::SUCCESS;
    }
    let config = match config::load(&args.flags()).and_then(|c| config::verify_system(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dchatd: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if args.check_config {
        let source = config
            .source
            .file
            .as_ref()
            .map_or("built-in defaults".to_string(), |p| p.display().to_string());
        println!("{source}: configuration ok");
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &args.restore {
        return dchatd::restore_offline::main(&config, file, args.force, args.json);
    }
    // Take systemd's sockets before any thread exists: it edits the environment.
    if let Err(e) = systemd::adopt_inherited() {
        eprintln!("dchatd: socket activation: {e}");
        return ExitCode::FAILURE;
    }
    let log = match logging::init(config.log.format, &config.log.level) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("dchatd: logging: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dchatd-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dchatd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        dchatd::run_with(config, shutdown, RunOptions { log: Some(log) }).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "dchatd failed");
            eprintln!("dchatd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// SIGTERM or SIGINT starts the one clean shutdown. The handlers are
/// installed when this is called, not when the returned future first runs,
/// so they are in place before the daemon can say READY.
fn stop_on_signal(shutdown: CancellationToken) -> impl std::future::Future<Output = ()> {
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            eprintln!("dchatd: cannot install signal handlers; stop with SIGKILL");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
        shutdown.cancel();
    }
}
