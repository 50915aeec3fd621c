//! Domains and live accounting, through the Rust API: exact figures for known sequences, peaks,
//! merging across threads, cross-thread frees, mismatches in every direction, and reads racing
//! heavy allocation. Each test registers domains of its own, so tests running side by side (and
//! the test harness's own allocations) never touch its figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use tallymalloc::{Domain, DomainError, DomainStats, OnMismatch, PUBLISH_STEP};

fn figures(domain: Domain) -> DomainStats {
    *tallymalloc::stats().domain(domain)
}

fn usable(size: usize) -> u64 {
    let block = tallymalloc::malloc(size).unwrap();
    // SAFETY: a live block, freed at once.
    unsafe {
        let usable = tallymalloc::usable_size(block.as_ptr());
        tallymalloc::free(block.as_ptr());
        usable as u64
    }
}

#[test]
fn a_known_sequence_gives_exact_figures() {
    let domain = Domain::register("stats-known").unwrap();
    let sizes = [1usize, 24, 100, 1000, 5000, 70_000, 600_000, 3 << 20];
    let blocks: Vec<_> = sizes
        .iter()
        .map(|&size| domain.alloc(size).unwrap())
        .collect();
    // A huge block's usable size depends on the cached mapping it got: ask each block.
    let usable_sizes: Vec<u64> = blocks
        .iter()
        // SAFETY: live blocks.
        .map(|block| unsafe { tallymalloc::usable_size(block.as_ptr()) } as u64)
        .collect();
    let expected_usable: u64 = usable_sizes.iter().sum();
    let after_allocation = figures(domain);
    assert_eq!(after_allocation.allocations, sizes.len() as u64);
    assert_eq!(after_allocation.frees, 0);
    assert_eq!(after_allocation.live_blocks, sizes.len() as u64);
    // Allocated bytes count each block at its usable size.
    assert_eq!(after_allocation.allocated_bytes, expected_usable);
    assert_eq!(after_allocation.live_usable_bytes, expected_usable);
    assert_eq!(after_allocation.live_bytes, expected_usable);
    assert_eq!(after_allocation.mismatches, 0);

    for block in &blocks[..4] {
        // SAFETY: live blocks of this domain.
        unsafe { domain.free(block.as_ptr()) };
    }
    let after_frees = figures(domain);
    assert_eq!(after_frees.frees, 4);
    assert_eq!(after_frees.live_blocks, 4);
    let freed: u64 = usable_sizes[..4].iter().sum();
    assert_eq!(after_frees.live_usable_bytes, expected_usable - freed);
    assert!(after_frees.peak_bytes >= expected_usable);

    for block in &blocks[4..] {
        // SAFETY: as above.
        unsafe { domain.free(block.as_ptr()) };
    }
    let empty = figures(domain);
    assert_eq!((empty.live_blocks, empty.live_usable_bytes), (0, 0));
    assert_eq!(empty.allocations, empty.frees);
}

#[test]
fn calloc_aligned_and_realloc_are_counted() {
    let domain = Domain::register("stats-variants").unwrap();
    let zeroed = domain.calloc(10, 10).unwrap();
    let aligned = domain.aligned_alloc(100, 4096).unwrap();
    assert_eq!(aligned.as_ptr() as usize % 4096, 0);
    // SAFETY: live blocks of this domain.
    unsafe {
        assert_eq!(tallymalloc::domain_of(zeroed.as_ptr()), domain);
        assert_eq!(tallymalloc::domain_of(aligned.as_ptr()), domain);
        // Growing past the block moves it: one free and one allocation.
        let grown = domain.realloc(zeroed.as_ptr(), 10_000).unwrap();
        assert_eq!(tallymalloc::domain_of(grown.as_ptr()), domain);
        let now = figures(domain);
        assert_eq!((now.allocations, now.frees, now.live_blocks), (3, 1, 2));
        let sizes = usable(100) + 4096 + tallymalloc::usable_size(grown.as_ptr()) as u64;
        assert_eq!(now.allocated_bytes, sizes, "each block at its usable size");
        domain.free(grown.as_ptr());
        domain.free(aligned.as_ptr());
    }
    let end = figures(domain);
    assert_eq!((end.live_blocks, end.live_usable_bytes), (0, 0));
}

