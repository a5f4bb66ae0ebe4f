//! `GgufTokenizer`: a `tokenizers::Tokenizer` built from the GGUF file's own metadata
//! (`tokenizer.ggml.*`), so a model is one file and needs no `tokenizer.json`.
//!
//! Two vocabulary types, as llama.cpp names them:
//! - `gpt2`: byte-level BPE with the file's merges and a pre-tokenizer named by
//!   `tokenizer.ggml.pre` (SmolLM2, Qwen, Llama 3).
//! - `llama`: SentencePiece BPE (Llama 2, Mistral 7B, TinyLlama, Phi-3): pieces merge by the
//!   file's scores, spaces are `▁`, a space is put in front of the text (`add_space_prefix`),
//!   and a character missing from the vocabulary falls back to its `<0xNN>` byte tokens. Built on
//!   the same `tokenizers` BPE model, with merges derived from the scores (what Hugging Face's
//!   converter does for these vocabularies): each piece `ab` in the vocabulary gives the merge
//!   `(a, b)` for every split into two pieces also in it, ranked by the score of `ab`.
//!
//! Special tokens are matched as llama.cpp does: control and unknown tokens only in the chat
//! template's markup (`parse_special`), user-defined tokens in any text; the text between them
//! is tokenized on its own.

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, MatchKind};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use crate::{Error, Result};

/// Llama 3's pre-tokenizer split.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: like Llama 3's, with single digits.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token types of `tokenizer.ggml.token_type`.
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// SentencePiece's visible space.
const SPM_SPACE: char = '\u{2581}';

/// The vocabulary types the engine reads (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VocabType {
    /// `gpt2`: byte-level BPE.
    Bpe,
    /// `llama`: SentencePiece BPE with byte fallback.
    Spm,
}

impl VocabType {
    /// The type named by a file's `tokenizer.ggml.model`, or a plain sentence saying why not.
    pub fn parse(model: &str) -> Result<Self> {
        match model {
            "gpt2" => Ok(Self::Bpe),
            "llama" => Ok(Self::Spm),
            other => Err(Error::Tokenizer(format!(
                "its vocabulary is of type '{other}', which SinkChat cannot read yet \
                 (it reads byte-level BPE, 'gpt2', and SentencePiece, 'llama')"
            ))),
        }
    }

    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Bpe => "gpt2",
            Self::Spm => "llama",
        }
    }
}

/// Finds special tokens in text, leftmost-longest as llama.cpp does.
#[derive(Clone)]
struct Specials {
    /// Control, unknown and user-defined tokens (markup).
    all: Option<AhoCorasick>,
    all_ids: Vec<u32>,
    /// User-defined tokens only (any text).
    user: Option<AhoCorasick>,
    user_ids: Vec<u32>,
}

impl Specials {
    fn new(tokens: &[String], types: &[i32]) -> Result<Self> {
        let pick = |keep: &dyn Fn(i32) -> bool| -> Result<(Option<AhoCorasick>, Vec<u32>)> {
            let (pats, ids): (Vec<&str>, Vec<u32>) = tokens
                .iter()
                .zip(types)
                .enumerate()
                .filter(|(_, (t, &ty))| !t.is_empty() && keep(ty))
                .map(|(i, (t, _))| (t.as_str(), i as u32))
                .unzip();
            if pats.is_empty() {
                return Ok((None, ids));
            }
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&pats)
                .map_err(|e| Error::Tokenizer(format!("special tokens: {e}")))?;
            Ok((Some(ac), ids))
        };
        let (all, all_ids) = pick(&|t| matches!(t, UNKNOWN | CONTROL | USER_DEFINED))?;
        let (user, user_ids) = pick(&|t| t == USER_DEFINED)?;
        Ok(Self {
            all,
            all_ids,
            user,
            user_ids,
        })
    }

    /// `(start, end, id)` of each special token in `text`.
    fn find(&self, text: &str, parse_special: bool) -> Vec<(usize, usize, u32)> {
        let (ac, ids) = if parse_special {
            (&self.all, &self.all_ids)
        } else {
            (&self.user, &self.user_ids)
        };
        match ac {
            None => Vec::new(),
            Some(ac) => ac
                .find_iter(text)
                .map(|m| (m.start(), m.end(), ids[m.pattern().as_usize()]))
                .collect(),
        }
    }
}

