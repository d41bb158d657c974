//! Generates the remote-write types from `schemas/proto`, the single definition of that
//! contract. protox compiles the .proto in pure Rust so no `protoc` is needed to build.
use std::path::PathBuf;

fn main() {
    let schemas = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/proto");
    let proto = schemas.join("remote.proto");
    let v2 = schemas.join("remote_v2.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed={}", v2.display());
    let fds = protox::compile([&proto, &v2], [&schemas])
        .expect("compile schemas/proto/remote.proto and remote_v2.proto");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate remote-write types");
}
