//! Routing cost per request: route match + weighted pick at 10, 100 and 1000 routes, the
//! snapshot load with and without a concurrent reload every millisecond, and config compile.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Request;
use sluice_benches::{prefix_config, tenant_config};
use sluice_config::{RequestHead, RouteTable};

fn main() {
    divan::main();
}

fn head(req: &Request<()>) -> RequestHead<'_> {
    RequestHead {
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
    }
}

/// Match + pick, as the proxy does per request (the roll is what the RNG would give).
#[inline]
fn route_and_pick(table: &RouteTable, req: &Request<()>, roll: u64) -> Option<usize> {
    let (_, route) = table.find(&head(req))?;
    Some(route.split.pick(route.split.roll_from(roll)))
}

fn request_for_tenant(tenant: Option<usize>) -> Request<()> {
    let mut req = Request::get("/api/orders?page=2")
        .header("host", "api.example.com")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json");
    if let Some(t) = tenant {
        req = req.header("x-tenant", format!("t{t}"));
    }
    req.body(()).unwrap_or_default()
}

/// The request matches the last tenant route (worst case for a scan).
#[divan::bench(args = [10, 100, 1000])]
fn match_and_pick_last_tenant(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let table = tenant_config(routes).routes;
    let req = request_for_tenant(Some(routes - 1));
    let mut roll = 0x9E37_79B9_7F4A_7C15u64;
    bencher.bench_local(|| {
        roll = roll.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        black_box(route_and_pick(black_box(&table), black_box(&req), roll))
    });
}

/// No tenant header: falls through every tenant route to the default one.
#[divan::bench(args = [10, 100, 1000])]
fn match_and_pick_default(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let table = tenant_config(routes).routes;
    let req = request_for_tenant(None);
    let mut roll = 1u64;
    bencher.bench_local(|| {
        roll = roll.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        black_box(route_and_pick(black_box(&table), black_box(&req), roll))
    });
}

/// Path-prefix routes only (no exact key to index): a scan to the last route.
#[divan::bench(args = [10, 100, 1000])]
fn match_and_pick_last_prefix(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let table = prefix_config(routes).routes;
    let req = Request::get(format!("/svc{}/items", routes - 1))
        .body(())
        .unwrap_or_default();
    let mut roll = 1u64;
    bencher.bench_local(|| {
        roll = roll.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        black_box(route_and_pick(black_box(&table), black_box(&req), roll))
    });
}

/// The weighted pick alone (90/10).
#[divan::bench]
fn pick_only(bencher: divan::Bencher<'_, '_>) {
    let table = tenant_config(1).routes;
    let split = &table.routes()[1].split;
    let mut roll = 1u64;
    bencher.bench_local(|| {
        roll = roll.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        black_box(split.pick(split.roll_from(roll)))
    });
}

/// Loading the routing snapshot (`ArcSwap::load_full`, as the proxy does per request), with
/// no reloads happening.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn snapshot_quiet(bencher: divan::Bencher<'_, '_>) {
    let swap = ArcSwap::from_pointee(tenant_config(10).routes);
    bencher.bench_local(|| black_box(swap.load_full()));
}

/// The same while another thread publishes a new table every millisecond.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn snapshot_under_reload_every_ms(bencher: divan::Bencher<'_, '_>) {
    let swap = Arc::new(ArcSwap::from_pointee(tenant_config(10).routes));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (swap, stop) = (swap.clone(), stop.clone());
        let fresh = Arc::new(tenant_config(10).routes);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                swap.store(fresh.clone());
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    bencher.bench_local(|| black_box(swap.load_full()));
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
}

/// Parsing and validating a config (what a reload costs, off the request path).
#[divan::bench(args = [10, 1000])]
fn config_compile(bencher: divan::Bencher<'_, '_>, routes: usize) {
    bencher.bench(|| black_box(tenant_config(routes)));
}
