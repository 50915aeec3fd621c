//! `tallymalloc.Buffer`: memory from tallymalloc owned by a Python object for exactly as long
//! as it lives, typed by a `struct` format, resizable with `realloc`'s semantics, and exported
//! through the buffer protocol (memoryview, NumPy, `bytes`).
//!
//! Invariants:
//! - **PB1 block**: `block` is always a live block of `domain` holding at least
//!   `max(items * itemsize, 1)` bytes (never NULL, even for zero items), owned by this object
//!   alone and freed once, when the object is deallocated.
//! - **PB2 exports**: `exports` counts the `Py_buffer`s handed out and not yet released; while
//!   it is not zero the block neither moves nor changes size, so every exported pointer, and
//!   the `shape` and `strides` fields they point into, stay valid.
//! - Every method runs with the GIL held and PyO3's borrow flag taken, so no two of them
//!   touch one object at once.

use crate::library;
use crate::loaded;
use core::ffi::{c_int, c_void, CStr};
use pyo3::exceptions::{PyBufferError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PySlice};

/// The `struct` formats a Buffer takes, with their native item sizes.
const FORMATS: [(&CStr, usize); 16] = [
    (c"b", 1),
    (c"B", 1),
    (c"c", 1),
    (c"?", 1),
    (c"h", 2),
    (c"H", 2),
    (c"i", 4),
    (c"I", 4),
    (c"l", core::mem::size_of::<core::ffi::c_long>()),
    (c"L", core::mem::size_of::<core::ffi::c_ulong>()),
    (c"q", 8),
    (c"Q", 8),
    (c"n", core::mem::size_of::<isize>()),
    (c"N", core::mem::size_of::<usize>()),
    (c"f", 4),
    (c"d", 8),
];

fn format_named(name: &str) -> PyResult<(&'static CStr, usize)> {
    FORMATS
        .iter()
        .find(|(format, _)| format.to_bytes() == name.as_bytes())
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = FORMATS
                .iter()
                .map(|(f, _)| f.to_str().unwrap_or("?"))
                .collect();
            PyValueError::new_err(format!(
                "unknown format '{name}': use one of the struct module's native codes {}",
                known.join(" ")
            ))
        })
}

/// Memory from tallymalloc, owned by this object.
#[pyclass(module = "tallymalloc", weakref, sequence)]
pub struct Buffer {
    block: *mut u8,
    items: usize,
    itemsize: usize,
    format: &'static CStr,
    domain: c_int,
    zeroed: bool,
    exports: usize,
    /// What exported views' `shape` and `strides` point at (PB2).
    shape: [ffi::Py_ssize_t; 1],
    strides: [ffi::Py_ssize_t; 1],
}

// SAFETY: PB1: the block is this object's alone and any thread may free it; PyO3 serialises
// access to the object (the GIL and its borrow flag).
unsafe impl Send for Buffer {}
// SAFETY: as above.
unsafe impl Sync for Buffer {}

fn byte_count(items: usize, itemsize: usize) -> PyResult<usize> {
    items
        .checked_mul(itemsize)
        .filter(|&bytes| bytes <= isize::MAX as usize)
        .ok_or_else(|| {
            PyMemoryError::new_err(format!("{items} items of {itemsize} bytes is too large"))
        })
}

fn count_from(size: &Bound<'_, PyAny>) -> PyResult<usize> {
    let size: i128 = size
        .extract()
        .map_err(|_| PyTypeError::new_err("Buffer size must be an int (a number of items)"))?;
    if size < 0 {
        return Err(PyValueError::new_err(format!(
            "Buffer size must not be negative, not {size}"
        )));
    }
    usize::try_from(size).map_err(|_| PyMemoryError::new_err(format!("{size} items is too large")))
}

#[pymethods]
impl Buffer {
    /// Buffer(size, *, format="B", domain="mem", zeroed=False)
    ///
    /// `size` items of `format` (a `struct` module code: "B" bytes, "d" doubles, "q" 64-bit
    /// ints...) allocated from tallymalloc in `domain` ("raw", "mem", "obj" or a name of
    /// your own, registered on first use). Freed when the Buffer is. The contents start as
    /// zeros when `zeroed`, and are unspecified otherwise.
    #[new]
    #[pyo3(signature = (size, *, format = "B", domain = "mem", zeroed = false))]
    fn new(size: &Bound<'_, PyAny>, format: &str, domain: &str, zeroed: bool) -> PyResult<Buffer> {
        let items = count_from(size)?;
        let (format, itemsize) = format_named(format)?;
        let domain = loaded()?.domain_id(domain).map_err(PyValueError::new_err)?;
        Buffer::with_items(items, format, itemsize, domain, zeroed)
    }

