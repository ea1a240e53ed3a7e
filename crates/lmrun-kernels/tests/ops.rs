//! The SIMD element-wise ops against their scalar (libm) references.

use lmrun_kernels::ops::{
    sigmoid_gate_mul, sigmoid_gate_mul_scalar, softmax_inplace, softmax_inplace_scalar,
};

fn values(n: usize, scale: f32) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

#[test]
fn softmax_matches_scalar_and_sums_to_one() {
    for (n, scale) in [
        (1usize, 1.0f32),
        (7, 3.0),
        (64, 10.0),
        (515, 40.0),
        (1000, 0.01),
    ] {
        let x = values(n, scale);
        let mut a = x.clone();
        let mut b = x.clone();
        softmax_inplace(&mut a);
        softmax_inplace_scalar(&mut b);
        let sum: f32 = a.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "n {n}: sum {sum}");
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(
                (p - q).abs() <= 1e-6 * q.abs() + 1e-12,
                "n {n} scale {scale} [{i}]: {p} vs {q}"
            );
        }
    }
}

#[test]
fn sigmoid_gate_matches_scalar() {
    let k1 = 2.0 * 0.797_884_6f32;
    for (k1, k3) in [(1.0f32, 0.0f32), (k1, k1 * 0.044715)] {
        for scale in [0.1f32, 3.0, 30.0, 200.0] {
            let x = values(1003, scale);
            let u = values(1003, 2.0);
            let mut a = x.clone();
            let mut b = x.clone();
            sigmoid_gate_mul(&mut a, &u, k1, k3).unwrap();
            sigmoid_gate_mul_scalar(&mut b, &u, k1, k3).unwrap();
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                // exp(-z) inherits the rounding of z itself (|z| up to ~30 here: a few ulp)
                let z = x[i] * (k1 + k3 * x[i] * x[i]);
                let tol = 1e-6 * (1.0 + z.abs().min(100.0) / 8.0);
                assert!(
                    (p - q).abs() <= tol * q.abs() + 1e-30,
                    "k3 {k3} scale {scale} [{i}] x {}: {p} vs {q}",
                    x[i]
                );
            }
        }
    }
    let mut g = vec![0f32; 3];
    assert!(sigmoid_gate_mul(&mut g, &[1.0; 2], 1.0, 0.0).is_err());
}