#[test]
fn peaks_follow_the_high_water_mark() {
    let domain = Domain::register("stats-peak").unwrap();
    // Blocks of PUBLISH_STEP or more publish at once, so the peak is exact.
    let size = PUBLISH_STEP as usize * 2;
    let blocks: Vec<_> = (0..10).map(|_| domain.alloc(size).unwrap()).collect();
    let top = figures(domain).live_usable_bytes;
    for block in blocks {
        // SAFETY: live blocks of this domain.
        unsafe { domain.free(block.as_ptr()) };
    }
    let after = figures(domain);
    assert_eq!(after.live_usable_bytes, 0);
    assert_eq!(after.peak_bytes, top);
    assert!(after.peak_time_ms <= tallymalloc::stats().process.uptime_ms);

    // Small blocks: the peak may be low by at most one publication step for this one thread.
    let small: Vec<_> = (0..2000).map(|_| domain.alloc(48).unwrap()).collect();
    let small_top = figures(domain).live_usable_bytes;
    for block in small {
        // SAFETY: as above.
        unsafe { domain.free(block.as_ptr()) };
    }
    let peak = figures(domain).peak_bytes;
    assert_eq!(peak, top.max(peak), "the peak never falls");
    let second = Domain::register("stats-peak-small").unwrap();
    let blocks: Vec<_> = (0..5000).map(|_| second.alloc(48).unwrap()).collect();
    let live = figures(second).live_usable_bytes;
    for block in blocks {
        // SAFETY: live blocks of `second`.
        unsafe { second.free(block.as_ptr()) };
    }
    let small_peak = figures(second).peak_bytes;
    assert!(
        small_peak <= live && small_peak + PUBLISH_STEP as u64 >= live,
        "{small_peak} vs {live}"
    );
    assert!(small_top > 0);
}

#[test]
fn a_watermark_starts_again_while_the_peak_stays() {
    let domain = Domain::register("stats-watermark").unwrap();
    // Huge blocks are counted, and published, as they are allocated and freed: exact figures.
    let size = tallymalloc::LARGE_MAX + 1;
    let allocate =
        |count: usize| -> Vec<_> { (0..count).map(|_| domain.alloc(size).unwrap()).collect() };
    let free_all = |blocks: Vec<core::ptr::NonNull<u8>>| {
        for block in blocks {
            // SAFETY: live blocks of this domain.
            unsafe { domain.free(block.as_ptr()) };
        }
    };
    // A first part holds eight blocks at its top.
    free_all(allocate(8));
    let first_top = figures(domain).peak_bytes;
    assert!(first_top >= 8 * size as u64);
    assert_eq!(
        tallymalloc::watermark(domain),
        first_top,
        "never reset: the peak"
    );
    // A second part, with one block still live from before it, holds three at its top.
    let kept = allocate(1);
    tallymalloc::reset_watermark(domain);
    let one = figures(domain).live_usable_bytes;
    assert_eq!(
        tallymalloc::watermark(domain),
        one,
        "starts from what is live"
    );
    free_all(allocate(2));
    assert_eq!(tallymalloc::watermark(domain), 3 * one);
    free_all(kept);
    // The process's peak is untouched, and a reset with nothing live starts from zero.
    assert_eq!(figures(domain).peak_bytes, first_top);
    tallymalloc::reset_watermark(domain);
    assert_eq!(tallymalloc::watermark(domain), 0);
}

