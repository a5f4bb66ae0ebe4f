//! `ChatTemplate`: the markup around system, user and assistant turns, rendered from the GGUF's
//! own Jinja template (`tokenizer.chat_template`) with minijinja, as Hugging Face and llama.cpp
//! render it, and cut into turns so that a conversation's cache only ever receives the new
//! turn's tokens.
//!
//! A turn's markup is the difference between two renders of a stand-in conversation, with and
//! without the turn; its text is a sentinel character in the render, replaced by the real text
//! when the turn is tokenized. So whatever the template does, the user's words (and the system
//! prompt, and the history) are tokenized as text and never become control tokens, and the
//! template runs once per model, not once per message over a transcript that never ends.
//! A file without a template gets ChatML.

use std::sync::Arc;

use minijinja::{Environment, ErrorKind};

use crate::{tokenizer::GgufTokenizer, Error, Result};

mod clock;
pub use clock::civil_from_days;
use clock::strftime_now;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a transcript, as the engine needs it to rebuild a cache.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
    /// The store's id of the message, carried so evictions can name it.
    pub message_id: i64,
}

/// A piece of templated text: markup (special tokens parsed) or content (never parsed, so a
/// user who types `<|im_end|>` cannot end their own turn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Markup(String),
    Content(String),
}

/// ChatML, for files that carry no template (what llama.cpp falls back to as well).
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Gemma 3's turns (Google's template, without the image parts): the system prompt opens the
/// first user turn; the assistant is the `model`. For Gemma files that carry no template.
pub const GEMMA: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// Stands for a message's text in a render: a private-use character no template produces.
const SENTINEL: &str = "\u{F0001}";
/// Instructions one render may run.
const TEMPLATE_FUEL: u64 = 2_000_000;
/// What an unsupported system prompt is answered with when it becomes the first exchange.
const SYSTEM_ACK: &str = "Understood.";

/// The markup before and after a message's text, and whether the template trims the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Around {
    before: String,
    after: String,
    /// The template strips the text's leading and trailing whitespace.
    trims: (bool, bool),
}

impl Around {
    fn pieces(&self, text: &str) -> Vec<Piece> {
        let text = match self.trims {
            (true, true) => text.trim(),
            (true, false) => text.trim_start(),
            (false, true) => text.trim_end(),
            (false, false) => text,
        };
        vec![
            Piece::Markup(self.before.clone()),
            Piece::Content(text.to_string()),
            Piece::Markup(self.after.clone()),
        ]
    }
}

/// A message of a render.
#[derive(serde::Serialize)]
struct Msg<'a> {
    role: &'a str,
    content: &'a str,
}

/// A chat template, compiled and cut into turns.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    bos: String,
    eos: String,
    /// The file carried this template (false: its family's or ChatML stands in).
    from_file: bool,
    /// The template renders a system message (else the system prompt becomes a first
    /// exchange, and [`ChatTemplate::render`] merges it into the first user message as
    /// llama.cpp does).
    system_supported: bool,
    /// The opening of a conversation without a system prompt.
    opening_plain: String,
    /// The opening with a system prompt: a system message, or the first exchange.
    system: Around,
    /// A user turn followed by the assistant's header (the generation prompt).
    user: Around,
    /// An assistant reply: `after` is what closes it.
    assistant: Around,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("from_file", &self.from_file)
            .field("system_supported", &self.system_supported)
            .field("user", &self.user)
            .field("assistant", &self.assistant)
            .finish()
    }
}

fn template_error(e: minijinja::Error) -> Error {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::Template(msg)
}

/// Hugging Face's `{% generation %}...{% endgeneration %}` marks the assistant's text for
/// training masks and renders as its body; minijinja does not know the tag.
fn strip_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("{%") {
        let Some(j) = rest[i..].find("%}") else { break };
        let tag = &rest[i + 2..i + j];
        let word = tag.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..i]);
        if word != "generation" && word != "endgeneration" {
            out.push_str(&rest[i..i + j + 2]);
        }
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

