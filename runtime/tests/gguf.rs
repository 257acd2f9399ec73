//! GGUF reader and writer: round trips, hand-made blocks against the format definitions,
//! the real model read raw, and malformed files (every one an error naming the file).

mod a_support;

use half::f16;
use kernels::formats::BlockQ4_1;
use runtime::gguf::synthetic::{tiny_config, tiny_llama};
use runtime::gguf::{GgmlType, Gguf, GgufError, GgufWriter, Value, ValueType};
use std::path::{Path, PathBuf};

fn write_tmp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Opens bytes written to a temp file and returns the error, checking it names the file.
fn open_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write_tmp(&dir, "bad.gguf", bytes);
    match Gguf::open(&p) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&p.display().to_string()),
                "error does not name the file: {msg}"
            );
            msg
        }
    }
}

fn all_types_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("u8", Value::U8(200))
        .set("i8", Value::I8(-100))
        .set("u16", Value::U16(60000))
        .set("i16", Value::I16(-30000))
        .set("u32", Value::U32(4_000_000_000))
        .set("i32", Value::I32(-2_000_000_000))
        .set("f32", Value::F32(1.5))
        .set("bool", Value::Bool(true))
        .set("string", Value::String("héllo ✓".into()))
        .set("u64", Value::U64(u64::MAX))
        .set("i64", Value::I64(i64::MIN))
        .set("f64", Value::F64(-2.25))
        .set("empty", Value::Array(ValueType::F32, vec![]))
        .set(
            "nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]),
                    Value::Array(ValueType::String, vec![Value::String("a".into())]),
                ],
            ),
        )
        .set_str_array("strs", &["x", "y z"])
        .set_u32("small", 7);
    w
}

#[test]
fn round_trip_metadata_of_every_type() {
    for (version, align) in [(3, 32), (2, 64), (3, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        let mut w = all_types_writer().version(version).alignment(align);
        w.add_f32("v", &[3], &[1.0, 2.0, 3.0]);
        w.write(&p).unwrap();
        let g = Gguf::open(&p).unwrap();
        assert_eq!(g.version(), version);
        assert_eq!(g.alignment(), align);
        assert_eq!(g.data_offset() % align, 0);
        let expect = all_types_writer();
        let want: Vec<(String, Value)> = {
            let bytes = expect.to_bytes();
            let p2 = write_tmp(&dir, "e.gguf", &bytes);
            Gguf::open(&p2)
                .unwrap()
                .metadata()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        for (k, v) in &want {
            assert_eq!(g.get(k), Some(v), "key {k}");
        }
        assert_eq!(g.get("string").unwrap().as_str(), Some("héllo ✓"));
        assert_eq!(g.get("u64"), Some(&Value::U64(u64::MAX)));
        assert_eq!(g.get("i64"), Some(&Value::I64(i64::MIN)));
        assert_eq!(g.get_array("empty").unwrap(), (ValueType::F32, &[][..]));
        assert_eq!(g.get_str_array("strs").unwrap(), vec!["x", "y z"]);
        let (t, items) = g.get_array("nested").unwrap();
        assert_eq!(t, ValueType::Array);
        assert_eq!(
            items[0],
            Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)])
        );
    }
}