/// A tokenizer plus the ids and template the chat needs.
#[derive(Clone)]
pub struct GgufTokenizer {
    inner: Tokenizer,
    vocab_type: VocabType,
    specials: Specials,
    /// Control tokens: never produced from user text, left out when decoding.
    control: HashSet<u32>,
    /// SentencePiece: a space goes in front of text that starts a sequence or follows a
    /// special token (`tokenizer.ggml.add_space_prefix`, on unless the file says otherwise).
    add_space_prefix: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Whether a sequence starts with BOS (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// Tokens that end an assistant turn: the file's EOS, EOT and EOM tokens, and the token the
    /// chat template closes an assistant turn with (added by [`crate::ChatTemplate`]).
    pub end_of_turn: HashSet<u32>,
    /// The Jinja chat template shipped in the file, if any.
    pub chat_template: Option<String>,
    /// The template of the file's family where the file carries none (Gemma's), else ChatML.
    pub default_template: Option<&'static str>,
    pre: String,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("type", &self.vocab_type)
            .field("pre", &self.pre)
            .field("vocab", &self.vocab_size())
            .finish()
    }
}

fn strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>> {
    match md.get(key) {
        Some(Value::Array(v)) => v
            .iter()
            .map(|x| x.to_string().cloned())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::Tokenizer(format!("{key} holds non-strings"))),
        _ => Err(Error::Tokenizer(format!("the file has no {key}"))),
    }
}

fn id(md: &HashMap<String, Value>, key: &str, n_vocab: usize) -> Option<u32> {
    md.get(key)
        .and_then(|v| v.to_u32().ok())
        .filter(|&i| (i as usize) < n_vocab)
}

fn flag(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    md.get(key).and_then(|v| v.to_bool().ok())
}

/// The byte-level BPE model and pre-tokenizer of a `gpt2` vocabulary.
fn bpe_parts(
    md: &HashMap<String, Value>,
    tokens: &[String],
    pre: &str,
) -> Result<(BPE, PreTokenizerWrapper)> {
    let merges = strings(md, "tokenizer.ggml.merges")?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::Tokenizer(format!("malformed merge '{m}'")))
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre == "llama-bpe")
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let byte_level = ByteLevel::new(false, true, true);
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Ok(Split::new(
            SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .into())
    };
    let pre_tok: PreTokenizerWrapper = match pre {
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        "default" | "gpt-2" | "gpt2" => byte_level.into(),
        "llama-bpe" | "llama3" => Sequence::new(vec![
            split(LLAMA3_SPLIT)?,
            byte_level.use_regex(false).into(),
        ])
        .into(),
        "qwen2" => Sequence::new(vec![
            split(QWEN2_SPLIT)?,
            byte_level.use_regex(false).into(),
        ])
        .into(),
        other => {
            return Err(Error::Tokenizer(format!(
                "its pre-tokenizer '{other}' is not supported yet"
            )))
        }
    };
    Ok((bpe, pre_tok))
}

