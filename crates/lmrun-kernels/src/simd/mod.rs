//! Instruction-set specific kernels, each module behind run-time detection in `dispatch`. The
//! modules depend on `fn_types` and `formats`, never on `dispatch`; this file holds the macros
//! both x86 levels expand (the kernel tables and the Q4_K 4-token kernel).

/// `match t` over `Format => kernel` pairs for one kernel table (`$wrap`: `dot_fn`, `dot4_fn`
/// or `tile_fn` of [`Partner`](crate::fn_types::Partner)): each kernel, an `unsafe fn` with the
/// module's target features, gets a safe wrapper `fn` (a named function, not a closure: a
/// closure coerced to a pointer goes through a shim that copies the 4-row argument) and is
/// tagged with its format's activation partner. The tables are handed out only by the module's
/// lookup functions, which `dispatch` calls after run-time detection of every feature the
/// module's kernels enable.
#[cfg(target_arch = "x86_64")]
macro_rules! kernel_table {
    ($t:expr, $wrap:ident, $($F:ident => $k:ident),* $(,)?) => {
        match $t {
            $(crate::QType::$F => {
                kernel_wrapper!($wrap, wrapped, $F, $k);
                <<crate::formats::$F as crate::formats::QuantFormat>::Act
                    as crate::fn_types::Partner>::$wrap(wrapped)
            })*
            _ => None,
        }
    };
}

/// The safe wrapper `fn $w` of [`kernel_table!`] with the signature of table `$wrap`.
#[cfg(target_arch = "x86_64")]
macro_rules! kernel_wrapper {
    (dot_fn, $w:ident, $F:ident, $k:ident) => {
        fn $w(w: &[u8], a: &[<crate::formats::$F as crate::formats::QuantFormat>::Act]) -> f32 {
            // SAFETY: reachable only through the module's lookup function, after run-time
            // detection of every feature the kernel enables; the kernel bounds every access
            // by the slice lengths.
            unsafe { $k(w, a) }
        }
    };
    (dot4_fn, $w:ident, $F:ident, $k:ident) => {
        fn $w(
            w: &[u8],
            a: [&[<crate::formats::$F as crate::formats::QuantFormat>::Act]; 4],
        ) -> [f32; 4] {
            // SAFETY: as for `dot_fn` above.
            unsafe { $k(w, a) }
        }
    };
    (tile_fn, $w:ident, $F:ident, $k:ident) => {
        fn $w(
            w: [&[u8]; crate::fn_types::TILE_ROWS],
            a: [&[<crate::formats::$F as crate::formats::QuantFormat>::Act]; 4],
        ) -> [[f32; 4]; crate::fn_types::TILE_ROWS] {
            // SAFETY: as for `dot_fn` above.
            unsafe { $k(w, a) }
        }
    };
}

/// Q6_K super-block `$b` against block `$i` of the four activation rows `$a`: the super-block
/// scale and the four exact i32 sums, as an expression for a kernel of either x86 level (a
/// macro, not an `#[inline]` function, so the kernel loop compiles as if written out). Codes
/// are stored +32, so each sum starts at `-32 · Σ sc_k · bsum_k` (`q6k_bias`); `$acc(sum, p,
/// sv)` adds the i16 pair products `p` times the scales `sv` (AVX2: `vpmaddwd` + add,
/// AVX-512: one `vpdpwssd`). Must be expanded inside an `unsafe` block of a function with
/// the level's features; the expanding module provides the helpers.
#[cfg(target_arch = "x86_64")]
macro_rules! q6k_sums4 {
    ($b:ident, $a:ident, $i:ident, $acc:ident) => {{
        let (b, a, i): (&[u8], &[&[BlockQ8K]; 4], usize) = ($b, &$a, $i);
        let d = f16_at(b, crate::formats::q6_k::D_OFF);
        let sc16 = q6k_scales(b);
        let (slo, shi) = split_scales(sc16);
        let mut sumi = [
            q6k_bias(sc16, &a[0][i]),
            q6k_bias(sc16, &a[1][i]),
            q6k_bias(sc16, &a[2][i]),
            q6k_bias(sc16, &a[3][i]),
        ];
        for h in 0..2 {
            let q = q6k_codes(b, h);
            for g in 0..4 {
                let sv = pair_scales(slo, shi, 4 * h + g);
                for n in 0..4 {
                    let y = &a[n][i];
                    let p = _mm256_maddubs_epi16(q[g], load32_i8(&y.qs, 128 * h + 32 * g));
                    sumi[n] = $acc(sumi[n], p, sv);
                }
            }
        }
        (d, sumi)
    }};
}