#[test]
fn typed_getters_accept_fitting_integers_and_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    all_types_writer().write(&p).unwrap();
    let g = Gguf::open(&p).unwrap();
    assert_eq!(g.get_u32("u8").unwrap(), 200);
    assert_eq!(g.get_u32("u16").unwrap(), 60000);
    assert_eq!(g.get_u64("u32").unwrap(), 4_000_000_000);
    assert_eq!(g.get_i64("i32").unwrap(), -2_000_000_000);
    assert_eq!(g.get_f32("f32").unwrap(), 1.5);
    assert_eq!(g.get_f32("f64").unwrap(), -2.25);
    assert_eq!(g.get_f32("small").unwrap(), 7.0);
    assert!(g.get_bool("bool").unwrap());
    assert_eq!(g.get_str("string").unwrap(), "héllo ✓");
    for (r, key) in [
        (g.get_u32("i8").map(|_| ()), "i8"),   // negative
        (g.get_u32("u64").map(|_| ()), "u64"), // too big
        (g.get_u32("string").map(|_| ()), "string"),
        (g.get_str("u8").map(|_| ()), "u8"),
        (g.get_bool("u8").map(|_| ()), "u8"),
        (g.get_str_array("nested").map(|_| ()), "nested"),
        (g.get_f32("missing.key").map(|_| ()), "missing.key"),
    ] {
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains(key),
            "{msg}"
        );
    }
    assert!(matches!(
        g.get_u32("nope"),
        Err(GgufError::MissingKey { .. })
    ));
}

/// Writes one raw tensor and reads it back as f32.
fn dequant_raw(ty: GgmlType, dims: &[u64], data: Vec<u8>) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.gguf");
    let mut w = GgufWriter::new();
    w.add_raw("t", ty, dims, data);
    w.write(&p).unwrap();
    let g = Gguf::open(&p).unwrap();
    let t = g.tensor("t").unwrap();
    assert_eq!(t.ty, ty);
    assert_eq!(t.dims, dims);
    t.to_f32().unwrap()
}

#[test]
fn dequantize_hand_made_blocks() {
    // Q4_1: d = 0.5, m = -1; low nibble of byte j is element j, high nibble element j+16.
    let mut b = vec![];
    b.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
    b.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
    for j in 0..16u8 {
        b.push(j | ((15 - j) << 4));
    }
    let v = dequant_raw(GgmlType::Q4_1, &[32], b);
    for j in 0..16 {
        assert_eq!(v[j], 0.5 * j as f32 - 1.0, "element {j}");
        assert_eq!(v[j + 16], 0.5 * (15 - j) as f32 - 1.0, "element {}", j + 16);
    }

    // Q4_0: d = 2, value = d * (q - 8).
    let mut b = f16::from_f32(2.0).to_le_bytes().to_vec();
    for j in 0..16u8 {
        b.push(j | (3 << 4));
    }
    let v = dequant_raw(GgmlType::Q4_0, &[32], b);
    for j in 0..16 {
        assert_eq!(v[j], 2.0 * (j as f32 - 8.0));
        assert_eq!(v[j + 16], 2.0 * (3.0 - 8.0));
    }

    // Q8_0 over two blocks: d = 0.25 then d = -1, q = signed bytes.
    let mut b = f16::from_f32(0.25).to_le_bytes().to_vec();
    b.extend((0..32).map(|i| (i as i8 * 4 - 64) as u8));
    b.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
    b.extend((0..32).map(|i| if i == 0 { 0x80 } else { 127u8 }));
    let v = dequant_raw(GgmlType::Q8_0, &[64], b);
    for (i, x) in v[..32].iter().enumerate() {
        assert_eq!(*x, 0.25 * (i as f32 * 4.0 - 64.0));
    }
    assert_eq!(v[32], 128.0); // -1 * -128
    assert_eq!(v[33], -127.0);

    // F16 and F32, including signed zero and infinities.
    let vals = [
        0.0f32,
        -0.0,
        1.0,
        -2.5,
        65504.0,
        f32::INFINITY,
        0.000061035156,
    ];
    let b: Vec<u8> = vals
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    assert_eq!(dequant_raw(GgmlType::F16, &[7], b), vals);
    let b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(dequant_raw(GgmlType::F32, &[7], b), vals);

    // BF16 keeps the top half of an f32.
    let b: Vec<u8> = [1.0f32, -3.0]
        .iter()
        .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    assert_eq!(dequant_raw(GgmlType::BF16, &[2], b), vec![1.0, -3.0]);
}

