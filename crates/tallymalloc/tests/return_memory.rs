//! Freed memory goes back to the OS: free pages, spare segments' pages and cached huge blocks
//! after the purge delay, on the next slow paths; empty segments beyond a heap's spares at
//! once. Until then, the page freed last is the first reused.

use std::time::Duration;

fn resident() -> usize {
    tallymalloc::process_resident_bytes().expect("/proc/self/statm")
}

fn touch(block: std::ptr::NonNull<u8>, size: usize) {
    // SAFETY: a live block of `size` bytes.
    unsafe { std::ptr::write_bytes(block.as_ptr(), 0x5A, size) };
}

const MIB: usize = 1 << 20;

/// Sleeps past the purge delay in force, then runs a loop of malloc and free, whose
/// housekeeping heartbeat purges (its blocks come and go on the fast path, which never runs
/// dry).
fn wait_out_the_purge_delay() {
    std::thread::sleep(Duration::from_millis(
        tallymalloc::purge_delay_in_force_millis() * 3 + 20,
    ));
    for _ in 0..20_000 {
        for size in [48, 3000] {
            let block = tallymalloc::malloc(size).expect("malloc");
            // SAFETY: just allocated.
            unsafe { tallymalloc::free(block.as_ptr()) };
        }
    }
}

#[test]
fn freeing_returns_memory_to_the_os() {
    // 0. Zeroed memory fresh from the OS is not written: no memset, so it stays unresident.
    // (Carving a fresh page writes each block's link word, so 100 large blocks cost 100 OS
    // pages; a memset would make all 30 MB resident.)
    let before_calloc = resident();
    let zeroed = tallymalloc::calloc(256, MIB).expect("calloc");
    let large_zeroed: Vec<_> = (0..100)
        .map(|_| tallymalloc::calloc(1, 300_000).unwrap())
        .collect();
    let after_calloc = resident();
    assert!(
        after_calloc < before_calloc + 4 * MIB,
        "calloc of fresh memory made {} MiB resident",
        (after_calloc - before_calloc) / MIB
    );
    // SAFETY: live zeroed blocks, read within bounds, freed once.
    unsafe {
        assert_eq!(*zeroed.as_ptr().add(200 * MIB), 0);
        tallymalloc::free(zeroed.as_ptr());
        for block in large_zeroed {
            tallymalloc::free(block.as_ptr());
        }
    }

    let baseline = resident();

    // 1. Whole segments: small, medium and huge blocks, all freed.
    let mut blocks = Vec::new();
    for (size, count) in [(4096, 40_000), (100_000, 600), (6 * MIB, 8)] {
        for _ in 0..count {
            let block = tallymalloc::malloc(size).expect("malloc");
            touch(block, size);
            blocks.push(block);
        }
    }
    let allocated = 40_000 * 4096 + 600 * 100_000 + 8 * 6 * MIB; // ~264 MiB
    let peak = resident();
    assert!(
        peak > baseline + allocated * 9 / 10,
        "blocks were not resident"
    );
    for block in blocks.drain(..) {
        // SAFETY: live blocks, each freed once.
        unsafe { tallymalloc::free(block.as_ptr()) };
    }
    wait_out_the_purge_delay();
    let after_free = resident();
    assert!(
        after_free < baseline + 16 * MIB,
        "resident {} MiB after freeing {} MiB (baseline {} MiB)",
        after_free / MIB,
        allocated / MIB,
        baseline / MIB
    );

    // 2. Pages of segments that stay in use: keep one block in each segment, free the rest.
    let mut kept = Vec::new();
    let mut freed = Vec::new();
    for index in 0..32_768 {
        let block = tallymalloc::malloc(2048).expect("malloc");
        touch(block, 2048);
        // 2048-byte blocks: 32 per 64 KiB page, 63 pages per segment.
        if index % (32 * 63) == 0 {
            kept.push(block);
        } else {
            freed.push(block);
        }
    }
    let before = resident();
    for block in freed {
        // SAFETY: live blocks, each freed once.
        unsafe { tallymalloc::free(block.as_ptr()) };
    }
    wait_out_the_purge_delay();
    let after_purge = resident();
    assert!(
        after_purge + 48 * MIB < before,
        "free pages kept their memory: {} MiB before, {} MiB after the purge delay",
        before / MIB,
        after_purge / MIB
    );
    for block in kept {
        // SAFETY: live blocks, each freed once.
        unsafe { tallymalloc::free(block.as_ptr()) };
    }
}

#[test]
fn the_page_freed_last_is_reused_first() {
    // On a thread of its own, so that its heap has no other pages of this size.
    std::thread::spawn(|| {
        // 4 KiB blocks: 16 to a 64 KiB page. Five full pages.
        let blocks: Vec<usize> = (0..80)
            .map(|_| tallymalloc::malloc(4096).unwrap().as_ptr() as usize)
            .collect();
        let page_of = |address: usize| address & !0xFFFF;
        let pages: Vec<usize> = blocks.chunks(16).map(|run| page_of(run[0])).collect();
        for (run, &page) in blocks.chunks(16).zip(&pages) {
            assert!(run.iter().all(|&block| page_of(block) == page));
        }
        let free = |range: &[usize]| {
            for &block in range {
                // SAFETY: live blocks, each freed once.
                unsafe { tallymalloc::free(block as *mut u8) };
            }
        };
        // Pages one, two and four go back to their segment, the fourth last. (The fifth, full,
        // stays the class's current page, so none of them is kept for the class.)
        free(&blocks[..16]);
        free(&blocks[16..32]);
        free(&blocks[48..64]);
        let again: Vec<usize> = (0..32)
            .map(|_| tallymalloc::malloc(4096).unwrap().as_ptr() as usize)
            .collect();
        let new_pages: Vec<usize> = again.chunks(16).map(|run| page_of(run[0])).collect();
        // Lowest address first would have taken pages one and two.
        assert_eq!(
            new_pages,
            [pages[3], pages[1]],
            "the page freed last, then the one before (pages {pages:x?})"
        );
        free(&again);
        free(&blocks[32..48]);
        free(&blocks[64..]);
    })
    .join()
    .unwrap();
}
