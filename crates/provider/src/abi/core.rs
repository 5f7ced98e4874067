//! What the core hands a provider instance at `OSSL_provider_init`: its handle, the functions
//! the provider calls back (configuration, errors), and a library context of its own.

use std::ffi::{c_int, c_void, CStr};

use super::ffi::*;

/// The core's side of one provider instance. The library context is freed on drop.
pub struct Core {
    handle: *const OSSL_CORE_HANDLE,
    libctx: *mut OSSL_LIB_CTX,
    get_params: Option<CoreGetParamsFn>,
    new_error: Option<CoreNewErrorFn>,
    set_error_debug: Option<CoreSetErrorDebugFn>,
    vset_error: Option<CoreVsetErrorFn>,
}

impl Core {
    /// A core with no functions (errors then go straight to libcrypto): for unit tests.
    #[cfg(test)]
    pub fn detached() -> Core {
        Core {
            handle: std::ptr::null(),
            libctx: std::ptr::null_mut(),
            get_params: None,
            new_error: None,
            set_error_debug: None,
            vset_error: None,
        }
    }

    /// Reads the core's dispatch table and makes the instance's library context.
    ///
    /// # Safety
    /// `handle` and `input` are what the core passed to `OSSL_provider_init`: `input` is NULL
    /// or terminated by a zero function id, and each function has the signature its id
    /// prescribes.
    pub unsafe fn from_dispatch(
        handle: *const OSSL_CORE_HANDLE,
        input: *const OSSL_DISPATCH,
    ) -> Core {
        let mut core = Core {
            handle,
            libctx: std::ptr::null_mut(),
            get_params: None,
            new_error: None,
            set_error_debug: None,
            vset_error: None,
        };
        let mut entry = input;
        // SAFETY: walking the core's terminated table (the function's contract); each function
        // pointer is cast back to the type its id prescribes.
        unsafe {
            while !entry.is_null() && (*entry).function_id != 0 {
                let function = (*entry).function;
                match (*entry).function_id {
                    OSSL_FUNC_CORE_GET_PARAMS => {
                        core.get_params = function.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_NEW_ERROR => {
                        core.new_error = function.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_SET_ERROR_DEBUG => {
                        core.set_error_debug = function.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_VSET_ERROR => {
                        core.vset_error = function.map(|f| std::mem::transmute(f))
                    }
                    _ => {}
                }
                entry = entry.add(1);
            }
            core.libctx = OSSL_LIB_CTX_new_from_dispatch(handle, input);
        }
        core
    }

    /// The instance's library context (for BIOs handed through the core).
    pub fn libctx(&self) -> *mut OSSL_LIB_CTX {
        self.libctx
    }

    /// The core's get_params and this instance's handle, for reading openssl.cnf.
    pub fn params_reader(&self) -> Option<(CoreGetParamsFn, *const OSSL_CORE_HANDLE)> {
        self.get_params.map(|get| (get, self.handle))
    }

    /// Puts an error with our `reason` on the calling thread's queue through the core (so that
    /// OpenSSL prints our reason string). False when the core offered no error functions.
    pub fn raise(&self, reason: u32, file: &CStr, line: c_int, message: &CStr) -> bool {
        let (Some(new_error), Some(set_debug), Some(vset_error)) =
            (self.new_error, self.set_error_debug, self.vset_error)
        else {
            return false;
        };
        // The va_list is never read (NULL format): a zeroed buffer of va_list's size stands in.
        let mut unused_va_list = [0u64; 4];
        // SAFETY: the core's error functions with the handle of this instance; the strings
        // are NUL-terminated and outlive the calls (the core copies them, except the file
        // name, which the caller keeps for the life of the process).
        unsafe {
            new_error(self.handle);
            set_debug(self.handle, file.as_ptr(), line, c"iotsafe".as_ptr());
            vset_error(
                self.handle,
                reason,
                std::ptr::null(),
                unused_va_list.as_mut_ptr() as *mut c_void,
            );
            ERR_add_error_data(1 as c_int, message.as_ptr());
        }
        true
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if !self.libctx.is_null() {
            // SAFETY: created in `from_dispatch` for this instance alone, freed once.
            unsafe { OSSL_LIB_CTX_free(self.libctx) };
        }
    }
}

/// libcrypto's "internal error" (ERR_R_INTERNAL_ERROR) of the providers' library.
const ERR_LIB_PROV: c_int = 57;
const ERR_R_INTERNAL_ERROR: c_int = 4 | (0x3 << 18);

/// An error put straight on libcrypto's queue, as an internal error of the providers' library
/// with our message (for when no instance is known: our reason codes belong to a core handle).
pub fn raise_in_libcrypto(file: &CStr, line: c_int, message: &CStr) {
    // SAFETY: libcrypto's error functions with NUL-terminated strings; the "%s" format takes
    // exactly the one string given; the file name is kept by the caller.
    unsafe {
        openssl_sys::ERR_new();
        openssl_sys::ERR_set_debug(file.as_ptr(), line, c"iotsafe".as_ptr());
        openssl_sys::ERR_set_error(
            ERR_LIB_PROV,
            ERR_R_INTERNAL_ERROR,
            c"iotsafe: %s".as_ptr(),
            message.as_ptr(),
        );
    }
}
