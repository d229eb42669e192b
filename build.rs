//! Compiles the small C++ shim that searches a faiss HNSW index with a
//! per-query efSearch (`src/actors/vectors/ffi/hnsw_search.cpp`), against
//! the faiss headers of the faiss sources that `faiss-sys` builds (its
//! `static` feature compiles the copy vendored in the crate). faiss-sys
//! publishes no include path, so it is found here: `FAISS_INCLUDE_DIR` if
//! set, else the faiss-sys crate of the version in Cargo.lock, in Cargo's
//! registry sources.

use std::path::{Path, PathBuf};

const SHIM: &str = "src/actors/vectors/ffi/hnsw_search.cpp";

fn main() {
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=FAISS_INCLUDE_DIR");
    let include = faiss_include_dir();
    cc::Build::new()
        .cpp(true)
        .file(SHIM)
        .include(&include)
        .flag_if_supported("-std=c++17")
        .opt_level(2)
        .warnings(false)
        .compile("lakehouse_faiss_shim");
}

fn faiss_include_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FAISS_INCLUDE_DIR") {
        return PathBuf::from(dir);
    }
    let version = faiss_sys_version();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .expect("neither CARGO_HOME nor HOME is set");
    let registry = cargo_home.join("registry").join("src");
    let candidates = std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", registry.display()));
    for source in candidates.flatten() {
        let include = source
            .path()
            .join(format!("faiss-sys-{version}"))
            .join("faiss");
        if include.join("faiss").join("impl").join("HNSW.h").is_file() {
            return include;
        }
    }
    panic!(
        "the faiss headers of faiss-sys {version} were not found under {}; \
         set FAISS_INCLUDE_DIR to the directory that holds faiss/impl/HNSW.h",
        registry.display()
    );
}

/// The version of faiss-sys that Cargo.lock pins.
fn faiss_sys_version() -> String {
    let lock = std::fs::read_to_string("Cargo.lock").expect("Cargo.lock is readable");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"faiss-sys\"" {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return version.trim_matches('"').to_string();
            }
        }
    }
    panic!("faiss-sys is not in Cargo.lock");
}
