//! Build script of every Lambda binary (the functions and the benchmark's hello world): links
//! them as position-dependent executables.
//!
//! A position-independent executable is relocated by the dynamic loader at every start: a
//! function carries the AWS SDK, about 19,000 relative relocations against a hello world's
//! 2,500, and the loader writes each one, copying the pages they sit on. That was the larger
//! part of a function's start-up beyond a hello world's (BENCHMARKS.md, "Cold start"), and
//! Lambda pays it at every cold start, on a fraction of a vCPU at small memory sizes. Linked
//! with `-no-pie`, the linker resolves them once, at build time. The code itself is still
//! compiled position-independent (the default), so nothing else changes.
//!
//! The cost is ASLR for the executable's own image (the stack, heap and shared libraries are
//! still randomized), as for Go binaries, which Lambda has always run non-PIE. Set
//! `SWITCHBOARD_PIE=1` when building to keep position-independent executables.

fn main() {
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_PIE");
    let pie = std::env::var("SWITCHBOARD_PIE").is_ok_and(|v| !v.is_empty() && v != "0");
    if !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
