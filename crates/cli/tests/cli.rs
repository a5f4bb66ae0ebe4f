//! The command line: help for every command, and plain errors for what it does not know.

use std::process::Command;

fn sinkchat(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinkchat"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_lists_every_command_and_each_command_has_its_own() {
    let (code, text) = sinkchat(&["--help"]);
    assert_eq!(code, 0, "{text}");
    for c in ["serve", "bench", "eval"] {
        assert!(text.contains(c), "{c} missing from:\n{text}");
    }
    // The fake hub is a test tool of its own crate, not part of the shipped command.
    assert!(!text.contains("fake-hub"), "{text}");
    for (args, flags) in [
        (
            vec!["serve", "--help"],
            vec!["--port", "--data-dir", "--model", "--ui"],
        ),
        (
            vec!["bench", "--help"],
            vec!["decode", "kernels", "flat", "store", "recall"],
        ),
        (
            vec!["bench", "recall", "--help"],
            vec!["--conversations", "--window", "--distances", "--out"],
        ),
        (
            vec!["bench", "store", "--help"],
            vec!["--conversations", "--messages", "--db-dir"],
        ),
        (
            vec!["eval", "--help"],
            vec!["requant", "kernels", "perplexity", "report"],
        ),
        (
            vec!["eval", "perplexity", "--help"],
            vec!["--mode", "--sinks", "--window", "--chunk"],
        ),
    ] {
        let (code, text) = sinkchat(&args);
        assert_eq!(code, 0, "{args:?}: {text}");
        for f in flags {
            assert!(text.contains(f), "{args:?}: {f} missing from:\n{text}");
        }
    }
    let (code, text) = sinkchat(&["--version"]);
    assert_eq!(code, 0);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn unknown_flags_and_commands_and_bad_values_are_errors_in_words() {
    for (args, says) in [
        (vec!["serve", "--prot", "9000"], "--prot"),
        (vec!["bench", "decode", "--gen", "many"], "invalid value"),
        (vec!["fly"], "unrecognized subcommand"),
        (
            vec!["eval", "perplexity", "--book", "emma", "--text", "x.txt"],
            "cannot be used with",
        ),
    ] {
        let (code, text) = sinkchat(&args);
        assert_eq!(code, 2, "{args:?} was accepted: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
    // `--flag=value` works as well as `--flag value` (here it reaches the port check).
    let (code, text) = sinkchat(&["serve", "--data-dir=/nonexistent", "--port=notaport"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--port"), "{text}");
    // No command: the help, not a silent run.
    let (code, text) = sinkchat(&[]);
    assert_ne!(code, 0);
    assert!(text.contains("Usage"), "{text}");
}
