//! Compiles the small C++ shims: one searches a faiss HNSW index with a
//! per-query efSearch (`src/actors/vectors/ffi/hnsw_search.cpp`), one holds
//! faster distance kernels that faiss's calls are redirected to by the
//! linker (`src/actors/vectors/ffi/distances.cpp`, see [`KERNELS`]); against
//! the faiss headers of the faiss sources that `faiss-sys` builds (its
//! `static` feature compiles the copy vendored in the crate). faiss-sys
//! publishes no include path, so it is found here: `FAISS_INCLUDE_DIR` if
//! set, else the faiss-sys crate of the version in Cargo.lock, in Cargo's
//! registry sources.

use std::path::{Path, PathBuf};

const SHIM: &str = "src/actors/vectors/ffi/hnsw_search.cpp";
const DISTANCES: &str = "src/actors/vectors/ffi/distances.cpp";

/// faiss's distance functions whose calls from other faiss object files
/// the linker sends to `__wrap_<symbol>` in `distances.cpp` (faiss's own
/// loop keeps one accumulator under GCC; see that file).
const KERNELS: [&str; 2] = [
    "_ZN5faiss18fvec_inner_productEPKfS1_m",
    "_ZN5faiss10fvec_L2sqrEPKfS1_m",
];

fn main() {
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-changed={DISTANCES}");
    println!("cargo:rerun-if-env-changed=CXXFLAGS");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=FAISS_INCLUDE_DIR");
    let include = faiss_include_dir();
    cc::Build::new()
        .cpp(true)
        .file(SHIM)
        .file(DISTANCES)
        .include(&include)
        .flag_if_supported("-std=c++17")
        .opt_level(2)
        .warnings(false)
        .compile("lakehouse_faiss_shim");
    for symbol in KERNELS {
        println!("cargo:rustc-link-arg=-Wl,--wrap={symbol}");
        // Pulled from the shim's archive whatever the order of archives
        // on the link line (faiss's references to it may come after).
        println!("cargo:rustc-link-arg=-Wl,--undefined=__wrap_{symbol}");
    }
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
