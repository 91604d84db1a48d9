//! Continuous background load: several keep-alive client connections sending GETs until
//! stopped, counting successes and failures, so tests can prove "zero failed requests".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::client;

/// A running load. Call [`Load::stop`] for the report.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed (transport error or non-2xx).
    pub failed: u64,
    /// The first few failures, for the assertion message.
    pub failures: Vec<String>,
}

impl Load {
    /// Starts `connections` clients, each with its own keep-alive connection, requesting `url`.
    pub fn start(url: &str, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let tasks = (0..connections)
            .map(|_| {
                let (stop, counters, url) = (stop.clone(), counters.clone(), url.to_string());
                tokio::spawn(async move {
                    let client = client::http1();
                    while !stop.load(Ordering::Relaxed) {
                        let req = http::Request::get(&url)
                            .body(Default::default())
                            .expect("request");
                        match client.request(req).await {
                            Ok(response) if response.status().is_success() => {
                                use http_body_util::BodyExt;
                                match response.into_body().collect().await {
                                    Ok(_) => counters.ok.fetch_add(1, Ordering::Relaxed),
                                    Err(e) => counters.fail(format!("body: {e}")),
                                };
                            }
                            Ok(response) => {
                                counters.fail(format!("status {}", response.status()));
                            }
                            Err(e) => {
                                counters.fail(format!("transport: {e:?}"));
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            counters,
            tasks,
        }
    }

    /// Requests answered so far.
    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients (after their current request) and reports.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        LoadReport {
            ok: self.counters.ok.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            failures: self
                .counters
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

impl Counters {
    fn fail(&self, why: String) -> u64 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() < 10 {
            failures.push(why);
        }
        self.failed.fetch_add(1, Ordering::Relaxed)
    }
}
