//! Size classes: every small or large request is rounded up to one of [`CLASS_COUNT`] sizes.
//!
//! Layout of the classes:
//! - class 0 holds requests of at most 8 bytes (8-byte blocks);
//! - classes 1..=8 are exact 16-byte steps, 16 to 128 bytes, so every block of 16 bytes or more
//!   is 16-byte aligned (what C's `max_align_t` asks of `malloc`);
//! - above 128 bytes there are four classes per power of two: `(5, 6, 7, 8) << (b - 2)` for
//!   each `b`, up to [`LARGE_MAX`].
//!
//! Invariants (checked exhaustively by the tests below):
//! - `class_size(class_of(n)) >= n` for every `n <= LARGE_MAX`, and `class_of` is monotonic;
//! - the rounding wastes less than 16 bytes up to 128, and above that less than a fifth of the
//!   block (`4 * waste < request`). mimalloc's comment calls four bins per power of two "~12.5%
//!   worst"; the true worst case is just above a power of two (129 -> 160 wastes 31 bytes), so
//!   we state and test the bound that holds;
//! - `class_of` is branch-light arithmetic (one table load below 1 KiB), never a loop.

/// The alignment every block of more than 8 bytes has without asking.
pub const MIN_ALIGN: usize = 16;

/// Requests larger than this fail at once: no mapping could hold them, and rounding them up
/// must not overflow (two segments' room, 4 MiB each).
pub const MAX_REQUEST: usize = isize::MAX as usize - 2 * (4 << 20);

/// Largest request served from size-classed pages; larger ones are huge blocks.
pub const LARGE_MAX: usize = 512 * 1024;

/// Requests up to this size find their class with one table load.
pub const SMALL_LOOKUP_MAX: usize = 1024;

/// Number of size classes.
pub const CLASS_COUNT: usize = class_of_arithmetic(LARGE_MAX) + 1;

/// Classes at or below this index are the exact 16-byte steps.
const LAST_EXACT_CLASS: usize = 8;
const LAST_EXACT_SIZE: usize = 128;

/// Block size of each class.
pub static CLASS_SIZE: [u32; CLASS_COUNT] = {
    let mut sizes = [0u32; CLASS_COUNT];
    let mut class = 0;
    while class < CLASS_COUNT {
        sizes[class] = class_size_arithmetic(class) as u32;
        class += 1;
    }
    sizes
};

/// Class of each request up to [`SMALL_LOOKUP_MAX`], indexed by `(size + 7) / 8`.
static SMALL_CLASS: [u8; SMALL_LOOKUP_MAX / 8 + 1] = {
    let mut table = [0u8; SMALL_LOOKUP_MAX / 8 + 1];
    let mut slot = 0;
    while slot < table.len() {
        table[slot] = class_of_arithmetic(slot * 8) as u8;
        slot += 1;
    }
    table
};

/// The class of a request of `size` bytes, `size <= LARGE_MAX`.
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    debug_assert!(size <= LARGE_MAX);
    if size <= SMALL_LOOKUP_MAX {
        // (size + 7) / 8 <= 128 < table length: the index is always in bounds.
        SMALL_CLASS[(size + 7) >> 3] as usize
    } else {
        class_of_arithmetic(size)
    }
}

/// The block size of `class`.
#[inline(always)]
pub fn class_size(class: usize) -> usize {
    CLASS_SIZE[class] as usize
}

const fn class_of_arithmetic(size: usize) -> usize {
    if size <= 8 {
        0
    } else if size <= LAST_EXACT_SIZE {
        (size + 15) >> 4
    } else {
        let wanted = size - 1;
        let top_bit = (usize::BITS - 1 - wanted.leading_zeros()) as usize; // >= 7
        let quarter = (wanted >> (top_bit - 2)) & 3;
        LAST_EXACT_CLASS + ((top_bit - 7) << 2) + quarter + 1
    }
}

const fn class_size_arithmetic(class: usize) -> usize {
    if class == 0 {
        8
    } else if class <= LAST_EXACT_CLASS {
        class << 4
    } else {
        let step = class - LAST_EXACT_CLASS - 1;
        let top_bit = 7 + step / 4;
        (5 + step % 4) << (top_bit - 2)
    }
}

/// The largest power of two dividing every block address of `class` in a page whose block
/// area is at least that aligned (block areas start on 64 KiB boundaries).
#[inline]
pub fn class_alignment(class: usize) -> usize {
    1 << class_size(class).trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_fits_its_class_within_the_waste_bound() {
        let mut previous_class = 0;
        for size in 0..=LARGE_MAX {
            let class = class_of(size);
            assert_eq!(
                class,
                class_of_arithmetic(size),
                "table and formula disagree at {size}"
            );
            let block = class_size(class);
            assert!(block >= size, "size {size} -> class {class} of {block}");
            assert!(class >= previous_class, "class_of not monotonic at {size}");
            previous_class = class;
            let waste = block - size;
            if size <= LAST_EXACT_SIZE {
                assert!(waste < 16 || size == 0, "size {size} wastes {waste}");
            } else {
                assert!(4 * waste < size, "size {size} wastes {waste} of {block}");
            }
            // The class is the smallest that fits.
            if class > 0 {
                assert!(class_size(class - 1) < size, "size {size} skipped a class");
            }
        }
    }

    #[test]
    fn classes_are_strictly_increasing_and_end_at_the_limit() {
        for class in 1..CLASS_COUNT {
            assert!(class_size(class) > class_size(class - 1));
            assert_eq!(class_of(class_size(class)), class);
        }
        assert_eq!(class_size(CLASS_COUNT - 1), LARGE_MAX);
        assert_eq!(CLASS_COUNT, 57);
    }

    #[test]
    fn blocks_of_sixteen_bytes_or_more_are_sixteen_aligned() {
        for class in 1..CLASS_COUNT {
            assert!(class_alignment(class) >= 16, "class {class}");
        }
        assert_eq!(class_alignment(0), 8);
        assert_eq!(class_alignment(class_of(4096)), 4096);
    }
}
