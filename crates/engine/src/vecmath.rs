//! Element-wise float arithmetic written so that loops of it vectorize (and fuse where the CPU
//! can), for the CPU kernels of our own ([`crate::attend`], [`crate::model`]'s SwiGLU).

/// `a · b + c`, fused where the CPU has FMA (and not through a slow library call where not).
#[inline(always)]
pub(crate) fn fma(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a * b + c
    }
}

/// `e^x` for `x <= 0` (a score minus the largest), within 2 ulp of the exact value, exactly 0
/// below -87 (and for `-inf`: a masked slot weighs nothing), NaN for NaN. Written so that a loop
/// of it vectorizes: `expf` called per attention score was a twelfth of a prompt. Cephes' method: `x = n ·
/// ln 2 + r` with `|r| <= ln 2 / 2`, a degree-5 polynomial for `e^r`, `2^n` from the exponent
/// bits.
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, so `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.max(-87.0);
    // `ROUND + n` exactly; its low bits hold `n` (so `2^n` needs no float-to-int conversion,
    // which kept the loop scalar).
    let t = fma(xc, LOG2E, ROUND);
    let n = t - ROUND;
    let r = fma(n, -LN2_LO, fma(n, -LN2_HI, xc));
    let mut p = 1.987_569_1e-4;
    p = fma(p, r, 1.398_199_9e-3);
    p = fma(p, r, 8.333_452e-3);
    p = fma(p, r, 4.166_579_6e-2);
    p = fma(p, r, 1.666_666_5e-1);
    p = fma(p, r, 0.5);
    let er = fma(p, r * r, r) + 1.0;
    let two_n = f32::from_bits(t.to_bits().wrapping_add(127).wrapping_sub(ROUND.to_bits()) << 23);
    if x.is_nan() {
        x
    } else if x < -87.0 {
        0.0
    } else {
        er * two_n
    }
}

/// `silu(g) · u` (SwiGLU, `silu(g) = g · sigmoid(g)`), with the sigmoid from `e^-|g|` so that
/// the exponential never overflows: `1 / (1 + a)` for `g >= 0`, `a / (1 + a)` below.
#[inline(always)]
pub(crate) fn swiglu(g: f32, u: f32) -> f32 {
    let a = exp_neg(-g.abs());
    let sig = if g >= 0.0 { 1.0 } else { a } / (1.0 + a);
    g * sig * u
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorizable `e^x` against f64's, over the range a softmax meets.
    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f64;
        for i in 0..=2_000_000u32 {
            let x = -(i as f32) * 4.35e-5; // 0 down to -87
            let want = (x as f64).exp();
            let got = exp_neg(x) as f64;
            worst = worst.max((got - want).abs() / want);
        }
        assert!(
            worst < 2.0 * f32::EPSILON as f64,
            "relative error {worst:e}"
        );
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-88.0), 0.0);
        assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
        assert!(exp_neg(f32::NAN).is_nan());
    }

    /// Against the textbook formula in f64, across the range a gate meets.
    #[test]
    fn swiglu_is_silu_times_up() {
        for i in -4000..=4000 {
            let g = i as f32 * 0.025; // -100 .. 100
            let u = 0.75 - (i % 7) as f32 * 0.3;
            let want = g as f64 / (1.0 + (-(g as f64)).exp()) * u as f64;
            let got = swiglu(g, u) as f64;
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON as f64 * want.abs() + 1e-30,
                "g {g} u {u}: {got} against {want}"
            );
        }
    }
}
