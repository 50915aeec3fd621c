//! `tallymalloc._native`: the extension module under the `tallymalloc` Python package. It
//! finds the tallymalloc C library (`library`), serves CPython's allocator domains from it
//! (`hooks`), defines `tallymalloc.Buffer` (`buffer`), puts Python frames in the sampled
//! profiles (`profile`, `frames.c`), reads what a test runner measures (`measure`) and publishes
//! the C API capsule (`capsule`). The package's Python code (`python/tallymalloc`) gives these
//! their public shape: argument checks, the typed stats, `python -m tallymalloc`, the start-up
//! hook, the pytest plugin.

mod buffer;
mod capsule;
mod hooks;
mod library;
mod measure;
mod profile;

use core::ffi::CStr;
use pyo3::exceptions::{PyImportError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The library this module loads when the process has none: `$TALLYMALLOC_LIB`, or the
/// `libtallymalloc.so` beside this extension.
fn bundled_library_path() -> String {
    if let Some(path) = std::env::var_os("TALLYMALLOC_LIB") {
        return path.to_string_lossy().into_owned();
    }
    // SAFETY: Dl_info is plain data (pointers and a number); all zeros is a valid value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables for an address in this module.
    let found = unsafe { libc::dladdr(bundled_library_path as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return "libtallymalloc.so".to_owned();
    }
    // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
    let module = unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    let directory = std::path::Path::new(&module)
        .parent()
        .map(|d| d.to_path_buf());
    directory
        .unwrap_or_default()
        .join("libtallymalloc.so")
        .to_string_lossy()
        .into_owned()
}

/// Makes tallymalloc serve CPython's domain `index` (0 raw, 1 mem, 2 obj).
#[pyfunction]
fn _install_domain(index: usize) -> PyResult<()> {
    if index >= hooks::DOMAIN_NAMES.len() {
        return Err(PyValueError::new_err(format!("no CPython domain {index}")));
    }
    hooks::install(index);
    Ok(())
}

/// Which of CPython's raw, mem and obj domains tallymalloc serves.
#[pyfunction]
fn _installed_domains() -> Vec<&'static str> {
    (0..hooks::DOMAIN_NAMES.len())
        .filter(|&index| hooks::is_installed(index))
        .map(|index| hooks::DOMAIN_NAMES[index])
        .collect()
}

/// The name CPython gives its allocators now, or None for a hook it does not know.
#[pyfunction]
fn _current_allocator_name() -> Option<String> {
    hooks::current_allocator_name().map(|name| name.to_string_lossy().into_owned())
}

/// The stats as JSON text (the stats schema).
#[pyfunction]
fn _stats_json() -> PyResult<String> {
    Ok(loaded()?.read_text(loaded()?.stats_json))
}

/// The human stats table.
#[pyfunction]
fn _stats_text() -> PyResult<String> {
    Ok(loaded()?.read_text(loaded()?.stats_text))
}

/// Where the library came from: "preloaded" (the process's own) or the path loaded.
#[pyfunction]
fn library_origin() -> PyResult<String> {
    Ok(loaded()?.origin.clone())
}

/// The loaded library: the module loads it before any of its functions or any Buffer can run.
pub(crate) fn loaded() -> PyResult<&'static library::Library> {
    library::get().ok_or_else(|| PyImportError::new_err("the tallymalloc library is not loaded"))
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let library = library::load(&bundled_library_path()).map_err(PyImportError::new_err)?;
    module.add_class::<buffer::Buffer>()?;
    module.add_function(wrap_pyfunction!(_install_domain, module)?)?;
    module.add_function(wrap_pyfunction!(_installed_domains, module)?)?;
    module.add_function(wrap_pyfunction!(_current_allocator_name, module)?)?;
    module.add_function(wrap_pyfunction!(_stats_json, module)?)?;
    module.add_function(wrap_pyfunction!(_stats_text, module)?)?;
    module.add_function(wrap_pyfunction!(library_origin, module)?)?;
    module.add_function(wrap_pyfunction!(measure::_watermark_reset, module)?)?;
    module.add_function(wrap_pyfunction!(measure::_watermark, module)?)?;
    module.add_function(wrap_pyfunction!(measure::_all_domains, module)?)?;
    module.add_function(wrap_pyfunction!(measure::_mismatches, module)?)?;
    module.add_function(wrap_pyfunction!(profile::_profile_enable, module)?)?;
    module.add_function(wrap_pyfunction!(profile::_profile_disable, module)?)?;
    module.add_function(wrap_pyfunction!(profile::_profile_write, module)?)?;
    module.add_function(wrap_pyfunction!(profile::_python_code_names, module)?)?;
    module.add_function(wrap_pyfunction!(profile::_name_python_codes, module)?)?;
    module.add("API_VERSION", capsule::VERSION)?;
    let name = c"tallymalloc._native._C_API";
    let api = PyCapsule::new_with_value(module.py(), capsule::Api::of(library), name)?;
    module.add("_C_API", api)?;
    Ok(())
}
