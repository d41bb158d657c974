//! Generates the remote-write types from `schemas/proto`, the single definition of that
//! contract. protox compiles the .proto in pure Rust so no `protoc` is needed to build.
use std::path::PathBuf;

fn main() {
    let schemas = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/proto");
    let proto = schemas.join("remote.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&schemas]).expect("compile schemas/proto/remote.proto");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate remote-write types");
}
