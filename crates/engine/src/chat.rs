//! `ChatTemplate`: the markup around system, user and assistant turns, recognised from the
//! GGUF's Jinja template (ChatML, Llama 3, Mistral) and produced turn by turn, so a
//! conversation's cache only ever receives the new turn's tokens.

use crate::{tokenizer::GgufTokenizer, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a transcript, as the engine needs it to rebuild a cache.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
    /// The store's id of the message, carried so evictions can name it.
    pub message_id: i64,
}

/// Template families we render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen2).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` (Llama 3).
    Llama3,
    /// `[INST] ... [/INST]` (Mistral, Llama 2).
    Inst,
}

/// A piece of templated text: markup (special tokens parsed) or content (never parsed, so a
/// user who types `<|im_end|>` cannot end their own turn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Markup(String),
    Content(String),
}

impl ChatTemplate {
    pub fn detect(template: Option<&str>) -> Self {
        match template {
            Some(t) if t.contains("<|start_header_id|>") => Self::Llama3,
            Some(t) if t.contains("[INST]") && !t.contains("<|im_start|>") => Self::Inst,
            _ => Self::ChatMl,
        }
    }

    /// The conversation's opening and system prompt: the part pinned with the sinks.
    pub fn opening(self, bos: Option<&str>, system: &str) -> Vec<Piece> {
        let bos = bos.unwrap_or("").to_string();
        match self {
            Self::ChatMl => vec![
                Piece::Markup("<|im_start|>system\n".into()),
                Piece::Content(system.into()),
                Piece::Markup("<|im_end|>\n".into()),
            ],
            Self::Llama3 => vec![
                Piece::Markup(format!(
                    "{bos}<|start_header_id|>system<|end_header_id|>\n\n"
                )),
                Piece::Content(system.into()),
                Piece::Markup("<|eot_id|>".into()),
            ],
            Self::Inst => {
                let mut v = vec![Piece::Markup(bos)];
                if !system.is_empty() {
                    v.push(Piece::Markup("[INST] ".into()));
                    v.push(Piece::Content(system.into()));
                    v.push(Piece::Markup(" [/INST]Understood.</s>".into()));
                }
                v
            }
        }
    }

    /// A user turn followed by the assistant's header (the generation prompt).
    pub fn user_turn(self, text: &str) -> Vec<Piece> {
        match self {
            Self::ChatMl => vec![
                Piece::Markup("<|im_start|>user\n".into()),
                Piece::Content(text.into()),
                Piece::Markup("<|im_end|>\n<|im_start|>assistant\n".into()),
            ],
            Self::Llama3 => vec![
                Piece::Markup("<|start_header_id|>user<|end_header_id|>\n\n".into()),
                Piece::Content(text.into()),
                Piece::Markup("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n".into()),
            ],
            Self::Inst => vec![
                Piece::Markup("[INST] ".into()),
                Piece::Content(text.into()),
                Piece::Markup(" [/INST]".into()),
            ],
        }
    }

    /// What closes an assistant turn, fed before the next user turn.
    pub fn assistant_close(self) -> Vec<Piece> {
        match self {
            Self::ChatMl => vec![Piece::Markup("<|im_end|>\n".into())],
            Self::Llama3 => vec![Piece::Markup("<|eot_id|>".into())],
            Self::Inst => vec![Piece::Markup("</s>".into())],
        }
    }

    /// An assistant reply already in the transcript, for rebuilding a cache.
    pub fn assistant_text(self, text: &str) -> Vec<Piece> {
        vec![Piece::Content(text.into())]
    }
}

/// Token ids of a list of pieces.
pub fn encode_pieces(tk: &GgufTokenizer, pieces: &[Piece]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Markup(s) if !s.is_empty() => out.extend(tk.encode(s, true)?),
            Piece::Content(s) if !s.is_empty() => out.extend(tk.encode(s, false)?),
            _ => {}
        }
    }
    Ok(out)
}
