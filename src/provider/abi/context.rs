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
