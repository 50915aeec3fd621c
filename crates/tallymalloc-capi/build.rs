//! Compiles the C part of `operator new` (the part that may throw `std::bad_alloc`), names the
//! shared library's ABI in its soname, and warns when the thread-local model is not
//! initial-exec (RUSTFLAGS overriding .cargo/config.toml).

fn main() {
    println!("cargo:rerun-if-changed=src/new_delete.c");
    println!("cargo:rerun-if-changed=include/tallymalloc.h");
    cc::Build::new()
        .file("src/new_delete.c")
        .include("include")
        // Unwind tables, so std::bad_alloc can be thrown through this C code.
        .flag("-fexceptions")
        .flag("-fvisibility=hidden")
        .compile("tallymalloc_cxx");

    // Programs linked with -ltallymalloc record the soname, and run with any later library of
    // the same ABI: the major version, or for 0.x (where a minor version may break it, as Cargo
    // reads versions) the minor one too. scripts/install makes the links it names.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("set by cargo");
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    let soname = format!("libtallymalloc.so.{abi}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // For the tests that link programs against the library (not TALLYMALLOC_*: cargo test also
    // sets it when it runs them, where the library would read it as an option).
    println!("cargo:rustc-env=LIBTALLYMALLOC_SONAME={soname}");

    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" && !flags.contains("tls-model=initial-exec") {
        println!(
            "cargo:warning=libtallymalloc is being built without -Z tls-model=initial-exec \
             (RUSTFLAGS overrides .cargo/config.toml?): every malloc will call __tls_get_addr, \
             and a dlopen'ed copy may recurse into itself"
        );
    }
}
