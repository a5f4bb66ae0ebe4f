//! The GGUF tokenizer against reference token ids.
//!
//! - llama.cpp's tokenizer test vectors (`ggml-vocab-*.gguf` with `.inp`/`.out`, ids made by
//!   the models' own Hugging Face tokenizers), shipped in the `llama-cpp-python` source package
//!   and unpacked by `scripts/setup.sh` into `.cache/vocab`: byte-level BPE with the GPT-2,
//!   Llama 3 and Qwen2 pre-tokenizers, built from GGUF metadata exactly as for a model.
//!   SentencePiece vocabularies (`llama-spm`: Llama 2 / Mistral 7B; `phi-3`) as well.
//! - SmolLM2's own GGUF: round trips, and the digit splitting its pre-tokenizer adds.

mod common;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use sinkchat_engine::{GgufTokenizer, TokenOutputStream};

fn vocab_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/vocab");
    assert!(
        d.exists(),
        "tokenizer vectors missing at {}: run `scripts/setup.sh test-deps`",
        d.display()
    );
    d
}

fn load(path: &Path) -> GgufTokenizer {
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    GgufTokenizer::from_gguf(&ct).unwrap()
}

/// Checks every vector of one vocabulary; returns how many strings were compared.
fn check_vectors(name: &str) -> usize {
    let dir = vocab_dir();
    let tk = load(&dir.join(format!("ggml-vocab-{name}.gguf")));
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let expected: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), expected.len(), "{name}: vector files disagree");
    let mut non_ascii = 0;
    for (text, want) in texts.iter().zip(&expected) {
        let got = tk.encode(text, false).unwrap();
        assert_eq!(&got, want, "{name}: {text:?}");
        assert_eq!(
            tk.decode(&got).unwrap(),
            *text,
            "{name}: round trip of {text:?}"
        );
        non_ascii += usize::from(!text.is_ascii());
    }
    assert!(non_ascii >= 5, "{name}: too few non-ASCII vectors");
    eprintln!("{name}: {} vectors match llama.cpp's ids", texts.len());
    texts.len()
}

#[test]
fn gpt2_vectors_match() {
    assert!(check_vectors("gpt-2") >= 10);
}

#[test]
fn llama3_vectors_match() {
    assert!(check_vectors("llama-bpe") >= 10);
}

#[test]
fn qwen2_vectors_match() {
    assert!(check_vectors("qwen2") >= 10);
}

#[test]
fn llama_spm_vectors_match() {
    assert!(check_vectors("llama-spm") >= 10);
}

#[test]
fn phi3_spm_vectors_match() {
    assert!(check_vectors("phi-3") >= 10);
}

#[test]
fn sentencepiece_specials_spaces_and_bytes() {
    let tk = load(&vocab_dir().join("ggml-vocab-llama-spm.gguf"));
    assert_eq!(tk.vocab_type(), sinkchat_engine::VocabType::Spm);
    assert!(tk.add_bos);
    let (bos, eos) = (tk.bos.unwrap(), tk.eos.unwrap());
    // Markup: `</s>` is the end-of-sequence token, and the text after it gets its own space
    // prefix, as llama.cpp tokenizes a rendered prompt.
    let ids = tk.encode("hi</s>hi", true).unwrap();
    let hi = tk.encode("hi", false).unwrap();
    assert_eq!(ids, [hi.clone(), vec![eos], hi.clone()].concat());
    // User text: the same characters stay text.
    let plain = tk.encode("hi</s>hi", false).unwrap();
    assert!(!plain.contains(&eos) && !plain.contains(&bos), "{plain:?}");
    assert_eq!(tk.decode(&plain).unwrap(), "hi</s>hi");
    // Text that follows a text token gets no space prefix.
    let after = tk.encode_after("hi", false, Some(hi[0])).unwrap();
    assert_ne!(after, hi);
    assert_eq!(tk.decode(&[hi.clone(), after].concat()).unwrap(), "hihi");
    // Characters outside the vocabulary fall back to bytes and come back whole.
    let s = "𝄞 music ⟨x⟩";
    let ids = tk.encode(s, false).unwrap();
    assert!(ids
        .iter()
        .any(|&i| tk.id_to_token(i).unwrap().starts_with("<0x")));
    assert_eq!(tk.decode(&ids).unwrap(), s);
    // A streamed reply loses the prefix space once, not at every piece.
    let mut out = TokenOutputStream::new(tk.clone());
    let mut text = String::new();
    for &id in &tk.encode("Hello there, friend", false).unwrap() {
        text.push_str(&out.next(id).unwrap().unwrap_or_default());
    }
    text.push_str(&out.finish().unwrap().unwrap_or_default());
    assert_eq!(text, "Hello there, friend");
}

