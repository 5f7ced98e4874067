//! Reading and answering `OSSL_PARAM` arrays, and calling OpenSSL's callbacks with one.
//!
//! [`ParamsIn`] and [`ParamsOut`] are views of the caller's NULL-terminated array (or NULL),
//! made once from the raw pointer; their methods are safe. "Set" methods return true when
//! the key is absent (nothing asked) or was answered, false when the caller's buffer could
//! not take the value.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;

use super::ffi::*;

/// Parameters OpenSSL passes in.
#[derive(Clone, Copy)]
pub struct ParamsIn<'a>(*const OSSL_PARAM, PhantomData<&'a OSSL_PARAM>);

impl<'a> ParamsIn<'a> {
    /// # Safety
    /// `params` is NULL or a valid NULL-terminated parameter array that outlives `'a`.
    pub unsafe fn new(params: *const OSSL_PARAM) -> ParamsIn<'a> {
        ParamsIn(params, PhantomData)
    }

    fn locate(&self, key: &CStr) -> Option<*const OSSL_PARAM> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: a valid terminated array (see `new`) and a NUL-terminated key.
        let p = unsafe { openssl_sys::OSSL_PARAM_locate_const(self.0, key.as_ptr()) };
        (!p.is_null()).then_some(p)
    }

    /// A UTF-8 parameter (string or pointer) as a Rust string.
    pub fn utf8(&self, key: &CStr) -> Option<String> {
        let p = self.locate(key)?;
        let mut value: *const c_char = std::ptr::null();
        // SAFETY: a parameter of the array; OpenSSL checks its type.
        if unsafe { openssl_sys::OSSL_PARAM_get_utf8_string_ptr(p, &mut value) } != 1
            || value.is_null()
        {
            return None;
        }
        // SAFETY: OpenSSL returned the parameter's NUL-terminated string.
        Some(
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// An octet-string parameter, copied.
    pub fn octets(&self, key: &CStr) -> Option<Vec<u8>> {
        let p = self.locate(key)?;
        let mut value: *const c_void = std::ptr::null();
        let mut len = 0usize;
        // SAFETY: a parameter of the array; OpenSSL checks its type.
        let ok = unsafe { openssl_sys::OSSL_PARAM_get_octet_string_ptr(p, &mut value, &mut len) };
        if ok != 1 || value.is_null() {
            return None;
        }
        // SAFETY: the parameter's data, `len` bytes.
        Some(unsafe { std::slice::from_raw_parts(value as *const u8, len) }.to_vec())
    }

    /// An integer parameter.
    pub fn int(&self, key: &CStr) -> Option<c_int> {
        let p = self.locate(key)?;
        let mut value: c_int = 0;
        // SAFETY: a parameter of the array; OpenSSL checks its type and size.
        (unsafe { OSSL_PARAM_get_int(p, &mut value) } == 1).then_some(value)
    }
}

/// Parameters OpenSSL asks us to answer.
pub struct ParamsOut<'a>(*mut OSSL_PARAM, PhantomData<&'a mut OSSL_PARAM>);

impl<'a> ParamsOut<'a> {
    /// # Safety
    /// `params` is NULL or a valid NULL-terminated parameter array that outlives `'a`, with
    /// buffers as their sizes say.
    pub unsafe fn new(params: *mut OSSL_PARAM) -> ParamsOut<'a> {
        ParamsOut(params, PhantomData)
    }

    fn locate(&mut self, key: &CStr) -> Option<*mut OSSL_PARAM> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: a valid terminated array (see `new`) and a NUL-terminated key.
        let p = unsafe { openssl_sys::OSSL_PARAM_locate(self.0, key.as_ptr()) };
        (!p.is_null()).then_some(p)
    }

    pub fn utf8(&mut self, key: &CStr, value: &str) -> bool {
        let Some(p) = self.locate(key) else {
            return true;
        };
        let Ok(value) = CString::new(value) else {
            return false;
        };
        // SAFETY: a parameter of the array; OpenSSL checks type and buffer size.
        unsafe { OSSL_PARAM_set_utf8_string(p, value.as_ptr()) == 1 }
    }

    /// A string parameter answered with a static string (UTF-8 string or pointer parameters).
    pub fn static_utf8(&mut self, key: &CStr, value: &'static CStr) -> bool {
        let Some(p) = self.locate(key) else {
            return true;
        };
        // SAFETY: a parameter of the array; OpenSSL checks type and buffer size. A pointer
        // parameter keeps the pointer, which is static.
        unsafe {
            if (*p).data_type == OSSL_PARAM_UTF8_PTR {
                OSSL_PARAM_set_utf8_ptr(p, value.as_ptr()) == 1
            } else {
                OSSL_PARAM_set_utf8_string(p, value.as_ptr()) == 1
            }
        }
    }

    pub fn int(&mut self, key: &CStr, value: c_int) -> bool {
        match self.locate(key) {
            None => true,
            // SAFETY: a parameter of the array; OpenSSL checks type and size.
            Some(p) => unsafe { OSSL_PARAM_set_int(p, value) == 1 },
        }
    }

    pub fn octets(&mut self, key: &CStr, value: &[u8]) -> bool {
        match self.locate(key) {
            None => true,
            // SAFETY: a parameter of the array; OpenSSL checks type and buffer size.
            Some(p) => unsafe {
                OSSL_PARAM_set_octet_string(p, value.as_ptr() as *const c_void, value.len()) == 1
            },
        }
    }
}

