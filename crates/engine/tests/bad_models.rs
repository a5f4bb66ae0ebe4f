//! Bad model files and settings get errors that name what is wrong, never a panic.

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use common::*;
use sinkchat_engine::{CacheConfig, Engine, Error, LoadOptions, Model, SinkCache};

fn load(path: &std::path::Path) -> Error {
    Model::load(path, &Device::Cpu, LoadOptions::default()).unwrap_err()
}

/// Copies a GGUF, changing metadata and dropping tensors on the way.
fn rewrite(src: &std::path::Path, dst: &std::path::Path, set: &[(&str, Value)], drop: &[&str]) {
    let mut r = std::fs::File::open(src).unwrap();
    let ct = gguf_file::Content::read(&mut r).unwrap();
    let mut md: Vec<(String, Value)> = ct
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in set {
        md.retain(|(key, _)| key != k);
        md.push((k.to_string(), v.clone()));
    }
    let tensors: Vec<(String, QTensor)> = ct
        .tensor_infos
        .keys()
        .filter(|n| !drop.contains(&n.as_str()))
        .map(|n| (n.clone(), ct.tensor(&mut r, n, &Device::Cpu).unwrap()))
        .collect();
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tr: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(dst).unwrap(), &md, &tr).unwrap();
}

#[test]
fn unsupported_architecture_is_named() {
    let d = tempfile::tempdir().unwrap();
    let ok = d.path().join("ok.gguf");
    write_tiny(&Tiny::llama(1), &ok, GgmlDType::F32);
    let bad = d.path().join("gpt2.gguf");
    rewrite(
        &ok,
        &bad,
        &[("general.architecture", Value::String("mamba".into()))],
        &[],
    );
    let e = load(&bad);
    assert!(matches!(e, Error::UnsupportedArchitecture(_)), "{e}");
    assert!(e.to_string().contains("'mamba'"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let d = tempfile::tempdir().unwrap();
    let ok = d.path().join("ok.gguf");
    write_tiny(&Tiny::llama(2), &ok, GgmlDType::F32);
    let bad = d.path().join("missing.gguf");
    rewrite(&ok, &bad, &[], &["blk.1.ffn_up.weight"]);
    let e = load(&bad);
    assert!(e.to_string().contains("blk.1.ffn_up.weight"), "{e}");
    assert_eq!(e.code(), "model_incomplete");
}

#[test]
fn not_a_gguf_and_missing_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("notes.txt");
    std::fs::write(&p, "just some text, not a model").unwrap();
    assert_eq!(
        load(&p).code(),
        "not_gguf",
        "named for what it is, not called corrupt"
    );
    assert_eq!(load(&d.path().join("nope.gguf")).code(), "model_missing");
    // A GGUF cut short is damaged: that one is corrupt.
    let ok = d.path().join("ok.gguf");
    write_tiny(&Tiny::llama(1), &ok, GgmlDType::F32);
    let cut = d.path().join("cut.gguf");
    let bytes = std::fs::read(&ok).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(load(&cut).code(), "model_corrupt", "{}", load(&cut));
}

#[test]
fn engine_refuses_a_model_without_tokenizer() {
    // The tiny model has no tokenizer metadata at all.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("no-tokenizer.gguf");
    write_tiny(&Tiny::llama(1), &p, GgmlDType::F32);
    let e = Engine::start(&p, Device::Cpu).unwrap_err();
    assert_eq!(e.code(), "tokenizer", "{e}");
}

#[test]
fn bad_cache_settings_are_explained() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.gguf");
    write_tiny(&Tiny::llama(1), &p, GgmlDType::F32);
    let m = Model::load(&p, &Device::Cpu, LoadOptions::default()).unwrap();
    for (cfg, words) in [
        (
            CacheConfig {
                sinks: 4,
                window: 0,
                evict_step: 1,
                precision: sinkchat_engine::KvPrecision::F32,
            },
            "at least one token",
        ),
        (
            CacheConfig {
                sinks: 8,
                window: 4,
                evict_step: 1,
                precision: sinkchat_engine::KvPrecision::F32,
            },
            "smaller than the sinks",
        ),
        (
            CacheConfig {
                sinks: 4,
                window: 16,
                evict_step: 0,
                precision: sinkchat_engine::KvPrecision::F32,
            },
            "eviction step",
        ),
    ] {
        let e = SinkCache::new(m.spec(), cfg, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains(words), "{e}");
    }
}

