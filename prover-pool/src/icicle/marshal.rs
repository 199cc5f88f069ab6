//! Moving BN254 values between arkworks and ICICLE's memory layout. Safe code only.
//!
//! # ICICLE's layout (v4.0.0 / open-icicle, `icicle/include/icicle/...`)
//! - A field element is `storage<8>`: eight little-endian `u32` limbs (a union with four `u64`),
//!   32 bytes. Host builds align it to 8 bytes, CUDA device code to 16 (`LIMBS_ALIGNMENT`). We
//!   use [`Limbs`] = four little-endian `u64`, aligned to 16, which satisfies both; on a
//!   little-endian machine the bytes are identical.
//! - `Affine<F>` is `{ x, y }`; the point at infinity is `(0, 0)`.
//! - `Projective<F>` is `{ x, y, z }` in *homogeneous* projective coordinates: the affine point is
//!   `(x/z, y/z)` (not Jacobian `x/z², y/z³` as in arkworks' `Projective`), and the identity is
//!   `(0, 1, 0)`, or any `(0, y ≠ 0, 0)`.
//! - G2 coordinates are `ComplexExtensionField { c0, c1 }` = `c0 + c1·u` with `u² = -1`: the same
//!   basis as arkworks' `Fq2 { c0, c1 }`.
//!
//! # Invariants
//! - Everything handed to ICICLE is in *canonical* form (`into_bigint()`, never the Montgomery
//!   limbs arkworks keeps in memory), and the MSM config says so (`are_*_montgomery_form =
//!   false`): ICICLE's CPU backend ignores the Montgomery flag for points, so canonical input is
//!   the only form every backend reads the same way.
//! - Packing keeps every pair, in order, but replaces a base at infinity by the generator and its
//!   scalar by zero: the term stays zero, and no backend sees arkworks' `(0, 0)` encoding of
//!   infinity as a base. Zero scalars are passed as they are.
//! - Unpacking never trusts ICICLE: limbs must be below the modulus, and the point must be on the
//!   curve and in the prime-order subgroup, else [`MarshalError`].
//! - Sizes and alignments are checked at compile time (`const` asserts below).

use ark_bn254::{Fq, Fq2, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::AffineRepr;
use ark_ff::{BigInt, Field, PrimeField, Zero};
use rayon::prelude::*;

/// One field element as ICICLE stores it: canonical, four little-endian `u64` limbs.
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limbs(pub [u64; 4]);

/// A BN254 G1 affine point as ICICLE's `bn254::affine_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcicleG1Affine {
    /// x, canonical.
    pub x: Limbs,
    /// y, canonical.
    pub y: Limbs,
}

/// A BN254 G1 point as ICICLE's `bn254::projective_t` (homogeneous X:Y:Z).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcicleG1Projective {
    /// X.
    pub x: Limbs,
    /// Y.
    pub y: Limbs,
    /// Z; zero for the identity.
    pub z: Limbs,
}

/// An element of Fq2 as ICICLE's `ComplexExtensionField`: `c0 + c1·u`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcicleFq2 {
    /// The real part.
    pub c0: Limbs,
    /// The imaginary part.
    pub c1: Limbs,
}

/// A BN254 G2 affine point as ICICLE's `bn254::g2_affine_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcicleG2Affine {
    /// x.
    pub x: IcicleFq2,
    /// y.
    pub y: IcicleFq2,
}

/// A BN254 G2 point as ICICLE's `bn254::g2_projective_t` (homogeneous X:Y:Z).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcicleG2Projective {
    /// X.
    pub x: IcicleFq2,
    /// Y.
    pub y: IcicleFq2,
    /// Z; zero for the identity.
    pub z: IcicleFq2,
}