#[test]
fn round_trip_tensors_of_each_type() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.gguf");
    let vals: Vec<f32> = (0..64 * 3)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect();
    let mut w = GgufWriter::new().alignment(64);
    w.add_f32("f32", &[64, 3], &vals)
        .add_f16("f16", &[64, 3], &vals)
        .add_q8_0("q8", &[64, 3], &vals)
        .add_q4_1("q4", &[64, 3], &vals)
        .add_f32("odd", &[5], &vals[..5]);
    w.write(&p).unwrap();
    let g = Gguf::open(&p).unwrap();
    assert_eq!(g.tensor_infos().len(), 5);
    for t in g.tensor_infos() {
        assert_eq!(t.offset % 64, 0, "{} offset {}", t.name, t.offset);
        assert_eq!(
            t.dims,
            if t.name == "odd" {
                vec![5]
            } else {
                vec![64, 3]
            }
        );
    }
    assert_eq!(g.tensor("f32").unwrap().to_f32().unwrap(), vals);
    assert_eq!(g.tensor("odd").unwrap().to_f32().unwrap(), &vals[..5]);
    let f16v: Vec<f32> = vals.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
    assert_eq!(g.tensor("f16").unwrap().to_f32().unwrap(), f16v);
    assert_eq!(
        g.tensor("f16").unwrap().to_f16().unwrap()[5].to_f32(),
        f16v[5]
    );

    let q8 = g.tensor("q8").unwrap();
    assert_eq!(q8.q8_0_blocks().unwrap().len(), 6);
    for (chunk, got) in vals.chunks(32).zip(q8.to_f32().unwrap().chunks(32)) {
        let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (x, y) in chunk.iter().zip(got) {
            assert!((x - y).abs() <= amax / 127.0 * 0.51 + 1e-3, "{x} vs {y}");
        }
    }

    let q4 = g.tensor("q4").unwrap();
    let blocks = q4.q4_1_blocks().unwrap();
    let want: Vec<BlockQ4_1> = vals
        .chunks(32)
        .map(|c| BlockQ4_1::quantize(c.try_into().unwrap()))
        .collect();
    assert_eq!(blocks, want);
    assert_eq!(q4.q4_1_slice().unwrap(), &want[..]);
    assert!(matches!(
        q4.q4_1_cow().unwrap(),
        std::borrow::Cow::Borrowed(_)
    ));
    let mut expect = vec![];
    for b in &want {
        let mut out = [0f32; 32];
        b.dequantize(&mut out);
        expect.extend(out);
    }
    assert_eq!(q4.to_f32().unwrap(), expect);
    assert_eq!(q4.matrix_shape().unwrap(), (64, 3));

    // Typed accessors refuse other types, naming file and tensor.
    let msg = g
        .tensor("f32")
        .unwrap()
        .q4_1_blocks()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("`f32`") && msg.contains("Q4_1"),
        "{msg}"
    );
    let msg = g.tensor("missing").unwrap_err().to_string();
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn odd_alignment_falls_back_to_copied_blocks() {
    // Alignment 1 and a 1- or 2-byte tensor first: one of the two puts the Q4_1 data at an
    // odd address, where in-place access is refused and the Cow copies.
    let vals: Vec<f32> = (0..32).map(|i| i as f32 / 7.0).collect();
    let want = vec![BlockQ4_1::quantize(vals.as_slice().try_into().unwrap())];
    let mut saw_odd = false;
    for pad in 1..=2u64 {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("odd.gguf");
        let mut w = GgufWriter::new().alignment(1);
        w.add_raw("pad", GgmlType::I8, &[pad], vec![7; pad as usize])
            .add_q4_1("q", &[32], &vals);
        w.write(&p).unwrap();
        let g = Gguf::open(&p).unwrap();
        let t = g.tensor("q").unwrap();
        assert_eq!(t.q4_1_blocks().unwrap(), want);
        assert_eq!(&*t.q4_1_cow().unwrap(), &want[..]);
        if (t.data.as_ptr() as usize) % 2 == 1 {
            saw_odd = true;
            assert!(t.q4_1_slice().is_err());
            assert!(matches!(t.q4_1_cow().unwrap(), std::borrow::Cow::Owned(_)));
        }
    }
    assert!(saw_odd);
}

