//! Reader and writer tests: round trips, truncation at every byte, and one
//! crafted file per cap and per bounds check.

use std::vec::Vec;

use super::*;
use crate::error::{Name, Shape};

/// A sink into a `Vec`, for tests.
struct VecSink(Vec<u8>);

impl Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// A small file with every value type, nested arrays, a non-default
/// alignment and three tensors of different types.
fn sample_file() -> Vec<u8> {
    let inner_a = [1u8, 2, 3];
    let mut w = GgufWriter::new(VecSink(Vec::new()), 3, 16, 64).unwrap();
    w.kv_str("general.architecture", "llama").unwrap();
    w.kv_u32("general.alignment", 64).unwrap();
    w.kv("k.u8", Value::U8(200)).unwrap();
    w.kv("k.i8", Value::I8(-5)).unwrap();
    w.kv("k.u16", Value::U16(60000)).unwrap();
    w.kv("k.i16", Value::I16(-30000)).unwrap();
    w.kv("k.i32", Value::I32(-7)).unwrap();
    w.kv_f32("k.f32", 1.5).unwrap();
    w.kv("k.bool", Value::Bool(true)).unwrap();
    w.kv("k.u64", Value::U64(1 << 40)).unwrap();
    w.kv("k.i64", Value::I64(-(1 << 40))).unwrap();
    w.kv("k.f64", Value::F64(0.25)).unwrap();
    w.kv_strings("k.strs", ["a", "", "héllo"].into_iter())
        .unwrap();
    w.kv_array(
        "k.u32s",
        ValueType::U32,
        [Value::U32(7), Value::U32(8)].into_iter(),
    )
    .unwrap();
    // An array of two arrays of u8: built by hand from its raw layout.
    let mut nested = Vec::new();
    for arr in [&inner_a[..], &[][..]] {
        nested.extend_from_slice(&(ValueType::U8 as u32).to_le_bytes());
        nested.extend_from_slice(&(arr.len() as u64).to_le_bytes());
        nested.extend_from_slice(arr);
    }
    w.kv(
        "k.nested",
        Value::Array(ArrayView::new(ValueType::Array, 2, &nested)),
    )
    .unwrap();
    w.kv("k.empty", Value::String(b"")).unwrap();

    let f32_data: Vec<u8> = (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let q8_data: Vec<u8> = (0..68u32).map(|i| i as u8).collect();
    let f16_data: Vec<u8> = (0..6u32).flat_map(|i| (i as u16).to_le_bytes()).collect();
    w.tensor_info("t.f32", &[4, 2], GgmlType::F32).unwrap();
    w.tensor_info("t.q8", &[64], GgmlType::Q8_0).unwrap();
    w.tensor_info("t.f16", &[3, 1, 2], GgmlType::F16).unwrap();
    w.tensor_data(&[4, 2], GgmlType::F32, &f32_data).unwrap();
    w.tensor_data(&[64], GgmlType::Q8_0, &q8_data).unwrap();
    w.tensor_data(&[3, 1, 2], GgmlType::F16, &f16_data).unwrap();
    w.finish().unwrap().0
}

#[test]
fn round_trip_keeps_every_value_type_and_tensor() {
    let bytes = sample_file();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.metadata_count(), 16);
    assert_eq!(g.tensor_count(), 3);
    assert_eq!(g.data_start() % 64, 0);
    let get = |k: &str| g.get(k).unwrap().unwrap();
    assert_eq!(get("general.architecture").as_str(), Some("llama"));
    assert_eq!(get("k.u8"), Value::U8(200));
    assert_eq!(get("k.i8"), Value::I8(-5));
    assert_eq!(get("k.u16"), Value::U16(60000));
    assert_eq!(get("k.i16"), Value::I16(-30000));
    assert_eq!(get("k.i32").as_i64(), Some(-7));
    assert_eq!(get("k.i32").as_u64(), None);
    assert_eq!(get("k.f32").as_f32(), Some(1.5));
    assert_eq!(get("k.bool").as_bool(), Some(true));
    assert_eq!(get("k.u64").as_u64(), Some(1 << 40));
    assert_eq!(get("k.i64").as_i64(), Some(-(1 << 40)));
    assert_eq!(get("k.f64").as_f32(), Some(0.25));
    assert_eq!(get("k.empty").as_str(), Some(""));
    let strs = get("k.strs").as_array().unwrap();
    assert_eq!(strs.len(), 3);
    let collected: Vec<&[u8]> = strs.strings().collect();
    assert_eq!(collected, [&b"a"[..], b"", "héllo".as_bytes()]);
    assert_eq!(strs.get(2).unwrap().as_str(), Some("héllo"));
    let u32s = get("k.u32s").as_array().unwrap();
    assert_eq!(
        (u32s.get_u32(0), u32s.get_u32(1), u32s.get_u32(2)),
        (Some(7), Some(8), None)
    );
    let nested = get("k.nested").as_array().unwrap();
    assert_eq!(nested.elem_type(), ValueType::Array);
    let first = nested.get(0).unwrap().as_array().unwrap();
    assert_eq!(first.raw_bytes(), &[1, 2, 3]);
    assert!(nested.get(1).unwrap().as_array().unwrap().is_empty());
    assert!(g.get("missing").unwrap().is_none());
    assert_eq!(g.get_arch("k", "u8").unwrap(), Some(Value::U8(200)));

    let t = g.tensor("t.f32").unwrap().unwrap();
    assert_eq!(t.shape, Shape::new(&[4, 2]));
    assert_eq!(t.ggml_type, GgmlType::F32);
    assert_eq!(t.n_elements(), 8);
    assert_eq!(&t.data[4..8], &1f32.to_le_bytes());
    assert_eq!(t.file_offset % 64, 0);
    let q = g.tensor("t.q8").unwrap().unwrap();
    assert_eq!(q.offset, 64);
    assert_eq!(q.data.len(), 68);
    assert_eq!(q.data[67], 67);
    let h = g.tensor("t.f16").unwrap().unwrap();
    assert_eq!(h.shape.as_slice(), &[3, 1, 2]);
    assert_eq!(h.offset, 192);
    assert_eq!(g.tensors().count(), 3);
}

