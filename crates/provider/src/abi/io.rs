//! Input and output through OpenSSL's pointers: core BIOs (decoder input, encoder output),
//! byte buffers passed in, and the caller's output buffers with their length pointers.

use std::ffi::{c_char, c_int, c_uchar, c_void};

use super::super::instance::Instance;
use super::ffi::*;

/// A BIO over a core BIO, freed on drop.
pub struct CoreBio(*mut BIO);

impl CoreBio {
    /// # Safety
    /// `corebio` is a core BIO handed to the current call, made through `instance`; the
    /// result is used only during that call.
    pub unsafe fn new(instance: Instance, corebio: *mut OSSL_CORE_BIO) -> Option<CoreBio> {
        // SAFETY: the function's contract.
        let bio = unsafe { BIO_new_from_core_bio(instance.libctx(), corebio) };
        (!bio.is_null()).then_some(CoreBio(bio))
    }

    /// Reads up to `limit` bytes (to the end of the input).
    pub fn read_all(&self, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while out.len() < limit {
            // SAFETY: a valid BIO and buffer.
            let n =
                unsafe { BIO_read(self.0, buf.as_mut_ptr() as *mut c_void, buf.len() as c_int) };
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        out
    }

    /// Reads the next line (with its newline; at most `max` bytes of it); None at the end
    /// of the input.
    pub fn read_line(&self, max: usize) -> Option<String> {
        let mut buf = vec![0u8; max + 1];
        let size = c_int::try_from(buf.len()).ok()?;
        // SAFETY: a valid BIO and a buffer of `size` bytes, which BIO_gets NUL-terminates.
        let n = unsafe { BIO_gets(self.0, buf.as_mut_ptr() as *mut c_char, size) };
        let n = usize::try_from(n).ok().filter(|&n| n > 0)?;
        Some(String::from_utf8_lossy(&buf[..n.min(max)]).into_owned())
    }

    pub fn write_all(&self, data: &[u8]) -> bool {
        let Ok(len) = c_int::try_from(data.len()) else {
            return false;
        };
        // SAFETY: a valid BIO and buffer.
        data.is_empty() || unsafe { BIO_write(self.0, data.as_ptr() as *const c_void, len) } == len
    }

    /// Prints a public key as `openssl pkey -text` does.
    pub fn print_public(&self, key: &openssl::pkey::PKeyRef<openssl::pkey::Public>) -> bool {
        use foreign_types::ForeignTypeRef;
        // SAFETY: a valid BIO and key.
        unsafe { EVP_PKEY_print_public(self.0, key.as_ptr(), 0, std::ptr::null_mut()) == 1 }
    }
}

impl Drop for CoreBio {
    fn drop(&mut self) {
        // SAFETY: we own the BIO.
        unsafe { BIO_free(self.0) };
    }
}

/// Bytes OpenSSL passes in as pointer and length (NULL with length 0 is the empty input). None
/// for a length no buffer can have (over `isize::MAX`, or NULL with a length): the operation
/// fails instead of reading what the caller never gave.
///
/// # Safety
/// `data` points to `len` readable bytes that outlive `'a`, or `len` is 0.
pub unsafe fn bytes<'a>(data: *const c_uchar, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if data.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the function's contract; the length is one a slice can have.
    Some(unsafe { std::slice::from_raw_parts(data, len) })
}

/// The caller's output buffer of a signature or secret: OpenSSL first asks for the size
/// (buffer NULL), then passes a buffer of `size` bytes; the length written goes to `*len`.
pub enum Output<'a> {
    /// Only the size is asked.
    SizeQuery(&'a mut usize),
    Buffer(OutBuf<'a>),
}

/// A buffer the caller says has `size` bytes. Kept as a pointer and a size, never as a slice:
/// OpenSSL passes the application's own "big enough" (`*siglen`, up to `SIZE_MAX`) as the
/// size, which no slice may claim; only the bytes written are ever touched.
pub struct OutBuf<'a> {
    buf: *mut c_uchar,
    size: usize,
    len: &'a mut usize,
}