#[test]
fn synthetic_llama_is_a_valid_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    let cfg = tiny_config();
    tiny_llama(&cfg, GgmlType::Q4_1, 7).write(&p).unwrap();
    let g = Gguf::open(&p).unwrap();
    let read = runtime::config::ModelConfig::from_gguf(&g).unwrap();
    assert_eq!(read, cfg);
    let tk = runtime::tokenizer::Tokenizer::from_gguf(&g).unwrap();
    let ids = tk.encode("the cat sat on 12 mats<|im_end|>", true).unwrap();
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(tk.decode(&ids).unwrap(), "the cat sat on 12 mats<|im_end|>");
}

// ---------------------------------------------------------------- malformed files

/// A header with given counts, followed by `rest`.
fn header(version: u32, n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(rest);
    b
}

fn s(b: &mut Vec<u8>, text: &str) {
    b.extend_from_slice(&(text.len() as u64).to_le_bytes());
    b.extend_from_slice(text.as_bytes());
}

/// A tensor info entry.
fn tinfo(b: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, offset: u64) {
    s(b, name);
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
}

fn pad_to(b: &mut Vec<u8>, align: usize) {
    b.resize(b.len().div_ceil(align) * align, 0);
}

#[test]
fn malformed_headers_are_errors() {
    assert!(open_err(b"").contains("too short"));
    assert!(open_err(b"GGUF\x03\0\0\0").contains("too short"));
    assert!(open_err(&header(3, 0, 0, b"")[..20]).contains("too short"));
    assert!(open_err(&[b"GGML".as_slice(), &[0u8; 40]].concat()).contains("bad magic"));
    assert!(open_err(&header(1, 0, 0, b"")).contains("version 1"));
    assert!(open_err(&header(99, 0, 0, b"")).contains("unsupported GGUF version 99"));
    assert!(open_err(&header(3u32.swap_bytes(), 0, 0, b"")).contains("big-endian"));
    // Absurd counts fail before any allocation.
    assert!(open_err(&header(3, 0, u64::MAX, b"")).contains("metadata count"));
    assert!(open_err(&header(3, u64::MAX / 2, 0, b"")).contains("tensor count"));
    assert!(open_err(&header(3, 1 << 40, 0, &[0; 64])).contains("cannot fit"));
}

