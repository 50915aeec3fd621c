//! Compiles the C++ half of `operator new` (the part that throws `std::bad_alloc`) and warns
//! when the thread-local model is not initial-exec (RUSTFLAGS overriding .cargo/config.toml).

fn main() {
    println!("cargo:rerun-if-changed=src/new_delete.cpp");
    println!("cargo:rerun-if-changed=include/tallymalloc.h");
    cc::Build::new()
        .cpp(true)
        .file("src/new_delete.cpp")
        .include("include")
        .flag("-std=c++17")
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
