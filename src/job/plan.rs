//! A plan: many copies in one run, read from a file of `SRC DST` lines. Parents run before
//! their clones (so that `--keep-parent` finds the parent's copy); a failed step skips the
//! clones that need it and the others go on. Each step is a resumable copy, so a rerun
//! after a kill redoes nothing done. `shard` splits a plan across hosts (one Kubernetes
//! indexed job per shard, say) and keeps every clone in its parent's shard.

use std::collections::HashMap;

use super::copy::{copy, Copy};
use super::history::{copy_history, Copied, From, History};
use super::{Context, Outcome};
use crate::backend::{open_source, SourceOptions};
use crate::error::{Error, Result};
use crate::location::Location;

/// What to copy.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The copies, in the order listed.
    pub steps: Vec<Step>,
    /// Copy each source's snapshot history (`--snapshots`) rather than one image.
    pub history: Option<From>,
    /// The settings of every copy (its `src` and `dst` are the step's).
    pub copy: Copy,
    /// This run's part of the plan: shard K of N (0-based).
    pub shard: Option<(usize, usize)>,
}

/// One copy of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its line in the plan file (from 1).
    pub line: usize,
    /// What to read.
    pub src: Location,
    /// Where to write.
    pub dst: Location,
}

/// What a step of a run did.
#[derive(Debug)]
pub struct Ran {
    /// The step.
    pub step: Step,
    /// The line of the step whose source is this one's parent, when the plan holds it.
    pub after: Option<usize>,
    /// What happened.
    pub result: Result<Did>,
}

/// What a step that did not fail did.
#[derive(Debug)]
pub enum Did {
    /// One copy.
    Copy(Outcome),
    /// A snapshot history.
    History(Copied),
    /// Not run: the copy of its parent, on this line, failed.
    Skipped(usize),
}

/// Reads a plan file: one `SRC DST` pair per line (locations as `copy` takes them);
/// blank lines and lines starting with `#` are skipped.
pub fn parse(text: &str, file: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [src, dst] = words[..] else {
            return Err(Error::Config(format!(
                "{file}, line {}: a step is SRC DST, two locations; found {} word(s)",
                i + 1,
                words.len()
            )));
        };
        let at = |e: Error| Error::Config(format!("{file}, line {}: {e}", i + 1));
        steps.push(Step {
            line: i + 1,
            src: src.parse().map_err(at)?,
            dst: dst.parse().map_err(at)?,
        });
    }
    Ok(steps)
}

/// Runs this shard's steps of `plan`, parents first; stops early only when cancelled.
pub fn run(plan: &Plan, ctx: &Context) -> Result<Vec<Ran>> {
    let parents = parents(&plan.steps, ctx);
    let mut ran: Vec<Ran> = Vec::new();
    for i in order(&parents) {
        if let Some((k, n)) = plan.shard {
            if shard_of(&parents, i) % n != k {
                continue;
            }
        }
        if ctx.cancelled() {
            return Err(Error::Interrupted);
        }
        let step = plan.steps[i].clone();
        let after = parents[i].map(|p| plan.steps[p].line);
        let failed = after.and_then(|line| {
            ran.iter()
                .find(|r| r.step.line == line && matches!(r.result, Err(_) | Ok(Did::Skipped(_))))
        });
        let result = match failed {
            Some(parent) => Ok(Did::Skipped(parent.step.line)),
            None => one(plan, &step, ctx),
        };
        if matches!(&result, Err(e) if matches!(e.root(), Error::Interrupted)) {
            return Err(Error::Interrupted);
        }
        ran.push(Ran {
            step,
            after,
            result,
        });
    }
    Ok(ran)
}

