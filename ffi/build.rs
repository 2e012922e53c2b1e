//! Gives the shared library its ELF SONAME, `libarenalm.so.<major>`, taken
//! from the package version, so a program linked against `libarenalm.so`
//! records the ABI generation it was built for (`libarenalm.so.0` for every
//! 0.x release) and the loader finds the versioned file that
//! `scripts/install.sh` installs. Only on ELF targets whose linker takes
//! `-soname`; Cargo passes the flag to the cdylib link alone.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    );
    if elf {
        let major = env!("CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libarenalm.so.{major}");
    }
}
