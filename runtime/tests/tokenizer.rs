//! The tokenizer against llama.cpp's ids on the real model, exact round trips on WikiText-2,
//! digits, Unicode and ChatML special tokens.

mod a_support;

use runtime::gguf::Gguf;
use runtime::tokenizer::Tokenizer;

fn tokenizer() -> Option<Tokenizer> {
    let path = a_support::model_path()?;
    let g = Gguf::open(&path).unwrap();
    Some(Tokenizer::from_gguf(&g).unwrap())
}

#[test]
fn matches_llama_cpp_reference_ids() {
    let Some(tk) = tokenizer() else { return };
    let ids = tk.encode("The capital of France is", true).unwrap();
    assert_eq!(ids, vec![504, 3575, 282, 4649, 314]);
    assert_eq!(tk.encode("The capital of France is", false).unwrap(), ids);
    assert_eq!(tk.token_to_str(7042), Some("ĠParis"));
}

#[test]
fn summary_matches_the_gguf() {
    let Some(tk) = tokenizer() else { return };
    assert_eq!(tk.vocab_size(), 49152);
    assert_eq!(tk.bos(), Some(1));
    assert_eq!(tk.eos(), Some(2));
    assert!(!tk.add_bos());
    assert_eq!(tk.special_tokens().len(), 17);
    assert_eq!(tk.special_tokens()[0], (0, "<|endoftext|>".to_string()));
    assert_eq!(tk.token_to_str(1), Some("<|im_start|>"));
    assert_eq!(tk.token_to_id("<|im_end|>"), Some(2));
}

#[test]
fn wikitext_test_round_trips_exactly() {
    let Some(tk) = tokenizer() else { return };
    let text =
        runtime::text::read_text_file(a_support::data_path("wikitext-2-raw-test.txt")).unwrap();
    let ids = tk.encode(&text, false).unwrap();
    // About 3.5-4.5 bytes per token is typical for English BPE with a 49k vocabulary.
    let ratio = text.len() as f64 / ids.len() as f64;
    assert!(
        (2.5..6.0).contains(&ratio),
        "{} bytes -> {} tokens",
        text.len(),
        ids.len()
    );
    assert_eq!(tk.decode(&ids).unwrap(), text);
    assert_eq!(tk.decode_bytes(&ids).unwrap(), text.as_bytes());
    // `encode` cuts long texts into pieces; the ids must equal one pass over the whole text.
    assert_eq!(tk.encode_single_pass(&text, false).unwrap(), ids);
}

#[test]
fn long_texts_without_safe_cut_points_still_encode() {
    let Some(tk) = tokenizer() else { return };
    let digits: String = (0..100_000)
        .map(|i| char::from(b'0' + (i % 10) as u8))
        .collect();
    assert_eq!(tk.encode(&digits, false).unwrap().len(), 100_000);
    let mixed = "Zürich is 3.5km away, x=y; <|im_end|>the end<|im_start|> of it ".repeat(5000);
    assert_eq!(
        tk.encode(&mixed, true).unwrap(),
        tk.encode_single_pass(&mixed, true).unwrap()
    );
    assert_eq!(
        tk.encode(&mixed, false).unwrap(),
        tk.encode_single_pass(&mixed, false).unwrap()
    );
}

#[test]
fn digits_are_split_individually() {
    let Some(tk) = tokenizer() else { return };
    let ids = tk
        .encode("In 2024, 1234567 people paid $3.14", false)
        .unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&i| tk.token_to_str(i).unwrap()).collect();
    for p in &pieces {
        if p.chars().any(|c| c.is_ascii_digit()) {
            assert_eq!(p.chars().count(), 1, "digit token {p:?} in {pieces:?}");
        }
    }
    let digits: String = pieces
        .iter()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .copied()
        .collect();
    assert_eq!(digits, "20241234567314");
    // Each digit is its own vocabulary entry.
    for d in 0..10 {
        let s = d.to_string();
        assert_eq!(
            tk.encode(&s, false).unwrap(),
            vec![tk.token_to_id(&s).unwrap()]
        );
    }
}

