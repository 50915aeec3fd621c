//! The tallymalloc C library this package talks to, found once per process.
//!
//! A process that already has tallymalloc (preloaded with `LD_PRELOAD`, as `tallymalloc run`
//! does, or linked) keeps that one instance, so C's `malloc` and Python's domains share one
//! set of stats. Otherwise the copy shipped in the package is loaded with `RTLD_LOCAL`: it then
//! serves only what this package asks of it and replaces no `malloc`.
//!
//! Invariants:
//! - **L1**: [`LIBRARY`] is set once, before any allocator hook is installed or any buffer
//!   made, and never changes; its functions stay valid for the life of the process (the
//!   library is never unloaded).

use core::ffi::{c_char, c_int, c_void, CStr};
use std::ffi::CString;
use std::sync::OnceLock;

/// The `tm_*` functions the package uses (see `include/tallymalloc.h` for their contracts).
pub struct Library {
    pub malloc: unsafe extern "C" fn(c_int, usize) -> *mut c_void,
    pub calloc: unsafe extern "C" fn(c_int, usize, usize) -> *mut c_void,
    pub realloc: unsafe extern "C" fn(c_int, *mut c_void, usize) -> *mut c_void,
    pub free: unsafe extern "C" fn(c_int, *mut c_void),
    pub domain_of: unsafe extern "C" fn(*const c_void) -> c_int,
    pub usable_size: unsafe extern "C" fn(*const c_void) -> usize,
    pub domain_register: unsafe extern "C" fn(*const c_char) -> c_int,
    pub domain_name: unsafe extern "C" fn(c_int) -> *const c_char,
    pub stats_json: unsafe extern "C" fn(*mut c_char, usize) -> usize,
    pub stats_text: unsafe extern "C" fn(*mut c_char, usize) -> usize,
    pub domain_stats: unsafe extern "C" fn(c_int, *mut c_void) -> c_int,
    /// CPython's allocator functions of a domain, served by the library itself.
    pub python_functions: unsafe extern "C" fn(c_int, *mut PythonFunctions) -> c_int,
    pub python_set_fallbacks: unsafe extern "C" fn(FallbackFree, FallbackRealloc),
    /// The profiling API; None from a library older than it (a preloaded one may be).
    pub profile: Option<ProfileFunctions>,
    /// `tm_watermark_reset` and `tm_watermark`; None from a library older than them.
    pub watermark: Option<WatermarkFunctions>,
    /// `tm_mismatches`; None from a library older than it.
    pub mismatches: Option<unsafe extern "C" fn(c_int, c_int, *mut u64) -> c_int>,
    /// Whether the process's `malloc` is this library's (preloaded or linked), so blocks C
    /// code allocated before `install` are ours, in the raw domain.
    pub serves_malloc: bool,
    /// Where the library was found: "preloaded" or the path loaded.
    pub origin: String,
}

/// `struct tm_python_functions`: a domain's functions with `PyMemAllocatorEx`'s signatures
/// (typed as PyO3 types that struct's fields, for CPython to call).
#[repr(C)]
pub struct PythonFunctions {
    pub malloc: extern "C" fn(*mut c_void, usize) -> *mut c_void,
    pub calloc: extern "C" fn(*mut c_void, usize, usize) -> *mut c_void,
    pub realloc: extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void,
    pub free: extern "C" fn(*mut c_void, *mut c_void),
}

/// The `tm_profile_*` functions.
pub struct ProfileFunctions {
    pub enable: unsafe extern "C" fn() -> c_int,
    pub disable: unsafe extern "C" fn(),
    pub set_sample_bytes: unsafe extern "C" fn(usize) -> c_int,
    pub write: unsafe extern "C" fn(*const c_char) -> c_int,
    pub set_python_frames: unsafe extern "C" fn(Option<PythonFrameSource>),
    pub name_python_code: unsafe extern "C" fn(usize, *const c_char, *const c_char) -> c_int,
}

/// `tm_watermark_reset` and `tm_watermark`.
pub struct WatermarkFunctions {
    pub reset: unsafe extern "C" fn(c_int) -> c_int,
    pub read: unsafe extern "C" fn(c_int, *mut u64) -> c_int,
}

/// `tm_python_frame_source`.
pub type PythonFrameSource = unsafe extern "C" fn(*mut usize, usize) -> usize;

/// What the library's Python functions call for a block not theirs (`tm_python_set_fallbacks`).
pub type FallbackFree = unsafe extern "C" fn(c_int, *mut c_void);
pub type FallbackRealloc = unsafe extern "C" fn(c_int, *mut c_void, usize) -> *mut c_void;

static LIBRARY: OnceLock<Library> = OnceLock::new();

/// The library, if [`load`] found it.
#[inline]
pub fn get() -> Option<&'static Library> {
    LIBRARY.get()
}

/// Finds the library: the process's own if it has one, else the one at `bundled`.
pub fn load(bundled: &str) -> Result<&'static Library, String> {
    if let Some(library) = LIBRARY.get() {
        return Ok(library);
    }
    // The newest function the package needs: an older preloaded library lacks it.
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the name up.
    let newest = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"tm_python_functions".as_ptr()) };
    let preloaded = !newest.is_null();
    let library = if preloaded {
        bind(libc::RTLD_DEFAULT, true, "preloaded".to_owned())?
    } else {
        let path = CString::new(bundled).map_err(|_| format!("bad library path {bundled:?}"))?;
        // SAFETY: dlopen of a path; the library's constructors are tallymalloc's own.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("cannot load {bundled}: {}", last_dl_error()));
        }
        bind(handle, false, bundled.to_owned())?
    };
    Ok(LIBRARY.get_or_init(|| library))
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by the loader.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: as above; copied before any other dl call can overwrite it.
    unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}