#[test]
fn truncation_at_every_byte_is_an_error_until_the_last_tensor_is_whole() {
    let bytes = sample_file();
    let g = Gguf::parse(&bytes).unwrap();
    let needed = g.data_start() + 192 + 12; // last tensor: offset 192, 12 bytes
    for len in 0..bytes.len() {
        let r = Gguf::parse(&bytes[..len]);
        if len < needed {
            assert!(r.is_err(), "prefix of {len} bytes parsed");
        } else {
            assert!(r.is_ok(), "prefix of {len} bytes refused: {:?}", r.err());
        }
    }
}

/// Raw little-endian byte builder for crafted files.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, tensors: u64, kvs: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(tensors).u64(kvs);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).bytes(s)
    }
    /// A tensor entry.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 and appends `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.resize(self.0.len() + n, 0xAB);
        self
    }
}

fn kind(bytes: &[u8]) -> GgufErrorKind {
    Gguf::parse(bytes).unwrap_err().kind
}

#[test]
fn header_errors_are_distinct() {
    assert_eq!(
        kind(b"GGUX\x03\0\0\0"),
        GgufErrorKind::BadMagic { found: *b"GGUX" }
    );
    let mut be = Raw::default();
    be.bytes(b"GGUF").bytes(&3u32.to_be_bytes()).u64(0).u64(0);
    assert_eq!(kind(&be.0), GgufErrorKind::BigEndian);
    assert_eq!(
        kind(&Raw::header(1, 0, 0).0),
        GgufErrorKind::UnsupportedVersion { version: 1 }
    );
    assert_eq!(
        kind(&Raw::header(4, 0, 0).0),
        GgufErrorKind::UnsupportedVersion { version: 4 }
    );
    assert!(Gguf::parse(&Raw::header(2, 0, 0).0).is_ok());
    assert!(matches!(
        kind(b"GG"),
        GgufErrorKind::Truncated {
            needed: 4,
            available: 2
        }
    ));
}