/// Runs one step.
fn one(plan: &Plan, step: &Step, ctx: &Context) -> Result<Did> {
    let copy_job = Copy {
        src: step.src.clone(),
        dst: step.dst.clone(),
        ..plan.copy.clone()
    };
    match (&plan.history, &step.src, &step.dst) {
        (None, _, _) => copy(&copy_job, ctx).map(Did::Copy),
        (Some(from), Location::Rbd(src), Location::Rbd(dst)) => {
            let job = History {
                src: src.clone(),
                dst: dst.clone(),
                from: from.clone(),
                copy: copy_job,
            };
            copy_history(&job, ctx).map(Did::History)
        }
        (Some(_), _, _) => Err(Error::Unsupported(format!(
            "--snapshots copies an RBD image's snapshots to an RBD image: {} to {}",
            step.src, step.dst
        ))),
    }
}

/// For each step, the step whose source is its source's parent image, if the plan holds
/// one (RBD sources are opened, read-only, to see).
fn parents(steps: &[Step], ctx: &Context) -> Vec<Option<usize>> {
    let opts = SourceOptions {
        access: ctx.access.clone(),
        ..SourceOptions::default()
    };
    // Each source's image (fsid, pool id, image id) and its parent image's.
    let mut ids = Vec::new();
    for step in steps {
        // A source that cannot be opened has no known parent: its step fails on its own.
        let seen = || -> Result<_> {
            let src = open_source(&step.src, &opts)?;
            let image: Vec<_> = src.identity().into_iter().take(3).collect();
            Ok((Some(image), src.carries()?.parent.map(|p| p.image)))
        };
        ids.push(match &step.src {
            Location::Rbd(_) => seen().unwrap_or((None, None)),
            _ => (None, None),
        });
    }
    let by_image: HashMap<_, _> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, (image, _))| Some((image.clone()?, i)))
        .collect();
    ids.iter()
        .map(|(_, parent)| by_image.get(parent.as_ref()?).copied())
        .collect()
}

/// The steps in the order they run: as listed, but each after its parent.
fn order(parents: &[Option<usize>]) -> Vec<usize> {
    let mut out = Vec::with_capacity(parents.len());
    let mut placed = vec![false; parents.len()];
    fn place(i: usize, parents: &[Option<usize>], placed: &mut [bool], out: &mut Vec<usize>) {
        if placed[i] {
            return;
        }
        placed[i] = true;
        if let Some(p) = parents[i] {
            place(p, parents, placed, out);
        }
        out.push(i);
    }
    for i in 0..parents.len() {
        place(i, parents, &mut placed, &mut out);
    }
    out
}

/// The shard number of step `i`'s family: the position of its oldest ancestor among the
/// plan's steps that have no parent in the plan.
fn shard_of(parents: &[Option<usize>], mut i: usize) -> usize {
    while let Some(p) = parents[i] {
        i = p;
    }
    (0..i).filter(|&j| parents[j].is_none()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_run_first_and_families_share_a_shard() {
        // 0 is a clone of 2, 3 of 0; 1 and 4 stand alone.
        let parents = [Some(2), None, None, Some(0), None];
        assert_eq!(order(&parents), [2, 0, 1, 3, 4]);
        let shards: Vec<usize> = (0..5).map(|i| shard_of(&parents, i) % 2).collect();
        // Roots in order: 1 (family 0), 2 (family 1), 4 (family 2).
        assert_eq!(shards, [1, 0, 1, 1, 0]);
    }

    #[test]
    fn a_plan_file_is_pairs_of_locations() {
        let steps = parse(
            "# a plan\n\nrbd:rbd/a rbd:backup/a\n  a.img   b.img \n",
            "p",
        )
        .unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].line, 3);
        assert_eq!(steps[1].dst, "b.img".parse().unwrap());
        let e = parse("rbd:rbd/a\n", "p").unwrap_err().to_string();
        assert!(e.contains("p, line 1") && e.contains("1 word"), "{e}");
        let e = parse("x y z\n", "p").unwrap_err().to_string();
        assert!(e.contains("3 word"), "{e}");
    }
}
