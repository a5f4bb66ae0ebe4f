//! Where the long texts for evaluation live.

use std::path::PathBuf;

const JANEAUSTENR_DATA: &str = "usr/lib/R/site-library/janeaustenr/data/Rdata";

/// Base path (without extension) of janeaustenr's `Rdata.rdb`/`.rdx`: `SINKCHAT_JANEAUSTENR`
/// if set, else the copy `scripts/setup.sh test` unpacks into `.cache/janeaustenr`, else the
/// installed Debian package.
pub fn janeaustenr_base() -> PathBuf {
    if let Some(p) = std::env::var_os("SINKCHAT_JANEAUSTENR") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for base in [
        PathBuf::from(".cache/janeaustenr").join(JANEAUSTENR_DATA),
        root.join(".cache/janeaustenr").join(JANEAUSTENR_DATA),
    ] {
        if base.with_extension("rdb").exists() {
            return base;
        }
    }
    PathBuf::from("/").join(JANEAUSTENR_DATA)
}
