//! `sinkchat-bench`: help for every benchmark and evaluation, plain errors for what it does not
//! know.

use std::process::Command;

fn bench(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinkchat-bench"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_lists_every_command_and_each_command_has_its_own() {
    let (code, text) = bench(&["--help"]);
    assert_eq!(code, 0, "{text}");
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for c in [
        "decode", "kernels", "flat", "store", "recall", "memory", "load", "eval",
    ] {
        assert!(commands.contains(&c), "{c} missing from:\n{text}");
    }
    // The product's command stays in the product: the lab only starts it (`load`).
    assert!(!commands.contains(&"serve"), "{text}");
    for (args, flags) in [
        (
            vec!["decode", "--help"],
            vec!["--model", "--llamacpp", "--kv", "--device", "--out"],
        ),
        (
            vec!["recall", "--help"],
            vec!["--conversations", "--window", "--distances", "--out"],
        ),
        (
            vec!["store", "--help"],
            vec!["--conversations", "--messages", "--db-dir"],
        ),
        (
            vec!["load", "--help"],
            vec!["--model", "--sinkchat", "--clients", "--rounds", "--out"],
        ),
        (
            vec!["memory", "--help"],
            vec!["--model", "--tokens", "--out"],
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
        let (code, text) = bench(&args);
        assert_eq!(code, 0, "{args:?}: {text}");
        for f in flags {
            assert!(text.contains(f), "{args:?}: {f} missing from:\n{text}");
        }
    }
}

#[test]
fn unknown_flags_and_bad_values_are_errors_in_words() {
    for (args, says) in [
        (vec!["decode", "--gen", "many"], "invalid value"),
        (vec!["decode", "--kv", "f8"], "not a cache precision"),
        (vec!["fly"], "unrecognized subcommand"),
        (
            vec!["eval", "perplexity", "--book", "emma", "--text", "x.txt"],
            "cannot be used with",
        ),
    ] {
        let (code, text) = bench(&args);
        assert_eq!(code, 2, "{args:?} was accepted: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
}
