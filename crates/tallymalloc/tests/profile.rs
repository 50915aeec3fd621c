//! The sampled heap profile through the Rust API: three allocation sites that allocate 50%,
//! 30% and 20% of the bytes are estimated within five points of that at the default rate, the
//! site that holds the memory at the peak is named as holding most of it, frees take samples
//! back out, and huge blocks are sampled too. One test, since the profile is the process's.

use tallymalloc::ProfileSite;

/// An address in the calling function (the first frame `backtrace` gives).
#[inline(always)]
fn here() -> usize {
    let mut frames = [0usize; 1];
    tallymalloc::backtrace(&mut frames, 0);
    frames[0]
}

/// Allocates and frees `count` blocks of `size` bytes; returns an address inside itself.
#[inline(never)]
fn site_half(count: usize, size: usize) -> usize {
    churn(count, size);
    here()
}

#[inline(never)]
fn site_three_tenths(count: usize, size: usize) -> usize {
    churn(count, size);
    here()
}

#[inline(never)]
fn site_fifth(count: usize, size: usize) -> usize {
    churn(count, size);
    here()
}

/// Inlined into each site, so that the site's function is on every sampled stack.
#[inline(always)]
fn churn(count: usize, size: usize) {
    for _ in 0..count {
        let block = tallymalloc::malloc(std::hint::black_box(size)).expect("malloc");
        // SAFETY: just allocated; freed once.
        unsafe { tallymalloc::free(block.as_ptr()) };
    }
}

/// Holds `count` blocks of `size` bytes at once, then frees them.
#[inline(never)]
fn site_peak(count: usize, size: usize) -> usize {
    let blocks: Vec<_> = (0..count)
        .map(|_| tallymalloc::malloc(size).expect("malloc"))
        .collect();
    let inside = here();
    for block in blocks {
        // SAFETY: allocated above, freed once.
        unsafe { tallymalloc::free(block.as_ptr()) };
    }
    inside
}

/// The site (of `anchors`) whose function holds one of `site`'s frames, nearest first.
fn owner_of(site: &ProfileSite, anchors: &[usize]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for &frame in &site.frames {
        for (index, &anchor) in anchors.iter().enumerate() {
            let distance = frame.abs_diff(anchor);
            if distance < 512 && best.is_none_or(|(_, d)| distance < d) {
                best = Some((index, distance));
            }
        }
    }
    best.map(|(index, _)| index)
}

#[test]
fn estimates_name_the_sites_that_allocate_and_hold_memory() {
    assert!(!tallymalloc::profile_active());
    assert!(!tallymalloc::profile_set_sample_bytes(0));
    assert!(!tallymalloc::profile_set_sample_bytes((1 << 40) + 1));
    assert!(tallymalloc::profile_enable());
    assert!(tallymalloc::profile_active());
    // The countdowns are drawn anew on a slow path: take some.
    for size in (16..2048).step_by(16) {
        churn(1, size);
    }

    // 1 GiB allocated in all, in three sizes: about 2,000 samples at 512 KiB, so each share's
    // standard error is about a point, and five points is more than four of them.
    let total: usize = 1 << 30;
    let (a_size, b_size, c_size) = (256, 1024, 96);
    let anchors = [
        site_half(total / 2 / a_size, a_size),
        site_three_tenths(total * 3 / 10 / b_size, b_size),
        site_fifth(total / 5 / c_size, c_size),
        // 64 MiB live at once from here: the peak.
        site_peak((64 << 20) / 4096, 4096),
    ];
    // A huge block, sampled with a chance of 1 - e^-8 at this size.
    let huge = tallymalloc::malloc(4 << 20).expect("malloc");
    // SAFETY: allocated above, freed once.
    unsafe { tallymalloc::free(huge.as_ptr()) };

    let (summary, sites) = tallymalloc::profile();
    assert!(summary.active);
    assert_eq!(summary.sample_bytes, 512 << 10);
    assert!(summary.samples > 1500, "{summary:?}");
    let mut allocated = [0.0f64; 4];
    let mut at_peak = [0.0f64; 4];
    let (mut all_allocated, mut all_at_peak) = (0.0, 0.0);
    for site in &sites {
        all_allocated += site.estimate.allocated_bytes;
        all_at_peak += site.estimate.peak_bytes;
        if let Some(owner) = owner_of(site, &anchors) {
            allocated[owner] += site.estimate.allocated_bytes;
            at_peak[owner] += site.estimate.peak_bytes;
        }
    }
    let churned: f64 = allocated[..3].iter().sum();
    // Nearly all of what was allocated is attributed to the four sites.
    assert!(
        churned > 0.9 * total as f64,
        "{allocated:?} of {all_allocated}"
    );
    for (index, truth) in [0.5, 0.3, 0.2].into_iter().enumerate() {
        let share = allocated[index] / churned;
        assert!(
            (share - truth).abs() < 0.05,
            "site {index}: share {share:.3}, truth {truth} ({allocated:?})"
        );
    }
    assert!(
        at_peak[3] >= 0.8 * all_at_peak,
        "the peak's site holds {:.0} of {all_at_peak:.0} ({at_peak:?})",
        at_peak[3]
    );
    assert!(
        (at_peak[3] / (64 << 20) as f64 - 1.0).abs() < 0.35,
        "{at_peak:?}"
    );
    // Everything was freed: nothing is estimated live but what the harness holds.
    assert!(summary.live_bytes < 8.0 * (512 << 10) as f64, "{summary:?}");

    tallymalloc::profile_disable();
    assert!(!tallymalloc::profile_active());
    let before = tallymalloc::profile().0.samples;
    site_half(1 << 16, 4096);
    assert_eq!(
        tallymalloc::profile().0.samples,
        before,
        "sampling goes on while off"
    );
}