/// Allocates `bytes` of `size`-byte blocks in `domain` and frees them all (through `free`'s
/// fast path), without reading the stats; returns the usable bytes that were live at the top.
fn fill_and_empty(domain: Domain, size: usize, bytes: usize) -> u64 {
    let blocks: Vec<_> = (0..bytes / size)
        .map(|_| domain.alloc(size).unwrap())
        .collect();
    let top = blocks.len() as u64 * usable(size);
    for block in blocks {
        // SAFETY: live blocks of `domain`, freed once.
        unsafe { domain.free(block.as_ptr()) };
    }
    top
}

#[test]
fn frees_reach_the_peak_before_the_next_phase_grows() {
    // Phases of different size classes, each freed before the next: the peak is one phase's
    // top, not their sum, even though no stats are read between them.
    let domain = Domain::register("stats-phases").unwrap();
    let tops: Vec<u64> = [48, 96, 200, 1000]
        .iter()
        .map(|&size| fill_and_empty(domain, size, 2 << 20))
        .collect();
    let highest = *tops.iter().max().unwrap();
    let peak = figures(domain).peak_bytes;
    let slack = PUBLISH_STEP as u64 + 64 * 1024;
    assert!(
        peak <= highest && peak + slack >= highest,
        "peak {peak} for phases topping at {tops:?}"
    );

    // The same across threads: one thread's freeing, then another thread's growth.
    let shared = Domain::register("stats-phases-threads").unwrap();
    let first = std::thread::spawn(move || fill_and_empty(shared, 64, 4 << 20));
    let first_top = first.join().unwrap();
    let resting = Arc::new(Barrier::new(2));
    let freed = {
        let resting = resting.clone();
        std::thread::spawn(move || {
            let top = fill_and_empty(shared, 128, 4 << 20);
            resting.wait(); // freed, and alive: nothing published at exit yet
            resting.wait();
            top
        })
    };
    resting.wait();
    let second_top = fill_and_empty(shared, 256, 4 << 20);
    resting.wait();
    let freed_top = freed.join().unwrap();
    let highest = first_top.max(freed_top).max(second_top);
    let peak = figures(shared).peak_bytes;
    assert!(
        peak <= highest + slack && peak + 2 * slack >= highest,
        "peak {peak} for threads topping at {first_top}, {freed_top}, {second_top}"
    );
}

