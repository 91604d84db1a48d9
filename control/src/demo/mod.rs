//! `sluice-control demo`: a complete local demonstration. Two built-in upstreams, the real
//! `sluice-proxy` binary, a steady load, and the controller with short intervals, shown live
//! in the terminal until the rollout succeeds or is rolled back.

mod load;
mod upstream;
mod view;

use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command as ProcessCommand};
use tokio::sync::{mpsc, oneshot, watch};

use crate::controller::{default_source, Command, Controller, Request};
use crate::http::HttpClient;
use crate::rollout::Phase;
use crate::status::{RolloutStatus, Status};
use load::LoadStats;
use upstream::Behavior;

/// Which canary the demo deploys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// As good as stable: the rollout goes 5% → 100%.
    Healthy,
    /// 15% of answers are 500s: rolled back on error rate.
    BadCanary,
    /// 300 ms slower: rolled back on p95.
    SlowCanary,
}

/// Demo settings.
#[derive(Clone, Copy, Debug)]
pub struct DemoOptions {
    /// Which canary.
    pub flavor: Flavor,
    /// Seconds between analyses.
    pub interval: Duration,
    /// Requests per second of the built-in load.
    pub rate: u32,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// `sluice-proxy` is not next to `sluice-control`.
    #[error("{0} not found: build both binaries with `cargo build --release` and run target/release/sluice-control demo")]
    ProxyMissing(String),
    /// Setting up files, sockets or processes failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The proxy did not become ready.
    #[error("sluice-proxy did not become ready within 15s; its log:\n{0}")]
    ProxyNotReady(String),
    /// The controller could not start.
    #[error("{0}")]
    Control(#[from] crate::controller::ControlError),
    /// The rollout could not be started.
    #[error("cannot start the rollout: {0}")]
    Start(String),
    /// Interrupted by Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The proxy exited during the demo.
    #[error("sluice-proxy exited ({0}); its log:\n{1}")]
    ProxyExited(String, String),
    /// The rollout did not end in time.
    #[error("the rollout did not end within {0:?}")]
    Timeout(Duration),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io { what, source }
}

/// Runs the demo to its end. Its processes and files are cleaned up on every way out: the
/// end of the rollout, an error, Ctrl-C, SIGTERM, or a panic (the cleanup is a `Drop`).
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-demo-")
        .tempdir()
        .map_err(io("create the demo directory"))?;
    let mut cleanup = Cleanup {
        proxy: None,
        tasks: Vec::new(),
    };
    let result = tokio::select! {
        result = demo(options, dir.path(), &mut cleanup) => result,
        () = interrupted() => Err(DemoError::Interrupted),
    };
    cleanup.stop().await;
    result
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What the demo started: stopped by [`Cleanup::stop`], or when dropped (after a panic).
struct Cleanup {
    proxy: Option<Child>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cleanup {
    /// Stops the tasks, kills the proxy and waits for it, so no zombie is left to init.
    async fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(mut proxy) = self.proxy.take() {
            let _ = proxy.kill().await;
        }
    }
}

/// The fallback when `stop` did not run (a panic): kill without waiting.
impl Drop for Cleanup {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(proxy) = self.proxy.as_mut() {
            let _ = proxy.start_kill();
        }
    }
}

