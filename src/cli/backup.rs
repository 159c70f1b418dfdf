//! `rbdcp backup`, `backup-list`, `protect` and `unprotect`: glue over the backup job.
//!
//! `rbdcp backup --json` prints the copy's report (as `rbdcp copy --json`, or `null` when
//! nothing was copied) under `copy`, and beside it: `snapshot` (this run's), `base` (the
//! common base copied from, or `null`), `mode` (`incremental`, `full`, `fresh-chain`, or
//! `none` when the destination held this run's snapshot already), `broken_chain` (`null`,
//! or `{"reason", "renamed_to"}`), `removed` (`{"source": [...], "destination": [...]}`),
//! `dry_run`, and the copy's totals again at the top level (`bytes_read`, `bytes_written`,
//! `bytes_zero`, `seconds`; 0 when nothing was copied).

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use rbdcp::backend::rbd::Managed;
use rbdcp::backend::Access;
use rbdcp::job::backup::{self, Backed, Backup, OnBroken};
use rbdcp::job::copy::Copy;
use rbdcp::job::metrics;
use rbdcp::job::retention::{self, Keep};
use rbdcp::{Location, RbdSpec};
use serde::Serialize;

use super::args::{self, BackupArgs, BackupListArgs, KeepArgs, ProtectArgs};
use super::report::CopyJson;
use super::{context, location, print_json, write_out, Usage};

/// An `rbd:` image named without a snapshot (`snap: false`) or with one (`snap: true`).
fn image(text: &str, snap: bool) -> Result<RbdSpec> {
    match location(text)? {
        Location::Rbd(spec) if spec.snap.is_some() == snap => Ok(spec),
        Location::Rbd(_) if snap => {
            Err(Usage(format!("{text}: name a snapshot, rbd:POOL/IMAGE@SNAP")).into())
        }
        Location::Rbd(_) => Err(Usage(format!(
            "{text}: name an image, not a snapshot (rbd:POOL/IMAGE)"
        ))
        .into()),
        _ => Err(Usage(format!(
            "{text}: backups are of RBD images (rbd:POOL/IMAGE)"
        ))
        .into()),
    }
}

fn keep(k: &KeepArgs) -> Keep {
    Keep {
        last: k.keep_last,
        hourly: k.keep_hourly,
        daily: k.keep_daily,
        weekly: k.keep_weekly,
        monthly: k.keep_monthly,
        yearly: k.keep_yearly,
    }
}

fn zone(k: &KeepArgs) -> Result<jiff::tz::TimeZone> {
    retention::zone(&k.timezone).map_err(|e| Usage(e).into())
}

/// The report of `rbdcp backup --json`.
#[derive(Debug, Serialize)]
struct BackupJson<'a> {
    source: String,
    destination: String,
    snapshot: &'a str,
    base: Option<&'a str>,
    mode: &'static str,
    dry_run: bool,
    broken_chain: Option<BrokenJson<'a>>,
    removed: RemovedJson<'a>,
    bytes_read: u64,
    bytes_written: u64,
    bytes_zero: u64,
    seconds: f64,
    copy: Option<CopyJson<'a>>,
}

#[derive(Debug, Serialize)]
struct BrokenJson<'a> {
    reason: &'a str,
    renamed_to: &'a str,
}

#[derive(Debug, Serialize)]
struct RemovedJson<'a> {
    source: &'a [String],
    destination: &'a [String],
}