// The sizes ICICLE's headers give these types (storage<8> = 32 bytes; no padding anywhere).
const _: () = assert!(std::mem::size_of::<Limbs>() == 32);
const _: () = assert!(std::mem::align_of::<Limbs>() == 16);
const _: () = assert!(std::mem::size_of::<IcicleG1Affine>() == 64);
const _: () = assert!(std::mem::size_of::<IcicleG1Projective>() == 96);
const _: () = assert!(std::mem::size_of::<IcicleFq2>() == 64);
const _: () = assert!(std::mem::size_of::<IcicleG2Affine>() == 128);
const _: () = assert!(std::mem::size_of::<IcicleG2Projective>() == 192);
// ICICLE's limbs are little-endian words in memory; `Limbs` matches them only on such machines.
const _: () = assert!(cfg!(target_endian = "little"), "ICICLE marshalling assumes a little-endian machine");

/// Why a value ICICLE returned is not a valid arkworks value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarshalError {
    /// Limbs not below the base field modulus.
    #[error("ICICLE returned a coordinate that is not a canonical base field element: {0:?}")]
    NotCanonical([u64; 4]),
    /// Z = 0 but not the identity (0 : y ≠ 0 : 0).
    #[error("ICICLE returned a projective point with Z = 0 that is not the identity")]
    BadIdentity,
    /// Not on the curve, or not in the prime-order subgroup.
    #[error("ICICLE returned a {group} point that is not on the curve or not in its prime-order subgroup")]
    NotOnCurve {
        /// "G1" or "G2".
        group: &'static str,
    },
}

/// A scalar in canonical form.
pub fn scalar_to_limbs(scalar: &Fr) -> Limbs {
    Limbs(scalar.into_bigint().0)
}

/// A base field element in canonical form.
pub fn fq_to_limbs(element: &Fq) -> Limbs {
    Limbs(element.into_bigint().0)
}

/// Canonical limbs back to a base field element; refuses limbs not below the modulus.
pub fn fq_from_limbs(limbs: &Limbs) -> Result<Fq, MarshalError> {
    Fq::from_bigint(BigInt(limbs.0)).ok_or(MarshalError::NotCanonical(limbs.0))
}

fn fq2_to_icicle(element: &Fq2) -> IcicleFq2 {
    IcicleFq2 { c0: fq_to_limbs(&element.c0), c1: fq_to_limbs(&element.c1) }
}

fn fq2_from_icicle(element: &IcicleFq2) -> Result<Fq2, MarshalError> {
    Ok(Fq2::new(fq_from_limbs(&element.c0)?, fq_from_limbs(&element.c1)?))
}

/// A G1 affine point in ICICLE's layout; `None` for the point at infinity.
pub fn g1_affine_to_icicle(point: &G1Affine) -> Option<IcicleG1Affine> {
    point.xy().map(|(x, y)| IcicleG1Affine { x: fq_to_limbs(&x), y: fq_to_limbs(&y) })
}

/// A G2 affine point in ICICLE's layout; `None` for the point at infinity.
pub fn g2_affine_to_icicle(point: &G2Affine) -> Option<IcicleG2Affine> {
    point.xy().map(|(x, y)| IcicleG2Affine { x: fq2_to_icicle(&x), y: fq2_to_icicle(&y) })
}

/// ICICLE's homogeneous projective G1 point as an arkworks point, checked to be in G1.
pub fn g1_from_icicle(point: &IcicleG1Projective) -> Result<G1Projective, MarshalError> {
    let (x, y, z) = (fq_from_limbs(&point.x)?, fq_from_limbs(&point.y)?, fq_from_limbs(&point.z)?);
    let Some(z_inv) = z.inverse() else {
        return if x.is_zero() && !y.is_zero() { Ok(G1Projective::zero()) } else { Err(MarshalError::BadIdentity) };
    };
    let affine = G1Affine::new_unchecked(x * z_inv, y * z_inv);
    if affine.is_on_curve() && affine.is_in_correct_subgroup_assuming_on_curve() {
        Ok(affine.into_group())
    } else {
        Err(MarshalError::NotOnCurve { group: "G1" })
    }
}

