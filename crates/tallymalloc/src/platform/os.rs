//! The OS layer: reserve, decommit, remap and release address space.
//!
//! Invariants:
//! - This is the only module that makes memory system calls (`mmap`, `munmap`, `madvise`,
//!   `mremap`, `mprotect`). Everything else asks it and gets an `Option` or a `bool` back.
//! - Nothing here allocates: no `Vec`, no `String`, no formatting. It may run inside `malloc`.
//! - A failed system call is reported as `None`/`false`, never as a panic or an abort: the
//!   caller turns it into a null pointer.
//! - Memory returned by [`reserve_aligned`] is readable, writable and zero. Linux commits it
//!   lazily on first touch, so "reserve" costs address space, not resident memory.

use crate::platform::text::parse_decimal;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// The smallest page size we assume; the real one is read once by [`page_size`].
const FALLBACK_PAGE_SIZE: usize = 4096;

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Bytes currently mapped by tallymalloc (reserved address space).
static RESERVED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes the allocator may have made resident: pages in use or awaiting their purge, and huge
/// mappings (kept up to date by `segment.rs` and `huge.rs`, which know when pages change state).
static COMMITTED_BYTES: AtomicIsize = AtomicIsize::new(0);

/// Adds `delta` bytes to the committed gauge.
pub fn note_committed(delta: isize) {
    COMMITTED_BYTES.fetch_add(delta, Ordering::Relaxed);
}

/// The committed gauge (see [`note_committed`]).
pub fn committed_bytes() -> usize {
    COMMITTED_BYTES.load(Ordering::Relaxed).max(0) as usize
}

/// The system page size, read once.
#[inline]
pub fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions and does not allocate.
    let read = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = if read > 0 && (read as usize).is_power_of_two() {
        read as usize
    } else {
        FALLBACK_PAGE_SIZE
    };
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// Bytes of address space tallymalloc holds from the OS right now.
pub fn reserved_bytes() -> usize {
    RESERVED_BYTES.load(Ordering::Relaxed)
}

/// Where aligned reservations are asked for first: a window far from where the kernel puts
/// other mappings (which grow down from just under 128 TiB), so the hint is usually free and
/// the kernel grants it: one `mmap`, no trimming. The window wraps.
const HINT_WINDOW_START: usize = 32 << 40;
const HINT_WINDOW_SIZE: usize = 32 << 40;
static NEXT_HINT: AtomicUsize = AtomicUsize::new(0);

/// Maps `size` bytes (a multiple of the page size) of fresh zeroed memory whose start is a
/// multiple of `align` (a power of two, at least the page size).
///
/// First asks for the next aligned address of the hint window; if the kernel maps elsewhere,
/// over-reserves `size + align` and trims the ends, so the result is aligned whatever address
/// the kernel picks. Returns `None` when the kernel refuses.
pub fn reserve_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
    debug_assert!(align.is_power_of_two() && align >= page_size());
    debug_assert!(size.is_multiple_of(page_size()) && size > 0);
    if let Some(hinted) = reserve_at_hint(size, align) {
        RESERVED_BYTES.fetch_add(size, Ordering::Relaxed);
        return Some(hinted);
    }
    reserve_aligned_at(size, align, 0)
}

/// Maps `size` bytes (a multiple of the page size) of fresh zeroed memory such that the address
/// `offset` bytes in is a multiple of `align` (a power of two larger than `offset`, which is a
/// multiple of the page size): over-reserves `size + align` and trims both ends. For the
/// alignments beyond a segment, whose blocks sit a segment into their mapping (`huge.rs`).
pub fn reserve_aligned_at(size: usize, align: usize, offset: usize) -> Option<NonNull<u8>> {
    debug_assert!(align.is_power_of_two() && offset < align && offset.is_multiple_of(page_size()));
    let over = size.checked_add(align)?;
    let base = map_anonymous(over)?.as_ptr() as usize;
    let aligned = ((base + offset + align - 1) & !(align - 1)) - offset;
    let head = aligned - base;
    let tail = over - head - size;
    // [base, base+head) and [aligned+size, base+over) lie inside the mapping just made.
    // SAFETY: nobody else knows about the mapping yet, so trimming it affects no one.
    unsafe {
        if head > 0 {
            libc::munmap(base as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut libc::c_void, tail);
        }
    }
    RESERVED_BYTES.fetch_add(size, Ordering::Relaxed);
    NonNull::new(aligned as *mut u8)
}

