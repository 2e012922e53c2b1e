use super::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

fn q(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; row_bytes(ty, x.len()).unwrap()];
    quantize_row(ty, x, &mut out).unwrap();
    out
}

fn dq(ty: GgmlType, b: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize_row(ty, b, &mut out).unwrap();
    out
}

#[test]
fn round_half_away_matches_c_roundf() {
    let cases = [
        (0.0, 0),
        (0.49999997, 0),
        (0.5, 1),
        (-0.5, -1),
        (1.5, 2),
        (2.5, 3),
        (-2.5, -3),
        (126.5, 127),
        (-126.49999, -126),
        (8388607.5, 8388608),
        (1e20, i32::MAX),
        (-1e20, i32::MIN),
        (f32::INFINITY, i32::MAX),
        (f32::NAN, 0),
    ];
    for (v, want) in cases {
        assert_eq!(round_half_away(v), want, "round({v})");
    }
}

#[test]
fn f16_rounds_to_nearest_even() {
    assert_eq!(f32_to_f16(1.0), 0x3c00);
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even 1.0.
    assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
    // 1 + 3 * 2^-11 is halfway between 0x3c01 and 0x3c02: ties to 0x3c02.
    assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02);
    assert_eq!(f32_to_f16(65519.0), 0x7bff);
    assert_eq!(f32_to_f16(65520.0), 0x7c00);
    assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
}

#[test]
fn bf16_follows_ggml_rounding() {
    // Halfway between 1.0 and the next bf16: ties to even (1.0).
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
    // Halfway above an odd bf16: rounds up to even.
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
    // NaN is made quiet and keeps its upper bits.
    assert_eq!(f32_to_bf16(f32::from_bits(0x7fa0_0001)), 0x7fe0);
    // Subnormals are rounded, not flushed.
    assert_eq!(f32_to_bf16(f32::from_bits(0x0000_8000)), 0x0000);
    assert_eq!(f32_to_bf16(f32::from_bits(0x0001_8000)), 0x0002);
    assert_eq!(bf16_to_f32(0x3f80), 1.0);
}

#[test]
fn q8_0_rounds_halves_away_from_zero() {
    // amax = 127 gives d = 1 and 1/d = 1, so x * id is exact.
    let mut x = [0f32; 32];
    x[..8].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.5, 1.5, -126.5, 0.49]);
    let b = q(GgmlType::Q8_0, &x);
    assert_eq!(&b[..2], &0x3c00u16.to_le_bytes());
    let qs: Vec<i8> = b[2..10].iter().map(|v| *v as i8).collect();
    assert_eq!(qs, [127, 3, -3, 1, -1, 2, -127, 0]);
    assert!(b[10..].iter().all(|v| *v == 0));
}

#[test]
fn q8_0_uses_f32_scale_but_stores_f16() {
    // amax = 1: d = 1/127 (not representable in f16), 1/d = 127.00000x.
    let mut x = [0f32; 32];
    x[0] = 1.0;
    x[1] = -0.5;
    x[2] = 0.25;
    let b = q(GgmlType::Q8_0, &x);
    assert_eq!(u16::from_le_bytes([b[0], b[1]]), f32_to_f16(1.0 / 127.0));
    // 0.5 * 127 = 63.5 -> 64 (away from zero); 0.25 * 127 = 31.75 -> 32.
    assert_eq!([b[2] as i8, b[3] as i8, b[4] as i8], [127, -64, 32]);
}

#[test]
fn q8_1_stores_scaled_sum() {
    let mut x = [0f32; 32];
    x[0] = 127.0;
    x[1] = -27.0;
    x[2] = 3.0;
    let b = q(GgmlType::Q8_1, &x);
    assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x3c00);
    assert_eq!(u16::from_le_bytes([b[2], b[3]]), f32_to_f16(103.0));
    assert_eq!([b[4] as i8, b[5] as i8, b[6] as i8], [127, -27, 3]);
}

