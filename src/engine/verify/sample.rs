//! Picks a seeded random share of a plan's chunks: the same seed picks the same chunks.
//!
//! Selection sampling (Knuth's algorithm S) takes exactly `ceil(n * percent / 100)` of `n`
//! chunks in one pass, in offset order, each with the same chance. Its numbers come from
//! splitmix64, written out here so that a seed picks the same chunks on every machine and
//! in every rbdcp version (a library's generator may change its stream).

use crate::engine::plan::Chunks;
use crate::engine::{Chunk, Plan};

/// A share of the chunks to compare, and the seed that picks them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The share, in percent: above 0, at most 100.
    pub percent: f64,
    /// The seed: the same seed picks the same chunks of the same plan.
    pub seed: u64,
}

impl Sample {
    /// How many of `n` chunks it picks: at least one when there are any, all at 100 percent.
    pub fn count(&self, n: u64) -> u64 {
        ((n as f64 * self.percent / 100.0).ceil() as u64).min(n)
    }
}

/// The chunks of `plan` that `sample` picks, in offset order; all of them without one.
pub(super) fn pick(plan: &Plan, sample: Option<Sample>) -> Picked<'_> {
    let n = plan.chunks().count() as u64;
    let (want, seed) = sample.map_or((n, 0), |s| (s.count(n), s.seed));
    Picked {
        chunks: plan.chunks(),
        left: n,
        want,
        rng: SplitMix(seed),
    }
}

/// The iterator of [`pick`].
pub(super) struct Picked<'a> {
    chunks: Chunks<'a>,
    /// Chunks not yet looked at.
    left: u64,
    /// Chunks still to pick.
    want: u64,
    rng: SplitMix,
}

impl Iterator for Picked<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        while self.want > 0 {
            let c = self.chunks.next()?;
            // Picked with the chance (still wanted) / (still left): exactly `want` in all.
            let take = self.rng.below(self.left) < self.want;
            self.left -= 1;
            if take {
                self.want -= 1;
                return Some(c);
            }
        }
        None
    }
}

/// splitmix64 (Steele, Lea and Flood), as in Vigna's reference code.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `m` (multiply and shift: the bias is below `m / 2^64`).
    fn below(&mut self, m: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(m)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Extent;

    fn plan(chunks: u64) -> Plan {
        Plan::new(vec![Extent::data(0, chunks * 10)], chunks * 10, 10, false)
    }

    fn offsets(plan: &Plan, percent: f64, seed: u64) -> Vec<u64> {
        pick(plan, Some(Sample { percent, seed }))
            .map(|c| c.offset)
            .collect()
    }

    #[test]
    fn the_stream_is_splitmix64() {
        // The first outputs for seed 0 in Vigna's reference implementation.
        let mut r = SplitMix(0);
        assert_eq!(r.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn a_seed_picks_the_same_chunks_and_another_seed_others() {
        let p = plan(1000);
        let one = offsets(&p, 10.0, 7);
        assert_eq!(one, offsets(&p, 10.0, 7));
        assert_ne!(one, offsets(&p, 10.0, 8));
        // Pinned, so that a seed printed by one version picks the same chunks in the next.
        assert_eq!(offsets(&plan(20), 20.0, 7), PINNED);
    }

    const PINNED: [u64; 4] = [10, 80, 100, 170];

    #[test]
    fn the_share_is_exact_and_spread_over_the_image() {
        let p = plan(1000);
        for (percent, n) in [
            (10.0, 100),
            (50.0, 500),
            (0.01, 1),
            (33.3, 333),
            (100.0, 1000),
        ] {
            let got = offsets(&p, percent, 42);
            assert_eq!(got.len(), n, "{percent}%");
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "in offset order, once each"
            );
        }
        let got = offsets(&p, 10.0, 42);
        let low = got.iter().filter(|&&o| o < 5000).count();
        assert!((35..=65).contains(&low), "{low} of 100 in the first half");
    }

    #[test]
    fn a_hundred_percent_or_no_sample_picks_every_chunk() {
        let p = Plan::new(
            vec![Extent::data(0, 25), Extent::data(100, 7)],
            200,
            10,
            false,
        );
        let all: Vec<Chunk> = p.chunks().collect();
        assert_eq!(pick(&p, None).collect::<Vec<_>>(), all);
        for seed in 0..20 {
            let s = Sample {
                percent: 100.0,
                seed,
            };
            assert_eq!(pick(&p, Some(s)).collect::<Vec<_>>(), all);
        }
    }
}
