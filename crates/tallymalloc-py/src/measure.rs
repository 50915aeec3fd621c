//! What a test runner reads around each test (the pytest plugin, `tallymalloc/pytest_plugin.py`):
//! watermarks of one domain or of all together, every domain's figures added up, and the
//! mismatched frees by pair of domains. Each is one call into the library, with no JSON.

use crate::loaded;
use core::ffi::{c_int, c_void};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// `TM_ALL_DOMAINS` and `TM_MAX_DOMAINS` of `tallymalloc.h`.
const ALL_DOMAINS: c_int = -1;
const MAX_DOMAINS: c_int = 128;

/// `struct tm_domain_stats`, in the header's order.
#[repr(C)]
#[derive(Default)]
struct DomainFigures {
    live_bytes: u64,
    peak_bytes: u64,
    live_blocks: u64,
    allocations: u64,
    frees: u64,
    allocated_bytes: u64,
    mismatches: u64,
}

fn too_old(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "the tallymalloc library loaded ({}) is too old for {what}",
        loaded().map_or("?", |library| library.origin.as_str())
    ))
}

/// Domain `name`'s id, or every domain's (`TM_ALL_DOMAINS`) for None.
fn domain_or_all(name: Option<&str>) -> PyResult<c_int> {
    match name {
        None => Ok(ALL_DOMAINS),
        Some(name) => loaded()?.domain_id(name).map_err(PyValueError::new_err),
    }
}

/// Starts the watermark of domain `name` (of every domain together for None) again from what
/// it holds now.
#[pyfunction]
#[pyo3(signature = (name=None))]
pub fn _watermark_reset(name: Option<&str>) -> PyResult<()> {
    let id = domain_or_all(name)?;
    let functions = loaded()?
        .watermark
        .as_ref()
        .ok_or_else(|| too_old("watermarks"))?;
    // SAFETY: a registered domain's id or TM_ALL_DOMAINS.
    if unsafe { (functions.reset)(id) } != 0 {
        return Err(too_old("the watermark of all domains"));
    }
    Ok(())
}

/// The most domain `name` (every domain together for None) held since its watermark was reset.
#[pyfunction]
#[pyo3(signature = (name=None))]
pub fn _watermark(name: Option<&str>) -> PyResult<u64> {
    let id = domain_or_all(name)?;
    let functions = loaded()?
        .watermark
        .as_ref()
        .ok_or_else(|| too_old("watermarks"))?;
    let mut bytes = 0u64;
    // SAFETY: a registered domain's id or TM_ALL_DOMAINS, and room for the answer.
    if unsafe { (functions.read)(id, &mut bytes) } != 0 {
        return Err(too_old("the watermark of all domains"));
    }
    Ok(bytes)
}

/// Every domain's figures added up: (live_bytes, peak_bytes, live_blocks, allocations, frees,
/// allocated_bytes, mismatches), the peak being the most all held at once.
#[pyfunction]
pub fn _all_domains() -> PyResult<(u64, u64, u64, u64, u64, u64, u64)> {
    let library = loaded()?;
    let mut figures = DomainFigures::default();
    // SAFETY: room for a struct tm_domain_stats.
    let status = unsafe {
        (library.domain_stats)(
            ALL_DOMAINS,
            (&mut figures as *mut DomainFigures).cast::<c_void>(),
        )
    };
    if status != 0 {
        return Err(too_old("figures of all domains"));
    }
    let f = figures;
    Ok((
        f.live_bytes,
        f.peak_bytes,
        f.live_blocks,
        f.allocations,
        f.frees,
        f.allocated_bytes,
        f.mismatches,
    ))
}

/// Every pair of registered domains whose blocks were freed through the other's family, as
/// (allocated in, freed through, count).
#[pyfunction]
pub fn _mismatches() -> PyResult<Vec<(String, String, u64)>> {
    let library = loaded()?;
    let count_of = library
        .mismatches
        .ok_or_else(|| too_old("mismatches by pair"))?;
    let registered: Vec<c_int> = (0..MAX_DOMAINS)
        .filter(|&id| {
            // SAFETY: any id may be asked; the library answers NULL for an unregistered one.
            !unsafe { (library.domain_name)(id) }.is_null()
        })
        .collect();
    let mut pairs = Vec::new();
    for &owner in &registered {
        for &through in &registered {
            let mut count = 0u64;
            // SAFETY: two registered ids, and room for the answer.
            if owner != through && unsafe { count_of(owner, through, &mut count) } == 0 && count > 0
            {
                pairs.push((
                    library.domain_name_of(owner),
                    library.domain_name_of(through),
                    count,
                ));
            }
        }
    }
    Ok(pairs)
}
