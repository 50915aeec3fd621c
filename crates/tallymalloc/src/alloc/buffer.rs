//! Owner buffers: memory from one domain that lives exactly as long as the value holding it,
//! resized with `realloc`'s semantics (contents kept, in place when the block allows, the
//! original intact on failure). Cython's `SomeMemory` pattern, with the free tied to `Drop`.
//!
//! Invariants:
//! - **B1 block**: `block` is `None` exactly when the buffer has never held a byte or was
//!   resized to zero; otherwise it is a live block of `domain`, allocated with `align`, of at
//!   least `len` bytes, owned by this buffer alone and freed once, in `Drop` or a resize to 0.
//! - **B2 initialised**: every one of the first `len` bytes has been written (allocation zeroes
//!   them or copies them in; growth zeroes the new tail), so handing them out as `&[u8]` is
//!   sound.
//! - Nothing here allocates except through the domain it names.

use crate::alloc::size_class::MIN_ALIGN;
use crate::policy::domain::Domain;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

/// A request a buffer could not serve: the allocator had no memory for it, or it was too
/// large to ever be served. The buffer it was asked of is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutOfMemory {
    /// The size asked for, in bytes (saturated at `usize::MAX` if it overflowed).
    pub requested_bytes: usize,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "out of memory: could not allocate {} bytes",
            self.requested_bytes
        )
    }
}

impl std::error::Error for OutOfMemory {}

/// Bytes owned in one domain, freed when the buffer is dropped.
///
/// ```
/// use tallymalloc::{Domain, RawBuffer};
///
/// let mut buffer = RawBuffer::from_slice(b"hello", Domain::MEM).expect("out of memory");
/// buffer.try_resize(8).expect("out of memory");
/// assert_eq!(buffer.as_slice(), b"hello\0\0\0");
///
/// // A request no allocator can serve fails and leaves the buffer as it was.
/// assert!(buffer.try_resize(usize::MAX / 2).is_err());
/// assert_eq!(&buffer.as_slice()[..5], b"hello");
/// ```
pub struct RawBuffer {
    block: Option<NonNull<u8>>,
    len: usize,
    domain: Domain,
    align: usize,
}

// SAFETY: B1: the buffer owns its block alone, and any thread may free a block.
unsafe impl Send for RawBuffer {}
// SAFETY: shared references only read the bytes (B2).
unsafe impl Sync for RawBuffer {}

impl RawBuffer {
    /// An empty buffer in `domain`; it allocates nothing until it grows.
    pub const fn new(domain: Domain) -> RawBuffer {
        RawBuffer::with_alignment(domain, MIN_ALIGN)
    }

    const fn with_alignment(domain: Domain, align: usize) -> RawBuffer {
        RawBuffer {
            block: None,
            len: 0,
            domain,
            align,
        }
    }

    /// `len` zero bytes in `domain` (memory fresh from the OS is not written again).
    pub fn zeroed(len: usize, domain: Domain) -> Result<RawBuffer, OutOfMemory> {
        let mut buffer = RawBuffer::new(domain);
        buffer.try_resize(len)?;
        Ok(buffer)
    }

    /// A copy of `bytes` in `domain`.
    pub fn from_slice(bytes: &[u8], domain: Domain) -> Result<RawBuffer, OutOfMemory> {
        let mut buffer = RawBuffer::new(domain);
        if !bytes.is_empty() {
            let block = allocate(domain, bytes.len(), MIN_ALIGN, false)?;
            // SAFETY: the new block holds `bytes.len()` bytes and overlaps nothing else.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), block.as_ptr(), bytes.len()) };
            buffer.block = Some(block);
            buffer.len = bytes.len();
        }
        Ok(buffer)
    }

    /// Makes the buffer `new_len` bytes long, keeping its first `min(len, new_len)` bytes; new
    /// bytes are zero. The block grows or shrinks in place when its size class allows, and
    /// moves otherwise. On failure the buffer, its address and its contents are unchanged.
    pub fn try_resize(&mut self, new_len: usize) -> Result<(), OutOfMemory> {
        if new_len == self.len {
            return Ok(());
        }
        match self.block {
            None => {
                self.block = Some(allocate(self.domain, new_len, self.align, true)?);
            }
            Some(_) if new_len == 0 => self.release(),
            Some(block) => {
                // SAFETY: B1: a live block of our domain, allocated with `self.align`.
                let resized = unsafe {
                    crate::alloc::realloc::reallocate(
                        self.domain,
                        block.as_ptr(),
                        new_len,
                        self.align,
                    )
                };
                let resized = NonNull::new(resized).ok_or(OutOfMemory {
                    requested_bytes: new_len,
                })?;
                if new_len > self.len {
                    // SAFETY: the block holds `new_len` bytes; B2 for the grown tail.
                    unsafe {
                        resized
                            .as_ptr()
                            .add(self.len)
                            .write_bytes(0, new_len - self.len)
                    };
                }
                self.block = Some(resized);
            }
        }
        self.len = new_len;
        Ok(())
    }