/// A broken chat template, a SentencePiece vocabulary without its scores, an unknown vocabulary
/// type: the inspector (the Models screen's verdict and the import check) and the engine say
/// what is wrong in plain words, and nothing panics.
#[test]
fn broken_templates_and_vocabularies_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("spm.gguf");
    // A SentencePiece model: the llama-spm vocabulary's tokenizer keys on a tiny llama.
    write_tiny_with_vocab(
        Tiny::llama(1),
        &src,
        &vocab_file("ggml-vocab-llama-spm.gguf"),
    );
    sinkchat_engine::inspect(&src).unwrap();
    let cases: [(&str, Value, &str); 4] = [
        (
            "tokenizer.chat_template",
            Value::String("{% for m in messages %}{{ m.content }".into()),
            "chat template can't be used",
        ),
        (
            "tokenizer.chat_template",
            Value::String("{{ raise_exception('only tools here') }}".into()),
            "only tools here",
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(vec![Value::F32(0.0)]),
            "one score per token",
        ),
        (
            "tokenizer.ggml.model",
            Value::String("bert".into()),
            "'bert'",
        ),
    ];
    for (i, (key, value, want)) in cases.into_iter().enumerate() {
        let bad = dir.path().join(format!("bad-{i}.gguf"));
        rewrite(&src, &bad, &[(key, value)], &[]);
        let e = sinkchat_engine::inspect(&bad).unwrap_err().to_string();
        assert!(e.contains(want), "{key}: {e}");
        let e = Engine::start(&bad, Device::Cpu)
            .expect_err("refused")
            .to_string();
        assert!(e.contains(want), "{key}: {e}");
    }
}