    /// Makes the buffer hold `size` items, keeping the first `min(len, size)`; new items are
    /// zero if the buffer was made with `zeroed=True`, unspecified otherwise. The memory grows
    /// in place when its block allows. Raises MemoryError (the buffer and its contents
    /// unchanged) when memory runs out, and BufferError while a memoryview or array holds it.
    fn resize(&mut self, size: &Bound<'_, PyAny>) -> PyResult<()> {
        let items = count_from(size)?;
        if self.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot resize a Buffer while it is exported ({} memoryview(s) or array(s) \
                 still hold it)",
                self.exports
            )));
        }
        let bytes = byte_count(items, self.itemsize)?;
        let library = loaded()?;
        // SAFETY: PB1: our live block, in our domain; on failure it is untouched.
        let resized = unsafe { (library.realloc)(self.domain, self.block.cast(), bytes.max(1)) };
        if resized.is_null() {
            return Err(PyMemoryError::new_err(format!(
                "cannot resize to {bytes} bytes; the Buffer is unchanged"
            )));
        }
        let old_bytes = self.nbytes();
        self.block = resized.cast();
        self.items = items;
        if self.zeroed && bytes > old_bytes {
            // SAFETY: the block holds `bytes` bytes now.
            unsafe { self.block.add(old_bytes).write_bytes(0, bytes - old_bytes) };
        }
        Ok(())
    }

    /// The `struct` format of the items.
    #[getter]
    fn format(&self) -> &str {
        self.format.to_str().unwrap_or("B")
    }

    /// The size of one item, in bytes.
    #[getter]
    fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// The size of the contents, in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.items * self.itemsize
    }

    /// The allocator domain the memory is accounted to.
    #[getter]
    fn domain(&self) -> PyResult<String> {
        Ok(loaded()?.domain_name_of(self.domain))
    }

    /// How many memoryviews or arrays hold the buffer now.
    #[getter]
    fn exports(&self) -> usize {
        self.exports
    }

    /// The block's address (for C code that borrows it while the Buffer lives).
    #[getter]
    fn address(&self) -> usize {
        self.block as usize
    }

    fn __len__(&self) -> usize {
        self.items
    }

    fn __bytes__<'py>(&self, python: Python<'py>) -> Bound<'py, PyBytes> {
        // CPython copies the bytes (they may be unspecified; Rust never reads them as values).
        // SAFETY: PB1: the block holds nbytes bytes.
        unsafe { PyBytes::from_ptr(python, self.block, self.nbytes()) }
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!(
            "tallymalloc.Buffer({}, format='{}', domain='{}')",
            self.items,
            self.format(),
            self.domain()?
        ))
    }

    /// An item, or for a slice a new Buffer holding a copy of those items.
    fn __getitem__<'py>(
        slf: &Bound<'py, Self>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let view = PyMemoryView::from(slf.as_any())?;
        let item = view.get_item(key)?;
        if !key.is_instance_of::<PySlice>() {
            return Ok(item);
        }
        let bytes: Vec<u8> = item.call_method0("tobytes")?.extract()?;
        let this = slf.borrow();
        let (format, itemsize, domain, zeroed) =
            (this.format, this.itemsize, this.domain, this.zeroed);
        drop(this);
        let copy = Buffer::with_items(bytes.len() / itemsize, format, itemsize, domain, zeroed)?;
        // SAFETY: PB1: the new block holds exactly `bytes.len()` bytes.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), copy.block, bytes.len()) };
        Ok(Bound::new(slf.py(), copy)?.into_any())
    }

    /// Sets an item, or a slice from a buffer of the same format and length.
    fn __setitem__(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        PyMemoryView::from(slf.as_any())?.set_item(key, value)
    }

    /// # Safety
    /// CPython passes a `Py_buffer` to fill (the buffer protocol).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no Py_buffer to fill"));
        }
        let mut this = slf.borrow_mut();
        this.shape = [this.items as ffi::Py_ssize_t];
        this.strides = [this.itemsize as ffi::Py_ssize_t];
        // PB2 keeps the block, shape and strides in place until the matching release.
        // SAFETY: `view` is CPython's Py_buffer for us to fill (the buffer protocol).
        unsafe {
            (*view).buf = this.block.cast::<c_void>();
            (*view).len = this.nbytes() as ffi::Py_ssize_t;
            (*view).readonly = 0;
            (*view).itemsize = this.itemsize as ffi::Py_ssize_t;
            (*view).format = if flags & ffi::PyBUF_FORMAT != 0 {
                this.format.as_ptr().cast_mut()
            } else {
                core::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if flags & ffi::PyBUF_ND != 0 {
                this.shape.as_mut_ptr()
            } else {
                core::ptr::null_mut()
            };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                this.strides.as_mut_ptr()
            } else {
                core::ptr::null_mut()
            };
            (*view).suboffsets = core::ptr::null_mut();
            (*view).internal = core::ptr::null_mut();
            this.exports += 1;
            drop(this);
            (*view).obj = slf.into_any().into_ptr();
        }
        Ok(())
    }

    /// # Safety
    /// CPython passes a view this object filled.
    unsafe fn __releasebuffer__(&mut self, _view: *mut ffi::Py_buffer) {
        self.exports -= 1;
    }
}

impl Buffer {
    fn with_items(
        items: usize,
        format: &'static CStr,
        itemsize: usize,
        domain: c_int,
        zeroed: bool,
    ) -> PyResult<Buffer> {
        let library = loaded()?;
        let bytes = byte_count(items, itemsize)?;
        // SAFETY: allocation through the library's domain family.
        let block = unsafe {
            if zeroed {
                (library.calloc)(domain, bytes.max(1), 1)
            } else {
                (library.malloc)(domain, bytes.max(1))
            }
        };
        if block.is_null() {
            return Err(PyMemoryError::new_err(format!(
                "cannot allocate {bytes} bytes"
            )));
        }
        Ok(Buffer {
            block: block.cast(),
            items,
            itemsize,
            format,
            domain,
            zeroed,
            exports: 0,
            shape: [0],
            strides: [0],
        })
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(library) = library::get() {
            // SAFETY: PB1: our live block, freed once, through its own domain.
            unsafe { (library.free)(self.domain, self.block.cast()) };
        }
    }
}
