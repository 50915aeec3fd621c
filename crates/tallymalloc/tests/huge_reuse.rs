//! Freed huge mappings serve later huge blocks with their pages still in them: whole, split
//! (the tail of a long mapping serves another block), or as the new home of a block that
//! doubles. One test in a binary of its own, so no other test's huge blocks take the cached
//! mappings between its steps. Freed memory keeps what was written into it (malloc does not
//! clear), which tells a reused page from a fresh, zero one.

const MIB: usize = 1 << 20;
const PATTERN: u8 = 0xAB;

fn filled(size: usize) -> *mut u8 {
    let block = tallymalloc::malloc(size).expect("memory").as_ptr();
    // SAFETY: a live block of `size` bytes.
    unsafe { block.write_bytes(PATTERN, size) };
    block
}

/// Whether the block's first and last bytes hold the pattern (reused pages) rather than zero.
///
/// # Safety
/// `block` must be live and `size` bytes long.
unsafe fn reused(block: *mut u8, size: usize) -> bool {
    // SAFETY: the caller's contract.
    unsafe { *block == PATTERN && *block.add(size - 1) == PATTERN }
}

#[test]
fn huge_mappings_are_reused_whole_split_and_for_growth() {
    if tallymalloc::purge_delay_millis() == 0 {
        return; // nothing is cached
    }
    // SAFETY: every block is live where it is used and freed once.
    unsafe {
        // Split: a 40 MiB mapping serves a 10 MiB block, and its tail a 20 MiB one.
        let long = filled(40 * MIB);
        tallymalloc::free(long);
        let head = tallymalloc::malloc(10 * MIB).unwrap().as_ptr();
        assert_eq!(head, long, "the freed mapping serves the shorter block");
        let tail = tallymalloc::malloc(20 * MIB).unwrap().as_ptr();
        assert!(
            reused(tail, 20 * MIB),
            "the tail's pages serve the next block"
        );
        tallymalloc::free(head);
        tallymalloc::free(tail);

        // Drain what the first part cached (until a block comes fresh): the growing block gets a
        // mapping of its own, and the next one freed is the only one cached.
        let mut drained = Vec::new();
        loop {
            let taken = tallymalloc::malloc(MIB).unwrap().as_ptr();
            drained.push(taken);
            if !reused(taken, MIB) {
                break;
            }
            assert!(drained.len() < 100, "the cache does not drain");
        }
        // Growth: a block that doubles moves, contents and all, into a cached mapping.
        let size = 5 * MIB / 4;
        let block = tallymalloc::malloc(size).unwrap().as_ptr();
        for offset in (0..size).step_by(4096) {
            *block.add(offset) = (offset / 4096) as u8;
        }
        let cached = filled(2 * size);
        tallymalloc::free(cached);
        let grown = tallymalloc::realloc(block, 2 * size).unwrap().as_ptr();
        assert_eq!(grown, cached, "not moved into the cached mapping");
        for offset in (0..size).step_by(4096) {
            assert_eq!(*grown.add(offset), (offset / 4096) as u8);
        }
        tallymalloc::free(grown);
        for taken in drained {
            tallymalloc::free(taken);
        }
    }
}
