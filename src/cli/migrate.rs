//! `rbdcp migrate`: glue over the migration job.
//!
//! `rbdcp migrate --json` prints `{"source", "destination", "final", "rounds": [{"snapshot",
//! "delta_bytes", "seconds"}], "downtime_seconds" (the final round's seconds, else `null`),
//! "verified" (after the final round's comparison, else `null`), "removed"}`.

use std::process::ExitCode;

use anyhow::Result;
use rbdcp::backend::Access;
use rbdcp::engine::Sample;
use rbdcp::job::copy::Copy;
use rbdcp::job::migrate::{self, Migrate};
use rbdcp::size::human;
use rbdcp::{Location, RbdSpec};
use serde::Serialize;

use super::args::{MigrateArgs, VerifyMode};
use super::{context, location, print_json, Differ, Usage};

#[derive(Debug, Serialize)]
struct MigrateJson<'a> {
    source: String,
    destination: String,
    #[serde(rename = "final")]
    last: bool,
    rounds: Vec<RoundJson<'a>>,
    downtime_seconds: Option<f64>,
    verified: Option<bool>,
    removed: &'a [String],
}

#[derive(Debug, Serialize)]
struct RoundJson<'a> {
    snapshot: &'a str,
    delta_bytes: u64,
    seconds: f64,
}

fn image(text: &str) -> Result<RbdSpec> {
    match location(text)? {
        Location::Rbd(spec) if spec.snap.is_none() => Ok(spec),
        _ => Err(Usage(format!(
            "{text}: migrate moves an RBD image: rbd:POOL/IMAGE, no snapshot"
        ))
        .into()),
    }
}

pub(super) fn migrate(a: MigrateArgs, access: &Access) -> Result<ExitCode> {
    let (src, dst) = (image(&a.src)?, image(&a.dst)?);
    let job = Migrate {
        src: src.clone(),
        dst: dst.clone(),
        prefix: a.prefix.clone(),
        until_delta: a.until_delta,
        max_rounds: a.max_rounds as usize,
        last: a.last,
        verify: match a.verify {
            VerifyMode::Full => Some(None),
            VerifyMode::None => None,
            VerifyMode::Sample(percent) => Some(Some(Sample {
                percent,
                seed: fastrand::u64(..),
            })),
        },
        cleanup: a.cleanup,
        keep_last: a.keep_last_snap,
        copy: Copy {
            jobs: a.workers.jobs.map(usize::from),
            chunk_size: a.workers.chunk_size,
            data_pool: a.data_pool.clone(),
            keep_parent: a.parent.keep_parent,
            parent_pool: a.parent.parent_pool.clone(),
            ..Copy::new(Location::Rbd(src.clone()), Location::Rbd(dst.clone()))
        },
    };
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let done = migrate::migrate(&job, &ctx)
        .map_err(|e| super::failed(e, &format!("migrating {src} to {dst}")))?;
    let last = done.rounds.last().expect("a run makes a round");
    if a.output.json {
        print_json(&MigrateJson {
            source: src.to_string(),
            destination: dst.to_string(),
            last: a.last,
            rounds: done
                .rounds
                .iter()
                .map(|r| RoundJson {
                    snapshot: &r.snapshot,
                    delta_bytes: r.delta,
                    seconds: r.seconds,
                })
                .collect(),
            downtime_seconds: a.last.then_some(last.seconds),
            verified: done.verified,
            removed: &done.removed,
        })?;
    } else {
        for r in &done.rounds {
            eprintln!(
                "rbdcp: round {}: {} changed, copied in {:.1} s",
                r.snapshot,
                human(r.delta),
                r.seconds
            );
        }
        if a.last {
            eprintln!(
                "rbdcp: final round done in {:.1} s (the downtime){}",
                last.seconds,
                match done.verified {
                    Some(true) => "; the newest snapshots are identical",
                    Some(false) => "; the newest snapshots DIFFER",
                    None => "",
                }
            );
        } else {
            eprintln!(
                "rbdcp: the last round changed {}; once the writer has stopped, run: rbdcp migrate {} {} --final",
                human(last.delta),
                a.src,
                a.dst
            );
        }
    }
    match done.verified {
        Some(false) => Err(Differ(format!(
            "{src}@{0} and {dst}@{0} differ after the final round",
            last.snapshot
        ))
        .into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