#[test]
fn unicode_round_trips() {
    let Some(tk) = tokenizer() else { return };
    for text in [
        "naïve café — “quotes” ½ ² Ⅻ",
        "日本語のテキスト、中文，한국어",
        "emoji 🙂👍🏽 and Привет мир",
        "tabs\tand\nnewlines\r\n  double  spaces ",
        "fn main() { println!(\"{}\", x * 2); }",
    ] {
        let ids = tk.encode(text, true).unwrap();
        assert_eq!(tk.decode(&ids).unwrap(), text);
        assert_eq!(tk.decode_bytes(&ids).unwrap(), text.as_bytes());
    }
    // A token boundary inside a multi-byte character: decode_bytes keeps the exact bytes.
    let ids = tk.encode("🙂", false).unwrap();
    assert!(ids.len() > 1);
    let mut bytes = vec![];
    for id in &ids {
        bytes.extend(tk.decode_bytes(&[*id]).unwrap());
    }
    assert_eq!(bytes, "🙂".as_bytes());
}

#[test]
fn chatml_special_tokens() {
    let Some(tk) = tokenizer() else { return };
    let parsed = tk.encode("<|im_start|>user\nHi<|im_end|>\n", true).unwrap();
    assert_eq!(parsed[0], 1);
    assert!(parsed.contains(&2));
    assert_eq!(
        tk.decode(&parsed).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n"
    );
    let plain = tk.encode("<|im_start|>", false).unwrap();
    assert!(plain.len() > 1 && !plain.contains(&1), "{plain:?}");
    assert_eq!(tk.decode(&plain).unwrap(), "<|im_start|>");

    // The template text follows the GGUF's chat template, default system message included.
    let template = tk.chat_template().unwrap();
    let system = tk.default_system_prompt().unwrap();
    assert!(template.contains(&system));
    assert_eq!(
        system,
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    );
    let prompt = tk.chatml("What is 2+2?");
    assert_eq!(
        prompt,
        format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    );
    assert_eq!(
        tk.chatml_with_system(None, "x"),
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = tk.encode(&prompt, true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.last(), tk.encode("\n", true).unwrap().last());
}

#[test]
fn empty_text_and_bad_ids() {
    let Some(tk) = tokenizer() else { return };
    assert_eq!(tk.encode("", true).unwrap(), Vec::<u32>::new());
    assert_eq!(tk.decode(&[]).unwrap(), "");
    let msg = tk.decode(&[5, 49152]).unwrap_err().to_string();
    assert!(msg.contains("49152") && msg.contains("SmolLM2"), "{msg}");
    assert!(tk.token_to_str(49152).is_none());
}

#[test]
fn tokenizer_json_export_loads_back_with_the_same_ids() {
    let Some(tk) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    std::fs::write(&json, tk.to_json().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": false}"#,
    )
    .unwrap();
    let hf = Tokenizer::from_file(&json).unwrap();
    assert_eq!(hf.vocab_size(), tk.vocab_size());
    assert_eq!((hf.bos(), hf.eos()), (Some(1), Some(2)));
    assert_eq!(hf.special_tokens(), tk.special_tokens());
    let text =
        runtime::text::read_text_file(a_support::data_path("wikitext-2-raw-valid.txt")).unwrap();
    let text = &text[..200_000];
    assert_eq!(
        hf.encode(text, false).unwrap(),
        tk.encode(text, false).unwrap()
    );
    assert_eq!(hf.encode("<|im_start|>", true).unwrap(), vec![1]);
}

#[test]
fn bad_tokenizer_json_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    std::fs::write(&json, "{ not json").unwrap();
    let msg = Tokenizer::from_file(&json).unwrap_err().to_string();
    assert!(msg.contains(&json.display().to_string()), "{msg}");
    let missing = dir.path().join("nope.json");
    assert!(Tokenizer::from_file(&missing)
        .unwrap_err()
        .to_string()
        .contains("nope.json"));
}