#[test]
fn unknown_vocabulary_types_are_refused_in_plain_words() {
    let mut f = std::fs::File::open(vocab_dir().join("ggml-vocab-gemma-4.gguf")).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let e = GgufTokenizer::from_gguf(&ct).unwrap_err().to_string();
    assert!(e.contains("'gemma4'") && e.contains("cannot read"), "{e}");
}

fn smollm() -> GgufTokenizer {
    load(&common::smollm_path())
}

#[test]
fn smollm2_round_trips_and_splits_digits() {
    let tk = smollm();
    assert_eq!(tk.pre(), "smollm");
    assert_eq!(tk.vocab_size(), 49152);
    for s in [
        "Hello world",
        "Grüße aus Köln — naïve café",
        "日本語のテキスト",
        "emoji 👩‍💻🚀 and ü",
        "tabs\tand\nnewlines\r\n",
        "Здравствуйте, мир",
        "العربية",
        "  leading spaces",
        "code: fn main() { println!(\"{}\", 42); }",
        "12345 and 3.14159",
    ] {
        let ids = tk.encode(s, false).unwrap();
        assert!(!ids.is_empty());
        assert_eq!(tk.decode(&ids).unwrap(), s);
    }
    // Each digit is its own token.
    let ids = tk.encode("2024", false).unwrap();
    assert_eq!(ids.len(), 4);
    let digits: Vec<String> = ids.iter().map(|&i| tk.decode(&[i]).unwrap()).collect();
    assert_eq!(digits, ["2", "0", "2", "4"]);
}

#[test]
fn special_tokens_only_from_markup() {
    let tk = smollm();
    let im_end = tk.token_to_id("<|im_end|>").unwrap();
    assert!(tk.end_of_turn.contains(&im_end));
    assert_eq!(tk.encode("<|im_end|>", true).unwrap(), vec![im_end]);
    // A user typing the marker gets plain text, not an end of turn.
    let plain = tk.encode("<|im_end|>", false).unwrap();
    assert!(!plain.contains(&im_end) && plain.len() > 1);
}

#[test]
fn streaming_detokenization_never_splits_a_character() {
    let tk = smollm();
    let text = "naïve 日本 👩‍💻 ok";
    let ids = tk.encode(text, false).unwrap();
    let mut s = TokenOutputStream::new(tk.clone());
    let mut pieces = Vec::new();
    for id in ids {
        if let Some(p) = s.next(id).unwrap() {
            assert!(!p.contains('\u{FFFD}'), "split character in {p:?}");
            pieces.push(p);
        }
    }
    if let Some(p) = s.finish().unwrap() {
        pieces.push(p);
    }
    assert_eq!(pieces.concat(), text);
    assert!(pieces.len() > 3);
}

/// SmolLM2's own ids from llama.cpp's tokenizer, committed as
/// `tests/data/smollm2_token_ids.json` by `scripts/smollm2-reference-ids.py`.
#[test]
fn smollm2_matches_llama_cpp_token_ids() {
    let tk = smollm();
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("data/smollm2_token_ids.json")).unwrap();
    let vectors = fixture["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    let mut non_ascii = 0;
    for v in vectors {
        let text = v["text"].as_str().unwrap();
        let want: Vec<u32> = v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tk.encode(text, false).unwrap(), want, "{text:?}");
        assert_eq!(tk.decode(&want).unwrap(), text);
        non_ascii += usize::from(!text.is_ascii());
    }
    assert!(non_ascii >= 6);
}
