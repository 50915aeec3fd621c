//! Pages given back to the OS and wanted again soon after lengthen the purge delay in force (a
//! test binary of its own: the delay in force is process-wide).

use std::time::Duration;

fn allocate_pages_of_4k_blocks(pages: usize) -> Vec<usize> {
    (0..pages * 16)
        .map(|_| {
            let block = tallymalloc::malloc(4096).expect("malloc");
            // SAFETY: a live block of 4096 bytes.
            unsafe { std::ptr::write_bytes(block.as_ptr(), 0x5A, 4096) };
            block.as_ptr() as usize
        })
        .collect()
}

fn free_all(blocks: Vec<usize>) {
    for block in blocks {
        // SAFETY: live blocks, each freed once.
        unsafe { tallymalloc::free(block as *mut u8) };
    }
}

#[test]
fn pages_wanted_again_soon_after_their_purge_lengthen_the_delay() {
    // On a thread of its own, so that its heap's pages are all this test's.
    std::thread::spawn(|| {
        let configured = tallymalloc::purge_delay_millis();
        assert_eq!(tallymalloc::purge_delay_in_force_millis(), configured);
        free_all(allocate_pages_of_4k_blocks(8));
        // Past the delay, slow paths purge the free pages (48-byte blocks: a slow path every
        // 85 of them, as each carves a fresh 4 KiB).
        std::thread::sleep(Duration::from_millis(configured * 3 + 20));
        let small: Vec<usize> = (0..20_000)
            .map(|_| tallymalloc::malloc(48).expect("malloc").as_ptr() as usize)
            .collect();
        free_all(small);
        // Taking the purged pages again (the small blocks took some already), well within
        // eight delays of their purge: one burst, so one doubling.
        let again = allocate_pages_of_4k_blocks(8);
        assert_eq!(
            tallymalloc::purge_delay_in_force_millis(),
            configured * 2,
            "configured {configured} ms"
        );
        free_all(again);
    })
    .join()
    .unwrap();
}