#[allow(clippy::print_stdout)] // The demo draws in the terminal on purpose.
async fn demo(options: DemoOptions, dir: &Path, cleanup: &mut Cleanup) -> Result<(), DemoError> {
    let proxy_binary = std::env::current_exe()
        .map_err(io("find the sluice-control binary"))?
        .with_file_name("sluice-proxy");
    if !proxy_binary.exists() {
        return Err(DemoError::ProxyMissing(proxy_binary.display().to_string()));
    }
    let base = Behavior {
        latency: Duration::from_millis(10),
        error_rate: 0.0,
    };
    let (canary_behavior, flavor) = match options.flavor {
        Flavor::Healthy => (base, "healthy canary"),
        Flavor::BadCanary => (
            Behavior {
                error_rate: 0.15,
                ..base
            },
            "bad canary: 15% errors",
        ),
        Flavor::SlowCanary => (
            Behavior {
                latency: Duration::from_millis(310),
                ..base
            },
            "slow canary: +300 ms",
        ),
    };
    let (stable, stable_task) = upstream::spawn("stable", base)
        .await
        .map_err(io("start the stable upstream"))?;
    cleanup.tasks.push(stable_task);
    let (canary, canary_task) = upstream::spawn("canary", canary_behavior)
        .await
        .map_err(io("start the canary upstream"))?;
    cleanup.tasks.push(canary_task);

    let [listen, admin, control] = free_ports().map_err(io("find free ports"))?;
    let interval = options.interval.max(Duration::from_millis(500));
    // Enough canary requests at 5% to judge, with room for the randomness of the split.
    let min_requests =
        ((f64::from(options.rate) * 0.05 * interval.as_secs_f64()) * 0.6).max(10.0) as u64;
    let config = format!(
        r#"# Written by `sluice-control demo`.
listeners:
  - name: http
    address: {listen}
admin:
  address: {admin}
upstreams:
  stable:
    version: v1.0.0
    endpoints: [{stable}]
  canary:
    version: v2.0.0
    endpoints: [{canary}]
routes:
  - name: default
    timeout: 5s
    backends:
      - {{ upstream: stable, weight: 100 }}
      - {{ upstream: canary, weight: 0 }}
weights_file: weights.yaml
control:
  admin: {control}
  state: control-state.json
rollouts:
  - name: demo
    route: default
    stable: stable
    canary: canary
    steps: [5, 10, 25, 50, 75, 100]
    interval: {interval}ms
    analysis:
      min_requests: {min_requests}
      max_error_rate: 0.01
      max_p95: 250ms
      failure_limit: 2
    metrics:
      source: scrape
      targets: [{admin}]
"#,
        interval = interval.as_millis()
    );
    let config_path = dir.join("sluice.yaml");
    std::fs::write(&config_path, config).map_err(io("write the demo config"))?;

    let log = std::fs::File::create(dir.join("proxy.log")).map_err(io("create the proxy log"))?;
    let child = ProcessCommand::new(&proxy_binary)
        .args([
            "--config",
            "sluice.yaml",
            "--workers",
            "1",
            "--log-level",
            "warn",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(io("start sluice-proxy"))?;
    cleanup.proxy = Some(child);
    wait_ready(admin, dir).await?;

    let stats = Arc::new(LoadStats::default());
    cleanup.tasks.push(load::spawn(
        format!("http://{listen}/"),
        options.rate,
        stats.clone(),
    ));

    let (controller, status) = Controller::new(&config_path, Box::new(default_source)).await?;
    let (commands, requests) = mpsc::channel(4);
    let (stop, stopped) = watch::channel(false);
    let control_task = tokio::spawn(async move {
        let mut requests = requests;
        let mut stopped = stopped;
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        controller.run(&mut requests, stop).await;
    });
    let (reply, answer) = oneshot::channel();
    let _ = commands
        .send(Request {
            rollout: "demo".into(),
            command: Command::Start,
            caller: crate::auth::Caller {
                name: "demo".into(),
                address: std::net::IpAddr::from([127, 0, 0, 1]),
            },
            version: None,
            reply,
        })
        .await;
    match answer.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(DemoError::Start(e.to_string())),
        Err(_) => return Err(DemoError::Start("the controller stopped".into())),
    }

    let header = view::Header {
        flavor,
        proxy: listen.to_string(),
        rate: options.rate,
    };
    let started = Instant::now();
    let started_at = sluice_config::unix_now();
    let live = std::io::stdout().is_terminal();
    let mut printed = 0u64;
    let mut frames = tokio::time::interval(Duration::from_millis(250));
    // Six steps, each needing a passing interval; generous room for inconclusive ones.
    let limit = interval * 40 + Duration::from_secs(30);
    let outcome = loop {
        frames.tick().await;
        if started.elapsed() > limit {
            break Err(DemoError::Timeout(limit));
        }
        if let Some(proxy) = cleanup.proxy.as_mut() {
            if let Ok(Some(exit)) = proxy.try_wait() {
                let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
                break Err(DemoError::ProxyExited(exit.to_string(), log));
            }
        }
        let Some(rollout) = current(&status) else {
            continue;
        };
        if live {
            print!(
                "\x1b[2J\x1b[H{}",
                view::frame(&header, &rollout, &stats, started.elapsed(), started_at)
            );
        } else {
            for decision in rollout.history.iter().filter(|d| d.seq > printed) {
                println!(
                    "+{:>5.1}s  canary {:>5}%  {:<11} {}",
                    started.elapsed().as_secs_f64(),
                    rollout.canary_weight,
                    decision.action.as_str(),
                    decision.message
                );
            }
            printed = rollout.decisions;
        }
        let _ = std::io::stdout().flush();
        if matches!(rollout.phase, Phase::Succeeded | Phase::RolledBack) {
            break Ok(rollout);
        }
    };
    let _ = stop.send(true);
    let _ = control_task.await;
    let rollout = outcome?;
    if !live {
        println!();
    }
    print!(
        "{}",
        view::frame(&header, &rollout, &stats, started.elapsed(), started_at)
    );
    println!("\n{}", view::result(&rollout, started.elapsed()));
    Ok(())
}

fn current(status: &watch::Receiver<Status>) -> Option<RolloutStatus> {
    status.borrow().rollouts.first().cloned()
}

/// Three distinct free ports on 127.0.0.1 (bound, then released for the children to use).
fn free_ports() -> std::io::Result<[SocketAddr; 3]> {
    let sockets = [
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
    ];
    Ok([
        sockets[0].local_addr()?,
        sockets[1].local_addr()?,
        sockets[2].local_addr()?,
    ])
}

async fn wait_ready(admin: SocketAddr, dir: &Path) -> Result<(), DemoError> {
    let client = HttpClient::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    let url = format!("http://{admin}/ready");
    while Instant::now() < deadline {
        if let Ok((status, _)) = client.get(&url, Duration::from_millis(500)).await {
            if status.is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
    Err(DemoError::ProxyNotReady(log))
}
