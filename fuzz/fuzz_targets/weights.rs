//! The weights file (`weights.yaml`) against a fixed config: never a panic, and a file that is
//! accepted never leaves a route without weight.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_config::{Config, Weights};

const CONFIG: &str = "listeners: [{ name: http, address: \"127.0.0.1:0\" }]
upstreams:
  stable: { endpoints: [\"127.0.0.1:1\"] }
  canary: { endpoints: [\"127.0.0.1:2\"] }
routes:
  - { name: testers, backends: [{ upstream: canary, weight: 100 }] }
  - { name: default, backends: [{ upstream: stable, weight: 90 }, { upstream: canary, weight: 10 }] }
";

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| match Config::parse(CONFIG, Path::new("sluice.yaml")) {
        Ok(config) => config,
        Err(e) => panic!("the fixed config is valid: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&format, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let path = if format % 2 == 0 {
        Path::new("weights.yaml")
    } else {
        Path::new("weights.toml")
    };
    let routes = &config().routes;
    match Weights::parse(text, path, routes) {
        Ok(weights) => {
            let table = weights.apply(routes);
            for route in table.routes() {
                assert!(
                    route.split.total() > 0,
                    "route {} has no weight",
                    route.name
                );
            }
        }
        Err(error) => assert!(error.count() >= 1),
    }
});