impl<'a> Output<'a> {
    /// None when there is no length pointer (nothing can be answered).
    ///
    /// # Safety
    /// `len` is NULL or writable; `buf` is NULL or has `size` writable bytes; both outlive
    /// `'a` and do not overlap.
    pub unsafe fn new(buf: *mut c_uchar, len: *mut usize, size: usize) -> Option<Output<'a>> {
        // SAFETY: the function's contract.
        let len = unsafe { len.as_mut() }?;
        Some(if buf.is_null() {
            Output::SizeQuery(len)
        } else {
            Output::Buffer(OutBuf { buf, size, len })
        })
    }
}

impl OutBuf<'_> {
    /// The buffer's size, as the caller gave it.
    pub fn capacity(&self) -> usize {
        self.size
    }

    /// Copies `data` into the buffer and sets the length; false (nothing written) when it
    /// does not fit.
    pub fn write(self, data: &[u8]) -> bool {
        if data.len() > self.size {
            return false;
        }
        // SAFETY: `buf` has `size` writable bytes not overlapping `data` (the contract of
        // `Output::new`), and `data.len() <= size`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.buf, data.len()) };
        *self.len = data.len();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_answers_size_queries_and_refuses_overflow() {
        let mut len = 0usize;
        // SAFETY: a local length; no buffer.
        match unsafe { Output::new(std::ptr::null_mut(), &mut len, 0) } {
            Some(Output::SizeQuery(l)) => *l = 72,
            _ => panic!("a NULL buffer is a size query"),
        }
        assert_eq!(len, 72);
        let mut buf = [0u8; 4];
        // SAFETY: a local buffer of 4 bytes and a local length.
        let Some(Output::Buffer(out)) = (unsafe { Output::new(buf.as_mut_ptr(), &mut len, 4) })
        else {
            panic!("a buffer")
        };
        assert_eq!(out.capacity(), 4);
        assert!(!out.write(&[1, 2, 3, 4, 5]));
        // SAFETY: as above.
        let Some(Output::Buffer(out)) = (unsafe { Output::new(buf.as_mut_ptr(), &mut len, 4) })
        else {
            panic!("a buffer")
        };
        assert!(out.write(&[9, 8]));
        assert_eq!((len, &buf[..2]), (2, &[9u8, 8][..]));
        // SAFETY: NULL length pointer.
        assert!(unsafe { Output::new(buf.as_mut_ptr(), std::ptr::null_mut(), 4) }.is_none());
    }
}

#[cfg(test)]
mod huge_sizes {
    use super::*;

    /// EVP_PKEY_sign passes the caller's *siglen as sigsize: a "big enough" SIZE_MAX works,
    /// and is never made a slice longer than isize::MAX (undefined behaviour; an abort in
    /// debug builds).
    #[test]
    fn a_huge_sigsize_is_not_a_slice() {
        let mut buf = [0u8; 72];
        let mut len = 0usize;
        // SAFETY (of the call as the contract is written): a 72-byte buffer.
        let out = unsafe { Output::new(buf.as_mut_ptr(), &mut len, usize::MAX) };
        if let Some(Output::Buffer(out)) = out {
            assert!(out.write(&[1, 2, 3]));
        }
        assert_eq!(len, 3);
        assert_eq!(&buf[..4], &[1, 2, 3, 0]);
    }

    #[test]
    fn an_input_length_no_buffer_can_have_is_refused() {
        let data = [0u8; 4];
        // SAFETY (of the calls as the contract is written): a 4-byte buffer, or none.
        unsafe {
            assert_eq!(bytes(data.as_ptr(), usize::MAX), None);
            assert_eq!(bytes(std::ptr::null(), 4), None);
            assert_eq!(bytes(std::ptr::null(), 0), Some(&[][..]));
            assert_eq!(bytes(data.as_ptr(), 4), Some(&data[..]));
        }
    }
}