/// Overwrites the dimensions of tensor `name` in a GGUF file's index with `dims` (as many as
/// it has), as a crafted file would declare them.
fn patch_dims(path: &std::path::Path, name: &str, dims: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(key.len())
        .position(|w| w == key.as_slice())
        .expect("the tensor's index entry")
        + key.len();
    let n = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    for i in 0..n {
        let o = at + 4 + 8 * i;
        bytes[o..o + 8].copy_from_slice(&dims.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A crafted GGUF (any Hugging Face repository can serve one) gets a plain error from the
/// header check, the inspector and the loader: never a panic, an abort or a huge allocation.
#[test]
fn hostile_headers_are_refused_without_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let ok = d.path().join("ok.gguf");
    write_tiny(&Tiny::llama(1), &ok, GgmlDType::F32);
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        // A division by zero inside the GGUF reader.
        ("alignment-zero", vec![("general.alignment", Value::U32(0))]),
        // Counts used to size allocations before any tensor is looked at.
        ("layers", vec![("llama.block_count", Value::U64(1 << 40))]),
        (
            "heads",
            vec![
                ("llama.attention.head_count", Value::U32(1 << 31)),
                ("llama.attention.head_count_kv", Value::U32(1 << 31)),
            ],
        ),
        (
            "width",
            vec![("llama.embedding_length", Value::U64(1 << 50))],
        ),
        (
            "key-length",
            vec![("llama.attention.key_length", Value::U64(1 << 40))],
        ),
    ];
    for (label, set) in cases {
        let bad = d.path().join(format!("{label}.gguf"));
        rewrite(&ok, &bad, &set, &[]);
        let inspected = std::panic::catch_unwind(|| sinkchat_engine::inspect(&bad));
        let inspected = inspected.unwrap_or_else(|_| panic!("{label}: inspect panicked"));
        assert!(inspected.is_err(), "{label}: inspect accepted it");
        let loaded = std::panic::catch_unwind(|| load(&bad));
        let e = loaded.unwrap_or_else(|_| panic!("{label}: load panicked"));
        assert!(!e.to_string().is_empty(), "{label}");
        // One file, one code, whoever reads it; a forged value is malformed, not a model
        // SinkChat lacks support for.
        let inspected = inspected.unwrap_err();
        assert_eq!(inspected.code(), e.code(), "{label}: {inspected} / {e}");
        assert_eq!(e.code(), "model_corrupt", "{label}: {e}");
        assert!(!e.to_string().contains("not supported"), "{label}: {e}");
    }
    // A file that is no GGUF at all is named for what it is, not called corrupt.
    let text = d.path().join("notes.gguf");
    std::fs::write(&text, "Shopping: milk, eggs, bread.").unwrap();
    let (inspected, loaded) = (sinkchat_engine::inspect(&text).unwrap_err(), load(&text));
    for e in [&inspected, &loaded] {
        assert_eq!(e.code(), "not_gguf", "{e}");
        assert!(!e.to_string().contains("corrupt"), "{e}");
    }
    // Tensor dimensions whose product overflows.
    let bad = d.path().join("dims.gguf");
    std::fs::copy(&ok, &bad).unwrap();
    patch_dims(&bad, "token_embd.weight", 1 << 40);
    let loaded = std::panic::catch_unwind(|| load(&bad));
    let e = loaded.unwrap_or_else(|_| panic!("dims: load panicked"));
    assert!(
        matches!(
            e,
            Error::InvalidGguf { .. } | Error::MissingTensor(_) | Error::UnsupportedArchitecture(_)
        ),
        "{e}"
    );
    let inspected = std::panic::catch_unwind(|| sinkchat_engine::inspect(&bad));
    assert!(inspected.expect("dims: inspect panicked").is_err());
}

/// A Gemma 3 file whose sliding window is missing or does not fit, whose pattern lists the
/// wrong number of layers, whose heads contradict each other or which lacks a norm, is refused
/// in words before anything is loaded (by the inspector and the loader alike); a newer Gemma is
/// named as not supported.
#[test]
fn inconsistent_gemma3_files_are_refused_in_words() {
    let d = tempfile::tempdir().unwrap();
    let ok = d.path().join("ok.gguf");
    write_tiny_with_vocab(
        Tiny::gemma3(&[true, false], 8),
        &ok,
        &vocab_file("ggml-vocab-llama-spm.gguf"),
    );
    sinkchat_engine::inspect(&ok).unwrap();
    Model::load(&ok, &Device::Cpu, LoadOptions::default()).unwrap();
    let drop_window = d.path().join("no-window.gguf");
    {
        let mut r = std::fs::File::open(&ok).unwrap();
        let ct = gguf_file::Content::read(&mut r).unwrap();
        let md: Vec<(String, Value)> = ct
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != "gemma3.attention.sliding_window")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let tensors: Vec<(String, QTensor)> = ct
            .tensor_infos
            .keys()
            .map(|n| (n.clone(), ct.tensor(&mut r, n, &Device::Cpu).unwrap()))
            .collect();
        let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tr: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut std::fs::File::create(&drop_window).unwrap(), &md, &tr).unwrap();
    }
    let cases: Vec<(std::path::PathBuf, &str)> = {
        let mut v = vec![(drop_window, "sliding_window")];
        let mut case = |name: &str, set: Vec<(&str, Value)>, drop: &[&str], want: &'static str| {
            let p = d.path().join(name);
            rewrite(&ok, &p, &set, drop);
            v.push((p, want));
        };
        case(
            "zero-window.gguf",
            vec![("gemma3.attention.sliding_window", Value::U32(0))],
            &[],
            "sliding window of 0 tokens",
        );
        case(
            "pattern.gguf",
            vec![(
                "gemma3.attention.sliding_window_pattern",
                Value::Array(vec![Value::Bool(true)]),
            )],
            &[],
            "lists 1 values for 2 layers",
        );
        case(
            "heads.gguf",
            vec![("gemma3.attention.value_length", Value::U32(16))],
            &[],
            "(values)",
        );
        case(
            "norm.gguf",
            vec![],
            &["blk.1.post_ffw_norm.weight"],
            "blk.1.post_ffw_norm.weight",
        );
        case(
            "gemma4.gguf",
            vec![("general.architecture", Value::String("gemma4".into()))],
            &[],
            "'gemma4' are not supported",
        );
        v
    };
    for (path, want) in cases {
        let e = sinkchat_engine::inspect(&path).unwrap_err().to_string();
        assert!(e.contains(want), "{}: {e}", path.display());
        let e = load(&path).to_string();
        assert!(e.contains(want), "{}: {e}", path.display());
        assert!(!e.contains("corrupt"), "{}: {e}", path.display());
    }
}