/// Markup before and after the sentinel in `delta` (padded with a space each side unless the
/// template trimmed it).
fn split_at_sentinel(delta: &str) -> Result<Around> {
    let Some(at) = delta.find(SENTINEL) else {
        return Err(Error::Template(
            "the template leaves out the text of a message".into(),
        ));
    };
    // The sentinel went in with a space each side: a side without it was stripped.
    let keeps_left = delta[..at].ends_with(' ');
    let keeps_right = delta[at + SENTINEL.len()..].starts_with(' ');
    let start = at - usize::from(keeps_left);
    let end = at + SENTINEL.len() + usize::from(keeps_right);
    Ok(Around {
        before: delta[..start].to_string(),
        after: delta[end..].to_string(),
        trims: (!keeps_left, !keeps_right),
    })
}

/// The part of `full` after the longest prefix it shares with `base`, cut back to a character
/// boundary.
fn after_common_prefix<'a>(base: &str, full: &'a str) -> &'a str {
    if let Some(rest) = full.strip_prefix(base) {
        return rest;
    }
    let mut n = base
        .bytes()
        .zip(full.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    while !full.is_char_boundary(n) {
        n -= 1;
    }
    &full[n..]
}

impl ChatTemplate {
    /// The template of a model: the file's own, else its family's (Gemma's), else ChatML.
    pub fn for_tokenizer(tk: &GgufTokenizer) -> Result<Self> {
        let token = |id: Option<u32>| id.and_then(|i| tk.id_to_token(i)).unwrap_or_default();
        let (bos, eos) = (token(tk.bos), token(tk.eos));
        match (&tk.chat_template, tk.default_template) {
            (None, Some(family)) => {
                let mut t = Self::build(Some(family), &bos, &eos)?;
                t.from_file = false;
                t.cut()?;
                Ok(t)
            }
            (file, _) => Self::new(file.as_deref(), &bos, &eos),
        }
    }

    /// Compiles `source` (None: ChatML) and cuts it into turns. A template that does not
    /// compile, or cannot render a plain conversation, is an error in plain words.
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<Self> {
        let mut t = Self::build(source, bos, eos)?;
        t.cut()?;
        Ok(t)
    }

    fn build(source: Option<&str>, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A template is code from a file the user picked: each render may run this many
        // instructions (real templates take a few thousand for a whole conversation), so a
        // loop over a huge range is an error in a millisecond, not a frozen import.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", strftime_now);
        let from_file = source.is_some_and(|s| !s.trim().is_empty());
        let src = if from_file {
            source.unwrap_or(CHATML)
        } else {
            CHATML
        };
        env.add_template_owned("chat", strip_generation_tags(src))
            .map_err(template_error)?;
        let mut t = Self {
            env: Arc::new(env),
            bos: bos.to_string(),
            eos: eos.to_string(),
            from_file,
            system_supported: false,
            opening_plain: String::new(),
            system: Around::default(),
            user: Around::default(),
            assistant: Around::default(),
        };
        // The same check llama.cpp makes: does a system message's text reach the output?
        let padded = format!(" {SENTINEL} ");
        t.system_supported = t
            .raw_render(
                &[
                    Msg {
                        role: "system",
                        content: &padded,
                    },
                    Msg {
                        role: "user",
                        content: "Hi",
                    },
                ],
                true,
            )
            .is_ok_and(|s| s.contains(SENTINEL));
        Ok(t)
    }

    /// Compiles `source` for rendering whole conversations only ([`ChatTemplate::render`]),
    /// without cutting it into turns.
    pub fn compile(source: Option<&str>, bos: &str, eos: &str) -> Result<Self> {
        Self::build(source, bos, eos)
    }

    /// Whether a user turn's render starts with the render of the conversation before it.
    fn prefix_holds(&self, hi: &str, hello: &str) -> Result<bool> {
        let m = |role, content| Msg { role, content };
        let a = self.raw_render(&[m("user", hi), m("assistant", hello)], false)?;
        let b = self.raw_render(
            &[m("user", hi), m("assistant", hello), m("user", "Bye")],
            true,
        )?;
        Ok(b.starts_with(&a))
    }