#[test]
fn every_cap_has_its_own_error() {
    // Counts in the header, with default caps.
    assert_eq!(
        kind(&Raw::header(3, u64::MAX, 0).0),
        GgufErrorKind::TooManyTensors {
            count: u64::MAX,
            cap: 1 << 16
        }
    );
    assert_eq!(
        kind(&Raw::header(3, 0, (1 << 16) + 1).0),
        GgufErrorKind::TooManyMetadata {
            count: (1 << 16) + 1,
            cap: 1 << 16
        }
    );
    // A string whose length is absurd.
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX);
    assert_eq!(
        kind(&r.0),
        GgufErrorKind::StringTooLong {
            len: u64::MAX,
            cap: 16 << 20
        }
    );
    // An array whose length is absurd.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"a")
        .u32(ValueType::Array as u32)
        .u32(ValueType::U8 as u32)
        .u64(u64::MAX);
    assert_eq!(
        kind(&r.0),
        GgufErrorKind::ArrayTooLong {
            len: u64::MAX,
            cap: 64 << 20
        }
    );
    // Nesting: arrays of arrays, five deep, against a cap of four.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"deep").u32(ValueType::Array as u32);
    for _ in 0..5 {
        r.u32(ValueType::Array as u32).u64(1);
    }
    r.u32(ValueType::U8 as u32).u64(0);
    assert_eq!(kind(&r.0), GgufErrorKind::NestingTooDeep { cap: 4 });
    // Smaller caps from the caller apply to a file that is otherwise valid.
    let bytes = sample_file();
    let with = |l: GgufLimits| Gguf::parse_with_limits(&bytes, &l).unwrap_err().kind;
    let d = GgufLimits::DEFAULT;
    assert!(matches!(
        with(GgufLimits {
            max_tensors: 2,
            ..d
        }),
        GgufErrorKind::TooManyTensors { count: 3, cap: 2 }
    ));
    assert!(matches!(
        with(GgufLimits {
            max_metadata: 15,
            ..d
        }),
        GgufErrorKind::TooManyMetadata { count: 16, .. }
    ));
    assert!(matches!(
        with(GgufLimits {
            max_string_len: 4,
            ..d
        }),
        GgufErrorKind::StringTooLong { cap: 4, .. }
    ));
    assert!(matches!(
        with(GgufLimits {
            max_array_len: 2,
            ..d
        }),
        GgufErrorKind::ArrayTooLong { len: 3, cap: 2 }
    ));
    assert!(matches!(
        with(GgufLimits { max_depth: 1, ..d }),
        GgufErrorKind::NestingTooDeep { cap: 1 }
    ));
}

#[test]
fn every_metadata_check_has_its_own_error() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(13);
    assert_eq!(kind(&r.0), GgufErrorKind::BadValueType { id: 13 });
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(ValueType::Array as u32).u32(99).u64(0);
    assert_eq!(kind(&r.0), GgufErrorKind::BadValueType { id: 99 });
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(ValueType::Bool as u32).bytes(&[2]);
    assert_eq!(kind(&r.0), GgufErrorKind::BadBool { value: 2 });
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k")
        .u32(ValueType::Array as u32)
        .u32(ValueType::Bool as u32)
        .u64(2)
        .bytes(&[1, 7]);
    assert_eq!(kind(&r.0), GgufErrorKind::BadBool { value: 7 });
    let mut r = Raw::header(3, 0, 1);
    r.str(b"\xff\xfe").u32(ValueType::U8 as u32).bytes(&[0]);
    assert_eq!(kind(&r.0), GgufErrorKind::BadUtf8);
    let mut r = Raw::header(3, 0, 1);
    r.str(b"").u32(ValueType::U8 as u32).bytes(&[0]);
    assert_eq!(kind(&r.0), GgufErrorKind::EmptyName);
    // A string whose length is within the cap but past the end of the file.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k")
        .u32(ValueType::String as u32)
        .u64(1000)
        .bytes(b"abc");
    assert!(matches!(
        kind(&r.0),
        GgufErrorKind::Truncated {
            needed: 1000,
            available: 3
        }
    ));
    // An array of u64 whose byte size overflows.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k")
        .u32(ValueType::Array as u32)
        .u32(ValueType::U64 as u32)
        .u64(60 << 20);
    assert!(matches!(kind(&r.0), GgufErrorKind::Truncated { .. }));
    // Alignment: zero, not a power of two, wrong type.
    for (ty, payload, value) in [
        (ValueType::U32, 0u64.to_le_bytes()[..4].to_vec(), 0),
        (ValueType::U32, 48u32.to_le_bytes().to_vec(), 48),
        (ValueType::U64, 64u64.to_le_bytes().to_vec(), 64),
    ] {
        let mut r = Raw::header(3, 0, 1);
        r.str(b"general.alignment").u32(ty as u32).bytes(&payload);
        assert_eq!(kind(&r.0), GgufErrorKind::BadAlignment { value });
    }
    // Duplicate keys parse, but a lookup of the key refuses to pick one.
    let mut r = Raw::header(3, 0, 2);
    r.str(b"k").u32(ValueType::U8 as u32).bytes(&[1]);
    r.str(b"k").u32(ValueType::U8 as u32).bytes(&[2]);
    let g = Gguf::parse(&r.0).unwrap();
    assert_eq!(
        g.get("k").unwrap_err().kind,
        GgufErrorKind::DuplicateKey {
            key: Name::new("k")
        }
    );
}