/// ICICLE's homogeneous projective G2 point as an arkworks point, checked to be in G2.
pub fn g2_from_icicle(point: &IcicleG2Projective) -> Result<G2Projective, MarshalError> {
    let (x, y, z) = (fq2_from_icicle(&point.x)?, fq2_from_icicle(&point.y)?, fq2_from_icicle(&point.z)?);
    let Some(z_inv) = z.inverse() else {
        return if x.is_zero() && !y.is_zero() { Ok(G2Projective::zero()) } else { Err(MarshalError::BadIdentity) };
    };
    let affine = G2Affine::new_unchecked(x * z_inv, y * z_inv);
    if affine.is_on_curve() && affine.is_in_correct_subgroup_assuming_on_curve() {
        Ok(affine.into_group())
    } else {
        Err(MarshalError::NotOnCurve { group: "G2" })
    }
}

/// The inputs of one MSM in ICICLE's layout (see the module invariants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed<P> {
    /// Canonical scalars, one per base.
    pub scalars: Vec<Limbs>,
    /// Affine bases, none at infinity.
    pub bases: Vec<P>,
}

impl<P> Packed<P> {
    /// Number of (scalar, base) pairs.
    pub fn len(&self) -> usize {
        self.bases.len()
    }

    /// Whether there are none (the MSM is the identity).
    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }
}

/// Below this many pairs packing stays on the calling thread.
const PARALLEL_FROM: usize = 1 << 12;

/// Converts pairs into two preallocated, index-aligned vectors (in parallel for large inputs:
/// each element is written in place, no intermediate collection).
fn pack<A: AffineRepr, P: Send + Sync + Copy>(
    bases: &[A],
    scalars: &[Fr],
    point: impl Fn(&A) -> Option<P> + Sync,
    generator: P,
) -> Packed<P> {
    let n = bases.len().min(scalars.len());
    let (bases, scalars) = (&bases[..n], &scalars[..n]);
    let scalar = |(base, scalar): (&A, &Fr)| if base.is_zero() { Limbs::default() } else { scalar_to_limbs(scalar) };
    let base = |base: &A| point(base).unwrap_or(generator);
    let mut packed = Packed { scalars: Vec::with_capacity(n), bases: Vec::with_capacity(n) };
    if n >= PARALLEL_FROM {
        // Indexed passes that write straight into their vectors, no intermediate collection.
        bases.par_iter().zip(scalars.par_iter()).map(scalar).collect_into_vec(&mut packed.scalars);
        bases.par_iter().map(base).collect_into_vec(&mut packed.bases);
    } else {
        packed.scalars.extend(bases.iter().zip(scalars).map(scalar));
        packed.bases.extend(bases.iter().map(base));
    }
    packed
}

/// The G1 generator (1, 2) in ICICLE's layout.
const G1_GENERATOR: IcicleG1Affine = IcicleG1Affine { x: Limbs([1, 0, 0, 0]), y: Limbs([2, 0, 0, 0]) };

/// Packs a G1 MSM's inputs (callers check that the lengths match; extra elements are ignored).
pub fn pack_g1(bases: &[G1Affine], scalars: &[Fr]) -> Packed<IcicleG1Affine> {
    pack(bases, scalars, g1_affine_to_icicle, G1_GENERATOR)
}

