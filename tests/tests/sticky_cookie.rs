//! Sticky cookie assignment: a client without the cookie gets a random key in `Set-Cookie`
//! and is placed by it; while the canary grows nobody goes back to stable, and after a
//! rollback everyone is on stable without clearing cookies.

// Tests print what they measure (the stickiness table) for the record.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use regex::Regex;
use sluice_tests::{client, config, eventually, Backend, Proxy};

const CLIENTS: usize = 10_000;
const CONCURRENCY: usize = 16;

/// What one request of a client came back with.
#[derive(Debug)]
struct Answer {
    /// The backend that answered.
    canary: bool,
    /// Its `Set-Cookie`, if any.
    set_cookie: Option<String>,
}

/// One GET of `/` per entry of `cookies` (the `Cookie` header to send, if any), over
/// [`CONCURRENCY`] keep-alive connections; the answers in the same order.
async fn request_all(proxy: &Proxy, cookies: Vec<Option<String>>) -> Vec<Answer> {
    let url = Arc::new(proxy.url("/"));
    let cookies = Arc::new(cookies);
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (url, cookies) = (url.clone(), cookies.clone());
        tasks.push(tokio::spawn(async move {
            let client = client::http1();
            let mut answers = Vec::new();
            for i in (worker..cookies.len()).step_by(CONCURRENCY) {
                let headers: Vec<(&str, &str)> = cookies[i]
                    .as_deref()
                    .map(|cookie| ("cookie", cookie))
                    .into_iter()
                    .collect();
                let reply = client::get(&client, &url, &headers).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                let set_cookie = reply
                    .headers
                    .get_all(http::header::SET_COOKIE)
                    .iter()
                    .map(|v| v.to_str().expect("ASCII Set-Cookie").to_string())
                    .collect::<Vec<_>>();
                assert!(set_cookie.len() <= 1, "{set_cookie:?}");
                let canary = match reply.text().as_str() {
                    "canary\n" => true,
                    "stable\n" => false,
                    other => panic!("unexpected answer {other:?}"),
                };
                answers.push((
                    i,
                    Answer {
                        canary,
                        set_cookie: set_cookie.into_iter().next(),
                    },
                ));
            }
            answers
        }));
    }
    let mut all = Vec::with_capacity(cookies.len());
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, answer)| answer).collect()
}

/// Writes the weights file with `canary`% on the canary and waits until the proxy applies it.
async fn set_canary_weight(proxy: &Proxy, canary: f64) {
    std::fs::write(
        proxy.dir().join("weights.yaml"),
        format!(
            "routes:\n  default: {{ stable: {}, canary: {canary} }}\n",
            100.0 - canary
        ),
    )
    .expect("write weights");
    eventually!(
        proxy.weight("default", "canary").await == canary,
        "the proxy applies canary {canary}%"
    );
}

/// The `Cookie` header each client sends: its key, and for a third of them another cookie
/// first (browsers send every cookie of the site in one header).
fn cookie_headers(keys: &[String]) -> Vec<Option<String>> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            Some(if i % 3 == 1 {
                format!("theme=dark; sluice-id={key}")
            } else {
                format!("sluice-id={key}")
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cookie_less_clients_stay_put_while_the_canary_grows_and_all_return_after_a_rollback(
) {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let sticky = config::split(&stable, &canary, "95", "5").replace(
        "    timeout: 5s\n",
        "    timeout: 5s\n    sticky: { cookie: sluice-id, set_cookie: true, max_age: 2h }\n",
    );
    let proxy = Proxy::start(&sticky);
    set_canary_weight(&proxy, 5.0).await;

    // Every client's first request: no cookie, so each gets a key and is placed by it.
    let first = request_all(&proxy, vec![None; CLIENTS]).await;
    let format =
        Regex::new(r"^sluice-id=([0-9a-f]{32}); Path=/; Max-Age=7200; HttpOnly; SameSite=Lax$")
            .expect("regex");
    let keys: Vec<String> = first
        .iter()
        .map(|answer| {
            let cookie = answer
                .set_cookie
                .as_deref()
                .expect("a Set-Cookie for a new client");
            let key = format
                .captures(cookie)
                .unwrap_or_else(|| panic!("unexpected Set-Cookie {cookie:?}"));
            key[1].to_string()
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), CLIENTS, "keys are not all different");
    let mut placed: Vec<bool> = first.iter().map(|a| a.canary).collect();
    let cookies = cookie_headers(&keys);

    let share =
        |placed: &[bool]| placed.iter().filter(|c| **c).count() as f64 * 100.0 / CLIENTS as f64;
    let mut table = vec![format!(
        "{:>6}  {:>12}  {:>10}",
        "step", "canary share", "moved back"
    )];
    let mut row = |step: &str, share: f64, moved_back: usize| {
        table.push(format!("{step:>6}  {share:>11.2}%  {moved_back:>10}"));
    };
    row("5", share(&placed), 0);

    let at_5 = share(&placed);
    assert!((5.0 - at_5).abs() <= 1.5, "canary {at_5:.2}% at 5%");
    // The same weight with the cookie: the placement of the first request holds (a sample;
    // every later step checks all clients against their previous placement).
    let sample = 2000;
    let again = request_all(&proxy, cookies[..sample].to_vec()).await;
    let moved = placed
        .iter()
        .zip(&again)
        .filter(|(before, now)| **before != now.canary)
        .count();
    assert_eq!(
        moved, 0,
        "{moved} clients changed backend at the same weight"
    );
    assert!(
        again.iter().all(|a| a.set_cookie.is_none()),
        "a client with the cookie got a new one"
    );

    for weight in [10.0, 25.0, 50.0, 100.0] {
        set_canary_weight(&proxy, weight).await;
        let now = request_all(&proxy, cookies.clone()).await;
        assert!(
            now.iter().all(|a| a.set_cookie.is_none()),
            "a client with the cookie got a new one at {weight}%"
        );
        let moved_back = placed
            .iter()
            .zip(&now)
            .filter(|(before, now)| **before && !now.canary)
            .count();
        placed = now.iter().map(|a| a.canary).collect();
        let on_canary = share(&placed);
        row(&format!("{weight}"), on_canary, moved_back);
        assert_eq!(
            moved_back, 0,
            "{moved_back} clients went back to stable at {weight}%"
        );
        assert!(
            (weight - on_canary).abs() <= 1.5,
            "canary {on_canary:.2}% at {weight}%"
        );
    }

    // Rollback: canary 0, and the very same cookies all land on stable.
    set_canary_weight(&proxy, 0.0).await;
    let after = request_all(&proxy, cookies.clone()).await;
    let rolled_back: Vec<bool> = after.iter().map(|a| a.canary).collect();
    let on_canary = share(&rolled_back);
    let moved_back = placed
        .iter()
        .zip(&rolled_back)
        .filter(|(before, now)| **before && !**now)
        .count();
    row("0", on_canary, moved_back);
    println!(
        "stickiness of {CLIENTS} cookie clients (moved back: canary -> stable since the last step)\n{}",
        table.join("\n")
    );
    assert_eq!(on_canary, 0.0, "clients on the canary after the rollback");
    assert!(after.iter().all(|a| a.set_cookie.is_none()));
    assert_eq!(
        stable.hits() + canary.hits(),
        (CLIENTS * 6 + sample) as u64,
        "every request answered by a backend"
    );
}
