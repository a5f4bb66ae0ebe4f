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

/// The shipped command is what a user runs: `serve`. The lab (benchmarks, evaluations, the R
/// reader of the novels) is `sinkchat-bench`, never installed; the fake hub a test tool.
#[test]
fn help_lists_serve_and_nothing_of_the_lab() {
    let (code, text) = sinkchat(&["--help"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("serve"), "serve missing from:\n{text}");
    for lab in ["bench", "eval", "fake-hub", "perplexity"] {
        assert!(!text.contains(lab), "{lab} in the shipped command:\n{text}");
    }
    let (code, text) = sinkchat(&["serve", "--help"]);
    assert_eq!(code, 0, "{text}");
    for f in ["--port", "--data-dir", "--model", "--ui"] {
        assert!(text.contains(f), "{f} missing from:\n{text}");
    }
    for gone in [vec!["bench", "decode"], vec!["eval", "perplexity"]] {
        let (code, text) = sinkchat(&gone);
        assert_eq!(code, 2, "{gone:?} was accepted: {text}");
        assert!(text.contains("unrecognized subcommand"), "{gone:?}: {text}");
    }
    let (code, text) = sinkchat(&["--version"]);
    assert_eq!(code, 0);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn unknown_flags_and_commands_and_bad_values_are_errors_in_words() {
    for (args, says) in [
        (vec!["serve", "--prot", "9000"], "--prot"),
        (vec!["serve", "--port", "many"], "invalid value"),
        (vec!["fly"], "unrecognized subcommand"),
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