#[test]
fn every_tensor_check_has_its_own_error() {
    let f32_id = GgmlType::F32.id();
    let q8_id = GgmlType::Q8_0.id();
    let one = |dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", dims, ty, offset).data(data);
        r.0
    };
    assert!(Gguf::parse(&one(&[8], f32_id, 0, 32)).is_ok());
    assert_eq!(
        kind(&one(&[1, 1, 1, 1, 1], f32_id, 0, 32)),
        GgufErrorKind::TooManyDims {
            tensor: 0,
            n_dims: 5
        }
    );
    assert_eq!(
        kind(&one(&[u64::MAX], f32_id, 0, 32)),
        GgufErrorKind::DimTooLarge {
            tensor: 0,
            dim: u64::MAX
        }
    );
    assert_eq!(
        kind(&one(&[1 << 32, 1 << 32], f32_id, 0, 32)),
        GgufErrorKind::DimsOverflow { tensor: 0 }
    );
    // Element count fits, byte size does not: 2^62 f32 values.
    assert_eq!(
        kind(&one(&[1 << 62], f32_id, 0, 32)),
        GgufErrorKind::DimsOverflow { tensor: 0 }
    );
    assert_eq!(
        kind(&one(&[8], 4, 0, 32)),
        GgufErrorKind::UnknownTensorType { tensor: 0, id: 4 }
    );
    assert_eq!(
        kind(&one(&[48], q8_id, 0, 64)),
        GgufErrorKind::RowNotBlockAligned {
            tensor: 0,
            ne0: 48,
            block: 32
        }
    );
    assert_eq!(
        kind(&one(&[8], f32_id, 16, 64)),
        GgufErrorKind::TensorMisaligned {
            tensor: 0,
            offset: 16,
            alignment: 32
        }
    );
    assert_eq!(
        kind(&one(&[8], f32_id, 0, 31)),
        GgufErrorKind::TensorOutOfBounds {
            tensor: 0,
            end: 32,
            data_len: 31
        }
    );
    assert_eq!(
        kind(&one(&[8], f32_id, !31, 32)),
        GgufErrorKind::TensorOutOfBounds {
            tensor: 0,
            end: u64::MAX,
            data_len: 32
        }
    );
    // The data section itself past the end: entries end mid-padding.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[0], f32_id, 0);
    assert!(matches!(kind(&r.0), GgufErrorKind::DataPastEnd { .. }));
    // Duplicate tensor names parse, but a lookup refuses to pick one.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[8], f32_id, 0)
        .tensor("t", &[8], f32_id, 32)
        .data(64);
    let g = Gguf::parse(&r.0).unwrap();
    assert!(matches!(
        g.tensor("t").unwrap_err().kind,
        GgufErrorKind::DuplicateTensor { .. }
    ));
}

#[test]
fn writer_refuses_misuse() {
    let mut w = GgufWriter::with_default_alignment(VecSink(Vec::new()), 1, 1).unwrap();
    assert!(w.tensor_info("t", &[8], GgmlType::F32).is_err()); // metadata first
    w.kv_u32("a", 1).unwrap();
    assert!(w.kv_u32("b", 2).is_err()); // one more than declared
    assert!(w.tensor_info("t", &[33], GgmlType::Q8_0).is_err()); // not whole blocks
    w.tensor_info("t", &[8], GgmlType::F32).unwrap();
    assert!(w.tensor_data(&[8], GgmlType::F32, &[0; 31]).is_err());
    w.tensor_data(&[8], GgmlType::F32, &[0; 32]).unwrap();
    let bytes = w.finish().unwrap().0;
    assert!(Gguf::parse(&bytes).is_ok());

    let w = GgufWriter::with_default_alignment(VecSink(Vec::new()), 1, 0).unwrap();
    assert!(w.finish().is_err()); // tensor declared, never written
    assert!(GgufWriter::new(VecSink(Vec::new()), 0, 0, 48).is_err());
}

