//! Property test against a model: random sequences of malloc, calloc, aligned allocation,
//! realloc and free. The model remembers each live block's size, alignment and fill byte; after
//! every step the test checks that contents survive (realloc included), alignment and
//! `usable_size >= size` hold, every live block is ours, and no two live blocks overlap.

use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Step {
    Malloc(usize),
    Calloc(usize, usize),
    Aligned(usize, u32),
    Realloc(usize, usize),
    Free(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=256,
        4 => 257usize..=8192,
        2 => 8193usize..=200_000,
        1 => 200_001usize..=tallymalloc::LARGE_MAX + 64 * 1024,
        1 => (1usize << 20)..=(5usize << 20),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => size().prop_map(Step::Malloc),
        1 => (0usize..64, 0usize..512).prop_map(|(n, s)| Step::Calloc(n, s)),
        2 => (size(), 0u32..=21).prop_map(|(s, a)| Step::Aligned(s, a)),
        3 => (any::<usize>(), size()).prop_map(|(i, s)| Step::Realloc(i, s)),
        4 => any::<usize>().prop_map(Step::Free),
    ]
}

struct Live {
    size: usize,
    align: usize,
    fill: u8,
}

/// The offsets a block's fill byte is written at: the first 256 bytes, the middle and the
/// end (whole blocks would be slow for multi-megabyte sizes). Enough to see a block that moved
/// without its contents or that another block overwrote.
fn probe_offsets(size: usize) -> impl Iterator<Item = usize> {
    let head = 0..size.min(256);
    let tail = [size / 2, size.saturating_sub(1)]
        .into_iter()
        .filter(move |&o| o < size);
    head.chain(tail)
}

fn write_fill(address: usize, live: &Live) {
    for offset in probe_offsets(live.size) {
        // SAFETY: the block is live and `size` bytes long.
        unsafe { *((address + offset) as *mut u8) = live.fill };
    }
}

/// Checks the block at `address` holds `live.fill` wherever it was written while the block
/// was `written_size` bytes long, up to `kept` bytes.
fn check_block(address: usize, live: &Live, written_size: usize, kept: usize) {
    for offset in probe_offsets(written_size).filter(|&o| o < kept) {
        // SAFETY: the block is live and at least `kept` bytes long.
        let byte = unsafe { *((address + offset) as *const u8) };
        assert_eq!(
            byte, live.fill,
            "byte {offset} of block {address:#x} changed"
        );
    }
    assert_eq!(
        address % live.align,
        0,
        "block {address:#x} lost its alignment"
    );
    assert!(tallymalloc::is_ours(address as *const u8));
    // SAFETY: live block.
    assert!(unsafe { tallymalloc::usable_size(address as *const u8) } >= live.size);
}

fn check_no_overlap(live: &BTreeMap<usize, Live>) {
    let mut previous_end = 0usize;
    for (&address, block) in live {
        assert!(
            address >= previous_end,
            "block {address:#x} overlaps the one before"
        );
        previous_end = address + block.size.max(1);
    }
}

fn nth_live(live: &BTreeMap<usize, Live>, index: usize) -> Option<usize> {
    if live.is_empty() {
        return None;
    }
    live.keys().nth(index % live.len()).copied()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn allocator_behaves_like_the_model(steps in prop::collection::vec(step(), 1..120)) {
        let mut live: BTreeMap<usize, Live> = BTreeMap::new();
        let mut fill = 0u8;
        for step in steps {
            fill = fill.wrapping_add(1);
            match step {
                Step::Malloc(size) => {
                    let block = tallymalloc::malloc(size).expect("malloc");
                    let entry = Live { size, align: if size > 8 { 16 } else { 8 }, fill };
                    write_fill(block.as_ptr() as usize, &entry);
                    live.insert(block.as_ptr() as usize, entry);
                }
                Step::Calloc(count, size) => {
                    let block = tallymalloc::calloc(count, size).expect("calloc");
                    let total = count * size;
                    // SAFETY: a live zeroed block of `total` bytes.
                    let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), total) };
                    prop_assert!(bytes.iter().all(|&b| b == 0));
                    let entry = Live { size: total, align: if total > 8 { 16 } else { 8 }, fill };
                    write_fill(block.as_ptr() as usize, &entry);
                    live.insert(block.as_ptr() as usize, entry);
                }
                Step::Aligned(size, align_log) => {
                    let align = 1usize << align_log;
                    let block = tallymalloc::aligned_alloc(size, align).expect("aligned_alloc");
                    let entry = Live { size, align, fill };
                    write_fill(block.as_ptr() as usize, &entry);
                    live.insert(block.as_ptr() as usize, entry);
                }
                Step::Realloc(index, new_size) => {
                    let Some(address) = nth_live(&live, index) else { continue };
                    let old = live.remove(&address).unwrap();
                    // SAFETY: `address` is live; on success it is consumed.
                    let moved = unsafe {
                        tallymalloc::realloc_aligned(address as *mut u8, new_size, old.align)
                    }
                    .expect("realloc");
                    let kept = old.size.min(new_size);
                    let entry = Live { size: new_size, align: old.align, fill: old.fill };
                    check_block(moved.as_ptr() as usize, &entry, old.size, kept);
                    let entry = Live { fill, ..entry };
                    write_fill(moved.as_ptr() as usize, &entry);
                    live.insert(moved.as_ptr() as usize, entry);
                }
                Step::Free(index) => {
                    let Some(address) = nth_live(&live, index) else { continue };
                    let block = live.remove(&address).unwrap();
                    check_block(address, &block, block.size, block.size);
                    // SAFETY: live block, freed once.
                    unsafe { tallymalloc::free(address as *mut u8) };
                }
            }
            check_no_overlap(&live);
        }
        for (address, block) in live {
            check_block(address, &block, block.size, block.size);
            // SAFETY: live block, freed once.
            unsafe { tallymalloc::free(address as *mut u8) };
        }
    }
}