#[test]
fn eight_threads_merge_exactly_after_join() {
    let domain = Domain::register("stats-merge").unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut kept = Vec::new();
                for round in 0..10_000usize {
                    let block = domain.alloc(16 + (round % 200)).unwrap();
                    if round % 10 == thread {
                        kept.push(block.as_ptr() as usize);
                    } else {
                        // SAFETY: a live block of this domain.
                        unsafe { domain.free(block.as_ptr()) };
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<usize> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let merged = figures(domain);
    assert_eq!(merged.allocations, 80_000);
    assert_eq!(merged.frees, 80_000 - kept.len() as u64);
    assert_eq!(merged.live_blocks, kept.len() as u64);
    // The blocks outlive their exited threads and are freed here, from another thread.
    let live_usable: u64 = kept
        .iter()
        // SAFETY: live blocks.
        .map(|&block| unsafe { tallymalloc::usable_size(block as *const u8) } as u64)
        .sum();
    assert_eq!(merged.live_usable_bytes, live_usable);
    for &block in &kept {
        // SAFETY: live blocks of this domain.
        unsafe { domain.free(block as *mut u8) };
    }
    let end = figures(domain);
    assert_eq!(
        (end.live_blocks, end.live_usable_bytes, end.frees),
        (0, 0, 80_000)
    );
}

#[test]
fn cross_thread_frees_count_in_the_blocks_domain() {
    let domain = Domain::register("stats-remote").unwrap();
    let blocks: Vec<usize> = (0..1000)
        .map(|size| domain.alloc(8 + size * 3).unwrap().as_ptr() as usize)
        .collect();
    std::thread::spawn(move || {
        for block in blocks {
            // SAFETY: live blocks of `domain`, freed once, by another thread.
            unsafe { domain.free(block as *mut u8) };
        }
    })
    .join()
    .unwrap();
    let after = figures(domain);
    assert_eq!(
        (after.allocations, after.frees, after.live_blocks),
        (1000, 1000, 0)
    );
    assert_eq!(after.live_usable_bytes, 0);
}

#[test]
fn another_threads_read_sees_every_allocation_and_free_at_once() {
    let domain = Domain::register("stats-lag").unwrap();
    let (count, churn) = (10_000u64, 50_000u64);
    let (allocated, read) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let worker = {
        let (allocated, read) = (allocated.clone(), read.clone());
        std::thread::spawn(move || {
            let blocks: Vec<usize> = (0..count)
                .map(|_| domain.alloc(64).unwrap().as_ptr() as usize)
                .collect();
            // One block allocated and freed over and over: the fast paths alone, on one page
            // whose free list never runs dry.
            for _ in 0..churn {
                let block = domain.alloc(64).unwrap();
                // SAFETY: just allocated in `domain`.
                unsafe { domain.free(block.as_ptr()) };
            }
            allocated.wait();
            read.wait();
            for block in blocks {
                // SAFETY: live blocks of `domain`, freed once.
                unsafe { domain.free(block as *mut u8) };
            }
        })
    };
    allocated.wait();
    let seen = figures(domain);
    read.wait();
    worker.join().unwrap();
    assert_eq!(
        (seen.allocations, seen.frees, seen.live_blocks),
        (count + churn, churn, count),
        "another thread's read, while the owner rests"
    );
    assert_eq!(seen.live_usable_bytes, count * 64);
    let after = figures(domain);
    assert_eq!(
        (after.allocations, after.frees, after.live_blocks),
        (count + churn, count + churn, 0)
    );
}

#[test]
fn mismatches_are_caught_in_every_direction_and_freed_correctly() {
    tallymalloc::set_on_mismatch(OnMismatch::Ignore);
    let first = Domain::register("stats-mismatch-a").unwrap();
    let second = Domain::register("stats-mismatch-b").unwrap();
    let before_raw = figures(Domain::RAW).mismatches;
    // A user domain's block through `free` (the raw family), a raw block through a user
    // domain, a block through another user domain, and a realloc through the wrong family.
    let a_block = first.alloc(64).unwrap();
    let raw_block = tallymalloc::malloc(64).unwrap();
    let b_block = second.alloc(4000).unwrap();
    let moved_from = first.alloc(100).unwrap();
    // SAFETY: live blocks, each freed once (through the wrong family, on purpose).
    unsafe {
        std::ptr::write_bytes(moved_from.as_ptr(), 0xab, 100);
        tallymalloc::free(a_block.as_ptr());
        second.free(raw_block.as_ptr());
        first.free(b_block.as_ptr());
        let moved = second.realloc(moved_from.as_ptr(), 200).unwrap();
        assert_eq!(tallymalloc::domain_of(moved.as_ptr()), second);
        assert!(std::slice::from_raw_parts(moved.as_ptr(), 100)
            .iter()
            .all(|&b| b == 0xab));
        second.free(moved.as_ptr());
    }
    let a = figures(first);
    let b = figures(second);
    assert_eq!(
        a.mismatches, 2,
        "free(a) and the realloc of an `a` block through `b`"
    );
    assert_eq!(b.mismatches, 1);
    assert_eq!(figures(Domain::RAW).mismatches - before_raw, 1);
    // By pair, so that a reader can name both families.
    let between = tallymalloc::mismatches_between;
    assert_eq!(between(first, Domain::RAW), 1, "free(a)");
    assert_eq!(
        between(first, second),
        1,
        "the realloc of an `a` block through `b`"
    );
    assert_eq!(between(second, first), 1);
    assert_eq!(between(Domain::RAW, second), 1);
    assert_eq!(between(second, Domain::RAW), 0);
    assert_eq!(between(first, first), 0);
    assert_eq!(
        (a.live_blocks, b.live_blocks),
        (0, 0),
        "every block was still freed"
    );
    // Reused memory works: the pages went back to their own domains' lists.
    let again: Vec<_> = (0..100).map(|_| first.alloc(64).unwrap()).collect();
    for block in again {
        // SAFETY: live blocks of `first`.
        unsafe { first.free(block.as_ptr()) };
    }
    assert_eq!(figures(first).mismatches, 2);
}

#[test]
fn registration_rules() {
    assert_eq!(Domain::register("stats-reg"), Domain::register("stats-reg"));
    assert_eq!(Domain::register("no spaces"), Err(DomainError::BadName));
    assert_eq!(Domain::register(""), Err(DomainError::BadName));
    let domain = Domain::register("stats-reg").unwrap();
    assert_eq!(Domain::by_name("stats-reg"), Some(domain));
    let stats = tallymalloc::stats();
    assert!(stats.domains().any(|(listed, _)| listed == domain));
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["domains"]["stats-reg"].is_object(), "{json}");
    assert_eq!(json["version"], 1);
}

#[test]
fn reads_race_heavy_allocation_without_harm() {
    let domain = Domain::register("stats-race").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|seed| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut state = seed as u64 + 1;
                while !stop.load(Ordering::Relaxed) {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let size = (state >> 33) as usize % 3000 + 1;
                    held.push(domain.alloc(size).unwrap().as_ptr() as usize);
                    if held.len() > 500 {
                        for block in held.drain(..250) {
                            // SAFETY: live blocks of this domain.
                            unsafe { domain.free(block as *mut u8) };
                        }
                    }
                }
                for block in held {
                    // SAFETY: as above.
                    unsafe { domain.free(block as *mut u8) };
                }
            })
        })
        .collect();
    let mut last = DomainStats::default();
    for _ in 0..300 {
        let now = figures(domain);
        assert!(now.allocations >= last.allocations, "allocations went back");
        assert!(now.frees >= last.frees, "frees went back");
        assert!(now.allocated_bytes >= last.allocated_bytes);
        assert!(now.peak_bytes >= last.peak_bytes, "the peak fell");
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let end = figures(domain);
    assert_eq!(end.allocations, end.frees);
    assert_eq!((end.live_blocks, end.live_usable_bytes), (0, 0));
    assert!(end.allocations > 0);
}

