//! Migration with a short cut-over: copy rounds while the source is in use, each a source
//! snapshot `PREFIX-migrate-N` and what changed since the round before, until a round's
//! change is small; then, once the writer has stopped, a final round and a verification.

use std::time::Instant;

use super::copy::{copy, Copy};
use super::record::is_copy_of;
use super::Context;
use crate::backend::rbd::{Keep, Managed};
use crate::backend::{open_source, SourceOptions};
use crate::engine::{compare_with, Sample, Scan};
use crate::error::{Error, Result};
use crate::location::{Location, RbdSpec};

/// A migration of one image.
#[derive(Debug, Clone)]
pub struct Migrate {
    /// The image moved (its head, in use until the final round).
    pub src: RbdSpec,
    /// Where it goes.
    pub dst: RbdSpec,
    /// Snapshots are `PREFIX-migrate-N`.
    pub prefix: String,
    /// Rounds stop once one changed at most this many bytes.
    pub until_delta: u64,
    /// Rounds stop after this many (in this run).
    pub max_rounds: usize,
    /// The final round: the writer has stopped.
    pub last: bool,
    /// After the final round, compare the newest snapshot on both sides: `None` skips it,
    /// `Some(None)` compares all of it, `Some(Some(s))` a sample.
    pub verify: Option<Option<Sample>>,
    /// After the final round, remove the migration's snapshots on both sides.
    pub cleanup: bool,
    /// With `cleanup`, keep the last one.
    pub keep_last: bool,
    /// The settings of each round's copy.
    pub copy: Copy,
}

/// One round.
#[derive(Debug, Clone)]
pub struct Round {
    /// Its snapshot.
    pub snapshot: String,
    /// Bytes of the ranges that changed since the round before (read or zeroed).
    pub delta: u64,
    /// Its wall seconds (snapshot, copy and its end).
    pub seconds: f64,
}

/// What a migration run did.
#[derive(Debug, Clone, Default)]
pub struct Migrated {
    /// The rounds of this run.
    pub rounds: Vec<Round>,
    /// After the final round: whether the newest snapshots matched (`None`: not compared).
    pub verified: Option<bool>,
    /// Snapshots removed by `cleanup`.
    pub removed: Vec<String>,
}

/// Runs `job`.
pub fn migrate(job: &Migrate, ctx: &Context) -> Result<Migrated> {
    let mut done = Migrated::default();
    let rounds = if job.last { 1 } else { job.max_rounds.max(1) };
    // The rounds write the destination through one lease and one open, locked image (see
    // Keep); given up before the cleanup, whose snapshot removals need the lock.
    let kept = Keep::new();
    for _ in 0..rounds {
        let src = Managed::existing(&job.src, &ctx.access)?;
        let snaps = src.snaps()?;
        let ours: Vec<(u64, String)> = snaps
            .iter()
            .filter_map(|s| Some((number(&job.prefix, &s.name)?, s.name.clone())))
            .collect();
        let next = ours.iter().map(|(n, _)| n).max().map_or(1, |n| n + 1);
        let base = held_base(job, ctx, &src.identity()?, &snaps, &ours)?;
        let name = format!("{}-migrate-{next}", job.prefix);
        let started = Instant::now();
        src.snap_create(&name)?;
        drop(src);
        let mut spec = job.src.head();
        spec.snap = Some(name.clone());
        let round = Copy {
            src: Location::Rbd(spec),
            dst: Location::Rbd(job.dst.head()),
            from_snap: base,
            dst_snap: true,
            overwrite: false,
            supersede: true,
            ..job.copy.clone()
        };
        let outcome = copy(&round, ctx)?;
        let r = &outcome.report;
        done.rounds.push(Round {
            snapshot: name,
            delta: r.bytes_read + r.bytes_zero,
            seconds: started.elapsed().as_secs_f64(),
        });
        if !job.last && r.bytes_read + r.bytes_zero <= job.until_delta {
            break;
        }
    }
    drop(kept);
    if !job.last {
        return Ok(done);
    }
    let newest = done.rounds.last().expect("one round ran").snapshot.clone();
    if let Some(sample) = &job.verify {
        done.verified = Some(same(job, ctx, &newest, *sample)?);
    }
    if job.cleanup && done.verified != Some(false) {
        done.removed = cleanup(job, ctx, &newest)?;
    }
    Ok(done)
}

