//! `make install` puts the library once, under its SONAME, and the provider where OpenSSL looks
//! for modules (a symlink to that one file, under the name openssl.cnf uses), with the tools, the
//! header and a pkg-config file (installed here into a DESTDIR).

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
        format!("{destdir}/usr/local/lib/mosquitto/iotsafe_mosquitto.so"),
        format!("{destdir}/usr/local/bin/iotsafe-run"),
        format!("{destdir}/usr/local/lib/libiotsafe_preload.so"),
    ] {
        assert!(Path::new(&file).exists(), "{file} is not installed");
    }
    installed_launcher_finds_its_shim_and_configuration(destdir);

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

    one_copy_per_process(destdir, &modules);
    plugin_links_the_shared_library(destdir);
}

/// The broker plugin uses the process's one core library (by its SONAME), not a copy of its
/// own: the resolver cache it fills is the one everything else in the broker uses.
fn plugin_links_the_shared_library(destdir: &str) {
    let plugin = format!("{destdir}/usr/local/lib/mosquitto/iotsafe_mosquitto.so");
    let dynamic = ok(Command::new("readelf")
        .args(["-d", &plugin])
        .output()
        .unwrap());
    let soname = format!("libiotsafe_dane.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    assert!(
        dynamic.contains(&format!("Shared library: [{soname}]")),
        "{dynamic}"
    );
    let symbols = ok(Command::new("nm")
        .args(["-D", "--defined-only", &plugin])
        .output()
        .unwrap());
    assert!(
        !symbols.contains("iotsafe_dane_verify_client"),
        "the plugin embeds the core library:\n{symbols}"
    );
}

/// A program linked with -liotsafe_dane that also loads the provider (as a broker with the
/// provider in openssl.cnf and a plugin on the C API does) maps the library once: one resolver
/// cache, one card connection. A copy of the file under the modules directory would be mapped a
/// second time, with state of its own.
fn one_copy_per_process(destdir: &str, modules: &str) {
    let lib = format!("{destdir}/usr/local/lib");
    let soname = format!("libiotsafe_dane.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    let dynamic = ok(Command::new("readelf")
        .args(["-d", &format!("{lib}/libiotsafe_dane.so")])
        .output()
        .unwrap());
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
    );
    let module = format!("{modules}/iotsafe.so");
    assert!(
        std::fs::symlink_metadata(&module).unwrap().is_symlink(),
        "{module} is not a symlink"
    );
    assert_eq!(
        std::fs::canonicalize(&module).unwrap(),
        std::fs::canonicalize(format!("{lib}/{soname}")).unwrap(),
        "iotsafe.so is the library under its SONAME"
    );

    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("one_copy.c");
    std::fs::write(&source, ONE_COPY_C).unwrap();
    let program = dir.path().join("one_copy");
    ok(Command::new("cc")
        .arg(&source)
        .arg("-o")
        .arg(&program)
        .arg(format!("-I{destdir}/usr/local/include"))
        .arg(format!("-L{lib}"))
        .args(["-liotsafe_dane", "-lssl", "-lcrypto"])
        .output()
        .unwrap());
    let out = ok(Command::new(&program)
        .env("LD_LIBRARY_PATH", &lib)
        .env("OPENSSL_MODULES", modules)
        .env_remove("OPENSSL_CONF")
        .output()
        .unwrap());
    assert!(out.contains("provider loaded"), "{out}");
    assert!(out.contains("copies=1"), "{out}");
}

const ONE_COPY_C: &str = r#"
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <openssl/provider.h>
#include <iotsafe_dane.h>

static int count(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (strstr(info->dlpi_name, "iotsafe")) {
        ++*(int *)data;
        printf("object %s\n", info->dlpi_name);
    }
    return 0;
}

int main(void) {
    iotsafe_dane_last_error(); /* the C API: linked with -liotsafe_dane */
    if (!OSSL_PROVIDER_load(NULL, "iotsafe")) {
        printf("provider not loaded\n");
        return 1;
    }
    printf("provider loaded\n");
    int copies = 0;
    dl_iterate_phdr(count, &copies);
    printf("copies=%d\n", copies);
    return 0;
}
"#;

/// The installed `iotsafe-run` preloads the installed shim (which finds the installed library
/// beside it) and names the installed openssl.cnf, wherever the tree was installed.
fn installed_launcher_finds_its_shim_and_configuration(destdir: &str) {
    let out = Command::new(format!("{destdir}/usr/local/bin/iotsafe-run"))
        .args(["--quiet", "sh", "-c", "echo \"$LD_PRELOAD|$OPENSSL_CONF\""])
        .env_remove("OPENSSL_CONF")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    let bin = format!("{destdir}/usr/local/bin");
    assert_eq!(
        common::stdout(&out).trim(),
        format!("{bin}/../lib/libiotsafe_preload.so|{bin}/../share/iotsafe-dane/openssl.cnf")
    );
    assert!(
        !common::stderr(&out).contains("cannot be preloaded"),
        "{}",
        common::stderr(&out)
    );
}

/// The set-up (`scripts/install-deps.sh`, which `make test` and `make demo` run) leaves the
/// system services of the test daemons disabled: the tests start their own knotd, named, unbound
/// and mosquitto. `systemctl is-enabled` answers even where systemd is not running. A service
/// that runs is the host's own and is left alone, so it is not counted.
#[test]
fn set_up_leaves_the_test_daemons_services_disabled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Each package and its service's unit (BIND's is not named after its package).
    let services = [
        ("knot", "knot.service"),
        ("unbound", "unbound.service"),
        ("mosquitto", "mosquitto.service"),
        ("bind9", "named.service"),
    ];
    ok(Command::new(root.join("scripts/install-deps.sh"))
        .args(services.map(|(package, _)| package))
        .output()
        .unwrap());
    for (package, unit) in services {
        let enabled = Command::new("systemctl")
            .args(["is-enabled", unit])
            .output()
            .unwrap();
        let running = Command::new("systemctl")
            .args(["is-active", "--quiet", unit])
            .status()
            .unwrap()
            .success();
        let state = String::from_utf8_lossy(&enabled.stdout).trim().to_string();
        assert!(
            state != "enabled" || running,
            "{unit} (package {package}) is left {state} (and not running) after the set-up"
        );
    }
}
