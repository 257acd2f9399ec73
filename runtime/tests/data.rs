//! The evaluation text is byte-identical to WikiText-2 raw, and text files are checked.

mod a_support;

use runtime::text::{read_text_file, TextError};

#[test]
fn wikitext_digests() {
    for (name, want) in [
        (
            "wikitext-2-raw-test.txt",
            "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08",
        ),
        (
            "wikitext-2-raw-valid.txt",
            "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7",
        ),
    ] {
        let p = a_support::data_path(name);
        assert_eq!(
            runtime::hash::file_sha256(&p).unwrap(),
            want,
            "{}",
            p.display()
        );
    }
}

#[test]
fn sha256_of_known_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc");
    std::fs::write(&p, "abc").unwrap();
    // FIPS 180-2 test vector.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(runtime::hash::file_sha256(&p).unwrap(), abc);
    assert_eq!(runtime::hash::bytes_sha256(b"abc"), abc);
    let err = runtime::hash::file_sha256(dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"));
}

#[test]
fn text_files_must_be_non_empty_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("latin1.txt");
    std::fs::write(&bad, b"caf\xe9 au lait").unwrap();
    let e = read_text_file(&bad).unwrap_err();
    assert!(matches!(e, TextError::NotUtf8 { offset: 3, .. }), "{e:?}");
    assert!(e.to_string().contains("latin1.txt") && e.to_string().contains("byte offset 3"));

    for (name, content) in [("empty.txt", ""), ("blank.txt", " \n\n\t")] {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let e = read_text_file(&p).unwrap_err();
        assert!(
            matches!(e, TextError::Empty { .. }) && e.to_string().contains(name),
            "{e}"
        );
    }
    let e = read_text_file(dir.path().join("absent.txt")).unwrap_err();
    assert!(matches!(e, TextError::Io { .. }) && e.to_string().contains("absent.txt"));

    let ok = dir.path().join("ok.txt");
    std::fs::write(&ok, "héllo\n").unwrap();
    assert_eq!(read_text_file(&ok).unwrap(), "héllo\n");
}
