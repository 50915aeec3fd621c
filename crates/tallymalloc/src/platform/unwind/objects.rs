//! The loaded object that holds a code address, and where its call frame information lies:
//! asked of the loader (`dl_iterate_phdr`) on each rule-cache miss, which is rare once a
//! program's hot stacks have been seen.
//!
//! Invariants:
//! - **UO1**: the ranges handed out come from the object's own program headers: its
//!   `PT_GNU_EH_FRAME` segment (`.eh_frame_hdr`) and the loaded segment holding `.eh_frame`, up
//!   to that segment's end; they stay mapped while the object is loaded.
//! - **UO2**: `dl_iterate_phdr` calls no malloc (it holds the loader's lock), and the callback
//!   only reads program headers, so nothing here allocates.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU64, Ordering};
use gimli::{BaseAddresses, EhFrameHdr, NativeEndian, Pointer};

/// Where one loaded object's unwinding tables lie.
#[derive(Clone, Copy, Default, Debug)]
pub struct Object {
    /// The start of the executable segment holding the address.
    pub text: usize,
    pub eh_frame_hdr: usize,
    pub eh_frame_hdr_len: usize,
    pub eh_frame: usize,
    pub eh_frame_len: usize,
}

pub enum Found {
    Object(Object),
    /// Found, and the loader has unloaded an object since the last search.
    ObjectsUnloaded(Object),
    Nothing,
}

/// The loader's count of unloaded objects at the last search (`u64::MAX`: none yet).
static UNLOADS_SEEN: AtomicU64 = AtomicU64::new(u64::MAX);

struct Search {
    address: usize,
    found: Option<Object>,
    unloads: u64,
}

/// The object with code at `address`, if it has unwinding tables.
pub fn find(address: usize) -> Found {
    let mut search = Search {
        address,
        found: None,
        unloads: u64::MAX,
    };
    // SAFETY: `visit` reads only what the loader passes it and writes only `search` (UO2).
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    let before = UNLOADS_SEEN.swap(search.unloads, Ordering::Relaxed);
    match search.found {
        None => Found::Nothing,
        Some(object) if before != u64::MAX && before != search.unloads => {
            Found::ObjectsUnloaded(object)
        }
        Some(object) => Found::Object(object),
    }
}

/// The loaded object holding code at `address`: its executable segments' span, and whether it
/// is the main program (the loader gives the main program an empty name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    pub start: usize,
    pub end: usize,
    pub is_main_program: bool,
}

/// The object with code at `address`, if any.
pub fn code_at(address: usize) -> Option<Code> {
    let mut search = (address, None::<Code>);
    // SAFETY: `visit_code` reads only what the loader passes it and writes only `search` (UO2).
    unsafe { libc::dl_iterate_phdr(Some(visit_code), (&raw mut search).cast()) };
    search.1
}

unsafe extern "C" fn visit_code(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: as in `visit`: `data` is `code_at`'s search, `info` one object's record (UO1).
    let ((address, found), info) = unsafe { (&mut *data.cast::<(usize, Option<Code>)>(), &*info) };
    // SAFETY: as above.
    let headers = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let base = info.dlpi_addr as usize;
    let mut code: Option<(usize, usize)> = None;
    for header in headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0)
    {
        let start = base + header.p_vaddr as usize;
        let end = start + header.p_memsz as usize;
        code = Some(code.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
    }
    match code {
        Some((start, end)) if (start..end).contains(address) => {
            // SAFETY: the loader's name is a NUL-terminated string (maybe empty), or null.
            let is_main_program = info.dlpi_name.is_null() || unsafe { *info.dlpi_name } == 0;
            *found = Some(Code {
                start,
                end,
                is_main_program,
            });
            1
        }
        _ => 0,
    }
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Search` `find` passed; `info` the loader's record of one object,
    // with `dlpi_phnum` program headers at `dlpi_phdr` (UO1).
    let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
    if size >= core::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8 {
        search.unloads = info.dlpi_subs;
    }
    // SAFETY: as above.
    let headers = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let base = info.dlpi_addr as usize;
    let range = |header: &libc::Elf64_Phdr| {
        let start = base + header.p_vaddr as usize;
        start..start + header.p_memsz as usize
    };
    let Some(text) = headers.iter().find(|h| {
        h.p_type == libc::PT_LOAD
            && h.p_flags & libc::PF_X != 0
            && range(h).contains(&search.address)
    }) else {
        return 0;
    };
    let Some(header) = headers.iter().find(|h| h.p_type == libc::PT_GNU_EH_FRAME) else {
        // The right object, without tables: nothing to search further.
        return 1;
    };
    let header_range = range(header);
    // SAFETY: UO1: the PT_GNU_EH_FRAME segment is mapped, `p_memsz` bytes long.
    let header_bytes =
        unsafe { core::slice::from_raw_parts(header_range.start as *const u8, header_range.len()) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(header_range.start as u64);
    let Ok(parsed) = EhFrameHdr::new(header_bytes, NativeEndian).parse(&bases, 8) else {
        return 1;
    };
    let Pointer::Direct(eh_frame) = parsed.eh_frame_ptr() else {
        return 1;
    };
    let eh_frame = eh_frame as usize;
    let Some(holder) = headers
        .iter()
        .find(|h| h.p_type == libc::PT_LOAD && range(h).contains(&eh_frame))
    else {
        return 1;
    };
    search.found = Some(Object {
        text: range(text).start,
        eh_frame_hdr: header_range.start,
        eh_frame_hdr_len: header_range.len(),
        eh_frame,
        eh_frame_len: range(holder).end - eh_frame,
    });
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_code_is_found_with_its_tables() {
        let here = this_code_is_found_with_its_tables as *const () as usize;
        let (Found::Object(object) | Found::ObjectsUnloaded(object)) = find(here) else {
            panic!("the test's own code has no object");
        };
        assert!(object.text <= here);
        assert!(object.eh_frame_hdr_len >= 12 && object.eh_frame_len > 0);
    }

    #[test]
    fn an_address_outside_every_object_finds_nothing() {
        assert!(matches!(find(16), Found::Nothing));
        assert_eq!(code_at(16), None);
    }

    #[test]
    fn the_test_program_is_the_main_program() {
        let here = the_test_program_is_the_main_program as *const () as usize;
        let code = code_at(here).expect("the test's own code");
        assert!(code.start <= here && here < code.end && code.is_main_program);
        let libc_code = code_at(libc::write as *const () as usize).expect("libc");
        assert!(!libc_code.is_main_program);
    }
}