/// A file whose weights are of a type the engine has no kernels for (the i-quants below IQ4,
/// ternary and FP4 types) is refused in a sentence naming the type and the types that work, by the
/// inspector (import, after a download), the loader and a download's first bytes; never
/// called damaged (#33). With `general.file_type` the first bytes suffice; without it, the
/// tensor index names the type.
#[test]
fn unsupported_weight_types_are_named_not_called_corrupt() {
    use sinkchat_fakehub::typed_gguf::{write, Tensor};
    let d = tempfile::tempdir().unwrap();
    // (ggml type, llama.cpp file type, name)
    for (ty, ftype, name) in [
        (19, 24, "IQ1_S"),
        (17, 20, "IQ2_XS"),
        (21, 26, "IQ3_S"),
        (35, 37, "TQ2_0"),
        (39, 38, "MXFP4"),
    ] {
        for with_ftype in [true, false] {
            let path = d.path().join(format!("{name}-{with_ftype}.gguf"));
            write(
                &path,
                "llama",
                with_ftype.then_some(ftype),
                &[
                    Tensor {
                        name: "output_norm.weight",
                        ggml_type: 0,
                        dims: &[256],
                    },
                    Tensor {
                        name: "token_embd.weight",
                        ggml_type: ty,
                        dims: &[256, 16],
                    },
                ],
            )
            .unwrap();
            let label = format!("{name} (file type given: {with_ftype})");
            let bytes = std::fs::read(&path).unwrap();
            let errors = [
                sinkchat_engine::inspect(&path).unwrap_err(),
                load(&path),
                sinkchat_engine::check_header_prefix(&bytes).unwrap_err(),
            ];
            for e in errors {
                let s = e.to_string();
                assert!(
                    matches!(e, Error::UnsupportedWeightType { .. }),
                    "{label}: {s}"
                );
                assert_eq!(e.code(), "model_unsupported", "{label}");
                assert!(s.contains(&format!("stored as {name}")), "{label}: {s}");
                assert!(s.contains("Q4_K_M"), "{label}: the types that work: {s}");
                assert!(
                    !s.contains("corrupt") && !s.contains("unknown dtype"),
                    "{label}: {s}"
                );
            }
            // The first kilobytes alone refuse it when they carry the file type.
            let first = sinkchat_engine::check_header_prefix(&bytes[..128]);
            assert_eq!(first.is_err(), with_ftype, "{label}: {first:?}");
        }
    }
    // The same file with a type the engine runs (F16, and IQ4_NL and IQ4_XS, which candle
    // does not read) is not refused by the walk: it lacks most of a model's tensors, which is
    // what the inspector then says.
    for (ty, ftype) in [(1, 1), (20, 25), (23, 30)] {
        let ok = d.path().join(format!("ok-{ty}.gguf"));
        write(
            &ok,
            "llama",
            Some(ftype),
            &[Tensor {
                name: "token_embd.weight",
                ggml_type: ty,
                dims: &[256, 16],
            }],
        )
        .unwrap();
        sinkchat_engine::check_header_prefix(&std::fs::read(&ok).unwrap()).unwrap();
        let e = sinkchat_engine::inspect(&ok).unwrap_err();
        assert!(
            matches!(e, Error::MissingMetadata(_) | Error::MissingTensor(_)),
            "type {ty}: {e}"
        );
    }
}
