//! How to step from one x86-64 frame to its caller, as a [`Rule`] of one word read from the
//! object's call frame information (`.eh_frame`, through gimli) and cached by code address.
//!
//! Nearly every frame's rule has one shape: the canonical frame address (CFA, the caller's
//! stack pointer) is `rsp` or `rbp` plus a constant, the return address is saved at a constant
//! offset from it, and `rbp` is either untouched or saved at another. A frame with a frame
//! pointer is simply one whose CFA is `rbp + 16`. Other rules (DWARF expressions, as in signal
//! trampolines) are cached as [`Rule::UNSUPPORTED`], and the walk hands the stack to libgcc.
//!
//! Invariants:
//! - **UR1**: a cache entry is two words, `tag = address ^ rule` and `rule`; a reader accepts
//!   it only if the two agree with the address looked up, so an entry torn by two writers, or
//!   one cleared, reads as a miss, never as another address's rule.
//! - **UR2**: the cache is cleared when the loader reports an unloaded object, so no rule
//!   outlives the code it was read from by more than one miss.
//! - **UR3**: nothing here allocates: gimli reads the mapped sections in place, with its
//!   unwinding context on the stack in fixed arrays.

use super::objects::{self, Object};
use core::sync::atomic::{AtomicU64, Ordering};
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, NativeEndian, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow,
};

const RSP: Register = Register(7);
const RBP: Register = Register(6);
const RETURN_ADDRESS: Register = Register(16);

/// One frame's step, packed into a word so that a cache entry is two: bits 0..32 the CFA's
/// offset from its base register, 32..48 where `rbp` is saved relative to the CFA (0: not
/// saved), then flags. The return address is always at CFA - 8, as x86-64 compilers place
/// it; a rule that says otherwise is unsupported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rule(u64);

const BASE_IS_RBP: u64 = 1 << 48;
/// The walk stops here: the outermost frame, or one it cannot follow.
const STOP: u64 = 1 << 49;
const UNSUPPORTED_FLAG: u64 = 1 << 50;

impl Rule {
    /// No rule the walk can follow: it falls back to libgcc's unwinder.
    pub const UNSUPPORTED: Rule = Rule(STOP | UNSUPPORTED_FLAG);
    /// The return address is undefined: the outermost frame (`_start`, a thread's start).
    pub const OUTERMOST: Rule = Rule(STOP);

    fn new(base_is_rbp: bool, cfa_offset: i32, rbp_saved_at: i16) -> Rule {
        Rule(
            if base_is_rbp { BASE_IS_RBP } else { 0 }
                | u64::from(cfa_offset as u32)
                | (u64::from(rbp_saved_at as u16) << 32),
        )
    }

    /// Whether the walk ends at this frame (then [`Rule::is_unsupported`] says how).
    #[inline(always)]
    pub fn stops(self) -> bool {
        self.0 & STOP != 0
    }

    pub fn is_unsupported(self) -> bool {
        self.0 & UNSUPPORTED_FLAG != 0
    }

    #[inline(always)]
    pub fn base_is_rbp(self) -> bool {
        self.0 & BASE_IS_RBP != 0
    }

    #[inline(always)]
    pub fn cfa_offset(self) -> isize {
        self.0 as u32 as i32 as isize
    }

    /// Where `rbp` was saved, from the CFA; 0 if this frame left it alone.
    #[inline(always)]
    pub fn rbp_saved_at(self) -> isize {
        (self.0 >> 32) as u16 as i16 as isize
    }
}

/// Where every x86-64 frame keeps its return address, from the CFA.
pub const RETURN_ADDRESS_AT: isize = -8;

/// Entries in the cache: 256 KiB of `.bss`, resident as it fills.
const CACHE_ENTRIES: usize = 1 << 14;

struct Entry {
    tag: AtomicU64,
    rule: AtomicU64,
}

static CACHE: [Entry; CACHE_ENTRIES] = [const {
    Entry {
        tag: AtomicU64::new(0),
        rule: AtomicU64::new(0),
    }
}; CACHE_ENTRIES];

fn slot(address: usize) -> &'static Entry {
    let hash = (address as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 14);
    &CACHE[hash as usize]
}

/// The rule for code address `address` (an instruction in the frame's function: for a return
/// address, the byte before it, which is the call).
#[inline]
pub fn rule_at(address: usize) -> Rule {
    let entry = slot(address);
    let rule = entry.rule.load(Ordering::Relaxed);
    let tag = entry.tag.load(Ordering::Relaxed);
    // UR1 (a free entry, both words 0, never matches: no code is at address 0).
    if tag ^ rule == address as u64 {
        return Rule(rule);
    }
    miss(address, entry)
}

#[cold]
#[inline(never)]
fn miss(address: usize, entry: &Entry) -> Rule {
    let rule = match objects::find(address) {
        objects::Found::Object(object) => read_rule(&object, address),
        objects::Found::Nothing => Rule::UNSUPPORTED,
        objects::Found::ObjectsUnloaded(object) => {
            clear();
            read_rule(&object, address)
        }
    };
    entry.rule.store(rule.0, Ordering::Relaxed);
    entry.tag.store(address as u64 ^ rule.0, Ordering::Relaxed);
    rule
}