/// A C string argument as a Rust string (None for NULL).
///
/// # Safety
/// `s` is NULL or NUL-terminated.
pub unsafe fn c_str(s: *const c_char) -> Option<String> {
    // SAFETY: the function's contract.
    (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// One parameter of an array we pass to OpenSSL, borrowing its value.
pub enum Param<'a> {
    Int(&'static CStr, c_int),
    Utf8(&'static CStr, &'a CStr),
    Octets(&'static CStr, &'a [u8]),
}

/// A callback OpenSSL hands to an operation (`OSSL_CALLBACK` with its argument): objects
/// found by a store or decoder, key data exported.
#[derive(Clone, Copy)]
pub struct Callback {
    function: OSSL_CALLBACK,
    arg: *mut c_void,
}

impl Callback {
    /// # Safety
    /// `function` and `arg` are a pair OpenSSL passed to the current call; the result is used
    /// only during that call.
    pub unsafe fn new(function: Option<OSSL_CALLBACK>, arg: *mut c_void) -> Option<Callback> {
        function.map(|function| Callback { function, arg })
    }

    /// Calls it with these parameters (terminated here); its result.
    pub fn call(&self, params: &[Param<'_>]) -> c_int {
        // The integers need a place of their own for the array to point at; it is filled
        // before any pointer to it is taken and not changed after.
        let ints: Vec<c_int> = params
            .iter()
            .map(|p| match p {
                Param::Int(_, value) => *value,
                _ => 0,
            })
            .collect();
        let mut array: Vec<OSSL_PARAM> = params
            .iter()
            .zip(&ints)
            .map(|(param, int)| match param {
                // SAFETY (all three): OpenSSL's parameter constructors only store the key and
                // data pointers; the callback reads the data (OSSL_CALLBACK takes a const
                // array) while `params` and `ints` are alive.
                Param::Int(key, _) => unsafe {
                    OSSL_PARAM_construct_int(key.as_ptr(), int as *const c_int as *mut c_int)
                },
                Param::Utf8(key, value) => unsafe {
                    OSSL_PARAM_construct_utf8_string(key.as_ptr(), value.as_ptr() as *mut c_char, 0)
                },
                Param::Octets(key, value) => unsafe {
                    openssl_sys::OSSL_PARAM_construct_octet_string(
                        key.as_ptr(),
                        value.as_ptr() as *mut c_void,
                        value.len(),
                    )
                },
            })
            .collect();
        // SAFETY: the terminator.
        array.push(unsafe { openssl_sys::OSSL_PARAM_construct_end() });
        // SAFETY: OpenSSL's callback and argument (see `new`) with a terminated array.
        unsafe { (self.function)(array.as_ptr(), self.arg) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn read_back(params: *const OSSL_PARAM, arg: *mut c_void) -> c_int {
        // SAFETY: the array `Callback::call` built; `arg` is the test's Vec.
        let (params, out) = unsafe { (ParamsIn::new(params), &mut *(arg as *mut Vec<String>)) };
        out.push(format!(
            "{:?} {:?} {:?}",
            params.int(c"type"),
            params.utf8(c"data-type"),
            params.octets(c"data")
        ));
        7
    }

    #[test]
    fn a_callback_sees_the_parameters_passed() {
        let mut seen: Vec<String> = Vec::new();
        // SAFETY: a callback and an argument that outlives the call.
        let callback = unsafe {
            Callback::new(
                Some(read_back),
                &mut seen as *mut Vec<String> as *mut c_void,
            )
        }
        .unwrap();
        let result = callback.call(&[
            Param::Int(c"type", 2),
            Param::Utf8(c"data-type", c"EC"),
            Param::Octets(c"data", &[1, 2, 3]),
        ]);
        assert_eq!(result, 7);
        assert_eq!(seen, [r#"Some(2) Some("EC") Some([1, 2, 3])"#]);
        // SAFETY: NULL is "no parameters".
        assert_eq!(
            unsafe { ParamsIn::new(std::ptr::null()) }.int(c"type"),
            None
        );
    }
}
