//! `rbdcp plan`: glue over the plan job.
//!
//! `rbdcp plan --json` prints `{"plan", "shard", "steps": [{"line", "source",
//! "destination", "after", "status", "error", "exit", "bytes_written", "snapshots",
//! "clone_of"}]}`: this shard's steps in the order they ran; `after` is the line of the
//! step whose source is this one's parent (`null` if none); `status` is `copied`,
//! `complete` (the destination held the result already), `failed` (then `error` and
//! `exit`, the status that step alone would exit with) or `skipped` (its parent's copy
//! failed); `snapshots` are those a `--snapshots` step copied.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use rbdcp::backend::Access;
use rbdcp::job::copy::Copy;
use rbdcp::job::history::From;
use rbdcp::job::plan::{self, Did, Plan, Ran};
use rbdcp::size::human;
use rbdcp::Location;
use serde::Serialize;

use super::args::{PlanArgs, Snapshots};
use super::report::LinkJson;
use super::{context, print_json};

#[derive(Debug, Serialize)]
struct PlanJson<'a> {
    plan: String,
    shard: Option<String>,
    steps: &'a [StepJson],
}

#[derive(Debug, Serialize)]
struct StepJson {
    line: usize,
    source: String,
    destination: String,
    after: Option<usize>,
    status: &'static str,
    error: Option<String>,
    exit: Option<u8>,
    bytes_written: u64,
    snapshots: Vec<String>,
    clone_of: Option<LinkJson>,
}

impl StepJson {
    fn new(r: &Ran) -> Self {
        let mut s = StepJson {
            line: r.step.line,
            source: r.step.src.to_string(),
            destination: r.step.dst.to_string(),
            after: r.after,
            status: "copied",
            error: None,
            exit: None,
            bytes_written: 0,
            snapshots: Vec::new(),
            clone_of: None,
        };
        match &r.result {
            Err(e) => {
                s.status = "failed";
                s.error = Some(e.to_string());
                s.exit = Some(e.exit().code());
            }
            Ok(Did::Skipped(_)) => s.status = "skipped",
            Ok(Did::Copy(o)) => {
                if o.complete {
                    s.status = "complete";
                }
                s.bytes_written = o.report.bytes_written;
                s.clone_of = o.link.as_ref().map(LinkJson::new);
            }
            Ok(Did::History(h)) => {
                if h.snapshots.is_empty() {
                    s.status = "complete";
                }
                s.bytes_written = h.steps.iter().map(|o| o.report.bytes_written).sum();
                s.snapshots = h.snapshots.clone();
                s.clone_of = h
                    .steps
                    .iter()
                    .find_map(|o| o.link.as_ref())
                    .map(LinkJson::new);
            }
        }
        s
    }
}

pub(super) fn plan(a: PlanArgs, access: &Access) -> Result<ExitCode> {
    let file = a.plan.display().to_string();
    let text = std::fs::read_to_string(&a.plan).with_context(|| format!("reading plan {file}"))?;
    let steps = plan::parse(&text, &file)?;
    let job = Plan {
        steps,
        history: a.snapshots.clone().map(|s| match s {
            Snapshots::All => From::All,
            Snapshots::Since(base) => From::Since(base),
        }),
        copy: Copy {
            verify: a.verify,
            jobs: a.workers.jobs.map(usize::from),
            chunk_size: a.workers.chunk_size,
            data_pool: a.data_pool.clone(),
            keep_parent: a.parent.keep_parent,
            parent_pool: a.parent.parent_pool.clone(),
            ..Copy::new(Location::Stdio, Location::Stdio)
        },
        shard: a.shard,
    };
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let ran = plan::run(&job, &ctx).with_context(|| format!("running plan {file}"))?;
    let steps: Vec<StepJson> = ran.iter().map(StepJson::new).collect();
    if a.output.json {
        print_json(&PlanJson {
            plan: file.clone(),
            shard: a.shard.map(|(k, n)| format!("{k}/{n}")),
            steps: &steps,
        })?;
    } else {
        for s in &steps {
            let what = match (&s.error, s.status) {
                (Some(e), _) => format!("failed: {e}"),
                (None, "skipped") => format!(
                    "not run: the copy of its parent (line {}) failed",
                    s.after.unwrap_or(0)
                ),
                (None, "complete") => "complete already".to_owned(),
                _ => format!("copied, {} written", human(s.bytes_written)),
            };
            eprintln!(
                "rbdcp: {file}:{}: {} to {}: {what}",
                s.line, s.source, s.destination
            );
        }
    }
    let first = steps.iter().find_map(|s| s.exit);
    let skipped = steps.iter().any(|s| s.status == "skipped");
    Ok(match (first, skipped) {
        (Some(code), _) => ExitCode::from(code),
        (None, true) => ExitCode::FAILURE,
        (None, false) => ExitCode::SUCCESS,
    })
}