#[test]
fn q4_0_scale_comes_from_the_signed_extreme() {
    // Largest magnitude is negative: d = -8 / -8 = 1.
    let mut x = [0f32; 32];
    x[0] = -8.0;
    x[1] = 7.0;
    x[2] = 7.6; // 16.1 -> 16 -> clamped to 15
    x[3] = -0.5; // 8.0 -> 8
    x[4] = -0.6; // 7.9 -> 7
    x[16] = 8.0; // same magnitude as x[0], later: does not win; 16.5 -> 15
    x[17] = 3.4; // 11.9 -> 11
    let b = q(GgmlType::Q4_0, &x);
    assert_eq!(&b[..2], &0x3c00u16.to_le_bytes());
    let lo: Vec<u8> = b[2..].iter().map(|v| v & 15).collect();
    let hi: Vec<u8> = b[2..].iter().map(|v| v >> 4).collect();
    assert_eq!(&lo[..5], &[0, 15, 15, 8, 7]);
    assert_eq!(&hi[..2], &[15, 11]);
    assert!(lo[5..].iter().chain(&hi[2..]).all(|v| *v == 8));
    // Largest magnitude positive: d = -1, the extreme maps to q = 0.
    let mut y = [0f32; 32];
    y[5] = 8.0;
    let b = q(GgmlType::Q4_0, &y);
    assert_eq!(u16::from_le_bytes([b[0], b[1]]), f32_to_f16(-1.0));
    assert_eq!(dq(GgmlType::Q4_0, &b, 32)[5], 8.0);
}

#[test]
fn q4_1_rounds_half_up_from_the_minimum() {
    let mut x = [0f32; 32];
    x[0] = -1.0; // min
    x[1] = 14.0; // max: d = 15 / 15 = 1
    x[2] = 0.4; // 1.4 + 0.5 -> 1
    x[3] = 0.5; // 1.5 + 0.5 -> 2
    let b = q(GgmlType::Q4_1, &x);
    assert_eq!(&b[..2], &0x3c00u16.to_le_bytes());
    assert_eq!(u16::from_le_bytes([b[2], b[3]]), f32_to_f16(-1.0));
    assert_eq!([b[4] & 15, b[5] & 15, b[6] & 15, b[7] & 15], [0, 15, 1, 2]);
    // Unset elements are 0.0: (0 + 1) + 0.5 -> 1.
    assert_eq!(b[8] & 15, 1);
    let y = dq(GgmlType::Q4_1, &b, 32);
    assert_eq!(&y[..4], &[-1.0, 14.0, 0.0, 1.0]);
}

#[test]
fn nibble_layout_is_low_first_half_high_second_half() {
    // Q4_1 block with d = 1, m = 0 and qs[j] = j | (15 - j) << 4.
    let mut b = vec![0u8; 20];
    b[..2].copy_from_slice(&0x3c00u16.to_le_bytes());
    for j in 0..16 {
        b[4 + j] = j as u8 | ((15 - j as u8) << 4);
    }
    let y = dq(GgmlType::Q4_1, &b, 32);
    for j in 0..16 {
        assert_eq!(y[j], j as f32);
        assert_eq!(y[j + 16], (15 - j) as f32);
    }
}

#[test]
fn dequantize_reads_unaligned_bytes() {
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.123).collect();
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
    ] {
        let b = q(ty, &x);
        let want = dq(ty, &b, 64);
        for shift in 1..4 {
            let mut buf = vec![0u8; shift];
            buf.extend_from_slice(&b);
            assert_eq!(dq(ty, &buf[shift..], 64), want, "{ty} at offset {shift}");
        }
    }
}

#[test]
fn bad_lengths_and_types_are_errors() {
    let x = [0f32; 32];
    let mut b = [0u8; 34];
    assert!(quantize_row(GgmlType::Q8_0, &x[..31], &mut b).is_err());
    assert!(quantize_row(GgmlType::Q8_0, &x, &mut b[..33]).is_err());
    assert!(quantize_row(GgmlType::Q6_K, &x, &mut b).is_err());
    let mut y = [0f32; 32];
    assert!(dequantize_row(GgmlType::Q8_0, &b[..33], &mut y).is_err());
    assert!(dequantize_row(GgmlType::Q8_0, &b, &mut y[..16]).is_err());
    assert!(dequantize_row(GgmlType::I8, &b[..32], &mut y).is_err());
    // Empty rows are fine.
    assert!(quantize_row(GgmlType::Q4_0, &[], &mut []).is_ok());
    assert!(dequantize_row(GgmlType::Q4_0, &[], &mut []).is_ok());
}