    fn raw_render(&self, msgs: &[Msg<'_>], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(template_error)?;
        let ctx = minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos,
            eos_token => &self.eos,
        };
        // The template comes from a file the user picked: a template that trips a panic in
        // the renderer (minijinja 2.24 indexes out of bounds on some) is an error, not a
        // crash.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tmpl.render(ctx)))
            .map_err(|_| Error::Template("rendering it failed inside the template engine".into()))?
            .map_err(template_error)
    }

    /// The markup around the last message of `with`, which `base` lacks.
    fn around(
        &self,
        base: &[Msg<'_>],
        base_gen: bool,
        with: &[Msg<'_>],
        with_gen: bool,
    ) -> Result<Around> {
        let a = self.raw_render(base, base_gen)?;
        let b = self.raw_render(with, with_gen)?;
        split_at_sentinel(after_common_prefix(&a, &b))
    }

    /// Finds each turn's markup by rendering stand-in conversations.
    fn cut(&mut self) -> Result<()> {
        let padded = format!(" {SENTINEL} ");
        let (hi, hello) = ("Hi", "Hello");
        let m = |role, content| Msg { role, content };
        // An assistant reply that ends the conversation: what closes it. A render without the
        // generation prompt may end with something of its own (Phi-3.5 adds EOS), which is no
        // part of the close.
        // (Some templates render a reply only when a question follows it: YandexGPT.)
        let mut last = self
            .around(
                &[m("user", hi)],
                true,
                &[m("user", hi), m("assistant", &padded)],
                false,
            )
            .ok();
        let open_end = self.raw_render(&[m("user", hi)], false)?;
        let gen_end = self.raw_render(&[m("user", hi)], true)?;
        let ending = after_common_prefix(&gen_end, &open_end);
        if let Some(l) = last
            .as_mut()
            .filter(|l| !ending.is_empty() && l.after.ends_with(ending))
        {
            l.after.truncate(l.after.len() - ending.len());
        }
        // A user turn after a reply: the difference between the renders without and with it,
        // where the first is a prefix of the second. Templates that render the last reply
        // differently (Qwen3 keeps an empty thinking block only after the last question) break
        // that; then the turn's markup is what follows the reply's close.
        self.user = match self.around(
            &[m("user", hi), m("assistant", hello)],
            false,
            &[m("user", hi), m("assistant", hello), m("user", &padded)],
            true,
        ) {
            Ok(u) if self.prefix_holds(hi, hello)? => u,
            _ => {
                let full = self.raw_render(
                    &[m("user", hi), m("assistant", hello), m("user", &padded)],
                    true,
                )?;
                split_at_sentinel(&full)?; // a template that drops the text says so
                let close = last.as_ref().map(|l| l.after.as_str()).unwrap_or_default();
                let anchor = format!("{hello}{close}");
                let from = full
                    .find(&anchor)
                    .map(|i| i + anchor.len())
                    .ok_or_else(|| {
                        Error::Template("the template's user turns could not be found".into())
                    })?;
                split_at_sentinel(&full[from..])?
            }
        };
        // A reply as the history holds it (a user turn follows): what a rebuilt cache reads.
        let with_next = self.around(
            &[m("user", hi)],
            true,
            &[m("user", hi), m("assistant", &padded), m("user", "Bye")],
            true,
        );
        let next = format!("{}Bye{}", self.user.before, self.user.after);
        self.assistant = match with_next {
            Ok(mut a) if a.after.ends_with(&next) => {
                a.after.truncate(a.after.len() - next.len());
                a
            }
            _ => last.ok_or_else(|| {
                Error::Template("the template's assistant turns could not be found".into())
            })?,
        };
        // The opening without a system prompt: what a first user turn's render holds before
        // the turn's own markup (BOS, a default system prompt such as SmolLM2's or Qwen2.5's,
        // Llama 3's date header), else what an empty conversation renders to.
        let first = self.raw_render(&[m("user", &padded)], true)?;
        let head = &first[..first.find(SENTINEL).unwrap_or(0)];
        let head = match self.user.trims.0 {
            false => head.strip_suffix(' ').unwrap_or(head),
            true => head,
        };
        self.opening_plain = match head.strip_suffix(self.user.before.as_str()) {
            Some(open) => open.to_string(),
            None => self.raw_render(&[], false).unwrap_or_default(),
        };
        // Last resort: the difference between an empty conversation and a system message.
        let alone = || self.around(&[], false, &[m("system", &padded)], false);
        self.system = match self.system_supported {
            true => self
                .before_next_user(&[m("system", &padded), m("user", "Bye")])
                .or_else(|_| self.first_exchange())
                .or_else(|_| alone())?,
            false => self.first_exchange().or_else(|_| alone())?,
        };
        Ok(())
    }

    /// A system prompt the template cannot place, as the conversation's first exchange.
    fn first_exchange(&self) -> Result<Around> {
        let padded = format!(" {SENTINEL} ");
        self.before_next_user(&[
            Msg {
                role: "user",
                content: &padded,
            },
            Msg {
                role: "assistant",
                content: SYSTEM_ACK,
            },
            Msg {
                role: "user",
                content: "Bye",
            },
        ])
    }

    /// The markup around the sentinel message of `msgs`, whose last message is a user turn
    /// saying "Bye": everything before the sentinel, and what lies between it and that turn.
    fn before_next_user(&self, msgs: &[Msg<'_>]) -> Result<Around> {
        let mut a = split_at_sentinel(&self.raw_render(msgs, true)?)?;
        let next = format!("{}Bye{}", self.user.before, self.user.after);
        if !a.after.ends_with(&next) {
            return Err(Error::Template(
                "the template's turns could not be found".into(),
            ));
        }
        a.after.truncate(a.after.len() - next.len());
        Ok(a)
    }

    /// Renders a whole conversation as llama.cpp's chat code does (a system message the
    /// template cannot place is merged into the first user message).
    pub fn render(&self, messages: &[(&str, &str)], add_generation_prompt: bool) -> Result<String> {
        let mut merged: Vec<(String, String)> = messages
            .iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect();
        if !self.system_supported && merged.first().is_some_and(|(r, _)| r == "system") {
            let (_, sys) = merged.remove(0);
            if let Some((_, c)) = merged.first_mut() {
                *c = format!("{sys}\n{c}");
            }
        }
        let msgs: Vec<Msg<'_>> = merged
            .iter()
            .map(|(role, content)| Msg { role, content })
            .collect();
        self.raw_render(&msgs, add_generation_prompt)
    }

    /// Whether the template renders a system message.
    pub fn system_supported(&self) -> bool {
        self.system_supported
    }

    /// Whether the file carried this template (false: its family's or ChatML stands in).
    pub fn from_file(&self) -> bool {
        self.from_file
    }

    /// A short name of the template's family, for the Models screen.
    pub fn family(&self) -> &'static str {
        describe(&self.user.before, self.from_file)
    }

    /// The conversation's opening and system prompt: the part pinned with the sinks.
    pub fn opening(&self, system: &str) -> Vec<Piece> {
        if system.is_empty() {
            return vec![Piece::Markup(self.opening_plain.clone())];
        }
        self.system.pieces(system)
    }

    /// A user turn followed by the assistant's header (the generation prompt).
    pub fn user_turn(&self, text: &str) -> Vec<Piece> {
        self.user.pieces(text)
    }

    /// What closes an assistant turn, fed before the next user turn.
    pub fn assistant_close(&self) -> Vec<Piece> {
        vec![Piece::Markup(self.assistant.after.clone())]
    }

    /// An assistant reply already in the transcript, for rebuilding a cache (without its
    /// close).
    pub fn assistant_text(&self, text: &str) -> Vec<Piece> {
        let mut p = self.assistant.pieces(text);
        p.pop();
        p
    }

    /// The special tokens that close an assistant turn in this template (`<|im_end|>`,
    /// `<|eot_id|>`, `<end_of_turn>`, `</s>`...): the model ends its reply with one of them.
    pub fn end_of_turn_tokens(&self, tk: &GgufTokenizer) -> Vec<u32> {
        let after = &self.assistant.after;
        match tk.encode(after, true) {
            Ok(ids) => ids
                .into_iter()
                .filter(|&i| tk.is_special(i))
                .take(1)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A template's family from its user-turn markup, for display only.
fn describe(user_markup: &str, from_file: bool) -> &'static str {
    let m = user_markup;
    if m.contains("<|im_start|>") {
        "ChatML"
    } else if m.contains("<|start_header_id|>") {
        "Llama 3"
    } else if m.contains("[INST]") {
        "Mistral"
    } else if m.contains("<|user|>") {
        "Phi-3"
    } else if m.contains("<start_of_turn>") {
        "Gemma"
    } else if from_file {
        "the file's own"
    } else {
        "ChatML"
    }
}

/// Token ids of a list of pieces following the token `prev` (`None`: the start of a
/// sequence). Markup may hold special tokens; content never does.
pub fn encode_pieces(tk: &GgufTokenizer, pieces: &[Piece], prev: Option<u32>) -> Result<Vec<u32>> {
    let parts: Vec<(&str, bool)> = pieces
        .iter()
        .map(|p| match p {
            Piece::Markup(s) => (s.as_str(), true),
            Piece::Content(s) => (s.as_str(), false),
        })
        .filter(|(s, _)| !s.is_empty())
        .collect();
    tk.encode_parts(&parts, prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_turns() {
        let t = ChatTemplate::new(None, "", "").unwrap();
        assert!(!t.from_file());
        assert!(t.system_supported);
        assert_eq!(
            t.user_turn("hey"),
            vec![
                Piece::Markup("<|im_start|>user\n".into()),
                Piece::Content("hey".into()),
                Piece::Markup("<|im_end|>\n<|im_start|>assistant\n".into()),
            ]
        );
        assert_eq!(
            t.assistant_close(),
            vec![Piece::Markup("<|im_end|>\n".into())]
        );
        assert_eq!(
            t.opening("Be brief."),
            vec![
                Piece::Markup("<|im_start|>system\n".into()),
                Piece::Content("Be brief.".into()),
                Piece::Markup("<|im_end|>\n".into()),
            ]
        );
        assert_eq!(t.opening(""), vec![Piece::Markup(String::new())]);
    }

    #[test]
    fn broken_templates_are_plain_errors() {
        let e = ChatTemplate::new(Some("{% for m in messages %}"), "", "").unwrap_err();
        assert!(matches!(e, Error::Template(_)), "{e}");
        let e =
            ChatTemplate::new(Some("{{ raise_exception('no chats here') }}"), "", "").unwrap_err();
        assert!(e.to_string().contains("no chats here"), "{e}");
        let e = ChatTemplate::new(
            Some("{% for m in messages %}{{ m.role }}{% endfor %}"),
            "",
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("leaves out the text"), "{e}");
    }

    /// YandexGPT renders a reply only when a question follows it: the reply's close is then
    /// what lies between it and the next question.
    #[test]
    fn a_template_that_drops_the_last_reply_still_cuts() {
        let src = "<s>{% for m in messages %}{% if m.role == 'user' %} User: {{ m.content }}\n\n{% endif %}{% if m.role == 'assistant' and not loop.last %} Bot: {{ m.content }}\n\n{% endif %}{% if loop.last %} Bot:[SEP]{% endif %}{% endfor %}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>").unwrap();
        let text = |ps: Vec<Piece>| -> String {
            ps.into_iter()
                .map(|p| match p {
                    Piece::Markup(s) | Piece::Content(s) => s,
                })
                .collect()
        };
        // A reply follows the generation prompt (" Bot:[SEP]"), as the model saw it live.
        assert_eq!(text(t.assistant_text("Yes")), " Yes");
        let next = text(t.assistant_close()) + &text(t.user_turn("Why"));
        assert_eq!(next, "\n\n User: Why\n\n Bot:[SEP]");
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let src = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}";
        let started = std::time::Instant::now();
        let e = ChatTemplate::new(Some(src), "", "").unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
        assert!(started.elapsed().as_secs() < 10);
    }

    #[test]
    fn strftime_prints_a_date() {
        let s = strftime_now("%d %b %Y".into());
        assert_eq!(s.len(), 11, "{s}");
        assert!(s[7..].parse::<i32>().unwrap() >= 2024);
    }
}
