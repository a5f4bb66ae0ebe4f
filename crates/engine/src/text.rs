//! `TokenOutputStream`: incremental detokenization that never splits a UTF-8 character.

use crate::{tokenizer::GgufTokenizer, Result};

/// Turns a stream of token ids into a stream of text pieces.
///
/// Invariant: the concatenation of all pieces returned by `next` and `finish` equals the
/// decoding of all tokens, and no piece ends inside a character. Only the tokens since the
/// last emitted piece are decoded at each step (byte-level decoding is position-free), so a
/// 20,000-token reply costs the same per token as a short one.
#[derive(Debug)]
pub struct TokenOutputStream {
    tokenizer: GgufTokenizer,
    pending: Vec<u32>,
    text: String,
    count: usize,
}

impl TokenOutputStream {
    pub fn new(tokenizer: GgufTokenizer) -> Self {
        Self {
            tokenizer,
            pending: Vec::new(),
            text: String::new(),
            count: 0,
        }
    }

    /// Adds a token; returns the new text it completes, if any.
    pub fn next(&mut self, token: u32) -> Result<Option<String>> {
        self.pending.push(token);
        self.count += 1;
        let mut piece = self.tokenizer.decode_piece(&self.pending)?;
        // A trailing U+FFFD means the last bytes are an incomplete character: wait for more.
        if piece.ends_with('\u{FFFD}') && self.pending.len() < 8 {
            return Ok(None);
        }
        self.pending.clear();
        self.strip_prefix_space(&mut piece);
        if piece.is_empty() {
            return Ok(None);
        }
        self.text.push_str(&piece);
        Ok(Some(piece))
    }

    /// Whatever is left at the end of the stream (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let mut piece = self.tokenizer.decode_piece(&self.pending)?;
        self.pending.clear();
        self.strip_prefix_space(&mut piece);
        self.text.push_str(&piece);
        Ok((!piece.is_empty()).then_some(piece))
    }

    /// SentencePiece replies start with the vocabulary's space prefix (`▁Hello`): the first
    /// piece of text drops it, as llama.cpp's detokenizer does.
    fn strip_prefix_space(&self, piece: &mut String) {
        if self.text.is_empty() && self.tokenizer.strips_leading_space() && piece.starts_with(' ') {
            piece.remove(0);
        }
    }

    /// All text emitted so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Tokens seen so far.
    pub fn count(&self) -> usize {
        self.count
    }
}
