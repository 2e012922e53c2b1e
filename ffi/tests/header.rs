//! `include/arenalm.h` must be what cbindgen generates from the current
//! source. Regenerate with `ALM_BLESS=1 cargo test -p arenalm --test header`.

use std::path::PathBuf;

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    // Version macros come from Cargo metadata, never hand-synced.
    config.after_includes = Some(format!(
        "\n#define ALM_VERSION_MAJOR {}\n#define ALM_VERSION_MINOR {}\n#define ALM_VERSION_PATCH {}\n#define ALM_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn checked_in_header_matches_the_source() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/arenalm.h");
    let fresh = generate();
    if std::env::var_os("ALM_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "include/arenalm.h is stale; regenerate it with:\n    ALM_BLESS=1 cargo test -p arenalm --test header"
    );
}
