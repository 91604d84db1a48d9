//! Compiles `proto/echo.proto` for the gRPC tests with protox, a protobuf compiler in Rust,
//! so building the tests needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    let descriptors = protox::compile(["echo.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // The tests bring their own h2c transport (hyper), so no `connect()` helpers.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