pub(super) fn backup(a: BackupArgs, access: &Access) -> Result<ExitCode> {
    let (src, dst) = (image(&a.src, false)?, image(&a.dst, false)?);
    let started = Instant::now();
    // The run's clock (RBDCP_NOW when set), as its snapshot names and retention use it.
    let wall = retention::now().map_or_else(
        |_| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        },
        |t| t.as_millisecond() as f64 / 1000.0,
    );
    let job = Backup {
        src: src.clone(),
        dst: dst.clone(),
        prefix: a.prefix.clone(),
        keep: keep(&a.keep),
        zone: zone(&a.keep)?,
        source_keep_last: a.source_keep_last as usize,
        on_broken: match a.on_broken_chain {
            args::OnBroken::Refuse => OnBroken::Refuse,
            args::OnBroken::Full => OnBroken::Full,
        },
        dry_run: a.dry_run,
        copy: Copy {
            whole_object: a.whole_object,
            verify: a.verify,
            jobs: a.workers.jobs.map(usize::from),
            chunk_size: a.workers.chunk_size,
            data_pool: a.data_pool.clone(),
            ..Copy::new(Location::Rbd(src.clone()), Location::Rbd(dst.clone()))
        },
    };
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let result = backup::backup(&job, &ctx);
    if let (Some(dir), false) = (&a.metrics_textfile, a.dry_run) {
        let done = result.as_ref().ok();
        let run = metrics::Run {
            started: wall,
            seconds: started.elapsed().as_secs_f64(),
            success: done.is_some(),
            bytes: done
                .and_then(|b| b.copy.as_ref())
                .map_or(0, |c| c.report.bytes_written + c.report.bytes_zero),
            full: done.is_some_and(|b| b.full_copy),
            snapshots: done.map(|b| b.counts),
        };
        metrics::write(dir, &dst, &run)
            .with_context(|| format!("writing the metrics of {dst} into {}", dir.display()))?;
    }
    let done = result.map_err(|e| super::failed(e, &format!("backing up {src} to {dst}")))?;
    report(&a, &src, &dst, &done, ctx.retries())?;
    match done.copy.as_ref().and_then(|c| c.mismatch.as_ref()) {
        Some(msg) => {
            Err(super::Differ(format!("verification failed: {msg} (source {src})")).into())
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

fn report(a: &BackupArgs, src: &RbdSpec, dst: &RbdSpec, done: &Backed, retries: u64) -> Result<()> {
    let (from, to) = (format!("{src}@{}", done.snapshot), dst.to_string());
    if a.dry_run && !a.output.json {
        let mut text = String::new();
        for line in backup::plan_lines(&done.verdicts) {
            text.push_str(&line);
            text.push('\n');
        }
        for s in &done.removed_src {
            eprintln!("rbdcp: the source snapshot {src}@{s} would be removed");
        }
        return write_out(&text);
    }
    if a.output.json {
        let copy = done
            .copy
            .as_ref()
            .map(|c| CopyJson::new(&from, &to, c, retries));
        let r = done.copy.as_ref().map(|c| &c.report);
        return print_json(&BackupJson {
            source: src.to_string(),
            destination: to.clone(),
            snapshot: &done.snapshot,
            base: done.base.as_deref(),
            mode: done.mode.as_str(),
            dry_run: a.dry_run,
            broken_chain: done.broken.as_ref().map(|(reason, renamed)| BrokenJson {
                reason,
                renamed_to: renamed,
            }),
            removed: RemovedJson {
                source: &done.removed_src,
                destination: &done.removed_dst,
            },
            bytes_read: r.map_or(0, |r| r.bytes_read),
            bytes_written: r.map_or(0, |r| r.bytes_written),
            bytes_zero: r.map_or(0, |r| r.bytes_zero),
            seconds: r.map_or(0.0, |r| r.seconds),
            copy,
        });
    }
    if let Some((reason, renamed)) = &done.broken {
        eprintln!("rbdcp: the chain was broken ({reason}); the old destination is now {renamed}");
    }
    match &done.copy {
        None => eprintln!(
            "rbdcp: {to} holds {} already; nothing to copy",
            done.snapshot
        ),
        Some(c) => eprintln!(
            "rbdcp: backed up {from} to {to} ({}, {} of data{}) in {:.1} s",
            done.mode.as_str(),
            rbdcp::size::human(c.report.bytes_written),
            done.base
                .as_deref()
                .map(|b| format!(" since {b}"))
                .unwrap_or_default(),
            c.report.seconds
        ),
    }
    if !done.removed_dst.is_empty() || !done.removed_src.is_empty() {
        eprintln!(
            "rbdcp: retention removed {} destination and {} source snapshot(s)",
            done.removed_dst.len(),
            done.removed_src.len()
        );
    }
    Ok(())
}

/// One snapshot of `backup-list --json`.
#[derive(Debug, Serialize)]
struct ListedJson {
    snapshot: String,
    source_snapshot_id: Option<String>,
    time: String,
    size: u64,
    protected: bool,
    keep: Option<bool>,
    rule: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListJson {
    destination: String,
    snapshots: Vec<ListedJson>,
    source: Option<String>,
    source_snapshots: Option<Vec<String>>,
    common_base: Option<String>,
}

pub(super) fn backup_list(a: BackupListArgs, access: &Access) -> Result<ExitCode> {
    let dst = image(&a.dst, false)?;
    let tz = zone(&a.keep)?;
    let rules = keep(&a.keep);
    let listed = backup::list(
        &dst,
        a.source
            .as_deref()
            .map(|s| image(s, false))
            .transpose()?
            .as_ref(),
        &a.prefix,
        access,
    )
    .with_context(|| format!("listing the backups of {dst}"))?;
    let verdicts = (!rules.is_empty()).then(|| backup::retain(&listed, &rules, &tz));
    let verdict = |name: &str| {
        verdicts
            .as_ref()
            .and_then(|vs| vs.iter().find(|v| v.name == name))
    };
    let rows: Vec<ListedJson> = listed
        .links
        .iter()
        .map(|l| ListedJson {
            snapshot: l.name.clone(),
            source_snapshot_id: l.source_snap.clone(),
            time: l.time.to_string(),
            size: l.size,
            protected: l.protected,
            keep: verdict(&l.name).map(|v| v.keep),
            rule: verdict(&l.name).map(|v| v.why.to_string()),
        })
        .collect();
    if a.json {
        print_json(&ListJson {
            destination: dst.to_string(),
            snapshots: rows,
            source: a.source.clone(),
            source_snapshots: listed.source.clone(),
            common_base: listed.base.clone(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::from("SNAPSHOT\tSOURCE_SNAP_ID\tTIME\tSIZE\tPROTECTED");
    if verdicts.is_some() {
        text.push_str("\tRETENTION");
    }
    text.push('\n');
    for r in &rows {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}",
            r.snapshot,
            r.source_snapshot_id.as_deref().unwrap_or("-"),
            r.time,
            r.size,
            if r.protected { "yes" } else { "no" }
        ));
        if let (Some(keep), Some(rule)) = (r.keep, &r.rule) {
            text.push_str(&format!(
                "\t{} {rule}",
                if keep { "keep" } else { "remove" }
            ));
        }
        text.push('\n');
    }
    if let Some(snaps) = &listed.source {
        text.push_str(&format!(
            "source {}: {}\ncommon base: {}\n",
            a.source.as_deref().unwrap_or_default(),
            if snaps.is_empty() {
                "none".to_owned()
            } else {
                snaps.join(" ")
            },
            listed.base.as_deref().unwrap_or("none")
        ));
    }
    write_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn protect(a: ProtectArgs, on: bool, access: &Access) -> Result<ExitCode> {
    let spec = image(&a.snap, true)?;
    let snap = spec.snap.clone().expect("checked above");
    let what = if on { "protecting" } else { "unprotecting" };
    let image = Managed::existing(&spec, access).with_context(|| format!("{what} {spec}"))?;
    image
        .protect(&snap, on)
        .with_context(|| format!("{what} {spec}"))?;
    Ok(ExitCode::SUCCESS)
}
