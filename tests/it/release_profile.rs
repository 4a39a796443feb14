//! The shipped binary's size: `cargo install`, the image and the Lambda zip all take the release
//! profile, which once kept line tables for every dependency (176 MiB; 24 MiB without them). A
//! release build takes minutes, so this reads the profile instead of building it; the size
//! itself is measured by `scripts/bench.sh`, which builds release anyway (docs/benchmarks.md).

use std::path::Path;

fn profile(name: &str) -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("Cargo.toml reads");
    let manifest: toml::Table = text.parse().expect("Cargo.toml parses");
    manifest
        .get("profile")
        .and_then(|p| p.get(name))
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_else(|| panic!("Cargo.toml has no [profile.{name}]"))
}

/// Whether a profile's `debug` setting asks for debug info.
fn has_debug_info(debug: Option<&toml::Value>) -> bool {
    match debug {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(toml::Value::Integer(n)) => *n > 0,
        Some(toml::Value::String(s)) => s != "none",
        Some(other) => panic!("unreadable debug setting {other}"),
    }
}

#[test]
fn the_release_binary_ships_without_debug_info() {
    let release = profile("release");
    let strip = release.get("strip");
    assert!(
        matches!(strip, Some(toml::Value::Boolean(true)))
            || matches!(
                strip.and_then(toml::Value::as_str),
                Some("debuginfo" | "symbols")
            ),
        "[profile.release] must strip the debug info (strip = \"debuginfo\"), got strip = {strip:?}"
    );
    assert!(
        !has_debug_info(release.get("debug")),
        "[profile.release] compiles debug info only to strip it: debug = {:?}",
        release.get("debug")
    );
}

#[test]
fn the_profiling_profile_is_release_with_line_tables() {
    let profiling = profile("profiling");
    assert_eq!(
        profiling.get("inherits").and_then(toml::Value::as_str),
        Some("release"),
        "[profile.profiling] profiles the code that ships"
    );
    assert!(
        has_debug_info(profiling.get("debug")),
        "[profile.profiling] keeps line tables: debug = {:?}",
        profiling.get("debug")
    );
    assert!(
        matches!(profiling.get("strip"), Some(toml::Value::Boolean(false)))
            || profiling.get("strip").and_then(toml::Value::as_str) == Some("none"),
        "[profile.profiling] must not inherit the release profile's strip: strip = {:?}",
        profiling.get("strip")
    );
}
