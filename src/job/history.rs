//! Copies an RBD image with its snapshot history: every user snapshot in creation order,
//! the oldest whole and each next one as what changed since the one before, each made on
//! the destination under its own name once its data is written. Snapshots of other
//! namespaces (in the trash, owned by mirroring or a group) are skipped and reported.
//!
//! Each step is a [`Copy`], so each is resumable, and a snapshot the destination holds
//! already (with the provenance record of this source's snapshot) is a step done: a rerun
//! after a kill goes on at the snapshot, and the offset, it had reached.

use super::copy::{copy, Copy};
use super::record::is_copy_of;
use super::{Context, Outcome};
use crate::backend::rbd::{connection, Keep, Managed, RbdSource};
use crate::backend::SourceOptions;
use crate::error::{Error, Result};
use crate::location::{Location, RbdSpec};
use crate::rbd::Snap;

/// Where the history starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// At the source's oldest snapshot: the destination must not exist yet (or hold only
    /// what an interrupted run of this job made).
    All,
    /// After snapshot BASE, which the destination holds as this source's.
    Since(String),
}

/// What to copy.
#[derive(Debug, Clone)]
pub struct History {
    /// The source image; with a snapshot, the history ends there.
    pub src: RbdSpec,
    /// The destination image.
    pub dst: RbdSpec,
    /// Where the history starts.
    pub from: From,
    /// The settings of each step (its `src`, `dst`, `from_snap` and snapshot are the
    /// history's).
    pub copy: Copy,
}

/// What a history copy did.
#[derive(Debug, Clone, Default)]
pub struct Copied {
    /// The snapshots copied by this run, in order.
    pub snapshots: Vec<String>,
    /// Snapshots the destination held already, from an earlier run.
    pub held: Vec<String>,
    /// Each step's outcome, in order.
    pub steps: Vec<Outcome>,
    /// The source's snapshots that are not user snapshots, skipped: name and namespace
    /// (`trash`, `mirror`, `group`).
    pub skipped: Vec<(String, &'static str)>,
}

/// Runs `job`.
pub fn copy_history(job: &History, ctx: &Context) -> Result<Copied> {
    // Both connections last the whole history, not one step each.
    let _connected = (
        connection(&job.src, &ctx.access)?,
        connection(&job.dst, &ctx.access)?,
    );
    // So does the destination's open image, and its lock, from the first step that
    // writes it in place.
    let _kept = Keep::new();
    let src_label = job.src.head().to_string();
    // Read-only, at its head: a source's read-only caps do.
    let opts = SourceOptions {
        access: ctx.access.clone(),
        ..SourceOptions::default()
    };
    let src = RbdSource::open(&job.src.head(), &opts)?;
    let image = src.image_identity();
    let (mut snaps, others) = src.all_snaps()?;
    drop(src);
    end_at(&mut snaps, &job.src)?;
    if snaps.is_empty() {
        return Err(Error::Unsupported(format!(
            "{src_label} has no snapshot: --snapshots copies snapshots (take one with `rbd snap create`)"
        )));
    }
    let first = match &job.from {
        From::All => 0,
        From::Since(base) => {
            1 + snaps
                .iter()
                .position(|s| &s.name == base)
                .ok_or_else(|| Error::NoSnap {
                    image: src_label.clone(),
                    snap: base.clone(),
                })?
        }
    };
    let held = held(job, ctx, &image, &snaps)?;
    let mut done = Copied {
        skipped: others.into_iter().map(|(s, kind)| (s.name, kind)).collect(),
        ..Copied::default()
    };
    for (i, snap) in snaps.iter().enumerate().skip(first) {
        if held.contains(&snap.name) {
            done.held.push(snap.name.clone());
            continue;
        }
        let mut spec = job.src.head();
        spec.snap = Some(snap.name.clone());
        let step = Copy {
            src: Location::Rbd(spec),
            dst: Location::Rbd(job.dst.head()),
            from_snap: i.checked_sub(1).map(|p| snaps[p].name.clone()),
            dst_snap: true,
            overwrite: false,
            // The record of a step that was done (killed before it dropped its record) or
            // of another job is dropped; a record of this very step is resumed.
            supersede: true,
            ..job.copy.clone()
        };
        done.steps.push(copy(&step, ctx)?);
        done.snapshots.push(snap.name.clone());
    }
    Ok(done)
}

/// Cuts `snaps` (oldest first) after the snapshot `spec` names, if it names one.
pub(super) fn end_at(snaps: &mut Vec<Snap>, spec: &RbdSpec) -> Result<()> {
    let Some(end) = &spec.snap else {
        return Ok(());
    };
    let at = snaps
        .iter()
        .position(|s| &s.name == end)
        .ok_or_else(|| Error::NoSnap {
            image: spec.head().to_string(),
            snap: end.clone(),
        })?;
    snaps.truncate(at + 1);
    Ok(())
}

/// The snapshots of the source's history that the destination holds as this source's
/// (by their provenance records), to be skipped. With [`From::All`], they must be a
/// leading run of the history and all the destination holds; with [`From::Since`], the
/// destination must hold BASE (and if rbdcp made it, from this source).
fn held(
    job: &History,
    ctx: &Context,
    image: &[(String, String)],
    snaps: &[Snap],
) -> Result<Vec<String>> {
    let label = job.dst.head().to_string();
    let Some(dst) = Managed::open(&job.dst, &ctx.access)? else {
        return match &job.from {
            From::All => Ok(Vec::new()),
            From::Since(base) => Err(no_base(&label, base, "it does not exist")),
        };
    };
    let records: std::collections::HashMap<_, _> = dst.provenance()?.into_iter().collect();
    let theirs = dst.snaps()?;
    let has = |name: &str| theirs.iter().any(|t| t.name == name);
    // Whether the record of `s`'s name says it is `s` of this source: `None` without one.
    let made = |s: &Snap| records.get(&s.name).map(|m| is_copy_of(m, image, s.id));
    let mine = |s: &Snap| has(&s.name) && made(s) == Some(true);
    match &job.from {
        From::All => {
            let held: Vec<String> = snaps
                .iter()
                .take_while(|s| mine(s))
                .map(|s| s.name.clone())
                .collect();
            if let Some(other) = theirs.iter().find(|t| !held.contains(&t.name)) {
                return Err(Error::Refused {
                    image: label,
                    reason: format!(
                        "it exists and holds snapshot {} that is not rbdcp's copy of the source's history; copy into a new image, or continue a history it holds with --snapshots since:BASE",
                        other.name
                    ),
                });
            }
            Ok(held)
        }
        From::Since(base) => {
            let at = snaps
                .iter()
                .position(|s| &s.name == base)
                .expect("checked by the caller");
            if !has(base) {
                return Err(no_base(&label, base, "it does not hold that snapshot"));
            }
            if made(&snaps[at]) == Some(false) {
                return Err(no_base(
                    &label,
                    base,
                    "rbdcp made it from another source snapshot",
                ));
            }
            Ok(snaps[at + 1..]
                .iter()
                .filter(|s| mine(s))
                .map(|s| s.name.clone())
                .collect())
        }
    }
}

fn no_base(label: &str, base: &str, why: &str) -> Error {
    Error::Refused {
        image: label.to_owned(),
        reason: format!(
            "--snapshots since:{base} continues a history the destination holds up to {base}, but {why}"
        ),
    }
}
