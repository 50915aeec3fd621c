//! The watermark of all domains together: the most the process held at once whatever the
//! domain, which no sum of the domains' own watermarks gives. A binary of its own, with one
//! test, because every other test's blocks count in it.

use tallymalloc::{Domain, Domains};

const BLOCK: usize = 4 << 20; // huge blocks: counted, and published, as they come and go
const COUNT: usize = 8;
const SLACK: u64 = 2 << 20; // what the test harness and this thread may hold besides

fn hold_and_release(domain: Domain) {
    let blocks: Vec<_> = (0..COUNT).map(|_| domain.alloc(BLOCK).unwrap()).collect();
    for block in blocks {
        // SAFETY: live blocks of `domain`, freed once.
        unsafe { domain.free(block.as_ptr()) };
    }
}

#[test]
fn all_domains_peak_together_not_as_a_sum() {
    let first = Domain::register("watermark-all-a").unwrap();
    let second = Domain::register("watermark-all-b").unwrap();
    let before = tallymalloc::stats().all_domains();
    tallymalloc::reset_watermark(Domains::All);
    tallymalloc::reset_watermark(first);
    tallymalloc::reset_watermark(second);
    // One domain holds its blocks and lets them go, then the other does.
    hold_and_release(first);
    hold_and_release(second);
    let held = (COUNT * BLOCK) as u64;
    let each = [
        tallymalloc::watermark(first),
        tallymalloc::watermark(second),
    ];
    assert!(each.iter().all(|&top| top >= held), "{each:?}");
    let together = tallymalloc::watermark(Domains::All);
    assert!(
        together >= before.live_usable_bytes + held
            && together <= before.live_usable_bytes + held + SLACK,
        "all domains peaked at {together} holding {held} on {} live: one domain's top, not both",
        before.live_usable_bytes
    );

    // The snapshot's sum of every domain, and the process's peak over all of them.
    let after = tallymalloc::stats().all_domains();
    assert!(after.allocations - before.allocations >= 2 * COUNT as u64);
    assert!(after.allocated_bytes - before.allocated_bytes >= 2 * held);
    assert!(after.peak_bytes >= together && after.peak_bytes >= before.peak_bytes);
    let stats = tallymalloc::stats();
    let summed: u64 = stats
        .domains()
        .map(|(_, figures)| figures.live_blocks)
        .sum();
    assert_eq!(stats.all_domains().live_blocks, summed);

    // Reset with the blocks gone, it starts from what is live now.
    tallymalloc::reset_watermark(Domains::All);
    assert!(tallymalloc::watermark(Domains::All) < before.live_usable_bytes + SLACK);
}
