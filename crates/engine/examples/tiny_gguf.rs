//! Writes a tiny random-weight model around a real vocabulary, for the end-to-end tests (a
//! SentencePiece model and a Qwen3 model the window imports and chats with):
//!
//!     cargo run -p sinkchat-engine --example tiny_gguf -- ARCH VOCAB.gguf OUT.gguf
//!
//! ARCH is llama, qwen2, qwen3 or phi3; VOCAB.gguf is any GGUF whose `tokenizer.*` keys are
//! copied (llama.cpp's `ggml-vocab-*.gguf`). An example, not part of the app.

#[path = "../tests/common/mod.rs"]
mod common;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arch, vocab, out] = args.as_slice() else {
        anyhow::bail!("usage: tiny_gguf ARCH VOCAB.gguf OUT.gguf");
    };
    let t = match arch.as_str() {
        "llama" => common::Tiny::llama(2),
        "qwen2" => common::Tiny::qwen2(2),
        "qwen3" => common::Tiny::qwen3(2),
        "phi3" => common::Tiny::phi3(2),
        other => anyhow::bail!("unknown architecture {other}"),
    };
    common::write_tiny_with_vocab(t, std::path::Path::new(out), std::path::Path::new(vocab));
    println!("{out}: {arch}");
    Ok(())
}
