//! Our objects behind OpenSSL's `void *`: operation contexts (owned by OpenSSL, one `Box`
//! each) and key objects (shared, one `Arc` reference per pointer handed out). Each knows the
//! provider instance it was made through, so its calls report errors through that instance.
//!
//! The entries every operation has the same way (newctx, freectx, dupctx) are written here
//! once, generic over the context type.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::super::instance::Instance;
use super::guard::guard_in;

/// An object made through a provider instance.
pub trait Made {
    fn instance(&self) -> Instance;
}

/// An operation context, made fresh for an instance by `newctx`.
pub trait OperationContext: Made + Sized {
    fn new(instance: Instance) -> Self;
}

/// Runs `body` over the context behind `ctx`, under the panic guard and with errors going
/// through the context's instance; `fallback` when `ctx` is NULL (or on a panic).
///
/// # Safety
/// `ctx` is NULL or a live context of type `C` made by this module (its `newctx`, `dupctx` or
/// [`into_ctx`]), used by no other call at the same time (OpenSSL's rule for contexts).
pub unsafe fn with_ctx<C: Made, R: Copy>(
    ctx: *mut c_void,
    fallback: R,
    body: impl FnOnce(&mut C) -> R,
) -> R {
    // SAFETY: the function's contract.
    let ctx = unsafe { (ctx as *mut C).as_mut() };
    let instance = ctx.as_ref().map(|ctx| ctx.instance());
    guard_in(instance, fallback, || match ctx {
        Some(ctx) => body(ctx),
        None => fallback,
    })
}

/// Hands a context to OpenSSL, which frees it with [`freectx`] (or [`drop_ctx`]).
pub fn into_ctx<C>(ctx: C) -> *mut c_void {
    Box::into_raw(Box::new(ctx)) as *mut c_void
}

/// Frees a context, under the panic guard (its drop may run arbitrary code).
///
/// # Safety
/// `ctx` is NULL or a context of type `C` from [`into_ctx`], freed once.
pub unsafe fn drop_ctx<C: Made>(ctx: *mut c_void) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: the function's contract; ownership returns to us here.
    let ctx = unsafe { Box::from_raw(ctx as *mut C) };
    guard_in(Some(ctx.instance()), (), move || drop(ctx));
}

/// `newctx(provctx)`: a fresh context of type `C` for the instance.
///
/// # Safety
/// `provctx` is NULL or the provctx of a live instance (OpenSSL's argument).
pub unsafe extern "C" fn newctx<C: OperationContext>(provctx: *mut c_void) -> *mut c_void {
    // SAFETY: the function's contract.
    let instance = unsafe { Instance::from_provctx(provctx) };
    guard_in(instance, std::ptr::null_mut(), || match instance {
        Some(instance) => into_ctx(C::new(instance)),
        None => std::ptr::null_mut(),
    })
}

/// `newctx(provctx, propq)`: as [`newctx`]; the property query is not needed (the provider
/// fetches nothing).
///
/// # Safety
/// As [`newctx`].
pub unsafe extern "C" fn newctx_with_propq<C: OperationContext>(
    provctx: *mut c_void,
    _propq: *const c_char,
) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe { newctx::<C>(provctx) }
}

/// `freectx(ctx)`.
///
/// # Safety
/// `ctx` is NULL or a context of type `C` from this module, freed once (OpenSSL's rule).
pub unsafe extern "C" fn freectx<C: Made>(ctx: *mut c_void) {
    // SAFETY: the same contract.
    unsafe { drop_ctx::<C>(ctx) }
}

/// `dupctx(ctx)`: a copy of the context (OpenSSL duplicates contexts to sign twice with one
/// setup).
///
/// # Safety
/// As [`with_ctx`].
pub unsafe extern "C" fn dupctx<C: Made + Clone>(ctx: *mut c_void) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe {
        with_ctx(ctx, std::ptr::null_mut(), |ctx: &mut C| {
            into_ctx(ctx.clone())
        })
    }
}

/// `newctx(provctx)` of an operation without state (decoders, encoders): the provctx serves
/// as the context, so each call still knows its instance.
///
/// # Safety
/// None beyond OpenSSL's; the pointer is only passed back.
pub unsafe extern "C" fn stateless_newctx(provctx: *mut c_void) -> *mut c_void {
    provctx
}

/// `freectx(ctx)` of [`stateless_newctx`]: nothing to free.
///
/// # Safety
/// None; nothing is dereferenced.
pub unsafe extern "C" fn stateless_freectx(_ctx: *mut c_void) {}

/// The instance a stateless operation's context stands for ([`stateless_newctx`]).
///
/// # Safety
/// `ctx` is NULL or a context from [`stateless_newctx`], i.e. a live instance's provctx.
pub unsafe fn stateless_instance(ctx: *mut c_void) -> Option<Instance> {
    // SAFETY: the context is a provctx (the function's contract).
    unsafe { Instance::from_provctx(ctx) }
}

/// Hands a shared object (a key) to OpenSSL: one reference, released by [`release`].
pub fn share_out<T>(object: Arc<T>) -> *mut c_void {
    Arc::into_raw(object) as *mut c_void
}

/// Borrows the object behind a pointer from [`share_out`].
///
/// # Safety
/// `object` is NULL or came from [`share_out`] with type `T` and was not released; the borrow
/// does not outlive the call that passed the pointer.
pub unsafe fn borrow<'a, T>(object: *const c_void) -> Option<&'a T> {
    // SAFETY: the function's contract.
    unsafe { (object as *const T).as_ref() }
}

