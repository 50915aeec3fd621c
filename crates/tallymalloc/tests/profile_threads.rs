//! Profiling across threads: eight threads allocate (some blocks freed at once, some kept and
//! handed to the main thread) and exit; nothing is lost with them. The estimates of what was
//! allocated and of what is live match the truth, and once the main thread frees the blocks
//! the exited threads left (remote frees into abandoned pages, flagged as holding samples),
//! nothing is estimated live. A separate test binary: the profile is the process's.

const THREADS: usize = 8;
const CHURNED: usize = 64 << 20;
const KEPT: usize = 16 << 20;

#[test]
fn threads_that_exit_lose_no_samples() {
    assert!(tallymalloc::profile_enable());
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(|| {
                // The countdowns are drawn on a slow path: pass some.
                for size in (16..4096).step_by(16) {
                    let block = tallymalloc::malloc(size).unwrap();
                    // SAFETY: just allocated.
                    unsafe { tallymalloc::free(block.as_ptr()) };
                }
                for _ in 0..CHURNED / 256 {
                    let block = tallymalloc::malloc(256).unwrap();
                    // SAFETY: just allocated.
                    unsafe { tallymalloc::free(block.as_ptr()) };
                }
                (0..KEPT / 4096)
                    .map(|_| tallymalloc::malloc(4096).unwrap().as_ptr() as usize)
                    .collect::<Vec<usize>>()
            })
        })
        .collect();
    let kept: Vec<usize> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let (summary, sites) = tallymalloc::profile();
    let allocated: f64 = sites.iter().map(|s| s.estimate.allocated_bytes).sum();
    let truth = (THREADS * (CHURNED + KEPT)) as f64;
    assert!(
        (allocated / truth - 1.0).abs() < 0.1,
        "{allocated} vs {truth}"
    );
    let live_truth = (THREADS * KEPT) as f64;
    assert!(
        (summary.live_bytes / live_truth - 1.0).abs() < 0.25,
        "{} vs {live_truth}",
        summary.live_bytes
    );

    for address in kept {
        // SAFETY: allocated by the threads above, freed once.
        unsafe { tallymalloc::free(address as *mut u8) };
    }
    let (summary, _) = tallymalloc::profile();
    assert!(summary.live_bytes < 4.0 * (512 << 10) as f64, "{summary:?}");
    assert_eq!(summary.dropped, 0);
}