/// Defines the Q4_K (or Q5_K: `$F`, with `$codes(b, j)` giving the two code vectors of
/// sub-block pair `j`) × 4-token kernel `unsafe fn $name` for the target features `$features`:
/// per 32 codes and token one `maddubs` (codes × activations, i16 pairs), then `$acc(sum, p,
/// sv)` adds the pair products times the sub-block's i16 scale to the i32 sums (exact), the low
/// and high sub-blocks into separate sums so that each token has two dependency chains (see
/// [`q4k_dot!`]); the scales come from [`kscales_v`](avx2::kscales_v) by in-lane shuffles; the
/// mins term `Σ m_j · bsum_j` is one `vpmaddwd` per token and super-block, folded into the same
/// float accumulator. The module expanding it provides the helpers (`nb4`, `kscales_v`,
/// `load32`, `load32_i8`, `hsum4`).
#[cfg(target_arch = "x86_64")]
macro_rules! q4k_dot4 {
    ($vis:vis $name:ident, $features:literal, $acc:ident, $F:ident, $codes:ident) => {
        /// # Safety
        /// The CPU must support the features `$features`; every access is bounded by the
        /// slices.
        #[target_feature(enable = $features)]
        $vis unsafe fn $name(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
            const BYTES: usize =
                <crate::formats::$F as crate::formats::QuantFormat>::BYTES;
            let nb = nb4(w.len(), BYTES, &a);
            // SAFETY: register arithmetic.
            let mut acc = unsafe { [_mm256_setzero_ps(); 4] };
            for i in 0..nb {
                let b = &w[BYTES * i..BYTES * i + BYTES];
                // SAFETY: bounds-checked loads, register arithmetic.
                unsafe {
                    let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(crate::formats::u32_at(b, 0) as i32));
                    let s8 = kscales_v(b);
                    let sc2 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(s8));
                    // Each min twice (bytes 8..16 of `s8`), once per bsum of 16 values.
                    let mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(s8, s8));
                    let mut sl4 = [_mm256_setzero_si256(); 4];
                    let mut sh4 = [_mm256_setzero_si256(); 4];
                    for j in 0..4 {
                        let (lo, hi) = $codes(b, j);
                        let kl = (4 * j) as i16;
                        let sl = _mm256_shuffle_epi8(sc2, _mm256_set1_epi16(((kl + 1) << 8) | kl));
                        let sh = _mm256_shuffle_epi8(
                            sc2,
                            _mm256_set1_epi16(((kl + 3) << 8) | (kl + 2)),
                        );
                        for n in 0..4 {
                            let y = &a[n][i];
                            let pl = _mm256_maddubs_epi16(lo, load32_i8(&y.qs, 64 * j));
                            let ph = _mm256_maddubs_epi16(hi, load32_i8(&y.qs, 64 * j + 32));
                            sl4[n] = $acc(sl4[n], pl, sl);
                            sh4[n] = $acc(sh4[n], ph, sh);
                        }
                    }
                    for n in 0..4 {
                        let y = &a[n][i];
                        let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                        let m = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
                        let ddn = _mm_mul_ps(dd, _mm_set1_ps(y.d));
                        let sumi = _mm256_add_epi32(sl4[n], sh4[n]);
                        acc[n] = _mm256_fmadd_ps(
                            _mm256_broadcastss_ps(ddn),
                            _mm256_cvtepi32_ps(sumi),
                            acc[n],
                        );
                        acc[n] = _mm256_fnmadd_ps(
                            _mm256_broadcastss_ps(_mm_movehdup_ps(ddn)),
                            m,
                            acc[n],
                        );
                    }
                }
            }
            // SAFETY: register arithmetic.
            unsafe { hsum4(&acc) }
        }
    };
}

