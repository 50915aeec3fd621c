//! Compiles the C part of `operator new` (the part that may throw `std::bad_alloc`) and warns
//! when the thread-local model is not initial-exec (RUSTFLAGS overriding .cargo/config.toml).

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
