//! Domains: the allocator families every block belongs to, their names, and what happens when a
//! block is freed through the wrong family.
//!
//! `raw` (the C `malloc` family and Rust's global allocator), `mem` and `obj` exist from the
//! start, as CPython's three allocator domains do; programs register more by name. A domain is
//! a small number: every page records the domain it serves (so blocks of different domains never
//! share a page) and every thread keeps one set of pages per domain it allocates in, whose
//! address is the pages' owner word, so freeing through the right family costs the free fast
//! path nothing more than its one owner comparison.
//!
//! Invariants:
//! - **DM1 registration**: a domain's name is written once, before its `registered` flag is
//!   set with release ordering, and never changes after; readers that see the flag (acquire)
//!   may read the name without a lock. Registration itself takes `REGISTRY_LOCK`, so two
//!   threads registering one name get one id.
//! - **DM2 ids**: ids below [`MAX_DOMAINS`] only; `raw`, `mem` and `obj` are 0, 1 and 2.
//! - Nothing here allocates.

use crate::platform::lock_registry::Rank;
use crate::platform::sync::SpinLock;
use crate::platform::text::Line;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// How many domains a process can have, the three built-in ones included.
pub const MAX_DOMAINS: usize = 128;
/// The longest domain name, in bytes.
pub const MAX_NAME_LEN: usize = 31;

/// An allocator family. Copy it freely; it is a small number, below [`MAX_DOMAINS`] (DM2), so
/// it indexes per-domain tables (`[T; MAX_DOMAINS]`) without a bounds check.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Domain(u8);

impl<T> core::ops::Index<Domain> for [T; MAX_DOMAINS] {
    type Output = T;

    #[inline(always)]
    fn index(&self, domain: Domain) -> &T {
        // SAFETY: DM2: `domain.0 < MAX_DOMAINS`, the array's length.
        unsafe { self.get_unchecked(domain.0 as usize) }
    }
}

impl<T> core::ops::IndexMut<Domain> for [T; MAX_DOMAINS] {
    #[inline(always)]
    fn index_mut(&mut self, domain: Domain) -> &mut T {
        // SAFETY: DM2: `domain.0 < MAX_DOMAINS`, the array's length.
        unsafe { self.get_unchecked_mut(domain.0 as usize) }
    }
}

/// Why a domain could not be registered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DomainError {
    /// The name is empty, longer than [`MAX_NAME_LEN`] bytes, or has a byte other than an
    /// ASCII letter, digit, `_`, `-` or `.`.
    BadName,
    /// All [`MAX_DOMAINS`] domains are taken.
    TableFull,
}

impl core::fmt::Display for DomainError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(match self {
            DomainError::BadName => {
                "bad domain name: use 1 to 31 ASCII letters, digits, '_', '-' or '.'"
            }
            DomainError::TableFull => "every domain id is taken",
        })
    }
}

impl std::error::Error for DomainError {}

/// Each name NUL-terminated (the C API hands them out as strings).
struct Names([UnsafeCell<[u8; MAX_NAME_LEN + 1]>; MAX_DOMAINS]);
// SAFETY: DM1: a name is written under REGISTRY_LOCK before its flag is published, then only read.
unsafe impl Sync for Names {}

static NAMES: Names = Names([const { UnsafeCell::new([0; MAX_NAME_LEN + 1]) }; MAX_DOMAINS]);
static NAME_LENGTHS: [AtomicU8; MAX_DOMAINS] = [const { AtomicU8::new(0) }; MAX_DOMAINS];
static REGISTERED: [AtomicBool; MAX_DOMAINS] = [const { AtomicBool::new(false) }; MAX_DOMAINS];
static REGISTRY_LOCK: SpinLock<()> = SpinLock::new(Rank::DomainRegistry, ());

const BUILT_IN: [&[u8]; 3] = [b"raw", b"mem", b"obj"];
const BUILT_IN_C: [&core::ffi::CStr; 3] = [c"raw", c"mem", c"obj"];

impl Domain {
    /// The C `malloc` family and Rust's global allocator.
    pub const RAW: Domain = Domain(0);
    /// CPython's `PyMem_Malloc` family.
    pub const MEM: Domain = Domain(1);
    /// CPython's `PyObject_Malloc` family.
    pub const OBJ: Domain = Domain(2);

    /// Registers a domain called `name`, or returns the one already called that.
    pub fn register(name: &str) -> Result<Domain, DomainError> {
        register_bytes(name.as_bytes())
    }