    /// How many bytes the buffer holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many bytes the buffer could grow to without moving (its block's usable size).
    pub fn capacity(&self) -> usize {
        match self.block {
            // SAFETY: B1: a live block of ours.
            Some(block) => unsafe { crate::usable_size(block.as_ptr()) },
            None => 0,
        }
    }

    /// The domain the bytes are accounted to.
    pub fn domain(&self) -> Domain {
        self.domain
    }

    /// The bytes' address (dangling, but aligned, while the buffer is empty).
    pub fn as_ptr(&self) -> *const u8 {
        self.base().as_ptr()
    }

    /// The bytes' address, for writing (dangling, but aligned, while the buffer is empty).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.base().as_ptr()
    }

    fn base(&self) -> NonNull<u8> {
        // An empty buffer's address is its alignment, as `NonNull::dangling` is for a type.
        self.block
            .unwrap_or_else(|| NonNull::new(self.align as *mut u8).expect("alignment is not 0"))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: B1 and B2: `len` initialised bytes we own (or none, at an aligned address).
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The bytes, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        // SAFETY: B1 and B2, and `&mut self` makes the access exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.as_mut_ptr(), len) }
    }

    fn release(&mut self) {
        if let Some(block) = self.block.take() {
            // SAFETY: B1: our live block, freed once since `take` forgets it.
            unsafe { self.domain.free(block.as_ptr()) };
        }
        self.len = 0;
    }
}

fn allocate(
    domain: Domain,
    len: usize,
    align: usize,
    zeroed: bool,
) -> Result<NonNull<u8>, OutOfMemory> {
    let zero_bytes = zeroed.then_some(len);
    NonNull::new(crate::alloc::aligned::allocate_aligned(
        domain, len, align, zero_bytes,
    ))
    .ok_or(OutOfMemory {
        requested_bytes: len,
    })
}

impl Drop for RawBuffer {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for RawBuffer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RawBuffer")
            .field("len", &self.len)
            .field("domain", &self.domain.name())
            .finish()
    }
}

/// A resizable array of `T` owned in one domain, freed when dropped: [`RawBuffer`] with a
/// type. Elements are `Copy`, so resizing moves bytes and drops nothing.
///
/// ```
/// use tallymalloc::{Buffer, Domain};
///
/// let mut samples: Buffer<f64> = Buffer::filled(3, 0.5, Domain::MEM).expect("out of memory");
/// samples.as_mut_slice()[2] = 2.0;
/// samples.try_resize(5, -1.0).expect("out of memory");
/// assert_eq!(samples.as_slice(), &[0.5, 0.5, 2.0, -1.0, -1.0]);
/// ```
pub struct Buffer<T: Copy> {
    bytes: RawBuffer,
    element: PhantomData<T>,
}

impl<T: Copy> Buffer<T> {
    /// An empty buffer in `domain`.
    pub const fn new(domain: Domain) -> Buffer<T> {
        const { assert!(size_of::<T>() > 0, "a Buffer's elements must have a size") };
        let align = if align_of::<T>() > MIN_ALIGN {
            align_of::<T>()
        } else {
            MIN_ALIGN
        };
        Buffer {
            bytes: RawBuffer::with_alignment(domain, align),
            element: PhantomData,
        }
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T, domain: Domain) -> Result<Buffer<T>, OutOfMemory> {
        let mut buffer = Buffer::new(domain);
        buffer.try_resize(len, value)?;
        Ok(buffer)
    }

    /// A copy of `elements`.
    pub fn from_slice(elements: &[T], domain: Domain) -> Result<Buffer<T>, OutOfMemory> {
        let mut buffer = Buffer::new(domain);
        buffer.bytes.try_resize(byte_len::<T>(elements.len())?)?;
        buffer.as_mut_slice().copy_from_slice(elements);
        Ok(buffer)
    }