#[test]
fn hostile_values_do_not_panic() {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
        f32::MAX,
        -f32::MAX,
        1e-45,
        0.0,
    ];
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::F16,
        GgmlType::BF16,
    ] {
        for s in specials {
            let mut x = [1.0f32; 32];
            x[3] = s;
            let b = q(ty, &x);
            let _ = dq(ty, &b, 32);
            let b = q(ty, &[s; 32]);
            let _ = dq(ty, &b, 32);
        }
    }
    // Any bytes decode.
    let junk: Vec<u8> = (0..36u32)
        .map(|i| (i.wrapping_mul(97) ^ 0xa5) as u8)
        .collect();
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
    ] {
        let n = row_bytes(ty, 32).unwrap();
        let _ = dq(ty, &junk[..n], 32);
    }
}

fn block_values() -> impl Strategy<Value = Vec<f32>> {
    // Magnitudes where the f16 scale is a normal number.
    prop::collection::vec(
        prop_oneof![-100.0f32..100.0, -1.0f32..1.0, Just(0.0f32)],
        32..=32,
    )
    .prop_filter("not all tiny", |v| v.iter().any(|x| x.abs() > 0.01))
}

const F16_REL: f32 = 1.0 / 2048.0;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn q8_0_error_is_at_most_half_a_step(x in block_values()) {
        let y = dq(GgmlType::Q8_0, &q(GgmlType::Q8_0, &x), 32);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        // Half a step, plus 127 steps times the f16 rounding of d.
        let bound = d * (0.5 + 127.0 * F16_REL) * 1.0001;
        for (a, b) in x.iter().zip(&y) {
            prop_assert!((a - b).abs() <= bound, "{a} vs {b}, bound {bound}");
        }
    }

    #[test]
    fn q4_0_error_is_at_most_one_step(x in block_values()) {
        let y = dq(GgmlType::Q4_0, &q(GgmlType::Q4_0, &x), 32);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 8.0;
        // Half a step, a whole step for the clamped opposite extreme (+8 d
        // cannot be stored), plus 8 steps times the f16 rounding of d.
        let bound = d * (1.0 + 8.0 * F16_REL) * 1.0001;
        for (a, b) in x.iter().zip(&y) {
            prop_assert!((a - b).abs() <= bound, "{a} vs {b}, bound {bound}");
        }
    }

    #[test]
    fn q4_1_error_is_at_most_half_a_step(x in block_values()) {
        let y = dq(GgmlType::Q4_1, &q(GgmlType::Q4_1, &x), 32);
        let min = x.iter().fold(f32::MAX, |m, v| m.min(*v));
        let max = x.iter().fold(-f32::MAX, |m, v| m.max(*v));
        let d = (max - min) / 15.0;
        let bound = (d * (0.5 + 15.0 * F16_REL) + min.abs() * F16_REL) * 1.0001 + 1e-6;
        for (a, b) in x.iter().zip(&y) {
            prop_assert!((a - b).abs() <= bound, "{a} vs {b}, bound {bound}");
        }
    }

    #[test]
    fn f16_and_bf16_round_trip_within_half_an_ulp(x in prop::collection::vec(-60000.0f32..60000.0, 1..40)) {
        let h = dq(GgmlType::F16, &q(GgmlType::F16, &x), x.len());
        let b = dq(GgmlType::BF16, &q(GgmlType::BF16, &x), x.len());
        for ((v, h), b) in x.iter().zip(&h).zip(&b) {
            // Relative half-ulp bounds (2^-11, 2^-8), absolute for f16 subnormals.
            prop_assert!((v - h).abs() <= v.abs() * F16_REL + 3e-8);
            prop_assert!((v - b).abs() <= v.abs() / 256.0);
        }
        // F32 is a byte copy.
        prop_assert_eq!(dq(GgmlType::F32, &q(GgmlType::F32, &x), x.len()), x);
    }
}