/// Packs a G2 MSM's inputs (callers check that the lengths match; extra elements are ignored).
pub fn pack_g2(bases: &[G2Affine], scalars: &[Fr]) -> Packed<IcicleG2Affine> {
    // The generator is never at infinity, so this is never the default.
    let generator = g2_affine_to_icicle(&G2Affine::generator()).unwrap_or_default();
    pack(bases, scalars, g2_affine_to_icicle, generator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::short_weierstrass::SWCurveConfig;
    use ark_ec::{CurveGroup, PrimeGroup};
    use ark_ff::{One, UniformRand};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// ICICLE's `storage<8>` words (u32, least significant first) as our u64 limbs.
    fn words(words: [u32; 8]) -> Limbs {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            *limb = u64::from(words[2 * i]) | (u64::from(words[2 * i + 1]) << 32);
        }
        Limbs(limbs)
    }

    fn homogeneous_g1(point: &G1Projective, lambda: Fq) -> IcicleG1Projective {
        let affine = point.into_affine();
        let (x, y) = affine.xy().unwrap();
        IcicleG1Projective { x: fq_to_limbs(&(x * lambda)), y: fq_to_limbs(&(y * lambda)), z: fq_to_limbs(&lambda) }
    }

    #[test]
    fn scalars_are_canonical_little_endian_limbs() {
        assert_eq!(scalar_to_limbs(&Fr::from(0u64)), Limbs([0; 4]));
        assert_eq!(scalar_to_limbs(&Fr::from(7u64)), Limbs([7, 0, 0, 0]));
        assert_eq!(scalar_to_limbs(&Fr::from(u64::MAX)), Limbs([u64::MAX, 0, 0, 0]));
        // 2^64 + 1: the second limb, never Montgomery limbs.
        let two_64_plus_1 = Fr::from(u64::MAX) + Fr::from(2u64);
        assert_eq!(scalar_to_limbs(&two_64_plus_1), Limbs([1, 1, 0, 0]));
        // -1 = r - 1, r = 0x30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001.
        let minus_one = -Fr::one();
        assert_eq!(
            scalar_to_limbs(&minus_one),
            Limbs([0x43e1f593f0000000, 0x2833e84879b97091, 0xb85045b68181585d, 0x30644e72e131a029])
        );
    }

    #[test]
    fn base_field_limbs_round_trip_and_refuse_the_modulus() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for _ in 0..64 {
            let x = Fq::rand(&mut rng);
            assert_eq!(fq_from_limbs(&fq_to_limbs(&x)).unwrap(), x);
        }
        // p = 0x30644e72e131a029b85045b68181585d97816a916871ca8d3c208c16d87cfd47
        let p = Limbs([0x3c208c16d87cfd47, 0x97816a916871ca8d, 0xb85045b68181585d, 0x30644e72e131a029]);
        assert_eq!(fq_from_limbs(&p), Err(MarshalError::NotCanonical(p.0)));
        let p_minus_1 = Limbs([0x3c208c16d87cfd46, p.0[1], p.0[2], p.0[3]]);
        assert_eq!(fq_from_limbs(&p_minus_1).unwrap(), -Fq::one());
    }

    #[test]
    fn generators_match_the_constants_in_icicles_bn254_header() {
        // icicle/include/icicle/curves/params/bn254.h: G1 = (1, 2); G2 gen_x/gen_y re and im.
        let g1 = g1_affine_to_icicle(&G1Affine::generator()).unwrap();
        assert_eq!(g1, IcicleG1Affine { x: Limbs([1, 0, 0, 0]), y: Limbs([2, 0, 0, 0]) });

        let g2 = g2_affine_to_icicle(&G2Affine::generator()).unwrap();
        let x_re =
            words([0xd992f6ed, 0x46debd5c, 0xf75edadd, 0x674322d4, 0x5e5c4479, 0x426a0066, 0x121f1e76, 0x1800deef]);
        let x_im =
            words([0xaef312c2, 0x97e485b7, 0x35a9e712, 0xf1aa4933, 0x31fb5d25, 0x7260bfb7, 0x920d483a, 0x198e9393]);
        let y_re =
            words([0x66fa7daa, 0x4ce6cc01, 0x0c43d37b, 0xe3d1e769, 0x8dcb408f, 0x4aab7180, 0xdb8c6deb, 0x12c85ea5]);
        let y_im =
            words([0xd122975b, 0x55acdadc, 0x70b38ef3, 0xbc4b3133, 0x690c3395, 0xec9e99ad, 0x585ff075, 0x090689d0]);
        assert_eq!(g2, IcicleG2Affine { x: IcicleFq2 { c0: x_re, c1: x_im }, y: IcicleFq2 { c0: y_re, c1: y_im } });
    }

    #[test]
    fn infinity_has_no_affine_encoding() {
        assert_eq!(g1_affine_to_icicle(&G1Affine::zero()), None);
        assert_eq!(g2_affine_to_icicle(&G2Affine::zero()), None);
    }

    #[test]
    fn homogeneous_projective_points_convert_to_the_same_arkworks_point() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for _ in 0..16 {
            let point = G1Projective::rand(&mut rng);
            let lambda = Fq::rand(&mut rng);
            assert_eq!(g1_from_icicle(&homogeneous_g1(&point, lambda)).unwrap(), point);
            // Z = 1 is the plain affine point.
            assert_eq!(g1_from_icicle(&homogeneous_g1(&point, Fq::one())).unwrap(), point);

            let point = G2Projective::rand(&mut rng);
            let lambda = Fq2::rand(&mut rng);
            let affine = point.into_affine();
            let (x, y) = affine.xy().unwrap();
            let icicle = IcicleG2Projective {
                x: fq2_to_icicle(&(x * lambda)),
                y: fq2_to_icicle(&(y * lambda)),
                z: fq2_to_icicle(&lambda),
            };
            assert_eq!(g2_from_icicle(&icicle).unwrap(), point);
        }
    }

    #[test]
    fn projective_is_homogeneous_not_jacobian() {
        // Jacobian coordinates (X·Z², Y·Z³, Z) of a point are not its homogeneous coordinates.
        let point = G1Projective::generator() * Fr::from(5u64);
        let (x, y) = point.into_affine().xy().unwrap();
        let z = Fq::from(3u64);
        let jacobian = IcicleG1Projective {
            x: fq_to_limbs(&(x * z.square())),
            y: fq_to_limbs(&(y * z.square() * z)),
            z: fq_to_limbs(&z),
        };
        assert_eq!(g1_from_icicle(&jacobian), Err(MarshalError::NotOnCurve { group: "G1" }));
    }

    #[test]
    fn the_identity_is_zero_y_zero_and_bad_points_are_refused() {
        let identity = IcicleG1Projective { x: Limbs::default(), y: Limbs([1, 0, 0, 0]), z: Limbs::default() };
        assert!(g1_from_icicle(&identity).unwrap().is_zero());
        let identity = IcicleG1Projective { y: Limbs([9, 0, 0, 0]), ..identity };
        assert!(g1_from_icicle(&identity).unwrap().is_zero());
        let all_zero = IcicleG1Projective::default();
        assert_eq!(g1_from_icicle(&all_zero), Err(MarshalError::BadIdentity));
        let not_on_curve =
            IcicleG1Projective { x: Limbs([1, 0, 0, 0]), y: Limbs([3, 0, 0, 0]), z: Limbs([1, 0, 0, 0]) };
        assert_eq!(g1_from_icicle(&not_on_curve), Err(MarshalError::NotOnCurve { group: "G1" }));
        let too_big = IcicleG1Projective { x: Limbs([u64::MAX; 4]), ..not_on_curve };
        assert_eq!(g1_from_icicle(&too_big), Err(MarshalError::NotCanonical([u64::MAX; 4])));

        let g2_identity =
            IcicleG2Projective { y: IcicleFq2 { c0: Limbs([1, 0, 0, 0]), c1: Limbs::default() }, ..Default::default() };
        assert!(g2_from_icicle(&g2_identity).unwrap().is_zero());
        assert_eq!(g2_from_icicle(&IcicleG2Projective::default()), Err(MarshalError::BadIdentity));
    }

    #[test]
    fn g2_points_off_the_subgroup_are_refused() {
        // A point on the twist curve y² = x³ + b' that is not in G2 (the cofactor is not 1):
        // search x = 1, 2, ... for one with a square root, which is almost surely outside G2.
        let b = ark_bn254::g2::Config::COEFF_B;
        let mut x = Fq2::one();
        let point = loop {
            if let Some(y) = (x.square() * x + b).sqrt() {
                let candidate = G2Affine::new_unchecked(x, y);
                if !candidate.is_in_correct_subgroup_assuming_on_curve() {
                    break candidate;
                }
            }
            x += Fq2::one();
        };
        let (x, y) = point.xy().unwrap();
        let icicle = IcicleG2Projective { x: fq2_to_icicle(&x), y: fq2_to_icicle(&y), z: fq2_to_icicle(&Fq2::one()) };
        assert_eq!(g2_from_icicle(&icicle), Err(MarshalError::NotOnCurve { group: "G2" }));
    }

    #[test]
    fn packing_keeps_order_and_turns_infinity_into_a_zero_term() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let points: Vec<G1Affine> = (0..6).map(|_| G1Projective::rand(&mut rng).into_affine()).collect();
        let mut bases = points.clone();
        bases[1] = G1Affine::zero();
        let scalars: Vec<Fr> =
            vec![Fr::from(1u64), Fr::from(2u64), Fr::zero(), Fr::from(4u64), -Fr::one(), Fr::from(6u64)];
        let packed = pack_g1(&bases, &scalars);
        assert_eq!(packed.len(), 6);
        for i in [0usize, 2, 3, 4, 5] {
            assert_eq!(packed.scalars[i], scalar_to_limbs(&scalars[i]));
            assert_eq!(packed.bases[i], g1_affine_to_icicle(&points[i]).unwrap());
        }
        assert_eq!((packed.scalars[1], packed.bases[1]), (Limbs::default(), G1_GENERATOR));
        assert_eq!(Some(G1_GENERATOR), g1_affine_to_icicle(&G1Affine::generator()));

        let packed = pack_g2(&[G2Affine::zero()], &[Fr::one()]);
        assert_eq!(packed.scalars, vec![Limbs::default()]);
        assert_eq!(packed.bases, vec![g2_affine_to_icicle(&G2Affine::generator()).unwrap()]);
        assert!(pack_g1(&[], &[]).is_empty());
        // Extra elements of the longer input are ignored.
        assert_eq!(pack_g1(&points, &scalars[..2]).len(), 2);
    }

    /// Timing run, not a check: what marshalling adds to each ICICLE MSM here.
    /// `cargo test --release -p pcx-prover-pool --lib -- --ignored --nocapture packing_timing`.
    #[test]
    #[ignore = "a timing run; use a release build"]
    fn packing_timing() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let g1: Vec<G1Affine> = (0..64).map(|_| G1Projective::rand(&mut rng).into_affine()).collect();
        let g2: Vec<G2Affine> = (0..64).map(|_| G2Projective::rand(&mut rng).into_affine()).collect();
        println!("points  pack G1 ms  pack G2 ms  (threads: {})", rayon::current_num_threads());
        for log in [16u32, 18, 20] {
            let n = 1usize << log;
            let scalars: Vec<Fr> = (0..n).map(|_| Fr::rand(&mut rng)).collect();
            let bases1: Vec<G1Affine> = (0..n).map(|i| g1[i % g1.len()]).collect();
            let bases2: Vec<G2Affine> = (0..n).map(|i| g2[i % g2.len()]).collect();
            let started = std::time::Instant::now();
            let packed1 = pack_g1(&bases1, &scalars);
            let g1_ms = started.elapsed().as_secs_f64() * 1000.0;
            let started = std::time::Instant::now();
            let packed2 = pack_g2(&bases2, &scalars);
            let g2_ms = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!((packed1.len(), packed2.len()), (n, n));
            println!("2^{log:<4}  {g1_ms:>10.1}  {g2_ms:>10.1}");
        }
    }

    #[test]
    fn parallel_packing_matches_sequential_packing() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let few: Vec<G1Affine> = (0..8).map(|_| G1Projective::rand(&mut rng).into_affine()).collect();
        let n = PARALLEL_FROM + 5;
        let bases: Vec<G1Affine> =
            (0..n).map(|i| if i % 97 == 0 { G1Affine::zero() } else { few[i % few.len()] }).collect();
        let scalars: Vec<Fr> = (0..n).map(|i| if i % 89 == 0 { Fr::zero() } else { Fr::rand(&mut rng) }).collect();
        let parallel = pack_g1(&bases, &scalars);
        let mut sequential = pack_g1(&bases[..100], &scalars[..100]);
        for (base, scalar) in bases[100..].chunks(100).zip(scalars[100..].chunks(100)) {
            let chunk = pack_g1(base, scalar);
            sequential.scalars.extend(chunk.scalars);
            sequential.bases.extend(chunk.bases);
        }
        assert_eq!(parallel, sequential);
        assert_eq!(parallel.scalars[97], Limbs::default());
        assert_eq!(parallel.bases[97], G1_GENERATOR);
    }
}
