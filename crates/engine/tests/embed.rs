//! The meaning model (all-MiniLM-L6-v2, #36) against the reference implementation: vectors
//! computed once by sentence-transformers (scripts/minilm-reference.py, kept in
//! tests/data/minilm-reference.json) for sentences, an empty text, other scripts and a text
//! past the model's 256 tokens.

mod common;

use sinkchat_engine::embed::{cosine, Embedder, DIM};

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm-reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn vectors_match_the_reference_implementation() {
    let r = reference();
    let e = Embedder::open(&common::meaning_dir()).unwrap();
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    let got = e.embed(&texts).unwrap();
    assert_eq!(got.len(), r.texts.len());
    for ((text, want), v) in r.texts.iter().zip(&r.vectors).zip(&got) {
        assert_eq!(v.len(), DIM);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{text:?}: length {norm}");
        let worst = v
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 2e-4,
            "{text:?}: differs from the reference by {worst}"
        );
        assert!(cosine(v, want) > 0.99999, "{text:?}");
    }
    // One at a time (no padding) gives what the batch gave.
    for (text, v) in texts.iter().zip(&got) {
        let one = e.embed(&[text]).unwrap().remove(0);
        assert!(cosine(&one, v) > 0.99999, "{text:?} alone");
    }
}

#[test]
fn a_question_is_nearer_its_fact_than_another_fact() {
    let e = Embedder::open(&common::meaning_dir()).unwrap();
    let v = e
        .embed(&[
            "My sister's wedding is on the 17th of October in Valencia.",
            "We fly to Lisbon on the 14th.",
            "When is the wedding?",
            "When does our trip start?",
        ])
        .unwrap();
    assert!(cosine(&v[2], &v[0]) > cosine(&v[2], &v[1]));
    assert!(cosine(&v[3], &v[1]) > cosine(&v[3], &v[0]));
}

#[test]
fn hard_input_embeds_without_error() {
    let e = Embedder::open(&common::meaning_dir()).unwrap();
    let huge = "word ".repeat(20_000);
    let v = e
        .embed(&[&huge, "", "\u{0}\u{feff}", "🙂🙂🙂", "ᚠᛇᚻ᛫ᛒᛦᚦ"])
        .unwrap();
    assert_eq!(v.len(), 5);
    assert!(v.iter().all(|v| v.iter().all(|x| x.is_finite())));
    // By its start: the 100,000-character text is the vector of its first 254 word pieces.
    let start_only = e.embed(&[&"word ".repeat(300)]).unwrap().remove(0);
    assert!(cosine(&v[0], &start_only) > 0.99999);
}

#[test]
fn a_missing_folder_is_named_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let err = Embedder::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("by meaning"), "{err}");
    assert!(err.contains("1_Pooling"), "{err}");
}
