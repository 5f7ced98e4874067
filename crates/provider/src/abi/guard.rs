//! The panic guard: every `extern "C"` function of the provider runs its body under
//! [`guard_in`] (or [`guard`]), so a panic becomes an OpenSSL error and the function's failure
//! value instead of unwinding into C (undefined behaviour, in practice an abort).

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::super::error::{self, Reason};
use super::super::instance::Instance;

/// Runs the body of an `extern "C"` function called through `instance`: errors (and a panic,
/// which becomes an error and the `fallback` return value instead of unwinding into C) are
/// reported through that instance.
pub fn guard_in<R>(instance: Option<Instance>, fallback: R, body: impl FnOnce() -> R) -> R {
    error::on_behalf_of(instance, || guard(fallback, body))
}

/// Like [`guard_in`], for the few functions that learn no instance (errors then go through
/// the instance of an enclosing call on this thread, if any: see [`error::raise`]).
pub fn guard<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            error::raise(Reason::Internal, &format!("internal error (panic: {what})"));
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors on this thread's queue, as OpenSSL formats them; the queue is emptied.
    fn drain_errors() -> String {
        let errors = openssl::error::ErrorStack::get();
        let lines: Vec<String> = errors.errors().iter().map(|e| e.to_string()).collect();
        lines.join("\n")
    }

    #[test]
    fn a_panic_becomes_the_fallback_and_an_error() {
        drain_errors();
        let result = guard(-1, || -> i32 { panic!("card table corrupted") });
        assert_eq!(result, -1);
        let errors = drain_errors();
        assert!(
            errors.contains("panic: card table corrupted"),
            "the panic is on the error queue: {errors}"
        );
    }

    #[test]
    fn a_panic_through_an_instance_is_reported_through_it() {
        drain_errors();
        let instance = Instance::for_tests();
        let result = guard_in(Some(instance), std::ptr::null_mut::<u8>(), || {
            panic!("{}", String::from("formatted panic"))
        });
        assert!(result.is_null());
        assert!(drain_errors().contains("panic: formatted panic"));
    }

    #[test]
    fn no_panic_no_error() {
        drain_errors();
        assert_eq!(guard(0, || 7), 7);
        assert_eq!(drain_errors(), "");
    }
}
