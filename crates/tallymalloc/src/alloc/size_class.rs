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
//! - **SC1**: a [`SizeClass`] is below [`CLASS_COUNT`]: it is made only by [`SizeClass::of`],
//!   [`SizeClass::all`], the checked steps and lookups, or from a class a page stored (which
//!   was one);
//! - `SizeClass::of(n).size() >= n` for every `n <= LARGE_MAX`, and `of` is monotonic;
//! - the rounding wastes less than 16 bytes up to 128, and above that less than a fifth of the
//!   block (`4 * waste < request`). mimalloc's comment calls four bins per power of two "~12.5%
//!   worst"; the true worst case is just above a power of two (129 -> 160 wastes 31 bytes), so
//!   we state and test the bound that holds;
//! - `SizeClass::of` is branch-light arithmetic (one table load below 1 KiB), never a loop.

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

const _: () = assert!(CLASS_COUNT <= 256, "a page stores its class in a byte");

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

/// A size class: an index below [`CLASS_COUNT`] (SC1), so it indexes the per-class tables
/// and queues (`[T; CLASS_COUNT]`) without a bounds check. Made only from a size ([`SizeClass::of`]), by walking
/// them all, or from a page's stored class.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(transparent)]
pub struct SizeClass(usize);

impl SizeClass {
    /// The smallest class (blocks of 8 bytes).
    pub const SMALLEST: SizeClass = SizeClass(0);

    /// The class of a request of `size` bytes, `size <= LARGE_MAX`.
    #[inline(always)]
    pub fn of(size: usize) -> SizeClass {
        debug_assert!(size <= LARGE_MAX);
        if size <= SMALL_LOOKUP_MAX {
            // (size + 7) / 8 <= 128 < table length: the index is always in bounds.
            SizeClass(SMALL_CLASS[(size + 7) >> 3] as usize)
        } else {
            SizeClass(class_of_arithmetic(size))
        }
    }

    /// Every class, smallest first.
    pub fn all() -> impl DoubleEndedIterator<Item = SizeClass> {
        (0..CLASS_COUNT).map(SizeClass)
    }

    /// The class stored as `index` (by [`SizeClass::stored`]).
    ///
    /// # Safety
    /// `index` must have come from [`SizeClass::stored`] (SC1 then holds).
    #[inline(always)]
    pub unsafe fn from_stored(index: u8) -> SizeClass {
        debug_assert!((index as usize) < CLASS_COUNT);
        SizeClass(index as usize)
    }

    /// This class in a byte, as a page header keeps it.
    #[inline(always)]
    pub const fn stored(self) -> u8 {
        self.0 as u8
    }

    /// This class's index into per-class tables, below [`CLASS_COUNT`].
    #[inline(always)]
    pub const fn index(self) -> usize {
        self.0
    }

    /// The block size of this class.
    #[inline(always)]
    pub fn size(self) -> usize {
        CLASS_SIZE[self.0] as usize
    }

    /// The largest power of two dividing every block address of this class in a page whose
    /// block area is at least that aligned (block areas start on 64 KiB boundaries).
    #[inline]
    pub fn alignment(self) -> usize {
        1 << self.size().trailing_zeros()
    }

    /// The class of index `index`, if there is one.
    pub fn from_index(index: usize) -> Option<SizeClass> {
        (index < CLASS_COUNT).then_some(SizeClass(index))
    }

    /// The next larger class, if any.
    pub fn next(self) -> Option<SizeClass> {
        SizeClass::from_index(self.0 + 1)
    }

    /// The next smaller class, if any.
    pub fn previous(self) -> Option<SizeClass> {
        self.0.checked_sub(1).map(SizeClass)
    }
}

/// Per-class tables are indexed by class: SC1 keeps the index in bounds, so no check is made.
impl<T> core::ops::Index<SizeClass> for [T; CLASS_COUNT] {
    type Output = T;

    #[inline(always)]
    fn index(&self, class: SizeClass) -> &T {
        // SAFETY: SC1: `class.0 < CLASS_COUNT`, the array's length.
        unsafe { self.get_unchecked(class.0) }
    }
}

impl<T> core::ops::IndexMut<SizeClass> for [T; CLASS_COUNT] {
    #[inline(always)]
    fn index_mut(&mut self, class: SizeClass) -> &mut T {
        // SAFETY: SC1: `class.0 < CLASS_COUNT`, the array's length.
        unsafe { self.get_unchecked_mut(class.0) }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_fits_its_class_within_the_waste_bound() {
        let mut previous_class = SizeClass::SMALLEST;
        for size in 0..=LARGE_MAX {
            let class = SizeClass::of(size);
            assert_eq!(
                class.index(),
                class_of_arithmetic(size),
                "table and formula disagree at {size}"
            );
            let block = class.size();
            assert!(block >= size, "size {size} -> {class:?} of {block}");
            assert!(class >= previous_class, "class_of not monotonic at {size}");
            previous_class = class;
            let waste = block - size;
            if size <= LAST_EXACT_SIZE {
                assert!(waste < 16 || size == 0, "size {size} wastes {waste}");
            } else {
                assert!(4 * waste < size, "size {size} wastes {waste} of {block}");
            }
            // The class is the smallest that fits.
            if let Some(smaller) = class.previous() {
                assert!(smaller.size() < size, "size {size} skipped a class");
            }
        }
    }

    #[test]
    fn classes_are_strictly_increasing_and_end_at_the_limit() {
        for (smaller, class) in SizeClass::all().zip(SizeClass::all().skip(1)) {
            assert!(class.size() > smaller.size());
            assert_eq!(smaller.next(), Some(class));
            assert_eq!(class.previous(), Some(smaller));
            assert_eq!(SizeClass::of(class.size()), class);
        }
        let largest = SizeClass::all().next_back().unwrap();
        assert_eq!(largest.size(), LARGE_MAX);
        assert_eq!(largest.next(), None);
        assert_eq!(SizeClass::SMALLEST.previous(), None);
        assert_eq!(SizeClass::from_index(CLASS_COUNT), None);
        assert_eq!(CLASS_COUNT, 57);
    }

    #[test]
    fn blocks_of_sixteen_bytes_or_more_are_sixteen_aligned() {
        for class in SizeClass::all().skip(1) {
            assert!(class.alignment() >= 16, "{class:?}");
        }
        assert_eq!(SizeClass::SMALLEST.alignment(), 8);
        assert_eq!(SizeClass::of(4096).alignment(), 4096);
    }
}
