//! `make install` puts the provider where OpenSSL looks for modules, under the name openssl.cnf
//! uses, with the tools, the header and a pkg-config file (installed here into a DESTDIR).

mod common;

use std::path::Path;
use std::process::Command;

use common::ok;

fn openssl_modules_dir() -> String {
    let out = ok(Command::new("openssl")
        .args(["version", "-m"])
        .output()
        .unwrap());
    out.split('"')
        .nth(1)
        .expect("MODULESDIR: \"...\"")
        .to_string()
}

#[test]
fn make_install_places_provider_tools_header_and_pkg_config_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dest = tempfile::tempdir().unwrap();
    let destdir = dest.path().to_str().unwrap();
    ok(Command::new("make")
        .current_dir(root)
        .args([
            "--no-print-directory",
            "install",
            "INSTALL_PROFILE=debug",
            "PREFIX=/usr/local",
        ])
        .arg(format!("DESTDIR={destdir}"))
        .output()
        .unwrap());

    let modules = format!("{destdir}{}", openssl_modules_dir());
    for file in [
        format!("{modules}/iotsafe.so"),
        format!("{destdir}/usr/local/lib/libiotsafe_dane.so"),
        format!("{destdir}/usr/local/bin/iotsafe"),
        format!("{destdir}/usr/local/bin/iotsafe-sim"),
        format!("{destdir}/usr/local/include/iotsafe_dane.h"),
        format!("{destdir}/usr/local/share/iotsafe-dane/openssl.cnf"),
    ] {
        assert!(Path::new(&file).exists(), "{file} is not installed");
    }

    // The installed openssl.cnf activates the installed module by its name alone.
    let providers = ok(Command::new("openssl")
        .args(["list", "-providers"])
        .env(
            "OPENSSL_CONF",
            format!("{destdir}/usr/local/share/iotsafe-dane/openssl.cnf"),
        )
        .env("OPENSSL_MODULES", &modules)
        .output()
        .unwrap());
    assert!(providers.contains("iotsafe"), "{providers}");
    assert!(providers.contains("status: active"), "{providers}");

    let flags = ok(Command::new("pkg-config")
        .args(["--cflags", "--libs", "iotsafe-dane"])
        .env(
            "PKG_CONFIG_PATH",
            format!("{destdir}/usr/local/lib/pkgconfig"),
        )
        .output()
        .unwrap());
    assert!(flags.contains("-I/usr/local/include"), "{flags}");
    assert!(flags.contains("-liotsafe_dane"), "{flags}");
}