/// The SentencePiece BPE of a `llama` vocabulary: merges derived from the scores.
fn spm_model(md: &HashMap<String, Value>, tokens: &[String], types: &[i32]) -> Result<BPE> {
    let scores: Vec<f32> = match md.get("tokenizer.ggml.scores") {
        Some(Value::Array(v)) if v.len() == tokens.len() => v
            .iter()
            .map(|x| x.to_f32().map_err(|_| ()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::Tokenizer("tokenizer.ggml.scores holds non-numbers".into()))?,
        Some(_) => {
            return Err(Error::Tokenizer(
                "tokenizer.ggml.scores does not have one score per token".into(),
            ))
        }
        None => {
            return Err(Error::Tokenizer(
                "the file has no tokenizer.ggml.scores".into(),
            ))
        }
    };
    let index: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    // Every split of a piece into two pieces of the vocabulary is a merge, ranked by the
    // merged piece's score (higher first), then by the ids of the halves.
    let mut ranked: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types.get(i).copied().unwrap_or(1) != 1 {
            continue; // only normal pieces are reached by merging
        }
        for (at, _) in t.char_indices().skip(1) {
            let (a, b) = t.split_at(at);
            if let (Some(&ia), Some(&ib)) = (index.get(a), index.get(b)) {
                ranked.push((scores[i], ia, ib, i as u32));
            }
        }
    }
    ranked.sort_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(x.3.cmp(&y.3))
            .then(x.1.cmp(&y.1))
            .then(x.2.cmp(&y.2))
    });
    let merges: Vec<(String, String)> = ranked
        .iter()
        .map(|&(_, a, b, _)| (tokens[a as usize].clone(), tokens[b as usize].clone()))
        .collect();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    if !index.contains_key("<0x0A>") {
        return Err(Error::Tokenizer(
            "its SentencePiece vocabulary has no byte tokens (<0x00> to <0xFF>)".into(),
        ));
    }
    let mut b = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Some(unk) = id(md, "tokenizer.ggml.unknown_token_id", tokens.len()) {
        b = b.unk_token(tokens[unk as usize].clone());
    }
    b.build().map_err(|e| Error::Tokenizer(e.to_string()))
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF header.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let md = &ct.metadata;
        let model = md
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok().cloned())
            .ok_or_else(|| Error::Tokenizer("the file has no tokenizer.ggml.model".into()))?;
        let vocab_type = VocabType::parse(&model)?;
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "default".into());
        let tokens = strings(md, "tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(Error::Tokenizer("its vocabulary is empty".into()));
        }
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(v)) => v.iter().map(|x| x.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::Tokenizer(
                "tokenizer.ggml.token_type does not have one type per token".into(),
            ));
        }
        let mut tk = match vocab_type {
            VocabType::Bpe => {
                let (bpe, pre_tok) = bpe_parts(md, &tokens, &pre)?;
                let mut tk = Tokenizer::new(bpe);
                tk.with_pre_tokenizer(Some(pre_tok));
                tk.with_decoder(Some(ByteLevelDecoder::default()));
                tk
            }
            VocabType::Spm => {
                let mut tk = Tokenizer::new(spm_model(md, &tokens, &types)?);
                let space = Replace::new(SPM_SPACE.to_string(), " ")
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                tk.with_decoder(Some(DecoderSequence::new(vec![
                    DecoderWrapper::Replace(space),
                    DecoderWrapper::ByteFallback(ByteFallback::new()),
                    DecoderWrapper::Fuse(Fuse::new()),
                ])));
                tk
            }
        };
        // Special tokens: control ones are left out when decoding; user-defined ones are text.
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(s, &t)| !s.is_empty() && (t == CONTROL || t == USER_DEFINED))
            .map(|(s, &t)| AddedToken::from(s.clone(), t == CONTROL))
            .collect();
        tk.add_special_tokens(&specials);
        let control: HashSet<u32> = types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == CONTROL || t == UNKNOWN)
            .map(|(i, _)| i as u32)
            .collect();

        let n = tokens.len();
        let bos = id(md, "tokenizer.ggml.bos_token_id", n);
        let eos = id(md, "tokenizer.ggml.eos_token_id", n);
        let mut end_of_turn: HashSet<u32> = eos.into_iter().collect();
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let Some(e) = id(md, key, n) {
                end_of_turn.insert(e);
            }
        }
        let chat_template = md
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok().cloned());
        // Gemma files converted without their template still speak Gemma's turns.
        let default_template = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .filter(|a| a.starts_with("gemma"))
            .map(|_| crate::chat::GEMMA);
        Ok(Self {
            specials: Specials::new(&tokens, &types)?,
            inner: tk,
            vocab_type,
            control,
            add_space_prefix: vocab_type == VocabType::Spm
                && flag(md, "tokenizer.ggml.add_space_prefix").unwrap_or(true),
            bos,
            eos,
            add_bos: flag(md, "tokenizer.ggml.add_bos_token")
                .unwrap_or(vocab_type == VocabType::Spm),
            end_of_turn,
            chat_template,
            default_template,
            pre,
        })
    }

    /// Token ids of `text` at the start of a sequence (or right after a special token).
    /// Special-token strings in `text` become their special tokens only when `parse_special`
    /// is true (the chat template's own markup); user text never becomes a control token.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.encode_after(text, parse_special, None)
    }

    /// Token ids of `text` following the token `prev` (`None`: the start of a sequence).
    /// Matters for SentencePiece, which puts a space in front of text that starts a sequence or
    /// follows a special token, as llama.cpp does.
    pub fn encode_after(
        &self,
        text: &str,
        parse_special: bool,
        prev: Option<u32>,
    ) -> Result<Vec<u32>> {
        self.encode_parts(&[(text, parse_special)], prev)
    }

    /// Token ids of consecutive pieces of text, each with its own `parse_special`, tokenized as
    /// one text: special tokens split it (found only where allowed), and the text between them
    /// is tokenized whole, across pieces, as llama.cpp tokenizes a rendered prompt.
    pub fn encode_parts(&self, parts: &[(&str, bool)], prev: Option<u32>) -> Result<Vec<u32>> {
        let mut text = String::new();
        let mut specials = Vec::new();
        for (s, parse_special) in parts {
            let base = text.len();
            specials.extend(
                self.specials
                    .find(s, *parse_special)
                    .into_iter()
                    .map(|(a, b, id)| (a + base, b + base, id)),
            );
            text.push_str(s);
        }
        let mut out = Vec::new();
        let mut after_special = prev.is_none_or(|p| self.is_special(p));
        let mut at = 0;
        for (start, end, id) in specials {
            if start > at {
                self.raw(&text[at..start], after_special, &mut out)?;
            }
            out.push(id);
            after_special = true;
            at = end;
        }
        if at < text.len() {
            self.raw(&text[at..], after_special, &mut out)?;
        }
        Ok(out)
    }

    /// Tokenizes text that holds no special tokens.
    fn raw(&self, text: &str, after_special: bool, out: &mut Vec<u32>) -> Result<()> {
        use tokenizers::Model as _;
        let model = self.inner.get_model();
        let err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
        match self.vocab_type {
            VocabType::Spm => {
                let mut s = String::with_capacity(text.len() + 3);
                if self.add_space_prefix && after_special {
                    s.push(SPM_SPACE);
                }
                s.extend(text.chars().map(|c| if c == ' ' { SPM_SPACE } else { c }));
                out.extend(model.tokenize(&s).map_err(err)?.iter().map(|t| t.id));
            }
            VocabType::Bpe => {
                let mut pts = tokenizers::PreTokenizedString::from(text);
                if let Some(pre) = self.inner.get_pre_tokenizer() {
                    use tokenizers::PreTokenizer;
                    pre.pre_tokenize(&mut pts).map_err(err)?;
                }
                for (piece, _, _) in pts.get_splits(
                    tokenizers::OffsetReferential::Original,
                    tokenizers::OffsetType::Byte,
                ) {
                    out.extend(model.tokenize(piece).map_err(err)?.iter().map(|t| t.id));
                }
            }
        }
        Ok(())
    }

    /// Text of `ids` as a whole sequence: control tokens left out, and (SentencePiece) the
    /// space put in front of the text removed.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let s = self.decode_piece(ids)?;
        Ok(match s.strip_prefix(' ') {
            Some(rest) if self.add_space_prefix => rest.to_string(),
            _ => s,
        })
    }

    /// Text of `ids` inside a sequence (nothing stripped): what streaming concatenates.
    pub fn decode_piece(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Whether decoding a reply should drop one leading space (SentencePiece's prefix).
    pub fn strips_leading_space(&self) -> bool {
        self.add_space_prefix
    }

    /// A control or unknown token (not text).
    pub fn is_special(&self, id: u32) -> bool {
        self.control.contains(&id)
    }

    pub fn token_to_id(&self, t: &str) -> Option<u32> {
        self.inner.token_to_id(t)
    }

    /// The vocabulary entry of `id` (a special token's own text, unlike `decode`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn vocab_type(&self) -> VocabType {
        self.vocab_type
    }

    /// The pre-tokenizer name from the file (`smollm`, `llama-bpe`, ...).
    pub fn pre(&self) -> &str {
        &self.pre
    }
}