/// A reference of our own to the object behind a pointer from [`share_out`].
///
/// # Safety
/// As [`borrow`].
pub unsafe fn share<T>(object: *const c_void) -> Option<Arc<T>> {
    if object.is_null() {
        return None;
    }
    // SAFETY: a live Arc of type T (the function's contract): one more strong reference.
    unsafe {
        Arc::increment_strong_count(object as *const T);
        Some(Arc::from_raw(object as *const T))
    }
}

/// Releases the reference OpenSSL held.
///
/// # Safety
/// `object` is NULL or came from [`share_out`] with type `T`, released once.
pub unsafe fn release<T: Made>(object: *mut c_void) {
    if object.is_null() {
        return;
    }
    // SAFETY: the function's contract; OpenSSL's reference returns to us.
    let object = unsafe { Arc::from_raw(object as *const T) };
    guard_in(Some(object.instance()), (), move || drop(object));
}

/// Runs `body` over the object behind `object`, under the panic guard and with errors going
/// through its instance; `fallback` when it is NULL.
///
/// # Safety
/// As [`borrow`].
pub unsafe fn with_object<T: Made, R: Copy>(
    object: *const c_void,
    fallback: R,
    body: impl FnOnce(&T) -> R,
) -> R {
    // SAFETY: the function's contract.
    let object = unsafe { borrow::<T>(object) };
    guard_in(object.map(|o| o.instance()), fallback, || match object {
        Some(object) => body(object),
        None => fallback,
    })
}

/// Like [`with_object`], with the object to change: only while OpenSSL holds the one
/// reference (a key being built by `new` + `import`, not yet shared); `fallback` otherwise.
///
/// # Safety
/// `object` is NULL or came from [`share_out`] with type `T` and was not released; no other
/// call uses the object at the same time.
pub unsafe fn with_unshared<T: Made, R: Copy>(
    object: *mut c_void,
    fallback: R,
    body: impl FnOnce(&mut T) -> R,
) -> R {
    if object.is_null() {
        return fallback;
    }
    // SAFETY: OpenSSL's reference to a live object of type T (the function's contract),
    // borrowed for the call and given back below.
    let mut shared = unsafe { Arc::from_raw(object as *const T) };
    let instance = shared.instance();
    let result = guard_in(Some(instance), fallback, || {
        match Arc::get_mut(&mut shared) {
            Some(object) => body(object),
            None => fallback,
        }
    });
    // OpenSSL's reference stays with OpenSSL.
    let _ = Arc::into_raw(shared);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Counter {
        instance: Instance,
        count: u32,
    }

    impl Made for Counter {
        fn instance(&self) -> Instance {
            self.instance
        }
    }

    impl OperationContext for Counter {
        fn new(instance: Instance) -> Counter {
            Counter { instance, count: 0 }
        }
    }

    fn errors() -> String {
        let errors = openssl::error::ErrorStack::get();
        let lines: Vec<String> = errors.errors().iter().map(|e| e.to_string()).collect();
        lines.join("\n")
    }

    #[test]
    fn the_shared_stubs_make_copy_and_free_contexts() {
        let provctx = Instance::for_tests().as_provctx();
        // SAFETY: a live instance's provctx; contexts of type Counter from the stubs, each
        // freed once.
        unsafe {
            let ctx = newctx::<Counter>(provctx);
            assert!(!ctx.is_null());
            assert_eq!(
                with_ctx(ctx, 0, |c: &mut Counter| {
                    c.count += 1;
                    c.count
                }),
                1
            );
            let copy = dupctx::<Counter>(ctx);
            assert_eq!(with_ctx(copy, 0, |c: &mut Counter| c.count), 1);
            with_ctx(copy, (), |c: &mut Counter| c.count = 5);
            assert_eq!(with_ctx(ctx, 0, |c: &mut Counter| c.count), 1, "a copy");
            freectx::<Counter>(copy);
            freectx::<Counter>(ctx);
            // NULL in, failure out; nothing dereferenced.
            assert!(newctx::<Counter>(std::ptr::null_mut()).is_null());
            assert!(dupctx::<Counter>(std::ptr::null_mut()).is_null());
            assert_eq!(with_ctx(std::ptr::null_mut(), 7, |_: &mut Counter| 1), 7);
            freectx::<Counter>(std::ptr::null_mut());
        }
    }

    #[test]
    fn a_panic_in_an_entry_body_is_its_failure_value_and_an_error() {
        errors();
        let provctx = Instance::for_tests().as_provctx();
        // SAFETY: as above.
        unsafe {
            let ctx = newctx::<Counter>(provctx);
            let result = with_ctx(ctx, 0, |_: &mut Counter| -> i32 { panic!("bad state") });
            assert_eq!(result, 0);
            assert!(errors().contains("panic: bad state"));
            // The context is still usable and freed normally.
            assert_eq!(with_ctx(ctx, 0, |c: &mut Counter| c.count + 1), 1);
            freectx::<Counter>(ctx);
        }
    }

    #[test]
    fn shared_objects_count_their_references() {
        let instance = Instance::for_tests();
        let object = Arc::new(Counter { instance, count: 3 });
        let raw = share_out(object.clone());
        // SAFETY: `raw` from share_out with type Counter, released once below.
        unsafe {
            let mine = share::<Counter>(raw).unwrap();
            assert_eq!(Arc::strong_count(&object), 3);
            assert_eq!(with_object(raw, 0, |c: &Counter| c.count), 3);
            // Shared: not changed in place.
            assert_eq!(with_unshared(raw, 0, |c: &mut Counter| c.count), 0);
            drop(mine);
            drop(object);
            // OpenSSL's is the only reference now: a new key may be filled.
            assert_eq!(
                with_unshared(raw, 0, |c: &mut Counter| {
                    c.count = 9;
                    1
                }),
                1
            );
            assert_eq!(borrow::<Counter>(raw).unwrap().count, 9);
            release::<Counter>(raw);
        }
    }
}
