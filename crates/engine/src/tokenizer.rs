//! `GgufTokenizer`: a `tokenizers::Tokenizer` built from the GGUF file's own metadata
//! (`tokenizer.ggml.*`), so a model is one file and needs no `tokenizer.json`.

use std::collections::{HashMap, HashSet};

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::{Error, Result};

/// Llama 3's pre-tokenizer split.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: like Llama 3's, with single digits.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token types of `tokenizer.ggml.token_type` that are special (control, user-defined).
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// A tokenizer plus the ids and template the chat needs.
#[derive(Clone)]
pub struct GgufTokenizer {
    inner: Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Tokens that end an assistant turn (EOS, `<|im_end|>`, `<|eot_id|>`, ...).
    pub end_of_turn: HashSet<u32>,
    /// The Jinja chat template shipped in the file, if any.
    pub chat_template: Option<String>,
    pre: String,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
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

fn id(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF header.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let md = &ct.metadata;
        let model = md
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok().cloned())
            .ok_or_else(|| Error::Tokenizer("the file has no tokenizer.ggml.model".into()))?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer type '{model}' is not supported yet (byte-level BPE, 'gpt2', is)"
            )));
        }
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "default".into());
        let tokens = strings(md, "tokenizer.ggml.tokens")?;
        let merges = strings(md, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(v)) => v.iter().map(|x| x.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
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
        let mut tk = Tokenizer::new(bpe);
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
        let pre_tok: PreTokenizerWrapper = match pre.as_str() {
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
                    "pre-tokenizer '{other}' is not supported yet"
                )))
            }
        };
        tk.with_pre_tokenizer(Some(pre_tok));
        tk.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == CONTROL || t == USER_DEFINED)
            .map(|(s, &t)| AddedToken::from(s.clone(), t == CONTROL))
            .collect();
        tk.add_special_tokens(&specials);

        let bos = id(md, "tokenizer.ggml.bos_token_id");
        let eos = id(md, "tokenizer.ggml.eos_token_id");
        let mut end_of_turn: HashSet<u32> = eos.into_iter().collect();
        if let Some(e) = id(md, "tokenizer.ggml.eot_token_id") {
            end_of_turn.insert(e);
        }
        for t in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|endoftext|>",
            "<|end|>",
            "</s>",
        ] {
            if let Some(i) = tk.token_to_id(t) {
                end_of_turn.insert(i);
            }
        }
        let chat_template = md
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok().cloned());
        Ok(Self {
            inner: tk,
            bos,
            eos,
            end_of_turn,
            chat_template,
            pre,
        })
    }

    /// Token ids of `text`. Special-token strings in `text` become their special tokens only
    /// when `parse_special` is true (the chat template's own markup); user text never does.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        if parse_special {
            let enc = self
                .inner
                .encode(text, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            return Ok(enc.get_ids().to_vec());
        }
        // Plain text: run the pre-tokenizer and the BPE model directly, skipping the added
        // (special) tokens that `Tokenizer::encode` would match inside the text.
        let mut out = Vec::new();
        let pre = self.inner.get_pre_tokenizer();
        let mut pts = tokenizers::PreTokenizedString::from(text);
        if let Some(pre) = pre {
            use tokenizers::PreTokenizer;
            pre.pre_tokenize(&mut pts)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
        }
        use tokenizers::Model as _;
        for (piece, _, _) in pts.get_splits(
            tokenizers::OffsetReferential::Original,
            tokenizers::OffsetType::Byte,
        ) {
            for t in self
                .inner
                .get_model()
                .tokenize(piece)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
            {
                out.push(t.id);
            }
        }
        Ok(out)
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
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

    /// The pre-tokenizer name from the file (`smollm`, `llama-bpe`, ...).
    pub fn pre(&self) -> &str {
        &self.pre
    }
}