/// Forgets every rule (UR2).
fn clear() {
    for entry in &CACHE {
        entry.tag.store(0, Ordering::Relaxed);
        entry.rule.store(0, Ordering::Relaxed);
    }
}

/// gimli's unwinding context in fixed arrays (UR3): 32 register rules are more than x86-64's
/// call frame information ever sets in one row.
struct FixedStorage;

impl UnwindContextStorage<usize> for FixedStorage {
    type Rules = [(Register, RegisterRule<usize>); 32];
    type Stack = [UnwindTableRow<usize, Self>; 4];
}

/// The rule at `address` from `object`'s `.eh_frame`, found through its `.eh_frame_hdr`
/// search table.
fn read_rule(object: &Object, address: usize) -> Rule {
    // SAFETY: `objects::find` gave these ranges from the loaded object's program headers;
    // loaded objects stay mapped while their code runs on this stack.
    let (header, frames) = unsafe {
        (
            core::slice::from_raw_parts(object.eh_frame_hdr as *const u8, object.eh_frame_hdr_len),
            core::slice::from_raw_parts(object.eh_frame as *const u8, object.eh_frame_len),
        )
    };
    let bases = BaseAddresses::default()
        .set_eh_frame_hdr(object.eh_frame_hdr as u64)
        .set_eh_frame(object.eh_frame as u64)
        .set_text(object.text as u64);
    let Ok(parsed) = EhFrameHdr::new(header, NativeEndian).parse(&bases, 8) else {
        return Rule::UNSUPPORTED;
    };
    let mut eh_frame = EhFrame::new(frames, NativeEndian);
    eh_frame.set_address_size(8);
    let Some(table) = parsed.table() else {
        return Rule::UNSUPPORTED;
    };
    let mut context: UnwindContext<usize, FixedStorage> = UnwindContext::new_in();
    let row = table.unwind_info_for_address(
        &eh_frame,
        &bases,
        &mut context,
        address as u64,
        EhFrame::cie_from_offset,
    );
    match row {
        Ok(row) => rule_of(row),
        Err(_) => Rule::UNSUPPORTED,
    }
}

fn rule_of(row: &UnwindTableRow<usize, FixedStorage>) -> Rule {
    let (base_is_rbp, cfa_offset) = match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if register == RSP || register == RBP => {
            match i32::try_from(offset) {
                Ok(offset) => (register == RBP, offset),
                Err(_) => return Rule::UNSUPPORTED,
            }
        }
        _ => return Rule::UNSUPPORTED,
    };
    match row.register(RETURN_ADDRESS) {
        Some(RegisterRule::Undefined) => return Rule::OUTERMOST,
        Some(RegisterRule::Offset(at)) if at as isize == RETURN_ADDRESS_AT => {}
        _ => return Rule::UNSUPPORTED,
    }
    let rbp_saved_at = match row.register(RBP) {
        None | Some(RegisterRule::SameValue) => 0,
        Some(RegisterRule::Offset(at)) if at != 0 => match i16::try_from(at) {
            Ok(at) => at,
            Err(_) => return Rule::UNSUPPORTED,
        },
        Some(_) => return Rule::UNSUPPORTED,
    };
    Rule::new(base_is_rbp, cfa_offset, rbp_saved_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_keeps_its_parts() {
        let rule = Rule::new(true, 16, -16);
        assert!(rule.base_is_rbp());
        assert_eq!(rule.cfa_offset(), 16);
        assert_eq!(rule.rbp_saved_at(), -16);
        assert!(!rule.stops() && !rule.is_unsupported());
        let rule = Rule::new(false, 0x12_3456, 0);
        assert!(!rule.base_is_rbp());
        assert_eq!(rule.cfa_offset(), 0x12_3456);
        assert_eq!(rule.rbp_saved_at(), 0);
        assert!(Rule::OUTERMOST.stops() && !Rule::OUTERMOST.is_unsupported());
        assert!(Rule::UNSUPPORTED.stops() && Rule::UNSUPPORTED.is_unsupported());
    }

    #[test]
    fn this_functions_rule_is_read_and_cached() {
        let here = this_functions_rule_is_read_and_cached as *const () as usize;
        // Past the prologue, the CFA is never below rsp + 8 (the return address).
        let rule = rule_at(here + 1);
        assert!(!rule.stops(), "{rule:?}");
        assert!(rule.base_is_rbp() || rule.cfa_offset() >= 8);
        assert_eq!(rule_at(here + 1), rule);
        let entry = slot(here + 1);
        assert_eq!(
            entry.tag.load(Ordering::Relaxed) ^ entry.rule.load(Ordering::Relaxed),
            (here + 1) as u64
        );
    }

    #[test]
    fn a_torn_entry_reads_as_a_miss() {
        let here = a_torn_entry_reads_as_a_miss as *const () as usize + 1;
        let rule = rule_at(here);
        let entry = slot(here);
        // Another writer's rule beside this address's tag.
        entry.rule.store(Rule::OUTERMOST.0, Ordering::Relaxed);
        assert_eq!(rule_at(here), rule);
    }
}
