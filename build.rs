//! The core library's SONAME. Programs and plugins that link `-liotsafe_dane` record it, and
//! `make install` puts the library once under it, with the provider module (`iotsafe.so`) a
//! symlink to that one file: glibc then maps it once per process however it is reached, so a
//! broker with the provider, a plugin and the preload shim shares one resolver cache and one
//! card connection (a copy of the file would be a second object with its own state).
fn main() {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libiotsafe_dane.so.{major}");
    // The provider runs threads of its own (the card's releaser ends a kept PC/SC
    // transaction after an idle time): OpenSSL's dlclose of the module at exit must not
    // unmap code such a thread is still parked in.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