    /// Makes the buffer `new_len` elements long, keeping the first `min(len, new_len)` and
    /// filling new places with `value`. On failure the buffer is unchanged.
    pub fn try_resize(&mut self, new_len: usize, value: T) -> Result<(), OutOfMemory> {
        let old_len = self.len();
        self.bytes.try_resize(byte_len::<T>(new_len)?)?;
        if new_len > old_len {
            self.as_mut_slice()[old_len..].fill(value);
        }
        Ok(())
    }

    /// How many elements the buffer holds.
    pub fn len(&self) -> usize {
        self.bytes.len().checked_div(size_of::<T>()).unwrap_or(0)
    }

    /// Whether the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The domain the memory is accounted to.
    pub fn domain(&self) -> Domain {
        self.bytes.domain()
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // Every element was written as a T (filled, copied, or by the caller through
        // `as_mut_slice`): zero bytes the RawBuffer grows are overwritten by `try_resize`'s
        // fill before anyone can read them.
        // SAFETY: the bytes are aligned for T (allocated with its alignment) and hold `len` Ts.
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr().cast::<T>(), self.len()) }
    }

    /// The elements, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.len();
        // SAFETY: as `as_slice`, with `&mut self` making the access exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.bytes.as_mut_ptr().cast::<T>(), len) }
    }

    /// The underlying bytes.
    pub fn as_raw(&self) -> &RawBuffer {
        &self.bytes
    }
}

fn byte_len<T>(len: usize) -> Result<usize, OutOfMemory> {
    len.checked_mul(size_of::<T>()).ok_or(OutOfMemory {
        requested_bytes: usize::MAX,
    })
}

impl<T: Copy + fmt::Debug> fmt::Debug for Buffer<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_keeps_contents_and_zeroes_the_tail() {
        let mut buffer = RawBuffer::from_slice(&[7; 100], Domain::MEM).unwrap();
        buffer.try_resize(5000).unwrap();
        assert!(buffer.as_slice()[..100].iter().all(|&byte| byte == 7));
        assert!(buffer.as_slice()[100..].iter().all(|&byte| byte == 0));
        // SAFETY: a live block of ours.
        let domain = unsafe { crate::domain_of(buffer.as_ptr()) };
        assert_eq!(domain, Domain::MEM);
    }

    #[test]
    fn an_impossible_resize_leaves_the_buffer_as_it_was() {
        let mut buffer = RawBuffer::from_slice(b"intact", Domain::OBJ).unwrap();
        let address = buffer.as_ptr();
        let error = buffer.try_resize(isize::MAX as usize).unwrap_err();
        assert_eq!(error.requested_bytes, isize::MAX as usize);
        assert_eq!(
            (buffer.as_ptr(), buffer.as_slice()),
            (address, &b"intact"[..])
        );
    }

    #[test]
    fn resizing_to_zero_frees_and_an_empty_buffer_is_aligned() {
        let mut buffer = RawBuffer::zeroed(64, Domain::RAW).unwrap();
        let block = buffer.as_ptr();
        assert!(crate::is_ours(block));
        buffer.try_resize(0).unwrap();
        assert_eq!(buffer.capacity(), 0);
        assert!(buffer.as_slice().is_empty());
        assert_eq!(buffer.as_ptr() as usize % MIN_ALIGN, 0);
    }

    #[test]
    fn overaligned_elements_stay_aligned_across_moves() {
        #[derive(Clone, Copy, PartialEq, Debug)]
        #[repr(align(64))]
        struct Line(u8);
        let mut lines = Buffer::filled(3, Line(1), Domain::MEM).unwrap();
        for len in [10, 1000, 100_000] {
            lines.try_resize(len, Line(2)).unwrap();
            assert_eq!(lines.as_slice().as_ptr() as usize % 64, 0);
            assert_eq!(lines.as_slice()[..3], [Line(1); 3]);
        }
    }

    #[test]
    fn an_element_count_that_overflows_fails_cleanly() {
        let mut numbers: Buffer<u64> = Buffer::from_slice(&[1, 2, 3], Domain::RAW).unwrap();
        assert!(numbers.try_resize(usize::MAX / 4, 0).is_err());
        assert_eq!(numbers.as_slice(), &[1, 2, 3]);
    }
}
