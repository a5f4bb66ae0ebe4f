//! `MessageText`: user text parsed and checked once, at the boundary.

use crate::{Error, Result};

/// Longest message accepted, in characters (about 25,000 tokens of English).
pub const MAX_MESSAGE_CHARS: usize = 100_000;

/// A message body that is non-empty, not too long and free of NUL characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(s: &str) -> Result<Self> {
        if s.trim().is_empty() {
            return Err(Error::EmptyMessage);
        }
        let chars = s.chars().count();
        if chars > MAX_MESSAGE_CHARS {
            return Err(Error::MessageTooLong { chars });
        }
        if s.contains('\0') {
            return Err(Error::NulInMessage);
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(MessageText::parse("héllo 👋").unwrap().as_str(), "héllo 👋");
        assert!(matches!(
            MessageText::parse("  \n"),
            Err(Error::EmptyMessage)
        ));
        assert!(matches!(
            MessageText::parse("a\0b"),
            Err(Error::NulInMessage)
        ));
        let big = "x".repeat(1 << 20);
        let e = MessageText::parse(&big).unwrap_err();
        assert!(e.to_string().contains("1048576 characters"), "{e}");
    }
}