/// The number N of `PREFIX-migrate-N`.
fn number(prefix: &str, name: &str) -> Option<u64> {
    let n = name.strip_prefix(prefix)?.strip_prefix("-migrate-")?;
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())?
}

/// The newest migration snapshot (of `ours`, among the source's `snaps`, of the image
/// `image` identifies) the destination holds as the source's, by its provenance record:
/// the next round's base. `None` for a first round into a new image.
fn held_base(
    job: &Migrate,
    ctx: &Context,
    image: &[(String, String)],
    snaps: &[crate::rbd::Snap],
    ours: &[(u64, String)],
) -> Result<Option<String>> {
    let Some(dst) = Managed::open(&job.dst, &ctx.access)? else {
        return Ok(None);
    };
    let records: std::collections::HashMap<_, _> = dst.provenance()?.into_iter().collect();
    let theirs = dst.snaps()?;
    let mut held: Vec<&(u64, String)> = ours
        .iter()
        .filter(|(_, name)| {
            let id = snaps.iter().find(|s| &s.name == name).map(|s| s.id);
            theirs.iter().any(|t| &t.name == name)
                && records
                    .get(name)
                    .zip(id)
                    .is_some_and(|(m, id)| is_copy_of(m, image, id))
        })
        .collect();
    held.sort();
    match held.last() {
        Some((_, name)) => Ok(Some(name.clone())),
        None => Err(Error::Refused {
            image: job.dst.head().to_string(),
            reason: format!(
                "it exists but holds no {}-migrate- snapshot of {}: migrate into a new image",
                job.prefix,
                job.src.head()
            ),
        }),
    }
}

/// Whether snapshot `snap` reads the same on both sides.
fn same(job: &Migrate, ctx: &Context, snap: &str, sample: Option<Sample>) -> Result<bool> {
    let opts = SourceOptions {
        access: ctx.access.clone(),
        ..SourceOptions::default()
    };
    let at = |spec: &RbdSpec| {
        let mut s = spec.head();
        s.snap = Some(snap.to_owned());
        open_source(&Location::Rbd(s), &opts)
    };
    let (a, b) = (at(&job.src)?, at(&job.dst)?);
    let scan = Scan {
        jobs: job.copy.jobs.unwrap_or(16),
        budget: ctx.buffers.limit(),
        chunk: job.copy.chunk_size,
        sample,
    };
    let bar = (ctx.bars)("verify");
    let c = compare_with(a.as_ref(), b.as_ref(), &scan, &ctx.throttle, bar.as_ref())?;
    Ok(c.identical())
}

/// Removes the migration's snapshots on both sides (`newest` too unless `keep_last`).
fn cleanup(job: &Migrate, ctx: &Context, newest: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for spec in [&job.dst, &job.src] {
        let label = spec.head().to_string();
        let image = Managed::existing(spec, &ctx.access)?;
        for s in image.snaps()? {
            if number(&job.prefix, &s.name).is_some() && !(job.keep_last && s.name == newest) {
                image.snap_remove(&s.name)?;
                removed.push(format!("{label}@{}", s.name));
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn only_migration_snapshots_have_a_number() {
        assert_eq!(number("rbdcp", "rbdcp-migrate-7"), Some(7));
        assert_eq!(number("rbdcp", "rbdcp-migrate-"), None);
        assert_eq!(number("rbdcp", "rbdcp-migrate-7x"), None);
        assert_eq!(number("rbdcp", "rbdcp-20260301T020000Z"), None);
        assert_eq!(number("other", "rbdcp-migrate-1"), None);
    }
}