#[test]
fn malformed_metadata_is_an_error() {
    // Key length beyond the file.
    let mut r = vec![];
    r.extend_from_slice(&u64::MAX.to_le_bytes());
    r.extend_from_slice(&[0; 16]);
    assert!(open_err(&header(3, 0, 1, &r)).contains("metadata key #0"));
    // Unknown value type.
    let mut r = vec![];
    s(&mut r, "k");
    r.extend_from_slice(&77u32.to_le_bytes());
    r.extend_from_slice(&[0; 8]);
    assert!(open_err(&header(3, 0, 1, &r)).contains("unknown value type id 77"));
    // String value with an absurd length.
    let mut r = vec![];
    s(&mut r, "k");
    r.extend_from_slice(&8u32.to_le_bytes());
    r.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(open_err(&header(3, 0, 1, &r)).contains("value of `k`"));
    // Array with an absurd count.
    let mut r = vec![];
    s(&mut r, "arr");
    r.extend_from_slice(&9u32.to_le_bytes());
    r.extend_from_slice(&6u32.to_le_bytes());
    r.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(open_err(&header(3, 0, 1, &r)).contains("exceeds the limit"));
    // Array count within the limit but beyond the bytes left.
    let mut r = vec![];
    s(&mut r, "arr");
    r.extend_from_slice(&9u32.to_le_bytes());
    r.extend_from_slice(&6u32.to_le_bytes());
    r.extend_from_slice(&1000u64.to_le_bytes());
    r.extend_from_slice(&[0; 100]);
    assert!(open_err(&header(3, 0, 1, &r)).contains("array count 1000"));
    // Arrays nested absurdly deep (would exhaust the stack if followed).
    let mut r = vec![];
    s(&mut r, "deep");
    r.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..100_000 {
        r.extend_from_slice(&9u32.to_le_bytes());
        r.extend_from_slice(&1u64.to_le_bytes());
    }
    assert!(open_err(&header(3, 0, 1, &r)).contains("nested deeper"));
    // Invalid UTF-8 in a string.
    let mut r = vec![];
    s(&mut r, "k");
    r.extend_from_slice(&8u32.to_le_bytes());
    r.extend_from_slice(&2u64.to_le_bytes());
    r.extend_from_slice(&[0xff, 0xfe]);
    assert!(open_err(&header(3, 0, 1, &r)).contains("UTF-8"));
    // Bool byte other than 0/1.
    let mut r = vec![];
    s(&mut r, "b");
    r.extend_from_slice(&7u32.to_le_bytes());
    r.push(2);
    r.extend_from_slice(&[0; 16]);
    assert!(open_err(&header(3, 0, 1, &r)).contains("bool"));
    // Duplicate key.
    let mut r = vec![];
    for _ in 0..2 {
        s(&mut r, "dup");
        r.extend_from_slice(&4u32.to_le_bytes());
        r.extend_from_slice(&1u32.to_le_bytes());
    }
    assert!(open_err(&header(3, 0, 2, &r)).contains("duplicate metadata key `dup`"));
    // Alignment that is not a power of two.
    let mut w = GgufWriter::new();
    w.set_u32("general.alignment", 48);
    assert!(open_err(&w.to_bytes()).contains("general.alignment"));
}

/// One tensor of 32 F32 values after its info, aligned to 32.
fn one_tensor_file(dims: &[u64], ty: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut r = vec![];
    tinfo(&mut r, "t", dims, ty, offset);
    let mut b = header(3, 1, 0, &r);
    pad_to(&mut b, 32);
    b.resize(b.len() + data_len, 0);
    b
}

#[test]
fn malformed_tensor_infos_are_errors() {
    let ok = one_tensor_file(&[32], 0, 0, 128);
    let dir = tempfile::tempdir().unwrap();
    assert!(Gguf::open(write_tmp(&dir, "ok.gguf", &ok)).is_ok());

    assert!(open_err(&one_tensor_file(&[32], 0, 0, 127)).contains("extends past the end"));
    assert!(open_err(&one_tensor_file(&[32], 0, 64, 128)).contains("extends past the end"));
    assert!(
        open_err(&one_tensor_file(&[32], 0, u64::MAX - 31, 128)).contains("extends past the end")
    );
    assert!(
        open_err(&one_tensor_file(&[32], 0, 4, 128)).contains("not a multiple of the alignment")
    );
    assert!(
        open_err(&one_tensor_file(&[1 << 32, 1 << 32, 1 << 32], 0, 0, 128)).contains("overflows")
    );
    assert!(
        open_err(&one_tensor_file(&[1 << 40, 1 << 20], 0, 0, 128)).contains("extends past the end")
    );
    assert!(open_err(&one_tensor_file(&[1, 1, 1, 1, 1], 0, 0, 128)).contains("5 dimensions"));
    assert!(open_err(&one_tensor_file(&[], 0, 0, 128)).contains("0 dimensions"));
    assert!(open_err(&one_tensor_file(&[33], 3, 0, 128)).contains("block size"));
    // Data section start past the end of the file.
    let mut r = vec![];
    tinfo(&mut r, "t", &[1], 0, 0);
    assert!(open_err(&header(3, 1, 0, &r)).contains("past the end"));

    // Duplicate tensor names.
    let mut r = vec![];
    tinfo(&mut r, "same", &[32], 0, 0);
    tinfo(&mut r, "same", &[32], 0, 128);
    let mut b = header(3, 2, 0, &r);
    pad_to(&mut b, 32);
    b.resize(b.len() + 256, 0);
    assert!(open_err(&b).contains("duplicate tensor name `same`"));
}

