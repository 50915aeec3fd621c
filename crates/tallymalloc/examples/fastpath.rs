//! Runs malloc+free pairs of one size, for counting the fast path's instructions:
//!
//! ```text
//! scripts/fastpath-count      # callgrind over 1M pairs of 16 B and of 1 KiB
//! ```
//!
//! Only `pairs` is measured (callgrind's `--toggle-collect`), after a warm-up that creates the
//! thread's heap and first page, so the count is the steady state a loop sees. The size goes
//! through `black_box` so that the compiler cannot hoist the size-class lookup out of the
//! loop; that costs two instructions a pair, and the loop itself two more.

use std::hint::black_box;

#[inline(never)]
fn pairs(count: usize, size: usize) {
    for _ in 0..count {
        if let Some(block) = tallymalloc::malloc(black_box(size)) {
            // SAFETY: `block` was just allocated and is freed once.
            unsafe { tallymalloc::free(block.as_ptr()) };
        }
    }
}

/// The same loop without the allocator: what `pairs` costs beyond malloc and free.
#[inline(never)]
fn harness(count: usize, size: usize) {
    for _ in 0..count {
        black_box(size);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let count: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    if args.next().as_deref() == Some("harness") {
        harness(count, size);
        return;
    }
    // Warm up outside the measured function.
    for _ in 0..1000 {
        let block = tallymalloc::malloc(size).expect("malloc");
        // SAFETY: just allocated.
        unsafe { tallymalloc::free(block.as_ptr()) };
    }
    pairs(count, size);
    println!("{count} malloc+free pairs of {size} bytes");
}