/// Maps `size` bytes at the next address of the hint window if the kernel grants it there.
fn reserve_at_hint(size: usize, align: usize) -> Option<NonNull<u8>> {
    let span = size.checked_add(align - 1)? & !(align - 1);
    if span > HINT_WINDOW_SIZE / 4 {
        return None;
    }
    let offset = NEXT_HINT.fetch_add(span, Ordering::Relaxed) % (HINT_WINDOW_SIZE - span);
    let hint = (HINT_WINDOW_START + offset) & !(align - 1);
    let mapped = map_anonymous_at(hint, size)?;
    if mapped.as_ptr() as usize == hint {
        return Some(mapped);
    }
    // SAFETY: the kernel put the mapping elsewhere; it is ours and unused.
    unsafe { libc::munmap(mapped.as_ptr().cast(), size) };
    None
}

/// Maps `size` bytes of fresh memory anywhere; the caller accounts for it.
fn map_anonymous(size: usize) -> Option<NonNull<u8>> {
    map_anonymous_at(0, size)
}

/// Maps `size` bytes of fresh memory, at `hint` if that range is free (0: anywhere).
fn map_anonymous_at(hint: usize, size: usize) -> Option<NonNull<u8>> {
    if crate::platform::fault::should_fail() {
        set_errno(libc::ENOMEM);
        return None;
    }
    // Without MAP_FIXED the hint is only a hint: the kernel never replaces an existing mapping.
    // SAFETY: a new anonymous private mapping touches no existing memory.
    let mapped = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(mapped.cast())
    }
}

/// Maps `size` bytes for tallymalloc's own metadata (heaps). Not aligned beyond a page.
pub fn reserve_metadata(size: usize) -> Option<NonNull<u8>> {
    let mapped = map_anonymous(size)?;
    RESERVED_BYTES.fetch_add(size, Ordering::Relaxed);
    Some(mapped)
}

/// Makes `[start, start+size)` inaccessible, so that a stray access faults: secure mode's
/// guard pages. Returns whether the kernel agreed.
///
/// # Safety
/// The range must be whole pages of a mapping of this module that nothing uses.
pub unsafe fn guard(start: NonNull<u8>, size: usize) -> bool {
    // SAFETY: the caller's contract: nobody reads or writes the range.
    unsafe { libc::mprotect(start.as_ptr().cast(), size, libc::PROT_NONE) == 0 }
}

