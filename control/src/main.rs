//! `sluice-control`: the command line of the canary controller.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_config::{parse_duration, Config};
use sluice_control::admin::Admin;
use sluice_control::controller::{default_source, Controller};
use sluice_control::demo::{self, DemoOptions, Flavor};
use sluice_control::http::HttpClient;
use sluice_control::status::Status;
use tracing::error;

/// sluice's canary controller: judges the canary every interval and moves the route's weights
/// forward stage by stage, or back to 0% when it misbehaves.
#[derive(Debug, Parser)]
#[command(name = "sluice-control", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the controller (reads rollouts, control.admin and weights_file from the config).
    Run {
        #[command(flatten)]
        target: Target,
        /// Log line format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Log level or filter; RUST_LOG overrides.
        #[arg(long, default_value = "info", value_name = "FILTER")]
        log_level: String,
    },
    /// Show every rollout: phase, step, weight, last check with its numbers.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the raw JSON of GET /status instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Start a rollout at its first step.
    Start(Named),
    /// Move to the next step now, skipping its analysis (`--full`: straight to 100%).
    Promote {
        #[command(flatten)]
        named: Named,
        /// Canary 100% at once, rollout succeeded.
        #[arg(long)]
        full: bool,
    },
    /// Canary 0% at once, rollout rolled back.
    Abort(Named),
    /// Freeze the schedule (weights stay as they are).
    Pause(Named),
    /// Unfreeze the schedule (re-asserts the rollout's weight).
    Resume(Named),
    /// Start a rolled-back rollout again from its first step.
    Retry(Named),
    /// A complete local demonstration: two upstreams, sluice-proxy, steady load, and the
    /// controller with short intervals, shown live until the rollout ends.
    Demo {
        /// A canary that answers 15% of requests with 500: watch it get rolled back.
        #[arg(long, conflicts_with = "slow_canary")]
        bad_canary: bool,
        /// A canary 300 ms slower than stable: rolled back on p95.
        #[arg(long)]
        slow_canary: bool,
        /// Time between analyses (a duration: `2s`, `500ms`).
        #[arg(long, default_value = "2s", value_parser = duration, value_name = "DURATION")]
        interval: Duration,
        /// Requests per second of the built-in load.
        #[arg(long, default_value_t = 300, value_name = "N")]
        rate: u32,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The config file (YAML, or TOML when it ends in .toml).
    #[arg(long, short, default_value = "sluice.yaml", value_name = "FILE")]
    config: PathBuf,
    /// The control's admin address: where `run` listens and the other commands connect
    /// (default: control.admin of the config).
    #[arg(long, value_name = "HOST:PORT", value_parser = address)]
    admin: Option<String>,
}

#[derive(Debug, Args)]
struct Named {
    /// The rollout's name.
    name: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn address(text: &str) -> Result<String, String> {
    sluice_config::Address::parse(text).map(|a| a.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice-control: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Cmd::Run {
                target,
                log_format,
                log_level,
            } => {
                init_logging(log_format, &log_level);
                run(&target).await
            }
            Cmd::Status { target, json } => status(&target, json).await,
            Cmd::Start(n) => act(&n, "start").await,
            Cmd::Promote { named, full } => {
                act(&named, if full { "promote?full=true" } else { "promote" }).await
            }
            Cmd::Abort(n) => act(&n, "abort").await,
            Cmd::Pause(n) => act(&n, "pause").await,
            Cmd::Resume(n) => act(&n, "resume").await,
            Cmd::Retry(n) => act(&n, "retry").await,
            Cmd::Demo {
                bad_canary,
                slow_canary,
                interval,
                rate,
            } => {
                let flavor = match (bad_canary, slow_canary) {
                    (true, _) => Flavor::BadCanary,
                    (_, true) => Flavor::SlowCanary,
                    _ => Flavor::Healthy,
                };
                demo::run(DemoOptions {
                    flavor,
                    interval,
                    rate,
                })
                .await
                .map_err(anyhow::Error::from)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if tracing::dispatcher::has_been_set() {
                error!("{e:#}");
            }
            eprintln!("sluice-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(target: &Target) -> anyhow::Result<()> {
    let (controller, status) = Controller::new(&target.config, Box::new(default_source)).await?;
    // `--admin` overrides `control.admin` (e.g. to run a second instance beside the first).
    let address = admin_address(target)?;
    let address = sluice_config::Address::parse(&address).map_err(|e| anyhow!("--admin: {e}"))?;
    let bind = address
        .bind_addr()
        .ok_or_else(|| anyhow!("control.admin {address} is not an IP address"))?;
    let socket = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("control.admin: cannot listen on {bind}"))?;
    tracing::info!(address = %socket.local_addr()?, "control admin listening");
    let (commands, requests) = tokio::sync::mpsc::channel(16);
    let admin = Admin {
        status,
        metrics: controller.metrics(),
        commands,
    };
    tokio::spawn(admin.serve(socket));
    controller.run(requests, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The admin address: `--admin`, else `control.admin` of the config.
fn admin_address(target: &Target) -> anyhow::Result<String> {
    if let Some(admin) = &target.admin {
        return Ok(admin.clone());
    }
    let config = Config::load(&target.config).with_context(|| {
        format!(
            "cannot find the control's address in {} (or pass --admin HOST:PORT)",
            target.config.display()
        )
    })?;
    Ok(config.control.admin.to_string())
}

#[allow(clippy::print_stdout)]
async fn status(target: &Target, json: bool) -> anyhow::Result<()> {
    let admin = admin_address(target)?;
    let (code, body) = HttpClient::default()
        .get(&format!("http://{admin}/status"), Duration::from_secs(5))
        .await
        .map_err(|e| unreachable(&admin, &e.to_string()))?;
    if !code.is_success() {
        return Err(anyhow!(
            "{admin} answered {code}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let status: Status = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{admin}'s /status is not the status this sluice-control reads (a different version?)"
        )
    })?;
    print!(
        "{}",
        sluice_control::cli_table::render(&status, sluice_config::unix_now())
    );
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn act(named: &Named, action: &str) -> anyhow::Result<()> {
    let admin = admin_address(&named.target)?;
    let name =
        percent_encoding::utf8_percent_encode(&named.name, percent_encoding::NON_ALPHANUMERIC);
    let url = format!("http://{admin}/rollouts/{name}/{action}");
    // Longer than a check can take: the control answers between checks.
    let (code, body) = HttpClient::default()
        .post(&url, Duration::from_secs(30))
        .await
        .map_err(|e| match e {
            sluice_control::http::HttpError::Timeout(t) => anyhow!(
                "sluice-control at {admin} did not answer within {t:?}; the command may still be applied (check `sluice-control status`)"
            ),
            other => unreachable(&admin, &other.to_string()),
        })?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if code.is_success() {
        println!(
            "{}: {}",
            named.name,
            json["message"].as_str().unwrap_or("ok")
        );
        Ok(())
    } else {
        Err(anyhow!(
            "{}",
            json["error"].as_str().unwrap_or("request failed")
        ))
    }
}

fn unreachable(admin: &str, why: &str) -> anyhow::Error {
    anyhow!("cannot reach sluice-control at {admin} ({why}); is `sluice-control run` running?")
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