fn bind(handle: *mut c_void, serves_malloc: bool, origin: String) -> Result<Library, String> {
    let symbol = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: dlsym only looks the name up in a handle dlopen returned (or RTLD_DEFAULT).
        let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if address.is_null() {
            Err(format!("{origin} has no {}", name.to_string_lossy()))
        } else {
            Ok(address)
        }
    };
    // Each C signature (tallymalloc.h's) is the function pointer type its symbol is cast to.
    // SAFETY: each symbol is the tm_* function of that name, which lives as long as the process.
    unsafe {
        Ok(Library {
            malloc: function(symbol(c"tm_domain_malloc")?),
            calloc: function(symbol(c"tm_domain_calloc")?),
            realloc: function(symbol(c"tm_domain_realloc")?),
            free: function(symbol(c"tm_domain_free")?),
            domain_of: function(symbol(c"tm_domain_of")?),
            usable_size: function(symbol(c"tm_usable_size")?),
            domain_register: function(symbol(c"tm_domain_register")?),
            domain_name: function(symbol(c"tm_domain_name")?),
            stats_json: function(symbol(c"tm_stats_json")?),
            stats_text: function(symbol(c"tm_stats_text")?),
            domain_stats: function(symbol(c"tm_domain_stats")?),
            python_functions: function(symbol(c"tm_python_functions")?),
            python_set_fallbacks: function(symbol(c"tm_python_set_fallbacks")?),
            profile: profile_functions(&symbol),
            watermark: watermark_functions(&symbol),
            mismatches: symbol(c"tm_mismatches")
                .ok()
                .map(|address| function(address)),
            serves_malloc,
            origin,
        })
    }
}

/// The profiling API, if the library has all of it.
fn profile_functions(
    symbol: &dyn Fn(&CStr) -> Result<*mut c_void, String>,
) -> Option<ProfileFunctions> {
    // SAFETY: each symbol is the tm_* function of that name (tallymalloc.h's signature), which
    // lives as long as the process.
    unsafe {
        Some(ProfileFunctions {
            enable: function(symbol(c"tm_profile_enable").ok()?),
            disable: function(symbol(c"tm_profile_disable").ok()?),
            set_sample_bytes: function(symbol(c"tm_profile_set_sample_bytes").ok()?),
            write: function(symbol(c"tm_profile_write").ok()?),
            set_python_frames: function(symbol(c"tm_profile_set_python_frames").ok()?),
            name_python_code: function(symbol(c"tm_profile_name_python_code").ok()?),
        })
    }
}

/// `tm_watermark_reset` and `tm_watermark`, if the library has them.
fn watermark_functions(
    symbol: &dyn Fn(&CStr) -> Result<*mut c_void, String>,
) -> Option<WatermarkFunctions> {
    // SAFETY: as in `profile_functions`.
    unsafe {
        Some(WatermarkFunctions {
            reset: function(symbol(c"tm_watermark_reset").ok()?),
            read: function(symbol(c"tm_watermark").ok()?),
        })
    }
}

/// A function pointer of type `F` at `address`.
///
/// # Safety
/// `address` must be a function whose C signature is `F`'s.
unsafe fn function<F: Copy>(address: *mut c_void) -> F {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut c_void>()) };
    // SAFETY: the caller's contract; the sizes match.
    unsafe { core::mem::transmute_copy(&address) }
}

impl Library {
    /// A text the library writes into a buffer (`tm_stats_json`, `tm_stats_text`): asked with
    /// length 0, it answers a bound that holds for the next call, so one buffer serves.
    pub fn read_text(&self, write: unsafe extern "C" fn(*mut c_char, usize) -> usize) -> String {
        // SAFETY: length 0 asks for the bound and writes nothing.
        let bound = unsafe { write(core::ptr::null_mut(), 0) };
        let mut buffer = vec![0u8; bound + 1];
        // SAFETY: the buffer holds `len` writable bytes.
        let written = unsafe { write(buffer.as_mut_ptr().cast(), buffer.len()) };
        buffer.truncate(written.min(bound));
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// The id of the domain called `name`, registering it if needed.
    pub fn domain_id(&self, name: &str) -> Result<c_int, String> {
        let bad = || {
            format!("bad domain name '{name}': use 1 to 31 ASCII letters, digits, '_', '-' or '.'")
        };
        let text = CString::new(name).map_err(|_| bad())?;
        // SAFETY: a NUL-terminated name.
        let id = unsafe { (self.domain_register)(text.as_ptr()) };
        if id < 0 {
            return Err(bad());
        }
        Ok(id)
    }

    /// The name of domain `id`.
    pub fn domain_name_of(&self, id: c_int) -> String {
        // SAFETY: the library returns NULL or a string that lives as long as the process.
        let name = unsafe { (self.domain_name)(id) };
        if name.is_null() {
            return format!("#{id}");
        }
        // SAFETY: as above.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }
}
