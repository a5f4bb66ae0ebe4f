//! The .deb's pre-install check: a processor the release build cannot run on is refused in
//! words before dpkg unpacks anything; one that can is let through.

use std::process::Command;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs the package's preinst with `arg` against a cpuinfo holding `flags`; (exit code, stderr).
fn preinst(arg: &str, flags: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let cpuinfo = dir.path().join("cpuinfo");
    std::fs::write(
        &cpuinfo,
        format!("processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg(format!("{DIR}/deb/preinst"))
        .arg(arg)
        .env("SINKCHAT_CPUINFO", &cpuinfo)
        .output()
        .expect("sh runs the preinst");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A Haswell's flags (trimmed): everything x86-64-v3 needs.
const HASWELL: &str = "fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm abm bmi1 avx2 bmi2 erms";
/// A Sandy Bridge's: AVX but no AVX2, FMA, F16C, BMI, LZCNT or MOVBE.
const SANDY_BRIDGE: &str = "fpu vme sse sse2 ssse3 cx16 sse4_1 sse4_2 popcnt aes xsave avx lahf_lm";

#[test]
fn the_package_refuses_a_processor_without_avx2_in_words() {
    let (code, err) = preinst("install", SANDY_BRIDGE);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs a processor with AVX2"), "{err}");
    assert!(err.contains("Nothing was installed"), "{err}");
    for f in ["avx2", "fma", "f16c", "bmi1", "bmi2", "abm", "movbe"] {
        assert!(err.contains(&format!(" {f}")), "{f} not named in: {err}");
    }
    assert!(
        !err.contains(" avx "),
        "avx is there, yet named missing: {err}"
    );
    // An upgrade onto such a machine is refused too; dpkg's other calls are not checked.
    assert_eq!(preinst("upgrade", SANDY_BRIDGE).0, 1);
    assert_eq!(preinst("abort-upgrade", SANDY_BRIDGE).0, 0);
}

#[test]
fn the_package_installs_on_a_processor_with_avx2() {
    let (code, err) = preinst("install", HASWELL);
    assert_eq!((code, err.as_str()), (0, ""));
    // One flag short is enough to refuse, and the sentence names it alone.
    let (code, err) = preinst("install", &HASWELL.replace(" movbe", ""));
    assert_eq!(code, 1);
    assert!(err.contains("lacks: movbe."), "{err}");
}

/// The check and the build agree: the bundle runs the script, and the release package is
/// compiled for the level the script checks for.
#[test]
fn the_bundle_runs_the_check_for_the_level_it_is_built_for() {
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DIR}/../tauri.conf.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        conf["bundle"]["linux"]["deb"]["preInstallScript"],
        "deb/preinst"
    );
    let setup = std::fs::read_to_string(format!("{DIR}/../scripts/setup.sh")).unwrap();
    assert!(setup.contains("RUSTFLAGS=\"-C target-cpu=x86-64-v3\""));
    let script = std::fs::read_to_string(format!("{DIR}/deb/preinst")).unwrap();
    assert!(script.contains("x86-64-v3"));
}