#[test]
fn unknown_tensor_type_lists_but_errors_on_access() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.add_raw("weird", GgmlType::Other(1234), &[32, 2], vec![0; 64]);
    w.add_raw("k6", GgmlType::Q6K, &[256], vec![0; 210]);
    w.add_f32("fine", &[2], &[1.0, 2.0]);
    let p = dir.path().join("u.gguf");
    w.write(&p).unwrap();
    let g = Gguf::open(&p).unwrap();
    assert_eq!(g.tensor_infos().len(), 3);
    assert_eq!(g.tensor_info("weird").unwrap().ty, GgmlType::Other(1234));
    let msg = g.tensor("weird").unwrap_err().to_string();
    assert!(
        msg.contains("weird") && msg.contains("1234") && msg.contains(&p.display().to_string()),
        "{msg}"
    );
    // A known but non-dequantizable type: accessible as bytes, to_f32 is an error.
    let k6 = g.tensor("k6").unwrap();
    assert_eq!(k6.data.len(), 210);
    assert!(k6.to_f32().unwrap_err().to_string().contains("Q6_K"));
    assert_eq!(g.tensor("fine").unwrap().to_f32().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn every_truncation_of_a_small_file_is_an_error() {
    let mut w = all_types_writer();
    w.add_f32("a", &[3], &[1.0, 2.0, 3.0])
        .add_q4_1("b", &[32], &[0.5; 32]);
    let bytes = w.to_bytes();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.gguf");
    for len in 0..bytes.len() {
        std::fs::write(&p, &bytes[..len]).unwrap();
        let err = Gguf::open(&p)
            .err()
            .unwrap_or_else(|| panic!("prefix of {len} bytes opened"));
        assert!(err.to_string().contains(&p.display().to_string()));
    }
    std::fs::write(&p, &bytes).unwrap();
    Gguf::open(&p).unwrap();
}

#[test]
fn random_bytes_are_an_error() {
    let mut x = 0x1234_5678_9abc_def0u64;
    let bytes: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(open_err(&bytes).contains("bad magic"));
    // Random bytes behind a valid magic and version.
    let mut b = header(3, 0, 0, b"")[..8].to_vec();
    b.extend_from_slice(&bytes);
    open_err(&b);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn base() -> Vec<u8> {
        let mut w = all_types_writer();
        w.add_f32("a", &[3], &[1.0, 2.0, 3.0])
            .add_q8_0("b", &[32, 2], &[0.25; 64])
            .add_q4_1("c", &[32], &[0.5; 32]);
        w.to_bytes()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
        /// Mutated files open or fail cleanly; whatever opens can be fully read.
        #[test]
        fn mutated_files_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                     cut in any::<prop::sample::Index>(), do_cut in any::<bool>()) {
            let mut b = base();
            for (i, v) in edits {
                let i = i.index(b.len());
                b[i] = v;
            }
            if do_cut {
                let n = cut.index(b.len());
                b.truncate(n);
            }
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("f.gguf");
            std::fs::write(&p, &b).unwrap();
            match Gguf::open(&p) {
                Err(e) => prop_assert!(e.to_string().contains(&p.display().to_string())),
                Ok(g) => {
                    for (_, v) in g.metadata() { let _ = v.summary(20); }
                    for t in g.tensor_infos() {
                        if let Ok(t) = g.tensor(&t.name) {
                            let _ = t.to_f32();
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- the real model

/// Bytes of a file range, read with plain I/O (independent of the reader's mmap slicing).
fn read_range(p: &Path, start: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut b = vec![0; len];
    f.read_exact(&mut b).unwrap();
    b
}

#[test]
fn real_model_layout() {
    let Some(path) = a_support::model_path() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.metadata().len(), 33);
    assert_eq!(g.alignment(), 32);
    let infos = g.tensor_infos();
    assert_eq!(infos.len(), 272);
    let count = |ty| infos.iter().filter(|t| t.ty == ty).count();
    assert_eq!(
        (
            count(GgmlType::Q8_0),
            count(GgmlType::Q4_1),
            count(GgmlType::F32)
        ),
        (1, 210, 61)
    );
    let end = infos
        .iter()
        .map(|t| g.data_offset() + t.offset + t.n_bytes.unwrap())
        .max()
        .unwrap();
    assert_eq!(
        end,
        std::fs::metadata(&path).unwrap().len(),
        "tensor data ends exactly at the file end"
    );
    assert!(g.tensor_info("output.weight").is_none());
    assert_eq!(
        g.tensor_info("token_embd.weight").unwrap().dims,
        vec![576, 49152]
    );
}

#[test]
fn real_model_dequantization_matches_raw_bytes() {
    let Some(path) = a_support::model_path() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();

    // Q4_1: value = d * q + m, read from the raw file bytes of a few blocks.
    let name = "blk.3.ffn_down.weight";
    let info = g.tensor_info(name).unwrap().clone();
    assert_eq!(
        (info.ty, info.dims.clone()),
        (GgmlType::Q4_1, vec![1536, 576])
    );
    let t = g.tensor(name).unwrap();
    let all = t.to_f32().unwrap();
    assert_eq!(all.len(), 1536 * 576);
    for block in [0usize, 1, 47, 12345, 1536 * 576 / 32 - 1] {
        let raw = read_range(&path, g.data_offset() + info.offset + block as u64 * 20, 20);
        let d = f16::from_le_bytes([raw[0], raw[1]]).to_f32();
        let m = f16::from_le_bytes([raw[2], raw[3]]).to_f32();
        for i in [0usize, 5, 15, 16, 21, 31] {
            let byte = raw[4 + i % 16];
            let q = if i < 16 { byte & 15 } else { byte >> 4 };
            assert_eq!(
                all[block * 32 + i],
                d * q as f32 + m,
                "block {block} element {i}"
            );
        }
    }
    assert!(all.iter().all(|v| v.is_finite()));
    let mean_abs = all.iter().map(|v| v.abs() as f64).sum::<f64>() / all.len() as f64;
    assert!(
        mean_abs > 1e-3 && mean_abs < 1.0,
        "implausible weight scale {mean_abs}"
    );

    // Q8_0 token embedding: row 504 (" The"... any row) from raw bytes.
    let info = g.tensor_info("token_embd.weight").unwrap().clone();
    let emb = g.tensor("token_embd.weight").unwrap().to_f32().unwrap();
    let row = 504usize;
    let blocks_per_row = 576 / 32;
    for b in [0usize, 7, 17] {
        let raw = read_range(
            &path,
            g.data_offset() + info.offset + ((row * blocks_per_row + b) * 34) as u64,
            34,
        );
        let d = f16::from_le_bytes([raw[0], raw[1]]).to_f32();
        for i in 0..32 {
            assert_eq!(emb[row * 576 + b * 32 + i], d * raw[2 + i] as i8 as f32);
        }
    }

    // F32 norm vector equals its raw little-endian bytes.
    let info = g.tensor_info("output_norm.weight").unwrap().clone();
    let raw = read_range(&path, g.data_offset() + info.offset, 576 * 4);
    let want: Vec<f32> = raw
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        g.tensor("output_norm.weight").unwrap().to_f32().unwrap(),
        want
    );
}

#[test]
fn truncated_copies_of_the_real_model_are_errors() {
    let Some(path) = a_support::model_path() else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    for (len, expect) in [
        (100usize, "truncated"),
        (1 << 20, "truncated"),
        (bytes.len() / 2, "extends past the end"),
        (bytes.len() - 1, "extends past the end"),
    ] {
        let msg = open_err(&bytes[..len]);
        assert!(
            msg.contains(expect) && msg.contains("truncated"),
            "cut at {len}: {msg}"
        );
        eprintln!("cut at {len}: {msg}");
    }
}