    /// The registered domain called `name`.
    pub fn by_name(name: &str) -> Option<Domain> {
        (0..MAX_DOMAINS)
            .map(|id| Domain(id as u8))
            .find(|domain| domain.is_registered() && domain.name_bytes() == name.as_bytes())
    }

    /// The domain with this id, if it is registered.
    pub fn from_id(id: usize) -> Option<Domain> {
        Domain::from_index(id).filter(|domain| domain.is_registered())
    }

    /// The domain of id `id`, registered or not; `None` beyond [`MAX_DOMAINS`] (DM2).
    fn from_index(id: usize) -> Option<Domain> {
        (id < MAX_DOMAINS).then_some(Domain(id as u8))
    }

    /// The domain a page or block header stored with [`Domain::stored`].
    ///
    /// # Safety
    /// `byte` must have come from [`Domain::stored`] (DM2 then holds).
    #[inline(always)]
    pub(crate) unsafe fn from_stored(byte: u8) -> Domain {
        debug_assert!((byte as usize) < MAX_DOMAINS);
        Domain(byte)
    }

    /// This domain in a byte, as page and block headers keep it.
    #[inline(always)]
    pub(crate) const fn stored(self) -> u8 {
        self.0
    }

    /// The domain's number, as the C API and the stats name it.
    pub const fn id(self) -> usize {
        self.0 as usize
    }

    /// The domain's name.
    pub fn name(self) -> &'static str {
        // Names are validated ASCII when registered.
        core::str::from_utf8(self.name_bytes()).unwrap_or("?")
    }

    pub(crate) fn name_bytes(self) -> &'static [u8] {
        let id = self.id();
        if id < BUILT_IN.len() {
            return BUILT_IN[id];
        }
        if !REGISTERED[id].load(Ordering::Acquire) {
            return b"";
        }
        let length = NAME_LENGTHS[id].load(Ordering::Relaxed) as usize;
        // SAFETY: DM1: the flag is set, so the name is written and never changes again.
        unsafe { &(&*NAMES.0[id].get())[..length] }
    }

    /// The domain's name as a C string, or `None` if it is not registered.
    pub fn name_c_str(self) -> Option<&'static core::ffi::CStr> {
        let id = self.id();
        if id < BUILT_IN.len() {
            return Some(BUILT_IN_C[id]);
        }
        if !self.is_registered() {
            return None;
        }
        // SAFETY: DM1: a registered name never changes, and its buffer always ends in a NUL.
        let bytes: &'static [u8; MAX_NAME_LEN + 1] = unsafe { &*NAMES.0[id].get() };
        core::ffi::CStr::from_bytes_until_nul(bytes).ok()
    }

    pub fn is_registered(self) -> bool {
        self.id() < BUILT_IN.len() || REGISTERED[self.id()].load(Ordering::Acquire)
    }

    /// Every registered domain, by id.
    pub fn all() -> impl Iterator<Item = Domain> {
        (0..MAX_DOMAINS)
            .map(|id| Domain(id as u8))
            .filter(|domain| domain.is_registered())
    }
}

/// Whether `name` may name a domain.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
}

pub(crate) fn register_bytes(name: &[u8]) -> Result<Domain, DomainError> {
    if !is_valid_name(name) {
        return Err(DomainError::BadName);
    }
    let _guard = REGISTRY_LOCK.lock();
    if let Some(id) = BUILT_IN.iter().position(|built_in| *built_in == name) {
        return Ok(Domain(id as u8));
    }
    let mut free_id = None;
    for id in BUILT_IN.len()..MAX_DOMAINS {
        let domain = Domain(id as u8);
        if domain.is_registered() {
            if domain.name_bytes() == name {
                return Ok(domain);
            }
        } else if free_id.is_none() {
            free_id = Some(id);
        }
    }
    let id = free_id.ok_or(DomainError::TableFull)?;
    // SAFETY: DM1: we hold the lock and the id is not registered, so nobody reads this name.
    unsafe { (&mut *NAMES.0[id].get())[..name.len()].copy_from_slice(name) };
    NAME_LENGTHS[id].store(name.len() as u8, Ordering::Relaxed);
    REGISTERED[id].store(true, Ordering::Release);
    Ok(Domain(id as u8))
}

/// What a free or realloc through the wrong family does (`TALLYMALLOC_ON_MISMATCH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OnMismatch {
    /// Count it and say nothing.
    Ignore = 0,
    /// Count it, and print one line the first time each pair of domains is mixed up.
    Warn = 1,
    /// Print the line and abort.
    Abort = 2,
}

static ON_MISMATCH: AtomicU8 = AtomicU8::new(OnMismatch::Warn as u8);

