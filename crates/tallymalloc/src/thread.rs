//! Threads: the thread-local heap pointer, lazy heap start, and abandonment at thread exit.
//!
//! The heap pointer is a `thread_local!` with a `const` initialiser holding a plain pointer:
//! such a variable needs no lazy initialisation and registers no destructor, so touching it
//! never calls malloc (`__cxa_thread_atexit_impl` would). It starts at the shared empty heap,
//! so the malloc fast path needs no null check. Thread exit is caught with a `pthread_key_t`
//! destructor, created once per process before the first heap exists.
//!
//! Invariants:
//! - **T1**: a thread's pointer is the empty heap until its first slow-path allocation, then
//!   its own heap until its exit handler abandons that heap and sets it back to empty.
//! - **T2**: heaps come from [`os::reserve_metadata`] chunks and are recycled through a pool
//!   under a spin lock; a heap in the pool has no segments and no pages.
//! - **T3**: nothing here allocates through the allocator. `pthread_setspecific` may call
//!   malloc (for keys past the first 32): the heap pointer is set before that call, so the
//!   nested malloc finds a working heap.

use crate::heap::{empty_heap, Heap, EMPTY_HEAP};
use crate::options;
use crate::os;
use crate::sync::SpinLock;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

thread_local! {
    static CURRENT_HEAP: Cell<*mut Heap> =
        const { Cell::new(&raw const EMPTY_HEAP as *mut Heap) };
}

/// This thread's heap, or the shared empty heap if it has none (T1).
#[inline(always)]
pub fn current_heap() -> *mut Heap {
    CURRENT_HEAP.with(Cell::get)
}

static PROCESS_READY: AtomicBool = AtomicBool::new(false);
static PROCESS_INIT_LOCK: SpinLock<()> = SpinLock::new(());
static EXIT_KEY: AtomicU32 = AtomicU32::new(0);
static HAS_EXIT_KEY: AtomicBool = AtomicBool::new(false);

/// One-time process set-up: options, the thread-exit key.
pub fn ensure_process_ready() {
    if PROCESS_READY.load(Ordering::Acquire) {
        return;
    }
    let _guard = PROCESS_INIT_LOCK.lock();
    if PROCESS_READY.load(Ordering::Relaxed) {
        return;
    }
    options::load_from_environment();
    let mut key: libc::pthread_key_t = 0;
    // pthread_key_create does not allocate; the destructor accepts any value we store.
    // SAFETY: `key` is a valid out-parameter and the destructor an `extern "C"` fn.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        EXIT_KEY.store(key, Ordering::Relaxed);
        HAS_EXIT_KEY.store(true, Ordering::Relaxed);
    }
    PROCESS_READY.store(true, Ordering::Release);
}

/// Gives the calling thread a heap (T1). `None` when the OS refuses memory.
#[cold]
pub fn start_heap() -> Option<*mut Heap> {
    ensure_process_ready();
    let heap = pool_take()?;
    // SAFETY: the pool handed us unused heap memory (T2).
    unsafe { Heap::initialize(heap) };
    CURRENT_HEAP.with(|current| current.set(heap));
    if HAS_EXIT_KEY.load(Ordering::Relaxed) {
        // SAFETY: the key was created by `ensure_process_ready`; T3 covers the nested malloc.
        unsafe { libc::pthread_setspecific(EXIT_KEY.load(Ordering::Relaxed), heap.cast()) };
    }
    // pthread_atfork allocates, so it is registered only now that this thread has a heap.
    if !FORK_HANDLERS_REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: the handlers are `extern "C"` functions that take no arguments.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
    }
    Some(heap)
}

static FORK_HANDLERS_REGISTERED: AtomicBool = AtomicBool::new(false);

/// Holds every global lock across `fork`, so the child never inherits one held by a thread
/// that does not exist there. Lock order: pool, abandoned list, huge cache (no path takes two
/// of them at once).
extern "C" fn before_fork() {
    POOL.hold_for_fork();
    crate::segment::hold_locks_for_fork();
    crate::huge_cache::hold_lock_for_fork();
}

extern "C" fn after_fork_in_parent() {
    // SAFETY: `before_fork` took the locks on this thread.
    unsafe {
        crate::huge_cache::release_lock_after_fork();
        crate::segment::release_locks_after_fork();
        POOL.release_after_fork();
    }
}

extern "C" fn after_fork_in_child() {
    // Heaps of threads that do not exist in the child stay as they are: their blocks can
    // still be freed (as remote frees) and their memory is lost to the child, as in any
    // allocator with thread-local heaps.
    // SAFETY: the forking thread took the locks in `before_fork` and is the only thread.
    unsafe {
        crate::huge_cache::release_lock_after_fork();
        crate::segment::release_locks_after_fork();
        POOL.release_after_fork();
    }
}

extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let heap = value.cast::<Heap>();
    if heap.is_null() || heap == empty_heap() {
        return;
    }
    // The key's value is the exiting thread's own heap (set in `start_heap`).
    // SAFETY: H1: this handler runs on the heap's own thread.
    unsafe { (*heap).state().abandon() };
    CURRENT_HEAP.with(|current| {
        if current.get() == heap {
            current.set(empty_heap());
        }
    });
    pool_give_back(heap);
}

/// Unused heap memory, linked through `HeapState::pool_next` (T2).
struct HeapPool {
    free: *mut Heap,
}
// SAFETY: the pool is only touched under its lock, and the heaps on it are unused.
unsafe impl Send for HeapPool {}

static POOL: SpinLock<HeapPool> = SpinLock::new(HeapPool {
    free: ptr::null_mut(),
});

const POOL_CHUNK: usize = 64 * 1024;

fn pool_take() -> Option<*mut Heap> {
    let mut pool = POOL.lock();
    if pool.free.is_null() {
        let chunk = os::reserve_metadata(POOL_CHUNK)?;
        let count = POOL_CHUNK / core::mem::size_of::<Heap>();
        for index in 0..count {
            // A zeroed heap's `pool_next` is a valid null pointer.
            // SAFETY: T2: the chunk is fresh, zeroed and holds `count` heaps.
            unsafe {
                let heap = chunk.as_ptr().cast::<Heap>().add(index);
                *Heap::pool_next(heap) = pool.free;
                pool.free = heap;
            }
        }
    }
    let heap = pool.free;
    // SAFETY: heaps on the pool are valid unused memory (T2).
    pool.free = unsafe { *Heap::pool_next(heap) };
    Some(heap)
}

fn pool_give_back(heap: *mut Heap) {
    let mut pool = POOL.lock();
    // SAFETY: the heap was abandoned and is no longer anyone's (T2).
    unsafe { *Heap::pool_next(heap) = pool.free };
    pool.free = heap;
}
