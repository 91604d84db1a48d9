//! Build script: in release builds, has the linker place the functions listed in
//! `link-order.txt` (the ones the proxy runs, hottest first) together at the start of
//! sluice-proxy's code.
//!
//! The kernel maps a program's file pages around every page it touches, so code the proxy runs
//! scattered over the whole 9 MiB of machine code kept most of it resident: laid out this way,
//! idle RSS is 7.0 MiB instead of 10.3 (benches/RESULTS.md). `benches/e2e/link-order.sh`
//! regenerates the list.
//!
//! `--symbol-ordering-file` is an option of LLD (Rust's default linker on x86_64 Linux since
//! 1.90) and of mold, not of GNU ld: the script first links an empty program with it, and
//! without a linker that takes it, builds as before and says so in a warning.
//! `SLUICE_LINK_ORDER=0` turns the layout off.
//!
//! Mangled names carry a hash of the compiler's version: the list's first line says which
//! rustc built the binary it was generated from, and a build by another rustc is warned that
//! the list will match few of its functions.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = "sluice-proxy";

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=SLUICE_LINK_ORDER");
    if env::var("PROFILE").as_deref() != Ok("release")
        || env::var("SLUICE_LINK_ORDER").as_deref() == Ok("0")
    {
        return;
    }
    let (Some(manifest), Some(out)) = (env::var_os("CARGO_MANIFEST_DIR"), env::var_os("OUT_DIR"))
    else {
        return;
    };
    let list = Path::new(&manifest).join("link-order.txt");
    let args = [
        format!("-Wl,--symbol-ordering-file={}", list.display()),
        // names the list has that this build lacks (functions since removed) are no error
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    match linker_takes(&args, &PathBuf::from(out)) {
        Ok(()) => {
            for arg in &args {
                println!("cargo:rustc-link-arg-bin={BIN}={arg}");
            }
            if let Some(mismatch) = compiler_mismatch(&list) {
                println!("cargo:warning={mismatch}");
            }
        }
        Err(why) => println!(
            "cargo:warning=sluice-proxy is linked without link-order.txt ({why}): its code is \
             not laid out by use, which costs about 3 MiB of idle RSS. LLD (Rust's default \
             linker on x86_64 Linux since 1.90) or mold take --symbol-ordering-file; \
             SLUICE_LINK_ORDER=0 silences this."
        ),
    }
}

/// The list's first line names the rustc that built the binary it came from
/// (`# rustc version 1.95.0 (59807616e 2026-04-14)`, from that binary's `.comment` section).
/// Says so when this build's rustc is another one: the names of all its functions differ.
fn compiler_mismatch(list: &Path) -> Option<String> {
    let text = std::fs::read_to_string(list).ok()?;
    let listed = text
        .lines()
        .next()?
        .strip_prefix("# rustc version ")?
        .trim()
        .to_string();
    let output = Command::new(rustc()).arg("-V").output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout);
    let this = version.trim().strip_prefix("rustc ")?.to_string();
    (this != listed).then(|| {
        format!(
            "proxy/link-order.txt was generated from a build by rustc {listed}, and this is \
             rustc {this}: the mangled names carry a hash of the compiler's version, so the list \
             matches few functions and idle RSS is about 10 MiB instead of 7. Regenerate it \
             with benches/e2e/link-order.sh, or build with rustc {listed}."
        )
    })
}

/// The rustc cargo builds with.
fn rustc() -> OsString {
    env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// Links an empty program with `args`, the way cargo links the proxy (same rustc, target,
/// linker and flags), and says why that failed.
fn linker_takes(args: &[String], out: &Path) -> Result<(), String> {
    let source = out.join("link_order_probe.rs");
    std::fs::write(&source, "fn main() {}\n")
        .map_err(|e| format!("writing {}: {e}", source.display()))?;
    let mut probe = Command::new(rustc());
    probe
        .arg(&source)
        .arg("-o")
        .arg(out.join("link_order_probe"))
        .args([
            "--crate-type",
            "bin",
            "--edition",
            "2021",
            "-C",
            "opt-level=0",
        ]);
    if let Ok(target) = env::var("TARGET") {
        probe.args(["--target", &target]);
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        probe.arg(format!("-Clinker={linker}"));
    }
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        probe.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    }
    for arg in args {
        probe.arg(format!("-Clink-arg={arg}"));
    }
    let output = probe.output().map_err(|e| format!("running rustc: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    // the linker's own complaint ("ld: unrecognized option ..."), else rustc's first error
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr
        .lines()
        .find(|line| line.contains("option") && line.contains("ordering"))
        .or_else(|| stderr.lines().find(|line| line.starts_with("error")))
        .map_or("the link failed", |line| {
            line.trim().trim_start_matches("= note:").trim()
        });
    Err(reason.to_string())
}