pub fn on_mismatch() -> OnMismatch {
    match ON_MISMATCH.load(Ordering::Relaxed) {
        0 => OnMismatch::Ignore,
        2 => OnMismatch::Abort,
        _ => OnMismatch::Warn,
    }
}

pub fn set_on_mismatch(choice: OnMismatch) {
    ON_MISMATCH.store(choice as u8, Ordering::Relaxed);
}

/// Mismatches found so far, by the domain of the block that was freed through another family.
static MISMATCHES: [AtomicU64; MAX_DOMAINS] = [const { AtomicU64::new(0) }; MAX_DOMAINS];
/// The same, by pair: `[owner * MAX_DOMAINS + through]`, so that a reader (a test runner) can
/// name both families. 128 KiB of `.bss`, resident only where a pair was ever mixed up.
static MISMATCHES_BY_PAIR: [AtomicU64; MAX_DOMAINS * MAX_DOMAINS] =
    [const { AtomicU64::new(0) }; MAX_DOMAINS * MAX_DOMAINS];
/// One bit per (block's domain, family used) pair already reported.
static REPORTED: [AtomicU64; MAX_DOMAINS * MAX_DOMAINS / 64] =
    [const { AtomicU64::new(0) }; MAX_DOMAINS * MAX_DOMAINS / 64];

/// Mismatched frees and reallocs of blocks of `domain`.
pub fn mismatches(domain: Domain) -> u64 {
    MISMATCHES[domain.id()].load(Ordering::Relaxed)
}

/// Blocks of domain `allocated_in` freed or reallocated through the family of `freed_through`.
pub fn mismatches_between(allocated_in: Domain, freed_through: Domain) -> u64 {
    MISMATCHES_BY_PAIR[allocated_in.id() * MAX_DOMAINS + freed_through.id()].load(Ordering::Relaxed)
}

/// A block of `owner` was passed to `call` of the `through` domain: count it, and report or
/// abort as the policy says. The caller then frees or moves the block correctly.
#[cold]
pub(crate) fn mismatch(call: &[u8], through: Domain, owner: Domain, address: usize) {
    let pair = owner.id() * MAX_DOMAINS + through.id();
    MISMATCHES[owner].fetch_add(1, Ordering::Relaxed);
    MISMATCHES_BY_PAIR[pair].fetch_add(1, Ordering::Relaxed);
    let policy = on_mismatch();
    if policy == OnMismatch::Ignore {
        return;
    }
    let bit = 1u64 << (pair % 64);
    let first_time = REPORTED[pair / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0;
    if !first_time && policy == OnMismatch::Warn {
        return;
    }
    let mut line = Line::new();
    line.text(b"tallymalloc: ")
        .text(call)
        .text(b"(")
        .hex(address)
        .text(b") through the ");
    domain_label(&mut line, through);
    line.text(b" family, but the block belongs to ");
    domain_label(&mut line, owner);
    if policy == OnMismatch::Abort {
        line.text(b"; aborting (TALLYMALLOC_ON_MISMATCH=abort)\n");
        line.write_to_stderr();
        crate::platform::text::abort_process();
    }
    line.text(b"; the block was freed correctly (reported once per pair of domains, all counted in stats)\n");
    line.write_to_stderr();
}

fn domain_label(line: &mut Line, domain: Domain) {
    if domain.is_registered() {
        line.text(b"'").text(domain.name_bytes()).text(b"'");
    } else {
        line.text(b"unregistered domain ")
            .decimal(domain.id() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_domains_have_fixed_ids_and_names() {
        assert_eq!(Domain::register("raw"), Ok(Domain::RAW));
        assert_eq!(Domain::register("mem"), Ok(Domain::MEM));
        assert_eq!(Domain::register("obj"), Ok(Domain::OBJ));
        assert_eq!(Domain::OBJ.name(), "obj");
        assert_eq!(Domain::by_name("mem"), Some(Domain::MEM));
    }

    #[test]
    fn registering_a_name_twice_gives_one_id() {
        let first = Domain::register("domain-unit.test_1").unwrap();
        let second = Domain::register("domain-unit.test_1").unwrap();
        assert_eq!(first, second);
        assert!(first.id() >= 3);
        assert_eq!(first.name(), "domain-unit.test_1");
        assert_eq!(Domain::from_id(first.id()), Some(first));
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "has space", "slash/", "é", &"x".repeat(32)] {
            assert_eq!(
                Domain::register(name),
                Err(DomainError::BadName),
                "{name:?}"
            );
        }
        assert!(Domain::register(&"x".repeat(31)).is_ok());
        assert_eq!(Domain::from_id(MAX_DOMAINS), None);
    }
}
