//! Whether an address starts one of a page's carved blocks (P6), by a multiplication and a
//! rotation instead of a division: the check every free makes before a block reaches a free
//! list, and the rounding down that pages with aligned offsets need.

use super::*;

/// The largest power of two that divides a class's block size is at most this power
/// (`LARGE_MAX` is 2^19), the rotation of the block-start check.
const MAGIC_ROTATION: u32 = 19;
const _: () = assert!(crate::alloc::size_class::LARGE_MAX <= 1 << MAGIC_ROTATION);

/// The multiplier of the block-start check (P6) for blocks of `block_size` bytes.
///
/// Write the size as `o << s` with `o` odd. The multiplier is `o`'s inverse modulo 2^64 shifted
/// left by `19 - s`. For an offset `n = k * size` from the area's start, `n * magic` is then
/// exactly `k << 19`, and rotating it right by 19 gives `k`, which is below `capacity` when the
/// block is carved. Multiplying by an odd number is a bijection of 64-bit words and so is a
/// rotation; the shift loses only the top `19 - s` bits (s is at least 3), so any other offset
/// of less than 2^47 either way from the area's start either leaves nonzero bits below bit 19,
/// which the rotation puts at the top, or gives no `k` a page can hold. (snmalloc
/// checks that a freed pointer starts an object with a multiplication for the same reason: a
/// division would cost tens of cycles on every free.) Zero for a size of zero, which no
/// address passes.
pub fn block_magic(block_size: usize) -> usize {
    if block_size == 0 {
        return 0;
    }
    let shift = block_size.trailing_zeros();
    debug_assert!(shift <= MAGIC_ROTATION);
    let odd = block_size >> shift;
    // Newton's iteration doubles the correct low bits of the inverse each round: an odd number
    // is its own inverse modulo 8, so five rounds reach 64 bits.
    let mut inverse = odd;
    for _ in 0..5 {
        inverse = inverse.wrapping_mul(2usize.wrapping_sub(odd.wrapping_mul(inverse)));
    }
    inverse << (MAGIC_ROTATION - shift)
}

impl Page {
    /// Whether `address` is the start of one of the carved blocks (P6): one subtraction, one
    /// multiplication, one rotation and one comparison.
    #[inline(always)]
    pub fn is_block_start(&self, address: *const u8) -> bool {
        self.block_index(address) < self.capacity()
    }

    /// [`Self::is_block_start`] for the page's owner, on the free fast path: it reads
    /// `capacity` as a plain word, which the compare can take from memory (an atomic load
    /// costs an instruction more).
    #[inline(always)]
    pub fn is_own_block_start(&self, address: *const u8) -> bool {
        // SAFETY: P1: only the owner writes `capacity`, and the caller is the owner, so no
        // write can race this read.
        self.block_index(address) < unsafe { *self.capacity.as_ptr() }
    }

    /// The index of the block `address` starts, or a number no page reaches (P6).
    #[inline(always)]
    fn block_index(&self, address: *const u8) -> usize {
        let offset = (address as usize).wrapping_sub(self.area as usize);
        offset
            .wrapping_mul(self.block_magic)
            .rotate_right(MAGIC_ROTATION)
    }

    /// The start of the block that holds `address` (for pages that hand out aligned offsets).
    #[inline]
    pub fn block_start(&self, address: *mut u8) -> *mut u8 {
        let offset = address as usize - self.area as usize;
        // SAFETY: `address` lies in this page's area, so the rounded-down offset does too.
        unsafe { self.area.add(offset - offset % self.block_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::page::tests::page_over;

    /// P6 against division, for every class: every offset near the area (in 8-byte steps, and
    /// every byte of the first blocks), before it, and far away either way.
    #[test]
    fn block_start_check_agrees_with_division() {
        use crate::alloc::size_class::SizeClass;
        let mut page = Page::empty();
        page.area = 0x2000_0040_0000 as *mut u8;
        for class in SizeClass::all() {
            let size = class.size();
            page.block_magic = block_magic(size);
            let area_size: usize = if size <= 8 << 10 {
                64 << 10
            } else {
                (4 << 20) - (64 << 10)
            };
            let reserved = area_size / size;
            for capacity in [0, 1, reserved / 2 + 1, reserved] {
                page.set_capacity(capacity);
                let expected = |offset: isize| {
                    offset >= 0
                        && (offset as usize).is_multiple_of(size)
                        && (offset as usize / size) < capacity
                };
                let near = (-(64 << 10) - 2 * size as isize..(area_size + 2 * size) as isize)
                    .step_by(8)
                    .chain(-64..(3 * size as isize).min(4096));
                let far = [
                    1isize << 46,
                    -(1 << 46),
                    (1 << 47) - 8,
                    -(1 << 47) + 8,
                    1 << 40,
                ];
                for offset in near.chain(far) {
                    let address = (page.area as usize).wrapping_add_signed(offset) as *const u8;
                    assert_eq!(
                        page.is_block_start(address),
                        expected(offset),
                        "class size {size}, capacity {capacity}, offset {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn block_start_rounds_down_to_the_block() {
        let mut buffer = vec![0u64; 64];
        let page = page_over(&mut buffer, 48);
        // SAFETY: offsets stay inside the buffer.
        let inside = unsafe { page.area.add(48 * 3 + 17) };
        assert_eq!(
            page.block_start(inside) as usize,
            page.area as usize + 48 * 3
        );
    }
}
