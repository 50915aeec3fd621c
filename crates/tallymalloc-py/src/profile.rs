//! Sampled heap profiles from Python: starting and stopping them, Python frames in their
//! samples (`frames.c`, registered with the library as its Python frame source), the names of
//! the code objects those frames hold, and the raw profile for `tallymalloc.profile()` to read.
//!
//! Invariants:
//! - **P1**: the frame source is registered once the library serves a CPython domain
//!   (`hooks::install`), and stays registered: `frames.c` keeps every code object it reported,
//!   so a frame's code address always names a live code object.

use crate::library::{self, ProfileFunctions};
use core::ffi::{c_char, c_int, c_void};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::ffi::CString;

extern "C" {
    fn tallymalloc_python_frames(out: *mut usize, capacity: usize) -> usize;
    fn tallymalloc_python_code_names(
        address: usize,
        function: *mut *mut pyo3::ffi::PyObject,
        file: *mut *mut pyo3::ffi::PyObject,
    ) -> c_int;
    fn tallymalloc_python_for_each_code(
        each: extern "C" fn(address: usize, context: *mut c_void),
        context: *mut c_void,
    );
}

fn functions() -> PyResult<&'static ProfileFunctions> {
    crate::loaded()?.profile.as_ref().ok_or_else(|| {
        PyRuntimeError::new_err("the tallymalloc library loaded is too old for profiles")
    })
}

/// Registers `frames.c` as the library's Python frame source (P1), if the library can profile.
pub fn register_frame_source() {
    if let Some(profile) = library::get().and_then(|library| library.profile.as_ref()) {
        // SAFETY: tallymalloc_python_frames keeps tm_python_frame_source's contract (frames.c).
        unsafe { (profile.set_python_frames)(Some(tallymalloc_python_frames)) };
    }
}

/// Starts sampling, one sample per `sample_bytes` allocated on average if given.
#[pyfunction]
#[pyo3(signature = (sample_bytes=None))]
pub fn _profile_enable(sample_bytes: Option<usize>) -> PyResult<()> {
    let profile = functions()?;
    if let Some(bytes) = sample_bytes {
        // SAFETY: a plain value; the library checks its range.
        if unsafe { (profile.set_sample_bytes)(bytes) } != 0 {
            return Err(PyValueError::new_err(format!(
                "sample_bytes must be from 1 to 2**40, not {bytes}"
            )));
        }
    }
    // SAFETY: no arguments.
    if unsafe { (profile.enable)() } != 0 {
        return Err(PyRuntimeError::new_err(
            "profiling cannot run in debug mode (TALLYMALLOC_DEBUG)",
        ));
    }
    Ok(())
}

/// Stops sampling; the profile so far stays.
#[pyfunction]
pub fn _profile_disable() -> PyResult<()> {
    // SAFETY: no arguments.
    unsafe { (functions()?.disable)() };
    Ok(())
}

/// Writes the raw profile (names of the code objects included) to `path`.
#[pyfunction]
pub fn _profile_write(py: Python<'_>, path: &str) -> PyResult<()> {
    _name_python_codes(py)?;
    let text = CString::new(path).map_err(|_| PyValueError::new_err("a path without NULs"))?;
    // SAFETY: a NUL-terminated path.
    if unsafe { (functions()?.write)(text.as_ptr()) } != 0 {
        return Err(PyOSError::new_err(format!(
            "cannot write the profile to {path}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// The function and file names of the code object at `address`, if its frames were sampled.
#[pyfunction]
pub fn _python_code_names(py: Python<'_>, address: usize) -> Option<(Py<PyAny>, Py<PyAny>)> {
    let mut function = core::ptr::null_mut();
    let mut file = core::ptr::null_mut();
    // SAFETY: the GIL is held; on success both are new references.
    if unsafe { tallymalloc_python_code_names(address, &mut function, &mut file) } != 0 {
        return None;
    }
    // SAFETY: new references, owned from here.
    unsafe {
        Some((
            Bound::from_owned_ptr(py, function).unbind(),
            Bound::from_owned_ptr(py, file).unbind(),
        ))
    }
}

/// Hands the names of every code object the samples hold to the library, for the profile it
/// writes at exit (the package calls this at exit, before the interpreter finalises).
#[pyfunction]
pub fn _name_python_codes(py: Python<'_>) -> PyResult<()> {
    let profile = functions()?;
    let mut addresses: Vec<usize> = Vec::new();
    extern "C" fn collect(address: usize, context: *mut c_void) {
        // SAFETY: `context` is the Vec below, borrowed for the call.
        unsafe { (*context.cast::<Vec<usize>>()).push(address) };
    }
    // SAFETY: the callback only pushes into the Vec, which outlives the call.
    unsafe {
        tallymalloc_python_for_each_code(collect, (&mut addresses as *mut Vec<usize>).cast())
    };
    for address in addresses {
        let Some((function, file)) = _python_code_names(py, address) else {
            continue;
        };
        let text = |name: &Py<PyAny>| -> CString {
            let name = name
                .bind(py)
                .cast::<PyString>()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            CString::new(name.replace('\0', "?")).unwrap_or_default()
        };
        let (function, file) = (text(&function), text(&file));
        // SAFETY: two NUL-terminated names; the library copies them.
        unsafe {
            (profile.name_python_code)(
                address,
                function.as_ptr() as *const c_char,
                file.as_ptr() as *const c_char,
            )
        };
    }
    Ok(())
}
