//! A thread in a steady loop of malloc and free never takes a slow path (its frees go straight
//! back on the free list), yet its housekeeping still runs: memory it freed earlier goes back
//! to the OS. A test binary of its own, which stays under the 64 MiB at which the background
//! purger would start and do the job instead.

use std::time::Duration;

const MIB: usize = 1 << 20;

fn resident() -> usize {
    tallymalloc::process_resident_bytes().expect("/proc/self/statm")
}

#[test]
fn a_steady_loop_still_gives_freed_memory_back() {
    std::thread::spawn(|| {
        let baseline = resident();
        let blocks: Vec<usize> = (0..16_000)
            .map(|_| {
                let block = tallymalloc::malloc(2000).expect("malloc");
                // SAFETY: a live block of 2000 bytes.
                unsafe { std::ptr::write_bytes(block.as_ptr(), 0x5A, 2000) };
                block.as_ptr() as usize
            })
            .collect();
        assert!(
            resident() > baseline + 24 * MIB,
            "the blocks were not resident"
        );
        for block in blocks {
            // SAFETY: live blocks, each freed once.
            unsafe { tallymalloc::free(block as *mut u8) };
        }
        let churn = |times| {
            for _ in 0..times {
                let block = tallymalloc::malloc(64).expect("malloc");
                // SAFETY: just allocated.
                unsafe { tallymalloc::free(block.as_ptr()) };
            }
        };
        // The loop's one slow path, its first malloc, comes while nothing is due yet.
        churn(1);
        std::thread::sleep(Duration::from_millis(
            tallymalloc::purge_delay_in_force_millis() * 3 + 20,
        ));
        churn(100_000);
        assert!(
            resident() < baseline + 8 * MIB,
            "resident {} MiB after the loop (baseline {} MiB)",
            resident() / MIB,
            baseline / MIB
        );
    })
    .join()
    .unwrap();
}
