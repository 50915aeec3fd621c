//! A Rust program on tallymalloc as `#[global_allocator]` that leaks on purpose: run with
//! `TALLYMALLOC_DEBUG=1`, debug mode must list the leaked `Box`es by the line that made them
//! (`tests/debug_mode.rs`).

#[global_allocator]
static GLOBAL: tallymalloc::TallyMalloc = tallymalloc::TallyMalloc;

#[inline(never)]
fn leak_a_box(value: u64) {
    let boxed = Box::new([value; 64]); // 512 bytes, leaked below
    std::mem::forget(boxed);
}

fn main() {
    for value in 0..std::hint::black_box(7) {
        leak_a_box(value);
    }
    let kept: Vec<String> = (0..3).map(|n| n.to_string()).collect();
    drop(kept);
    println!("leaked 7 boxes of 512 bytes");
}
