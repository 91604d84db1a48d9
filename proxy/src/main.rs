//! `sluice-proxy`: the command line of the data plane.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_config::{parse_duration, Config, Weights};
use sluice_proxy::convert::{self, Input};
use sluice_proxy::{Limits, Options, Server};
use tracing::error;

/// jemalloc with background purging: freed memory goes back to the OS within seconds, so the
/// RSS of a sidecar comes back down after a burst of connections (glibc's malloc keeps it).
/// Measured after an h2load burst: glibc stays at 32 MB, jemalloc returns to ~13 MB (idle 9).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// sluice's data plane: routes HTTP requests and splits them between stable and canary by
/// weight, hot-reloading its config and weights file.
#[derive(Debug, Parser)]
#[command(name = "sluice-proxy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// The config file (YAML, or TOML when it ends in .toml).
    #[arg(long, short, default_value = "sluice.yaml", value_name = "FILE")]
    config: PathBuf,

    /// Validate the config (and its weights file, if present), print every problem, and exit:
    /// 0 when valid, 1 when not.
    #[arg(long)]
    check: bool,

    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log level or filter (e.g. `info`, `debug`, `sluice_proxy=debug,warn`); RUST_LOG overrides.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log_level: String,

    /// Worker threads. 1 runs a single-threaded runtime (lowest latency per core).
    /// Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,

    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    drain_timeout: Duration,

    /// After SIGTERM/SIGINT, keep accepting this long with /ready already 503, so load
    /// balancers stop sending before the listeners close (e.g. Kubernetes endpoint updates).
    #[arg(long, default_value = "0s", value_parser = duration, value_name = "DURATION")]
    shutdown_delay: Duration,

    /// A client must send its complete request headers within this time.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    header_read_timeout: Duration,

    /// A request body that sends nothing for this long is answered with 408.
    #[arg(long, default_value = "60s", value_parser = duration, value_name = "DURATION")]
    body_idle_timeout: Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert Istio or Gateway API routes into a sluice.yaml, printed on stdout.
    ///
    /// Reads VirtualService + DestinationRule or HTTPRoute documents; notes go to stderr. A
    /// field sluice cannot honour is an error naming it, unless --ignore drops it.
    Convert(ConvertArgs),
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// YAML files, each with one or more documents; kinds other than VirtualService,
    /// DestinationRule and HTTPRoute are skipped.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// The endpoints of an upstream (an Istio subset or a Gateway API backendRef, by name);
    /// repeatable. Without it an upstream points at its service's address.
    #[arg(long = "upstream", value_name = "NAME=HOST:PORT[,HOST:PORT]", value_parser = upstream)]
    upstreams: Vec<(String, Vec<String>)>,

    /// Drop this field instead of refusing it: a key (`corsPolicy`), a path without indices
    /// (`spec.http.corsPolicy`) or a filter type (`URLRewrite`); repeatable.
    #[arg(long, value_name = "FIELD")]
    ignore: Vec<String>,

    /// The listener address written in the output.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDRESS")]
    listen: String,

    /// The admin address written in the output (rollouts scrape it).
    #[arg(long, default_value = "127.0.0.1:9901", value_name = "ADDRESS")]
    admin: String,
}

fn upstream(text: &str) -> Result<(String, Vec<String>), String> {
    convert::Options::parse_upstream(text).map_err(|e| e.to_string())
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Convert(args)) = &cli.command {
        return convert(args);
    }
    if cli.check {
        return check(&cli.config);
    }
    init_logging(cli.log_format, &cli.log_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `convert`: the sluice.yaml on stdout, notes and errors on stderr.
#[allow(clippy::print_stdout)]
fn convert(args: &ConvertArgs) -> ExitCode {
    let mut inputs = Vec::new();
    for file in &args.files {
        match std::fs::read_to_string(file) {
            Ok(text) => inputs.push(Input {
                name: file.display().to_string(),
                text,
            }),
            Err(e) => {
                eprintln!("{}: cannot read: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let options = convert::Options {
        upstreams: args.upstreams.clone(),
        ignore: args.ignore.clone(),
        listen: args.listen.clone(),
        admin: args.admin.clone(),
    };
    match convert::convert(&inputs, &options) {
        Ok(conversion) => {
            for note in &conversion.notes {
                eprintln!("note: {note}");
            }
            print!("{}", conversion.yaml);
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} problem(s); nothing was converted", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

/// `--check`: like `nginx -t`.
#[allow(clippy::print_stdout)]
fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "{}: {} problem(s); nothing was changed",
                path.display(),
                e.count()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut weights_note = String::new();
    if let Some(weights) = &config.weights_file {
        if weights.exists() {
            if let Err(e) = Weights::load(weights, &config.routes) {
                eprintln!("{e}");
                eprintln!("{}: {} problem(s)", weights.display(), e.count());
                return ExitCode::FAILURE;
            }
            weights_note = format!(", weights file {} ok", weights.display());
        } else {
            weights_note = format!(", weights file {} not present yet", weights.display());
        }
    }
    for listener in &config.listeners {
        if let Some(tls) = &listener.tls {
            if let Err(e) = sluice_proxy::tls::server_config(tls, listener.protocol) {
                eprintln!("{}: listeners.{}.tls: {e}", path.display(), listener.name);
                return ExitCode::FAILURE;
            }
        }
    }
    for upstream in &config.upstreams {
        if let Some(tls) = &upstream.tls {
            if let Err(e) = sluice_proxy::tls::client_config(tls, upstream.protocol) {
                eprintln!("{}: upstreams.{}.tls: {e}", path.display(), upstream.name);
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{}: ok ({} listener(s), {} upstream(s), {} route(s), {} rollout(s){weights_note})",
        path.display(),
        config.listeners.len(),
        config.upstreams.len(),
        config.routes.routes().len(),
        config.rollouts.len()
    );
    ExitCode::SUCCESS
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let workers = cli
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let options = Options {
        config: cli.config,
        drain_timeout: cli.drain_timeout,
        shutdown_delay: cli.shutdown_delay,
        limits: Limits {
            header_read_timeout: cli.header_read_timeout,
        },
        body_idle_timeout: cli.body_idle_timeout,
    };
    runtime.block_on(async move {
        let server = Server::bind(options).await?;
        server.run(shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    match (terminate, interrupt) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