#[test]
fn size_classes_and_process_figures_add_up() {
    let domain = Domain::register("stats-classes").unwrap();
    let blocks: Vec<_> = (0..64).map(|_| domain.alloc(200).unwrap()).collect();
    let stats = tallymalloc::stats();
    let class = stats
        .size_classes
        .iter()
        .find(|class| class.size as usize == usable(200) as usize)
        .unwrap();
    assert!(class.live_blocks >= 64);
    assert_eq!(class.live_bytes, class.live_blocks * class.size);
    let process = stats.process;
    assert!(process.reserved_bytes >= process.committed_bytes);
    assert!(process.committed_bytes > 0 && process.segments > 0 && process.pages > 0);
    assert!(process.threads_seen >= 1);
    assert!(process.accounting_enabled);
    for block in blocks {
        // SAFETY: live blocks of this domain.
        unsafe { domain.free(block.as_ptr()) };
    }
}

#[test]
fn the_table_lists_user_domains() {
    let domain = Domain::register("stats-table").unwrap();
    let block = domain.alloc(1 << 20).unwrap();
    let table = tallymalloc::stats_table();
    let row = table
        .lines()
        .find(|line| line.starts_with("stats-table"))
        .expect(&table);
    assert!(row.split_whitespace().nth(1) == Some("1024"), "{row}");
    // SAFETY: a live block of this domain.
    unsafe { domain.free(block.as_ptr()) };
}
