//! The state of one provider instance: what `OSSL_provider_init` made for a library context
//! that loads the provider (the core's side and the configuration read then).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::abi::core::Core;
use super::abi::ffi::OSSL_LIB_CTX;
use super::config::Settings;
use super::error::{self, Reason};

/// What the provider keeps per `OSSL_provider_init`, i.e. per library context that loads it:
/// the core's handle and functions, its own library context, the configuration. Every call
/// uses the instance it came through (its provctx, or the key or operation context made
/// through it): two library contexts may load the provider with different settings, and one
/// may tear its instance down while the other is in use.
pub struct Provider {
    pub core: Core,
    pub settings: Settings,
    /// A configuration error: the provider loads (OpenSSL drops errors raised while it reads
    /// openssl.cnf), and every operation that needs the card fails with this message.
    pub config_error: Option<String>,
}

/// A provider instance, as its calls reach it: the provctx OpenSSL passes, kept in the keys
/// and operation contexts made through it (OpenSSL passes no provctx to most key management
/// functions). OpenSSL holds a reference to the provider for as long as any of those objects
/// lives and tears the instance down only after the last one is gone, so an `Instance` found
/// in a live object or passed as provctx is valid for the whole call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Instance(NonNull<Provider>);

// SAFETY: the handle and library context are owned by the core, which allows their use from
// any thread; the struct is not mutated between init and teardown.
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Instance({:p})", self.0)
    }
}

/// Instances made and not yet torn down, in every library context of the process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

impl Instance {
    /// Makes the instance OpenSSL will know as its provctx; freed by [`Instance::tear_down`].
    pub fn create(provider: Provider) -> Instance {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Instance(NonNull::from(Box::leak(Box::new(provider))))
    }

    /// An instance with no core (errors go straight to libcrypto), for unit tests; leaked.
    #[cfg(test)]
    pub fn for_tests() -> Instance {
        Instance::create(Provider {
            core: Core::detached(),
            settings: Settings::default(),
            config_error: None,
        })
    }

    /// The provctx OpenSSL passes back to the instance's calls.
    pub fn as_provctx(self) -> *mut std::ffi::c_void {
        self.0.as_ptr() as *mut std::ffi::c_void
    }

    /// The instance behind a provctx OpenSSL passes to a call.
    ///
    /// # Safety
    /// `provctx` is NULL or what `OSSL_provider_init` returned, not yet torn down.
    pub unsafe fn from_provctx(provctx: *mut std::ffi::c_void) -> Option<Instance> {
        NonNull::new(provctx as *mut Provider).map(Instance)
    }

    /// Frees the instance; true when it was the process's last one (the cards the instances
    /// shared are then no one's).
    ///
    /// # Safety
    /// Called once, by the provider's teardown, after every object made through it is gone.
    pub unsafe fn tear_down(self) -> bool {
        // SAFETY: made by `create`, freed once (the function's contract).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        LIVE.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// An identifier of the instance, for comparing (never turned back into a pointer).
    pub fn id(self) -> usize {
        self.0.as_ptr() as usize
    }

    pub fn provider(&self) -> &Provider {
        // SAFETY: valid from init to teardown, and no call of the instance runs after its
        // teardown (see the type's comment).
        unsafe { self.0.as_ref() }
    }

    /// This instance's library context (for BIOs handed through the core).
    pub fn libctx(&self) -> *mut OSSL_LIB_CTX {
        self.provider().core.libctx()
    }

    /// This instance's settings (openssl.cnf + environment); a configuration error is raised
    /// on OpenSSL's queue.
    pub fn settings(&self) -> Option<Settings> {
        self.checked_settings()
            .map_err(|(reason, message)| error::raise(reason, &message))
            .ok()
    }

    /// This instance's settings, or the configuration error as a reason and message.
    pub fn checked_settings(&self) -> Result<Settings, (Reason, String)> {
        let provider = self.provider();
        match &provider.config_error {
            Some(message) => Err((Reason::BadConfig, message.clone())),
            None => Ok(provider.settings.clone()),
        }
    }
}