#[test]
fn slice_and_counting_sinks_agree_with_the_vec_sink() {
    let reference = sample_file();
    let mut counter = GgufWriter::with_default_alignment(CountingSink::default(), 0, 1).unwrap();
    counter.kv_str("x", "y").unwrap();
    let n = counter.finish().unwrap().bytes;
    let mut buf = [0u8; 256];
    let mut w = GgufWriter::with_default_alignment(SliceSink::new(&mut buf), 0, 1).unwrap();
    w.kv_str("x", "y").unwrap();
    let len = w.finish().unwrap().len();
    assert_eq!(n, len as u64);
    assert!(Gguf::parse(&buf[..len]).is_ok());
    let mut small = [0u8; 10];
    assert!(GgufWriter::with_default_alignment(SliceSink::new(&mut small), 0, 1).is_err());
    assert!(!reference.is_empty());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Random byte flips anywhere in a valid file never panic the reader,
        /// and whatever parses can be fully walked.
        #[test]
        fn mutated_files_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = sample_file();
            let n = bytes.len();
            for (at, v) in flips {
                bytes[at % n] = v;
            }
            if let Ok(g) = Gguf::parse(&bytes) {
                for (k, v) in g.metadata() {
                    prop_assert!(!k.is_empty());
                    if let Some(a) = v.as_array() {
                        for (i, e) in a.iter().enumerate() {
                            prop_assert_eq!(a.get(i), Some(e));
                        }
                    }
                }
                for t in g.tensors() {
                    prop_assert_eq!(t.data.len() as u64, t.n_bytes());
                    prop_assert!(t.file_offset as usize + t.data.len() <= bytes.len());
                }
            }
        }
    }
}

#[test]
fn caller_limits_cannot_lift_the_nesting_ceiling() {
    // Arrays nested 40 deep: a caller asking for "no limit" still gets the
    // ceiling (every level is a stack frame of the reader).
    let mut r = Raw::header(3, 0, 1);
    r.str(b"deep").u32(ValueType::Array as u32);
    for _ in 0..40 {
        r.u32(ValueType::Array as u32).u64(1);
    }
    r.u32(ValueType::U8 as u32).u64(0);
    let no_caps = GgufLimits {
        max_tensors: u64::MAX,
        max_metadata: u64::MAX,
        max_string_len: u64::MAX,
        max_array_len: u64::MAX,
        max_depth: u32::MAX,
    };
    assert_eq!(
        Gguf::parse_with_limits(&r.0, &no_caps).unwrap_err().kind,
        GgufErrorKind::NestingTooDeep {
            cap: MAX_DEPTH_CEILING
        }
    );
    // Huge counts with a caller's huge caps are truncation errors, never
    // a wrapped index or an allocation.
    assert!(matches!(
        Gguf::parse_with_limits(&Raw::header(3, u64::MAX, 0).0, &no_caps)
            .unwrap_err()
            .kind,
        GgufErrorKind::Truncated { .. }
    ));
}

#[test]
fn hand_made_tensor_infos_and_lying_iterators_do_not_panic() {
    let bytes = sample_file();
    let g = Gguf::parse(&bytes).unwrap();
    let mut t = g.tensor("t.f32").unwrap().unwrap();
    t.shape = Shape::new(&[u64::MAX, u64::MAX, 2]);
    assert_eq!(t.n_elements(), u64::MAX);

    /// Claims three elements, yields one.
    struct Liar(u32);
    impl Iterator for Liar {
        type Item = Value<'static>;
        fn next(&mut self) -> Option<Value<'static>> {
            self.0 += 1;
            (self.0 == 1).then_some(Value::U32(7))
        }
    }
    impl ExactSizeIterator for Liar {
        fn len(&self) -> usize {
            3
        }
    }
    let mut w = GgufWriter::new(VecSink(Vec::new()), 0, 1, 32).unwrap();
    assert!(matches!(
        w.kv_array("k", ValueType::U32, Liar(0)),
        Err(GgufError {
            kind: GgufErrorKind::WriterMisuse { .. },
            ..
        })
    ));
}
