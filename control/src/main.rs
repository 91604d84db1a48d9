//! `sluice-control`: the command line of the canary controller.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_config::{parse_duration, Config};
use sluice_control::admin::{Admin, Forward};
use sluice_control::admin_client::{AdminClient, AdminError};
use sluice_control::auth::Access;
use sluice_control::controller::{default_source, Controller};
use sluice_control::demo::{self, DemoOptions, Flavor};
use sluice_control::fleet::{candidate_id, Fleet, CALL_TIMEOUT};
use sluice_control::leader::Candidate;
use sluice_control::metrics::ControlMetrics;
use sluice_control::rollout::{Action, Phase};
use sluice_control::status::Status;
use sluice_control::store::FileStore;
use tokio_rustls::TlsAcceptor;
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
        /// Serve the admin API on a non-loopback address without authentication (anyone
        /// who reaches it can promote or abort rollouts); logged as a warning.
        #[arg(long)]
        insecure_admin: bool,
        /// Fleet mode: the admin address the other controls reach this one at, to forward
        /// commands when it leads (default: the admin address, unless it is 0.0.0.0 or ::).
        #[arg(long, value_name = "HOST:PORT", env = "SLUICE_ADVERTISE", value_parser = address)]
        advertise: Option<String>,
    },
    /// Show every rollout: phase, step, weight, last check with its numbers.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the raw JSON of GET /status instead of the table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Refresh the table in place every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Follow a rollout until it ends, printing each decision: exit 0 when it succeeded,
    /// 1 when it was rolled back, 2 on timeout, 3 when it cannot be followed (unknown rollout,
    /// refused token).
    Wait {
        #[command(flatten)]
        named: Named,
        /// Give up after this long (exit 2).
        #[arg(long, default_value = "30m", value_parser = duration, value_name = "DURATION")]
        timeout: Duration,
    },
    /// Pass a `pause` step the rollout is held at.
    Approve(Named),
    /// List a rollout's decisions and commands (with who asked), oldest first.
    History {
        #[command(flatten)]
        named: Named,
        /// Print the JSON records instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Start a rollout at its first step.
    Start {
        #[command(flatten)]
        named: Named,
        /// The canary version being deployed: recorded as seen (its arrival in the config
        /// does not start the rollout again), and a start that finds the rollout already
        /// running on this version succeeds without changing anything.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
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
    /// Read the bearer token from FILE (else from the SLUICE_TOKEN environment variable).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Talk TLS to the control, verifying its certificate against this PEM CA.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for a control that requires one (mTLS); needs --key.
    #[arg(long, value_name = "FILE", requires = "key", requires = "ca")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The name to verify in the control's certificate (default: the host of the address).
    #[arg(long, value_name = "NAME", requires = "ca")]
    server_name: Option<String>,
}

/// Where the CLI's token came from, to say so when the control refuses it.
#[derive(Debug)]
enum TokenSource {
    File(PathBuf),
    Environment,
    Absent,
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
        let done = match cli.command {
            Cmd::Run {
                target,
                log_format,
                log_level,
                insecure_admin,
                advertise,
            } => {
                init_logging(log_format, &log_level);
                run(&target, insecure_admin, advertise).await
            }
            Cmd::History { named, json } => history(&named, json).await,
            Cmd::Status {
                target,
                json,
                watch: true,
            } if !json => watch(&target).await,
            Cmd::Status { target, json, .. } => status(&target, json).await,
            Cmd::Wait { named, timeout } => return wait(&named, timeout).await,
            Cmd::Approve(n) => act(&n, "approve").await,
            Cmd::Start { named, version } => {
                let action = match version {
                    Some(v) => format!(
                        "start?version={}",
                        percent_encoding::utf8_percent_encode(
                            &v,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                    None => "start".to_string(),
                };
                act(&named, &action).await
            }
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
        };
        done.map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            if tracing::dispatcher::has_been_set() {
                error!("{e:#}");
            }
            eprintln!("sluice-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    target: &Target,
    insecure_admin: bool,
    advertise: Option<String>,
) -> anyhow::Result<()> {
    let config = Config::load(&target.config)?;
    // `--admin` overrides `control.admin` (e.g. to run a second instance beside the first).
    let address = admin_address(target)?;
    let address = sluice_config::Address::parse(&address).map_err(|e| anyhow!("--admin: {e}"))?;
    let bind = address
        .bind_addr()
        .ok_or_else(|| anyhow!("control.admin {address} is not an IP address"))?;
    let server_tls = config.control.tls.as_ref();
    let access = Arc::new(Access::new(
        config.control.tokens_file.as_deref(),
        server_tls.is_some_and(|t| t.client_ca.is_some()),
    )?);
    if access.is_open() && !bind.ip().is_loopback() {
        if !insecure_admin {
            return Err(anyhow!(
                "control.admin {bind} is not a loopback address and the admin API has no authentication: anyone who can reach it could promote or abort rollouts. Set control.auth.tokens_file (or control.tls with client_ca), bind to 127.0.0.1, or pass --insecure-admin to serve it open anyway"
            ));
        }
        tracing::warn!(address = %bind, "--insecure-admin: the admin API on a non-loopback address takes commands from anyone who can reach it");
    }
    let tls = server_tls
        .map(|t| sluice_proxy::tls::server_config(t, sluice_config::ListenerProtocol::Http1))
        .transpose()
        .context("control.tls")?
        .map(TlsAcceptor::from);
    let socket = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("control.admin: cannot listen on {bind}"))?;
    let local = socket.local_addr()?;
    tracing::info!(
        address = %local,
        tls = tls.is_some(),
        authentication = !access.is_open(),
        "control admin listening"
    );
    let _tokens = access.watch();
    let (commands, requests) = tokio::sync::mpsc::channel(16);
    let metrics = Arc::new(ControlMetrics::new());
    let status = tokio::sync::watch::Sender::new(Status::default());
    let mut admin = Admin {
        status: status.subscribe(),
        metrics: metrics.clone(),
        commands,
        access,
        tls,
        forward: None,
    };
    match &config.store {
        None => {
            let store = Arc::new(FileStore::for_config(&config, &target.config));
            let controller = Controller::with_parts(
                &target.config,
                store,
                Box::new(default_source),
                metrics.clone(),
                status,
            )
            .await?;
            metrics.leader(true);
            tokio::spawn(admin.serve(socket));
            let mut requests = requests;
            controller.run(&mut requests, shutdown_signal()).await;
        }
        Some(etcd) => {
            let advertise = match advertise {
                Some(advertise) => advertise,
                None if local.ip().is_unspecified() => {
                    return Err(anyhow!(
                        "control.admin {local} is a wildcard address, which the other controls cannot reach: pass --advertise HOST:PORT (or SLUICE_ADVERTISE), e.g. the pod IP and the admin port"
                    ))
                }
                None => local.to_string(),
            };
            let client = sluice_proxy::reload::etcd::client(etcd, CALL_TIMEOUT)?;
            let me = Candidate {
                id: candidate_id(),
                admin: advertise,
            };
            tracing::info!(id = %me.id, advertise = %me.admin, endpoints = ?client.endpoints(), prefix = %etcd.prefix, "fleet mode: standing for election");
            let fleet = Fleet::new(
                target.config.clone(),
                etcd.clone(),
                client,
                me,
                metrics,
                status,
            );
            admin.forward = Some(Forward {
                me: fleet.id().to_string(),
                leader: fleet.leader(),
                tls: forward_tls(server_tls)?,
            });
            tokio::spawn(admin.serve(socket));
            fleet.run(requests, shutdown_signal()).await;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// TLS for forwarding commands to the leader: its certificate is checked against
/// `control.tls.client_ca` and this control presents its own (the controls of a fleet share
/// one CA). `None` without `control.tls`.
fn forward_tls(
    tls: Option<&sluice_config::ServerTls>,
) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    let Some(tls) = tls else { return Ok(None) };
    let Some(ca) = &tls.client_ca else {
        return Err(anyhow!(
            "fleet mode with control.tls needs control.tls.client_ca: standbys forward commands to the leader over TLS, trusting that CA and presenting their own certificate"
        ));
    };
    let settings = sluice_config::ClientTls {
        ca: ca.clone(),
        server_name: None,
        cert: Some(tls.cert.clone()),
        key: Some(tls.key.clone()),
    };
    let (config, _) =
        sluice_proxy::tls::client_config(&settings, sluice_config::UpstreamProtocol::Http1)
            .context("control.tls (as the client that forwards commands to the leader)")?;
    Ok(Some(config))
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

/// A client for the control `target` names, with the token and TLS settings given.
fn client(target: &Target) -> anyhow::Result<(AdminClient, TokenSource)> {
    let admin = admin_address(target)?;
    let (token, source) = match &target.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?;
            (
                Some(text.trim().to_string()),
                TokenSource::File(path.clone()),
            )
        }
        None => match std::env::var("SLUICE_TOKEN") {
            Ok(token) if !token.trim().is_empty() => {
                (Some(token.trim().to_string()), TokenSource::Environment)
            }
            _ => (None, TokenSource::Absent),
        },
    };
    let tls = match &target.ca {
        None => None,
        Some(ca) => {
            let host = admin
                .rsplit_once(':')
                .map_or(admin.as_str(), |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = target
                .server_name
                .clone()
                .unwrap_or_else(|| host.to_string());
            let settings = sluice_config::ClientTls {
                ca: ca.clone(),
                server_name: Some(name),
                cert: target.cert.clone(),
                key: target.key.clone(),
            };
            let (config, server_name) =
                sluice_proxy::tls::client_config(&settings, sluice_config::UpstreamProtocol::Http1)
                    .context("TLS to the control")?;
            let server_name = server_name
                .ok_or_else(|| anyhow!("no name to verify in the control's certificate"))?;
            Some((config, server_name))
        }
    };
    Ok((AdminClient::new(&admin, token, tls), source))
}

/// `GET path` of the control, refused answers turned into errors that say what to do.
async fn fetch(target: &Target, path: &str) -> anyhow::Result<bytes::Bytes> {
    let (client, source) = client(target)?;
    let (code, body) = client
        .get(path, Duration::from_secs(5))
        .await
        .map_err(|e| unreachable(client.address(), &e.to_string()))?;
    if !code.is_success() {
        return Err(refused(client.address(), code, &body, &source));
    }
    Ok(body)
}

/// The error for a non-2xx answer: the control's message, and for 401/403 where the token
/// came from.
fn refused(
    admin: &str,
    code: http::StatusCode,
    body: &[u8],
    source: &TokenSource,
) -> anyhow::Error {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = json["error"].as_str().map_or_else(
        || String::from_utf8_lossy(body).into_owned(),
        str::to_string,
    );
    if code == http::StatusCode::UNAUTHORIZED || code == http::StatusCode::FORBIDDEN {
        let from = match source {
            TokenSource::File(path) => format!("the token from --token-file {}", path.display()),
            TokenSource::Environment => "the token from SLUICE_TOKEN".to_string(),
            TokenSource::Absent => {
                "no token (pass --token-file FILE or set SLUICE_TOKEN)".to_string()
            }
        };
        return anyhow!("{admin} refused the request ({code}): {message}; sent {from}");
    }
    anyhow!("{message}")
}

#[allow(clippy::print_stdout)]
async fn status(target: &Target, json: bool) -> anyhow::Result<()> {
    let body = fetch(target, "/status").await?;
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let status = parse_status(&body)?;
    print!(
        "{}",
        sluice_control::cli_table::render(&status, sluice_config::unix_now())
    );
    Ok(())
}

fn parse_status(body: &[u8]) -> anyhow::Result<Status> {
    serde_json::from_slice(body).context(
        "the control's /status is not the status this sluice-control reads (a different version?)",
    )
}

#[allow(clippy::print_stdout)]
async fn history(named: &Named, json: bool) -> anyhow::Result<()> {
    let body = fetch(&named.target, "/status").await?;
    let status = parse_status(&body)?;
    let Some(rollout) = status.rollout(&named.name) else {
        return Err(anyhow!("{}", status.unknown(&named.name)));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rollout.history)?);
    } else {
        print!(
            "{}",
            sluice_control::cli_table::render_history(rollout, sluice_config::unix_now())
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn act(named: &Named, action: &str) -> anyhow::Result<()> {
    let (client, source) = client(&named.target)?;
    let name =
        percent_encoding::utf8_percent_encode(&named.name, percent_encoding::NON_ALPHANUMERIC);
    let path = format!("/rollouts/{name}/{action}");
    let admin = client.address().to_string();
    // The control answers at once; the margin covers a machine under heavy load.
    let (code, body) = client
        .post(&path, Duration::from_secs(30))
        .await
        .map_err(|e| match e {
            AdminError::Timeout(t) => anyhow!(
                "sluice-control at {admin} did not answer within {t:?}; the command may still be applied (check `sluice-control status`)"
            ),
            other => unreachable(&admin, &other.to_string()),
        })?;
    if !code.is_success() {
        return Err(refused(&admin, code, &body, &source));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "{}: {}",
        named.name,
        json["message"].as_str().unwrap_or("ok")
    );
    Ok(())
}

/// `status --watch`: the table redrawn in place every second (on a terminal: cursor home,
/// each line cleared to its end, the rest of the screen cleared — no flicker); elsewhere the
/// table is printed again whenever it changes.
#[allow(clippy::print_stdout)]
async fn watch(target: &Target) -> anyhow::Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last = String::new();
    let mut first = true;
    loop {
        let table = match fetch(target, "/status").await {
            Ok(body) => {
                let status = parse_status(&body)?;
                sluice_control::cli_table::render(&status, sluice_config::unix_now())
            }
            Err(e) => format!("{e:#}\n"),
        };
        if terminal {
            let mut frame = String::from(if first { "\x1b[2J\x1b[H" } else { "\x1b[H" });
            for line in table.lines() {
                frame.push_str(line);
                frame.push_str("\x1b[K\n");
            }
            frame.push_str("\x1b[J");
            print!("{frame}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else if table != last {
            println!("{table}");
        }
        first = false;
        last = table;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `wait NAME`: follows the rollout through the control's status (reconnecting while the
/// control restarts), prints each new decision once, and exits with the outcome.
#[allow(clippy::print_stdout)]
async fn wait(named: &Named, timeout: Duration) -> anyhow::Result<ExitCode> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (client, source) = client(&named.target)?;
    let admin = client.address().to_string();
    let mut seen: Option<u64> = None;
    let mut outage = false;
    let mut noted_idle = false;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            println!(
                "{}: timed out after {} waiting for the rollout to end",
                named.name,
                sluice_config::format_duration(timeout)
            );
            return Ok(ExitCode::from(2));
        }
        let answer = client
            .get("/status", remaining.min(Duration::from_secs(5)))
            .await;
        match answer {
            Err(e) => {
                if !outage {
                    println!("{}: sluice-control at {admin} unreachable ({e}); retrying until it answers", named.name);
                    outage = true;
                }
            }
            Ok((code, body)) if !code.is_success() => {
                eprintln!(
                    "sluice-control: {:#}",
                    refused(&admin, code, &body, &source)
                );
                return Ok(ExitCode::from(3));
            }
            Ok((_, body)) => {
                if outage {
                    println!("{}: sluice-control at {admin} answers again", named.name);
                    outage = false;
                }
                let status = parse_status(&body)?;
                let Some(rollout) = status.rollout(&named.name) else {
                    eprintln!("sluice-control: {}", status.unknown(&named.name));
                    return Ok(ExitCode::from(3));
                };
                // First contact: the decisions of the run under way (from its start).
                let from = seen.unwrap_or_else(|| {
                    rollout
                        .history
                        .iter()
                        .rev()
                        .find(|d| matches!(d.action, Action::Started))
                        .map_or(rollout.decisions, |d| d.seq - 1)
                });
                for decision in rollout.history.iter().filter(|d| d.seq > from) {
                    println!(
                        "{}: {:<11} canary {:>5}%  {}",
                        named.name,
                        decision.action.as_str(),
                        decision.canary_weight,
                        decision.message
                    );
                }
                seen = Some(from.max(rollout.decisions));
                match rollout.phase {
                    Phase::Succeeded => {
                        println!("{}: succeeded", named.name);
                        return Ok(ExitCode::SUCCESS);
                    }
                    Phase::RolledBack => {
                        println!("{}: rolled back", named.name);
                        return Ok(ExitCode::from(1));
                    }
                    Phase::Idle if !noted_idle => {
                        println!("{}: not started yet; waiting for it to start", named.name);
                        noted_idle = true;
                    }
                    _ => {}
                }
            }
        }
        let pause = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_secs(1));
        tokio::time::sleep(pause).await;
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