/// Makes a range [`guard`] made inaccessible readable and writable again. Returns whether the
/// kernel agreed.
///
/// # Safety
/// The range must be whole pages of a mapping of this module.
pub unsafe fn unguard(start: NonNull<u8>, size: usize) -> bool {
    // SAFETY: the caller's contract; the pages become what `reserve_aligned` gave.
    unsafe {
        libc::mprotect(
            start.as_ptr().cast(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    }
}

/// Returns a mapping made by this module to the OS.
///
/// # Safety
/// `[start, start+size)` must be exactly a range this module mapped (or the part of one that is
/// still mapped), and nothing may use it afterwards.
pub unsafe fn release(start: NonNull<u8>, size: usize) {
    // SAFETY: the caller guarantees the range is ours and dead.
    let result = unsafe { libc::munmap(start.as_ptr().cast(), size) };
    if result == 0 {
        RESERVED_BYTES.fetch_sub(size, Ordering::Relaxed);
    }
}

/// Gives the physical memory behind `[start, start+size)` back to the OS while keeping the
/// address range; the range reads as zero afterwards. Both ends must be page aligned.
///
/// Returns whether the kernel did it (the memory is zero only if it did).
///
/// # Safety
/// The range must lie inside a live mapping of this module and hold no live data.
pub unsafe fn decommit(start: *mut u8, size: usize) -> bool {
    debug_assert!((start as usize).is_multiple_of(page_size()) && size.is_multiple_of(page_size()));
    if size == 0 {
        return true;
    }
    // MADV_DONTNEED on a private anonymous mapping drops the pages; later reads see zeros.
    // SAFETY: the caller guarantees the range is ours and holds nothing live.
    unsafe { libc::madvise(start.cast(), size, libc::MADV_DONTNEED) == 0 }
}

/// Asks for transparent huge pages behind `[start, start + size)` (`MADV_HUGEPAGE`), for the
/// kernels that give them only on request, or (`on` false) for none (`MADV_NOHUGEPAGE`).
/// Advice only: a kernel without them ignores it.
pub fn advise_huge_pages(start: NonNull<u8>, size: usize, on: bool) {
    let advice = if on {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: advice on a range of ours changes no contents.
    unsafe { libc::madvise(start.as_ptr().cast(), size, advice) };
}

/// Grows or shrinks a mapping without moving it. Returns whether the kernel could (`errno` is
/// as it was either way).
///
/// # Safety
/// `[start, start+old_size)` must be a whole live mapping of this module.
pub unsafe fn remap_in_place(start: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
    if new_size > old_size && crate::platform::fault::should_fail() {
        return false;
    }
    let _errno = ErrnoGuard::save();
    // Without MREMAP_MAYMOVE the kernel resizes in place or fails, leaving the mapping as is.
    // SAFETY: the caller guarantees the mapping is a whole live mapping of ours.
    let moved = unsafe { libc::mremap(start.as_ptr().cast(), old_size, new_size, 0) };
    if moved == libc::MAP_FAILED {
        return false;
    }
    adjust_reserved(old_size, new_size);
    true
}

/// Moves a mapping's pages to `destination` (a fresh aligned reservation of `new_size` bytes
/// from [`reserve_aligned`]), growing it to `new_size`. No bytes are copied: the kernel moves
/// the page tables. On failure the old mapping is untouched, the destination is released and
/// `errno` is as it was.
///
/// # Safety
/// `[start, start+old_size)` must be a whole live mapping of this module, and `destination`
/// a reservation of `new_size` bytes that nothing uses.
pub unsafe fn remap_to(
    start: NonNull<u8>,
    old_size: usize,
    new_size: usize,
    destination: NonNull<u8>,
) -> bool {
    // SAFETY: the caller owns both the source mapping and the destination reservation.
    if !unsafe { remap_fixed(start, old_size, new_size, destination) } {
        // SAFETY: the destination is still our unused reservation.
        unsafe { release(destination, new_size) };
        return false;
    }
    // The destination reservation was swallowed by the move: it is now the block's mapping.
    RESERVED_BYTES.fetch_sub(new_size, Ordering::Relaxed);
    adjust_reserved(old_size, new_size);
    true
}

/// Moves the pages of `[start, start+size)` to `destination`, inside a reservation of ours,
/// whose `size` bytes there they replace. No bytes are copied: the kernel moves the page
/// tables. The range may span several mappings made by earlier moves; Linux moves such a
/// range in one call from 6.17 on, and refuses it before. Returns whether the pages moved;
/// on failure nothing changed (and `errno` is as it was: the callers have another way).
///
/// # Safety
/// `[start, start+size)` must be memory of this module that nobody uses, and
/// `[destination, destination+size)` part of a reservation of ours that nothing uses.
pub unsafe fn move_into(start: NonNull<u8>, size: usize, destination: NonNull<u8>) -> bool {
    if crate::platform::fault::should_fail() {
        return false;
    }
    // SAFETY: the caller owns both ranges.
    if !unsafe { remap_fixed(start, size, size, destination) } {
        return false;
    }
    // Two counted ranges became one.
    RESERVED_BYTES.fetch_sub(size, Ordering::Relaxed);
    true
}

/// `mremap` of `[start, start+old_size)` to `destination`, `new_size` bytes long, replacing
/// what was mapped there (`MREMAP_FIXED`); the source stays mapped on failure, and `errno` is
/// as it was.
///
/// # Safety
/// The caller owns the source range and `new_size` bytes at `destination`.
unsafe fn remap_fixed(
    start: NonNull<u8>,
    old_size: usize,
    new_size: usize,
    destination: NonNull<u8>,
) -> bool {
    let _errno = ErrnoGuard::save();
    // SAFETY: the caller's contract.
    let moved = unsafe {
        libc::mremap(
            start.as_ptr().cast(),
            old_size,
            new_size,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            destination.as_ptr().cast::<libc::c_void>(),
        )
    };
    moved != libc::MAP_FAILED
}

fn adjust_reserved(old_size: usize, new_size: usize) {
    if new_size >= old_size {
        RESERVED_BYTES.fetch_add(new_size - old_size, Ordering::Relaxed);
    } else {
        RESERVED_BYTES.fetch_sub(old_size - new_size, Ordering::Relaxed);
    }
}

/// Keeps `errno` as it was across system calls a C caller does not expect (glibc's rule for
/// a replacement `free`): restores it when dropped.
pub struct ErrnoGuard(libc::c_int);

impl ErrnoGuard {
    pub fn save() -> ErrnoGuard {
        // SAFETY: __errno_location returns this thread's errno, always valid.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Sets this thread's `errno`.
/// Every allocation failure ends here: null, with `errno` set to `ENOMEM`.
#[cold]
#[inline(never)]
pub fn out_of_memory() -> *mut u8 {
    set_errno(libc::ENOMEM);
    core::ptr::null_mut()
}

pub fn set_errno(value: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = value };
}

/// Milliseconds on a monotonic clock (a vDSO call on Linux: no system call, no allocation).
pub fn monotonic_millis() -> u64 {
    millis_on(libc::CLOCK_MONOTONIC)
}

/// A cheap clock in milliseconds (`CLOCK_MONOTONIC_COARSE`: the kernel's tick, a few
/// milliseconds apart), for telling whether any time has passed at all.
pub fn coarse_millis() -> u64 {
    millis_on(libc::CLOCK_MONOTONIC_COARSE)
}

#[inline(always)]
fn millis_on(clock: libc::clockid_t) -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-parameter.
    unsafe { libc::clock_gettime(clock, &mut now) };
    (now.tv_sec as u64) * 1000 + (now.tv_nsec as u64) / 1_000_000
}

/// Gives the processor to another thread while spinning on a contended lock.
/// Sleeps for `millis` milliseconds (less if a signal interrupts it).
pub fn sleep_millis(millis: u64) {
    let pause = libc::timespec {
        tv_sec: (millis / 1000) as libc::time_t,
        tv_nsec: ((millis % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: `pause` is a valid timespec; the remainder is not wanted.
    unsafe { libc::nanosleep(&pause, core::ptr::null_mut()) };
}

/// Starts a child process as `fork` does (a copy of this one, returning 0 in the child and
/// its pid here, -1 on failure) but without running the `pthread_atfork` handlers: ours hold
/// every allocator lock (lock_registry.rs), and the caller, printing a report, may hold one.
/// The child may call only async-signal-safe functions before it execs or exits.
pub fn fork_without_handlers() -> libc::pid_t {
    // A bare clone with SIGCHLD as its exit signal is fork(2) at the system-call level.
    // SAFETY: no CLONE_VM: the child runs on its own copy of this stack, as after fork.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        ) as libc::pid_t
    }
}

std::thread_local! {
    /// Set while tallymalloc makes the C library allocate for its own ends (creating its
    /// sampler and purger threads): debug mode counts those blocks as the allocator's, not as
    /// leaks of the program's.
    static ALLOCATING_FOR_ALLOCATOR: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether the calling thread is inside [`spawn_thread`]'s `pthread_create`.
pub fn allocating_for_allocator() -> bool {
    ALLOCATING_FOR_ALLOCATOR.with(core::cell::Cell::get)
}

/// Starts one of tallymalloc's own threads (the stats sampler, the purger), detached; false
/// if the system refuses. What creating it allocates (glibc's TLS bookkeeping) is marked as
/// tallymalloc's own ([`allocating_for_allocator`]). The thread blocks every signal, so the
/// program's handlers (and the exit reports' one, which must not run where a lock is held) run
/// on the program's threads only.
pub fn spawn_thread(
    entry: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    argument: *mut libc::c_void,
) -> bool {
    let mut thread: libc::pthread_t = 0;
    // SAFETY: zeroed sigsets are valid for sigfillset and as out-parameters.
    let (mut all, mut previous): (libc::sigset_t, libc::sigset_t) =
        unsafe { (core::mem::zeroed(), core::mem::zeroed()) };
    // SAFETY: both sets are valid; the new thread inherits the full mask, ours is restored below.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
    }
    ALLOCATING_FOR_ALLOCATOR.with(|flag| flag.set(true));
    // SAFETY: `entry` has the signature pthread_create wants; `thread` is written on success.
    let created = unsafe { libc::pthread_create(&mut thread, core::ptr::null(), entry, argument) };
    ALLOCATING_FOR_ALLOCATOR.with(|flag| flag.set(false));
    // SAFETY: `previous` is the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, core::ptr::null_mut()) };
    if created != 0 {
        return false;
    }
    // SAFETY: a thread we just created, never joined.
    unsafe { libc::pthread_detach(thread) };
    true
}

pub fn yield_thread() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// Reads the file at `path` into `buffer`, as much as fits, without allocating (files of
/// `/proc`); the bytes read, or None if it cannot be opened.
pub fn read_file(path: &core::ffi::CStr, buffer: &mut [u8]) -> Option<usize> {
    // SAFETY: `path` is NUL-terminated; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut length = 0;
    while length < buffer.len() {
        let room = &mut buffer[length..];
        // SAFETY: `room` is writable for its whole length.
        let read = unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) };
        if read <= 0 {
            break;
        }
        length += read as usize;
    }
    // SAFETY: fd is the descriptor opened above.
    unsafe { libc::close(fd) };
    Some(length)
}

/// Resident memory of this process in bytes, read from `/proc/self/statm` without allocating.
pub fn resident_bytes() -> Option<usize> {
    let mut buffer = [0u8; 128];
    let read = read_file(c"/proc/self/statm", &mut buffer).filter(|&n| n > 0)?;
    // statm: "size resident shared text lib data dt", in pages.
    let text = &buffer[..read];
    let mut fields = text.split(|&byte| byte == b' ');
    fields.next()?;
    let resident_pages = parse_decimal(fields.next()?, u64::MAX)? as usize;
    Some(resident_pages * page_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_aligned_honours_alignment_and_is_zero() {
        let align = 4 << 20;
        let size = 2 * align;
        let block = reserve_aligned(size, align).expect("mmap");
        assert_eq!(block.as_ptr() as usize % align, 0);
        // SAFETY: the mapping is ours and `size` bytes long.
        unsafe {
            let bytes = core::slice::from_raw_parts_mut(block.as_ptr(), size);
            assert!(bytes.iter().all(|&b| b == 0));
            bytes[size - 1] = 7;
            release(block, size);
        }
    }

    #[test]
    fn decommit_zeroes_memory() {
        let size = 16 * page_size();
        let block = reserve_aligned(size, page_size()).expect("mmap");
        // SAFETY: the mapping is ours.
        unsafe {
            core::ptr::write_bytes(block.as_ptr(), 0xAB, size);
            assert!(decommit(block.as_ptr(), size));
            assert_eq!(*block.as_ptr().add(size / 2), 0);
            release(block, size);
        }
    }

    #[test]
    fn remap_to_moves_contents_without_copying() {
        let page = page_size();
        let old = reserve_aligned(page, page).expect("mmap");
        // SAFETY: both mappings are ours; the old one is consumed by the move.
        unsafe {
            *old.as_ptr() = 42;
            let destination = reserve_aligned(4 * page, 1 << 20).expect("mmap");
            assert!(remap_to(old, page, 4 * page, destination));
            assert_eq!(*destination.as_ptr(), 42);
            assert_eq!(*destination.as_ptr().add(3 * page), 0);
            release(destination, 4 * page);
        }
    }

    #[test]
    fn reservations_of_every_alignment_are_aligned_and_distinct() {
        let mut taken = Vec::new();
        for shift in 12..=23 {
            let align = 1usize << shift;
            for size in [page_size(), 5 * page_size(), 4 << 20] {
                let block = reserve_aligned(size, align).expect("mmap");
                assert_eq!(block.as_ptr() as usize % align, 0);
                taken.push((block, size));
            }
        }
        let mut ranges: Vec<_> = taken
            .iter()
            .map(|(b, s)| (b.as_ptr() as usize, *s))
            .collect();
        ranges.sort();
        assert!(
            ranges.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0),
            "overlap"
        );
        for (block, size) in taken {
            // SAFETY: each mapping is ours and released once.
            unsafe { release(block, size) };
        }
    }

    #[test]
    fn impossible_reservation_fails_cleanly() {
        assert!(reserve_aligned(usize::MAX & !(page_size() - 1), 1 << 22).is_none());
        assert!(reserve_aligned(1 << 62, 1 << 22).is_none());
    }

    #[test]
    fn resident_bytes_is_plausible() {
        let resident = resident_bytes().expect("statm");
        assert!(resident > 0);
    }
}
