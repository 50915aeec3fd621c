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
//! - **T2**: heaps and domain heaps come from [`os::reserve_metadata`] chunks and are recycled
//!   through pools under spin locks; one in a pool has no segments, no pages, and its counters
//!   are retired.
//! - **T3**: nothing here allocates through the allocator. `pthread_setspecific` may call
//!   malloc (for keys past the first 32): the heap pointer is set before that call, so the
//!   nested malloc finds a working heap.

use crate::alloc::domain_heap::DomainHeap;
use crate::alloc::heap::{empty_heap, Heap, EMPTY_HEAP};
use crate::platform::lock_registry::Rank;
use crate::platform::os;
use crate::platform::sync::SpinLock;
use crate::policy::domain::Domain;
use crate::policy::options;
use crate::stats;
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

/// The domain heap every domain of a thread without one points at: its pages are all the
/// empty page. It is the empty heap's raw domain heap, its first field.
#[inline(always)]
pub fn empty_domain_heap() -> *mut DomainHeap {
    empty_heap().cast()
}

static PROCESS_READY: AtomicBool = AtomicBool::new(false);
static PROCESS_INIT_LOCK: SpinLock<()> = SpinLock::new(Rank::ProcessInit, ());
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
    stats::start_clock();
    crate::stats::exit_report::note_process_start();
    crate::stats::identity::note_parent();
    options::load_from_environment();
    crate::stats::exit_report::prepare();
    crate::profile::start_from_environment();
    crate::stats::exit_report::report_on_termination();
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
    let heap = HEAPS.take()?.cast::<Heap>();
    // SAFETY: the pool handed us unused heap memory (T2).
    unsafe { Heap::initialize(heap) };
    stats::note_thread_started();
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

/// The calling thread's domain heap for `domain`, started if need be (the thread's heap too).
/// `Err(EINVAL)` if the domain is not registered, `Err(ENOMEM)` if the OS refuses memory.
#[cold]
pub fn start_domain_heap(domain: Domain) -> Result<*mut DomainHeap, libc::c_int> {
    let mut heap = current_heap();
    if heap == empty_heap() {
        heap = start_heap().ok_or(libc::ENOMEM)?;
    }
    // SAFETY: H1: our own heap.
    let existing = unsafe { Heap::domain_heap(heap, domain) };
    if existing != empty_domain_heap() {
        return Ok(existing);
    }
    let Some(registered) = Some(domain).filter(|domain| domain.is_registered()) else {
        return Err(libc::EINVAL);
    };
    let domain_heap = DOMAIN_HEAPS
        .take()
        .ok_or(libc::ENOMEM)?
        .cast::<DomainHeap>();
    // SAFETY: the pool handed us unused memory (T2); the heap is ours (H1).
    unsafe {
        DomainHeap::initialize(domain_heap, heap, registered);
        (*heap).install(domain, domain_heap);
    }
    Ok(domain_heap)
}

static FORK_HANDLERS_REGISTERED: AtomicBool = AtomicBool::new(false);

/// Holds every lock of the allocator across `fork` (lock_registry.rs), so the child never
/// inherits one held by a thread that does not exist there.
extern "C" fn before_fork() {
    crate::platform::lock_registry::hold_all();
}

extern "C" fn after_fork_in_parent() {
    // SAFETY: `before_fork` took the locks on this thread.
    unsafe { crate::platform::lock_registry::release_all() };
}

/// Heaps of threads that do not exist in the child stay as they are: their blocks can still be
/// freed (as remote frees) and their memory is lost to the child, as in any allocator with
/// thread-local heaps. (Their counters stay on the active list, so the child's stats still
/// count what the parent's threads allocated.) The stats sampler does not run in the child.
extern "C" fn after_fork_in_child() {
    // SAFETY: the forking thread took the locks in `before_fork` and is the only thread.
    unsafe { crate::platform::lock_registry::release_all() };
    crate::alloc::heap::keep_only_live_after_fork(current_heap());
    crate::purge::purger::forget_after_fork();
    crate::stats::identity::note_parent();
    crate::stats::exit_report::note_forked_child();
}

extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let heap = value.cast::<Heap>();
    if heap.is_null() || heap == empty_heap() {
        return;
    }
    // The key's value is the exiting thread's own heap (set in `start_heap`).
    // SAFETY: H1: this handler runs on the heap's own thread, once.
    unsafe { (*heap).abandon(|domain_heap| DOMAIN_HEAPS.give_back(domain_heap.cast())) };
    CURRENT_HEAP.with(|current| {
        if current.get() == heap {
            current.set(empty_heap());
        }
    });
    HEAPS.give_back(heap.cast());
}

/// Unused memory for objects of one size, linked through each object's first word (T2).
struct Pool {
    free: SpinLock<FreeList>,
    object_size: usize,
    /// Writes what an object keeps for good (a heap's purge lock, SL1), once per object, when
    /// its memory is first carved.
    prepare: unsafe fn(*mut u8),
}

struct FreeList {
    first: *mut u8,
}
// SAFETY: the list is only touched under its lock, and the objects on it are unused.
unsafe impl Send for FreeList {}

static HEAPS: Pool = Pool::new(
    Rank::HeapPool,
    core::mem::size_of::<Heap>(),
    Heap::prepare_memory,
);
static DOMAIN_HEAPS: Pool = Pool::new(
    Rank::DomainHeapPool,
    core::mem::size_of::<DomainHeap>(),
    nothing_to_prepare,
);

/// A pool object with nothing it keeps for good.
///
/// # Safety
/// None: it touches nothing.
unsafe fn nothing_to_prepare(_: *mut u8) {}

const POOL_CHUNK: usize = 256 * 1024;

impl Pool {
    const fn new(rank: Rank, object_size: usize, prepare: unsafe fn(*mut u8)) -> Pool {
        // Objects are at least pointer-aligned: each starts a multiple of 128 bytes in.
        Pool {
            free: SpinLock::new(
                rank,
                FreeList {
                    first: ptr::null_mut(),
                },
            ),
            object_size: (object_size + 127) & !127,
            prepare,
        }
    }

    fn take(&self) -> Option<*mut u8> {
        let mut list = self.free.lock();
        if list.first.is_null() {
            let chunk = os::reserve_metadata(POOL_CHUNK)?;
            for index in 0..POOL_CHUNK / self.object_size {
                // SAFETY: T2: the chunk is fresh and holds that many objects; `prepare` is
                // this pool's object type's.
                unsafe {
                    let object = chunk.as_ptr().add(index * self.object_size);
                    (self.prepare)(object);
                    *object.cast::<*mut u8>() = list.first;
                    list.first = object;
                }
            }
        }
        let object = list.first;
        // SAFETY: objects on the list are unused memory whose first word is the link (T2).
        list.first = unsafe { *object.cast::<*mut u8>() };
        Some(object)
    }

    fn give_back(&self, object: *mut u8) {
        let mut list = self.free.lock();
        // SAFETY: the object is retired and no longer anyone's (T2).
        unsafe { *object.cast::<*mut u8>() = list.first };
        list.first = object;
    }
}
