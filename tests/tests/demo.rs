//! `sluice-control demo` runs to its end, both ways.

use std::process::Command;

use sluice_tests::process::binary;

fn demo(args: &[&str]) -> (i32, String) {
    // Make sure both binaries exist side by side, as the README's command builds them.
    binary("sluice-proxy");
    let out = Command::new(binary("sluice-control"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run the demo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_healthy_demo_succeeds() {
    let (code, output) = demo(&["--interval", "1s"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Result: succeeded"), "{output}");
    assert!(output.contains("canary 5% -> 10% (step 2/6)"), "{output}");
}

#[test]
fn the_bad_canary_demo_rolls_back() {
    let (code, output) = demo(&["--interval", "1s", "--bad-canary"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Result: rolled back"), "{output}");
    assert!(output.contains("> max_error_rate 1.00%"), "{output}");
}

#[test]
fn the_slow_canary_demo_rolls_back_on_p95() {
    let (code, output) = demo(&["--interval", "1s", "--slow-canary"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Result: rolled back"), "{output}");
    assert!(output.contains("> max_p95 250.0ms"), "{output}");
}