/// Defines the Q4_K (or Q5_K, as in [`q4k_dot4!`]) one-token kernel `unsafe fn $name` for the
/// target features `$features`
/// (decode's matvec). Per super-block: the 6-bit scales and mins unpacked once into vectors;
/// per 32 codes one `maddubs`, then `$acc(sum, p, sv)` adds the pair products times the
/// sub-block's scale (broadcast from the scale vector by one in-lane byte shuffle, not from a
/// general register) into one of four independent i32 sums: with `vpdpwssd` (latency 4 on
/// Zen 4) one chain of eight per super-block made the kernel latency-bound at ~32 cycles a
/// super-block. The mins term `Σ m_j · bsum_j` stays a vector (one `vpmaddwd`) folded into its
/// own f32 accumulator, so no horizontal sum happens per super-block. Integer sums are exact;
/// only the order of the f32 additions differs from the scalar kernel. The expanding module
/// provides `kscales_v`, `load32`, `load32_i8` and `hsum_ps`.
#[cfg(target_arch = "x86_64")]
macro_rules! q4k_dot {
    ($vis:vis $name:ident, $features:literal, $acc:ident, $F:ident, $codes:ident) => {
        /// # Safety
        /// The CPU must support the features `$features`; every access is bounded by the
        /// slices.
        #[target_feature(enable = $features)]
        $vis unsafe fn $name(w: &[u8], a: &[BlockQ8K]) -> f32 {
            const BYTES: usize =
                <crate::formats::$F as crate::formats::QuantFormat>::BYTES;
            let nb = a.len().min(w.len() / BYTES);
            // per super-block the exact integer sums, then one f32 FMA each, in block order:
            // the arithmetic of the eight-row kernels and the GEMM, so a row's result does not
            // depend on which of them computed it
            let mut acc = 0f32;
            for i in 0..nb {
                let b = &w[BYTES * i..BYTES * i + BYTES];
                let y = &a[i];
                // SAFETY: bounds-checked loads, register arithmetic; a prefetch never faults,
                // wherever it points.
                unsafe {
                    let ahead = b.as_ptr().wrapping_add(crate::simd::PREFETCH_AHEAD);
                    _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128) as *const i8);
                    let s8 = kscales_v(b);
                    // d and dmin converted together, times the activation scale
                    let dd = _mm_mul_ps(
                        _mm_cvtph_ps(_mm_cvtsi32_si128(crate::formats::u32_at(b, 0) as i32)),
                        _mm_set1_ps(y.d),
                    );
                    // the 8 scales as i16 in both 128-bit halves (for in-lane shuffles)
                    let sc2 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(s8));
                    // each min twice (bytes 8..16 of `sc`), once per bsum of 16 values
                    let mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(s8, s8));
                    let mut s = [_mm256_setzero_si256(); 4];
                    for j in 0..4 {
                        let (lo, hi) = $codes(b, j);
                        let pl = _mm256_maddubs_epi16(lo, load32_i8(&y.qs, 64 * j));
                        let ph = _mm256_maddubs_epi16(hi, load32_i8(&y.qs, 64 * j + 32));
                        let kl = (4 * j) as i16;
                        let sl = _mm256_shuffle_epi8(sc2, _mm256_set1_epi16(((kl + 1) << 8) | kl));
                        let sh = _mm256_shuffle_epi8(
                            sc2,
                            _mm256_set1_epi16(((kl + 3) << 8) | (kl + 2)),
                        );
                        let k = 2 * (j % 2);
                        s[k] = $acc(s[k], pl, sl);
                        s[k + 1] = $acc(s[k + 1], ph, sh);
                    }
                    let sumi = _mm256_add_epi32(
                        _mm256_add_epi32(s[0], s[1]),
                        _mm256_add_epi32(s[2], s[3]),
                    );
                    let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                    let (s1, s2) = hsum2_epi32(sumi, _mm256_madd_epi16(bs, mins));
                    acc = (s1 as f32).mul_add(_mm_cvtss_f32(dd), acc);
                    acc = (-(s2 as f32)).mul_add(_mm_cvtss_f32(_mm_movehdup_ps(dd)), acc);
                }
            }
            acc
        }
    };
}

/// How far ahead of the block being computed the one-token k-quant kernels prefetch weight
/// bytes: decode streams each weight row from DRAM once, and on one core the hardware
/// prefetcher alone did not keep enough misses in flight.
#[cfg(target_arch = "x86_64")]
pub(crate) const PREFETCH_AHEAD: usize = 1024;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm_k;
#[cfg(target_arch = "x86_64")]
pub(crate) mod rows8;
