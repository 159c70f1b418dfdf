//! The backup job: snapshot an RBD image, copy what changed since the newest snapshot both
//! sides hold as the same data, record the chain, then apply retention on both sides.
//!
//! The chain lives in the destination's image-meta: every snapshot a copy made there has a
//! provenance record (the source's cluster fsid, pool id, image id and snapshot id, its
//! size, and for a backup its time). A destination snapshot is a common base when its
//! record names this source image and a snapshot the source still has under the same name
//! and id: a name alone is not enough. The newest common base is never removed.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::copy::{copy, Copy};
use super::record::{is_copy_of, provenance_field};
use super::retention::{self, Keep, Snap, Verdict};
use super::{Context, Outcome};
use crate::backend::rbd::Managed;
use crate::backend::{open_source, SourceOptions};
use crate::error::{Error, Result};
use crate::location::{Location, RbdSpec};

/// What to do when the destination exists but shares no base with the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBroken {
    /// Refuse (exit code 3): an operator decides.
    #[default]
    Refuse,
    /// Rename the destination aside (`IMAGE-broken-TIME`) and start a new chain with a
    /// full copy.
    Full,
}

/// A scheduled backup of one image.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The image backed up (its head).
    pub src: RbdSpec,
    /// The backup image (its head).
    pub dst: RbdSpec,
    /// Snapshots are named `PREFIX-%Y%m%dT%H%M%SZ`; no other snapshot is touched.
    pub prefix: String,
    /// Retention on the destination's chain.
    pub keep: Keep,
    /// The zone of retention's calendar buckets.
    pub zone: TimeZone,
    /// `PREFIX-` snapshots kept on the source, the newest common base included (at least 1).
    pub source_keep_last: usize,
    /// What a broken chain gets.
    pub on_broken: OnBroken,
    /// Change nothing; plan only.
    pub dry_run: bool,
    /// The copy's settings (its `src`, `dst`, `from_snap` and snapshot are the backup's).
    pub copy: Copy,
}

/// How a backup copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What changed since the newest common base.
    Incremental,
    /// All of it, to a new destination.
    Full,
    /// All of it, after the broken chain's destination was renamed aside.
    FreshChain,
    /// Nothing: the destination holds this run's snapshot already.
    Done,
}

impl Mode {
    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Incremental => "incremental",
            Mode::Full => "full",
            Mode::FreshChain => "fresh-chain",
            Mode::Done => "none",
        }
    }
}

/// What a backup did (or, with `dry_run`, would do).
#[derive(Debug, Clone)]
pub struct Backed {
    /// The snapshot this run made (or found made).
    pub snapshot: String,
    /// The common base it copied from.
    pub base: Option<String>,
    /// How it copied.
    pub mode: Mode,
    /// The copy's outcome; `None` when nothing was copied.
    pub copy: Option<Outcome>,
    /// Why the chain was broken and where the old destination went, when it was.
    pub broken: Option<(String, String)>,
    /// Destination snapshots retention removed (or would remove).
    pub removed_dst: Vec<String>,
    /// Source snapshots removed (or that would be).
    pub removed_src: Vec<String>,
    /// Retention's verdict on every destination snapshot of the chain, this run's
    /// included, newest first.
    pub verdicts: Vec<Verdict>,
    /// `PREFIX-` snapshots on each side after the run: source, destination.
    pub counts: (usize, usize),
    /// Whether the run copied an image whole (a new chain, or a killed run's full copy
    /// it finished).
    pub full_copy: bool,
}

/// A snapshot of the destination's chain: a `PREFIX-` snapshot, and what its provenance
/// record says, if it has one.
#[derive(Debug, Clone)]
struct Link {
    name: String,
    time: Timestamp,
    size: u64,
    made: Option<String>,
}

impl Link {
    /// Whether the record says the snapshot holds `snap` of the image `image` (fsid, pool
    /// id, image id).
    fn holds(&self, image: &[(String, String)], snap: &crate::rbd::Snap) -> bool {
        self.name == snap.name
            && self
                .made
                .as_deref()
                .is_some_and(|m| is_copy_of(m, image, snap.id))
    }
}

/// The `PREFIX-` snapshots of `image`, oldest first, with their records.
fn chain(image: &Managed, prefix: &str) -> Result<Vec<Link>> {
    let records: std::collections::HashMap<_, _> = image.provenance()?.into_iter().collect();
    let mut links: Vec<Link> = image
        .snaps()?
        .into_iter()
        .filter_map(|s| {
            let time = retention::parse(prefix, &s.name)?;
            let made = records.get(&s.name).cloned();
            Some(Link {
                name: s.name,
                time,
                size: s.size,
                made,
            })
        })
        .collect();
    links.sort_by(|a, b| (a.time, &a.name).cmp(&(b.time, &b.name)));
    Ok(links)
}

/// The newest link that holds one of `snaps` of the source `image`.
fn newest_common<'a>(
    links: &'a [Link],
    image: &[(String, String)],
    snaps: &[crate::rbd::Snap],
) -> Option<&'a Link> {
    links
        .iter()
        .rev()
        .find(|l| snaps.iter().any(|s| l.holds(image, s)))
}

/// Runs `job`.
pub fn backup(job: &Backup, ctx: &Context) -> Result<Backed> {
    let now = retention::now().map_err(Error::Config)?;
    let name = retention::name(&job.prefix, now);
    let src_label = job.src.head().to_string();
    // Held to the end: a second run on this destination stops here, having touched nothing.
    let _lease = match job.dry_run {
        true => None,
        false => Some(crate::backend::rbd::backup_lease(&job.dst, &ctx.access)?),
    };
    let src = Managed::existing(&job.src, &ctx.access)?;
    let image = src.identity()?;
    let src_snaps = src.snaps()?;
    let mut dst = Managed::open(&job.dst, &ctx.access)?;
    let links = match &dst {
        Some(d) => chain(d, &job.prefix)?,
        None => Vec::new(),
    };
    let base = newest_common(&links, &image, &src_snaps).map(|l| l.name.clone());
    let done = links
        .iter()
        .any(|l| l.name == name && src_snaps.iter().any(|s| l.holds(&image, s)));
    let mut broken = None;
    let mode = match (&dst, &base) {
        _ if done => Mode::Done,
        (None, _) => Mode::Full,
        (Some(d), Some(b)) => match written_since(job, d, b, ctx)? {
            None => Mode::Incremental,
            Some(reason) => {
                broken = Some(reason);
                Mode::FreshChain
            }
        },
        (Some(d), None) => {
            broken = Some(no_base(&job.prefix, d, &links, &src_snaps, &src_label)?);
            Mode::FreshChain
        }
    };
    let dst_label = job.dst.head().to_string();
    let mut aside = None;
    if let Some(reason) = &broken {
        if job.on_broken == OnBroken::Refuse {
            return Err(Error::Refused {
                image: dst_label,
                reason: format!(
                    "the backup chain is broken: {reason}. Rename or remove the destination, or run with --on-broken-chain full to rename it aside and start a new chain"
                ),
            });
        }
        let renamed = format!("{}-broken-{}", job.dst.image, stamp(now));
        if let (false, Some(d)) = (job.dry_run, dst.take()) {
            d.rename(&renamed)?;
        }
        aside = Some((reason.clone(), renamed));
    }
    let base = if mode == Mode::Incremental {
        base
    } else {
        None
    };
    if job.dry_run {
        let mut snaps: Vec<Snap> = match mode {
            Mode::FreshChain => Vec::new(),
            _ => links.iter().map(|l| snap(l, &[], None)).collect(),
        };
        if !snaps.iter().any(|s| s.name == name) {
            snaps.push(Snap {
                name: name.clone(),
                time: now,
                protected: false,
                pinned: true,
            });
        }
        let protected = match (&mode, Managed::open(&job.dst, &ctx.access)?) {
            (Mode::FreshChain, _) | (_, None) => Vec::new(),
            (_, Some(d)) => d.protected()?,
        };
        for s in &mut snaps {
            s.protected = protected.contains(&s.name);
            s.pinned = s.name == name;
        }
        let verdicts = retention::plan(&snaps, &job.keep, &job.zone);
        let removed_dst = removed(&verdicts);
        let removed_src = source_prune(job, &src_snaps, &name, now);
        return Ok(Backed {
            snapshot: name,
            base,
            mode,
            copy: None,
            broken: aside,
            removed_dst,
            removed_src,
            verdicts,
            counts: (0, 0),
            full_copy: matches!(mode, Mode::Full | Mode::FreshChain),
        });
    }
    // The copies open the destination themselves.
    drop(dst);
    // A killed run's copy that can still be finished is finished first, resuming where
    // its record says; its snapshot then is the base.
    let mut base = base;
    let mut full_copy = matches!(mode, Mode::Full | Mode::FreshChain);
    let mut mode = mode;
    if matches!(mode, Mode::Full | Mode::Incremental) {
        if let Some(old) = unfinished(job, &image, &src_snaps, base.as_deref(), &name, ctx)? {
            copy(
                &step(job, &old, base.as_deref(), time_of(&job.prefix, &old)),
                ctx,
            )?;
            full_copy |= base.is_none();
            base = Some(old);
            mode = Mode::Incremental;
        }
    }
    let copied = if mode == Mode::Done {
        None
    } else {
        if !src_snaps.iter().any(|s| s.name == name) {
            src.snap_create(&name)?;
            crate::fault::point("after-source-snap");
        }
        Some(copy(&step(job, &name, base.as_deref(), now), ctx)?)
    };
    // The new snapshot is committed on both sides: it is the newest common base now.
    let dst = Managed::existing(&job.dst, &ctx.access)?;
    let links = chain(&dst, &job.prefix)?;
    let protected = dst.protected()?;
    let snaps: Vec<Snap> = links
        .iter()
        .map(|l| snap(l, &protected, Some(&name)))
        .collect();
    let verdicts = retention::plan(&snaps, &job.keep, &job.zone);
    let mut removed_dst = Vec::new();
    for v in verdicts.iter().filter(|v| !v.keep) {
        dst.snap_remove(&v.name)?;
        removed_dst.push(v.name.clone());
        crate::fault::point("retention");
    }
    let src_snaps = src.snaps()?;
    let removed_src = source_prune(job, &src_snaps, &name, now);
    for s in &removed_src {
        src.snap_remove(s)?;
    }
    let count = |snaps: Vec<crate::rbd::Snap>| {
        snaps
            .iter()
            .filter(|s| retention::parse(&job.prefix, &s.name).is_some())
            .count()
    };
    let counts = (count(src.snaps()?), count(dst.snaps()?));
    Ok(Backed {
        snapshot: name,
        base,
        mode,
        copy: copied,
        broken: aside,
        removed_dst,
        removed_src,
        verdicts,
        counts,
        full_copy,
    })
}

/// The copy of source snapshot `snap` (taken at `time`) to the destination, of what
/// changed since `base`: the snapshot and its provenance record are made at its end, and
/// a record a killed backup left is dropped unless this copy can resume it.
fn step(job: &Backup, snap: &str, base: Option<&str>, time: Timestamp) -> Copy {
    let mut spec = job.src.head();
    spec.snap = Some(snap.to_owned());
    Copy {
        src: Location::Rbd(spec),
        dst: Location::Rbd(job.dst.head()),
        from_snap: base.map(str::to_owned),
        dst_snap: true,
        overwrite: false,
        supersede: true,
        note: vec![("time".into(), time.to_string())],
        ..job.copy.clone()
    }
}

/// The source snapshot of a killed backup's copy to `job.dst` that this run can finish: its
/// progress record names a `PREFIX-` snapshot the source still has (by name and id), older
/// than `name`, copied from `base` (the run's common base, or none for a full copy).
fn unfinished(
    job: &Backup,
    image: &[(String, String)],
    snaps: &[crate::rbd::Snap],
    base: Option<&str>,
    name: &str,
    ctx: &Context,
) -> Result<Option<String>> {
    let Some(text) = crate::backend::rbd::leftover(&job.dst, &ctx.access)? else {
        return Ok(None);
    };
    let Ok(record) = super::record::Record::parse(&text, "") else {
        return Ok(None);
    };
    let field = |k: &str| record.source.get(k).map(String::as_str);
    if record.job != "copy" || !image.iter().all(|(k, v)| field(k) == Some(v.as_str())) {
        return Ok(None);
    }
    let id_of = |n: &str| snaps.iter().find(|s| s.name == n).map(|s| s.id.to_string());
    let base_ok = match base {
        None => field("base snapshot id").is_none(),
        Some(b) => field("base snapshot id") == id_of(b).as_deref(),
    };
    let old = snaps.iter().find(|s| {
        Some(s.id.to_string().as_str()) == field("snapshot id")
            && s.name != name
            && retention::parse(&job.prefix, &s.name)
                .is_some_and(|t| Some(t) < retention::parse(&job.prefix, name))
    });
    Ok(old.filter(|_| base_ok).map(|s| s.name.clone()))
}

/// The time in backup snapshot `name`.
fn time_of(prefix: &str, name: &str) -> Timestamp {
    retention::parse(prefix, name).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `link` for retention: protected if marked, pinned if it is the newest common base.
fn snap(link: &Link, protected: &[String], base: Option<&str>) -> Snap {
    Snap {
        name: link.name.clone(),
        time: link.time,
        protected: protected.contains(&link.name),
        pinned: Some(link.name.as_str()) == base,
    }
}

fn removed(verdicts: &[Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .filter(|v| !v.keep)
        .map(|v| v.name.clone())
        .collect()
}

/// The source's `PREFIX-` snapshots to remove once `base` is committed: those older than
/// it, but the newest `job.source_keep_last - 1` of them.
fn source_prune(
    job: &Backup,
    snaps: &[crate::rbd::Snap],
    base: &str,
    now: Timestamp,
) -> Vec<String> {
    let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    prune(&job.prefix, job.source_keep_last, &names, base, now)
}

/// [`source_prune`] over snapshot names.
fn prune(
    prefix: &str,
    keep_last: usize,
    names: &[&str],
    base: &str,
    now: Timestamp,
) -> Vec<String> {
    let base_time = retention::parse(prefix, base).unwrap_or(now);
    let mut older: Vec<(Timestamp, String)> = names
        .iter()
        .filter(|n| **n != base)
        .filter_map(|n| Some((retention::parse(prefix, n)?, (*n).to_owned())))
        .filter(|(t, _)| *t < base_time)
        .collect();
    older.sort();
    let keep = keep_last.max(1) - 1;
    let cut = older.len().saturating_sub(keep);
    older.truncate(cut);
    older.into_iter().map(|(_, n)| n).collect()
}

/// Why the destination's head does not hold its newest snapshot's data any more, if it
/// does not: something wrote to it since, and no progress record of an interrupted run of
/// rbdcp says it was rbdcp.
fn written_since(job: &Backup, dst: &Managed, base: &str, ctx: &Context) -> Result<Option<String>> {
    if dst.recorded()? {
        return Ok(None);
    }
    let newest = dst.snaps()?.pop().map(|s| s.name);
    let Some(newest) = newest else {
        return Ok(Some(format!("{} holds no snapshot", dst.label())));
    };
    let opts = SourceOptions {
        base: Some(newest.clone()),
        access: ctx.access.clone(),
        ..SourceOptions::default()
    };
    let head = open_source(&Location::Rbd(job.dst.head()), &opts)?;
    let changed = head.extents()?;
    if changed.is_empty() {
        return Ok(None);
    }
    let bytes: u64 = changed.iter().map(|e| e.len).sum();
    Ok(Some(format!(
        "{} was written since its newest snapshot {newest} ({bytes} bytes in {} extents differ from it; the newest common base is {base})",
        dst.label(),
        changed.len()
    )))
}

/// Why the destination shares no base with the source, naming both sides' newest
/// snapshots.
fn no_base(
    prefix: &str,
    dst: &Managed,
    links: &[Link],
    src_snaps: &[crate::rbd::Snap],
    src_label: &str,
) -> Result<String> {
    let newest_src = src_snaps
        .iter()
        .filter(|s| retention::parse(prefix, &s.name).is_some())
        .max_by_key(|s| retention::parse(prefix, &s.name))
        .map_or("none".to_owned(), |s| s.name.clone());
    let newest_dst = dst.snaps()?.pop().map_or("none".to_owned(), |s| s.name);
    let why = if links.is_empty() {
        format!("{} holds no {prefix}- snapshot", dst.label())
    } else if links.iter().all(|l| l.made.is_none()) {
        format!(
            "no {prefix}- snapshot of {} has rbdcp's record of where it came from",
            dst.label()
        )
    } else {
        format!("no snapshot of {} holds a snapshot {src_label} still has (deleted on one side, or another source image)", dst.label())
    };
    Ok(format!(
        "{why}; newest snapshots: {src_label}: {newest_src}, {}: {newest_dst}",
        dst.label()
    ))
}

/// `at` as `%Y%m%dT%H%M%SZ`.
fn stamp(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// A destination's chain, as `backup-list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its `PREFIX-` snapshots, oldest first.
    pub links: Vec<Listing>,
    /// With a source: its `PREFIX-` snapshots, oldest first.
    pub source: Option<Vec<String>>,
    /// With a source: the newest common base.
    pub base: Option<String>,
}

/// One snapshot of a destination's chain.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Its name.
    pub name: String,
    /// Its time, from its name.
    pub time: Timestamp,
    /// The image's size at it.
    pub size: u64,
    /// Marked by `rbdcp protect`.
    pub protected: bool,
    /// The source snapshot's id, from its provenance record.
    pub source_snap: Option<String>,
}

/// The chain of `dst`, and with `src` that image's `PREFIX-` snapshots and the newest
/// common base.
pub fn list(
    dst: &RbdSpec,
    src: Option<&RbdSpec>,
    prefix: &str,
    access: &crate::backend::Access,
) -> Result<Listed> {
    let image = Managed::existing(dst, access)?;
    let links = chain(&image, prefix)?;
    let protected = image.protected()?;
    let mut listed = Listed {
        links: links
            .iter()
            .map(|l| Listing {
                name: l.name.clone(),
                time: l.time,
                size: l.size,
                protected: protected.contains(&l.name),
                source_snap: l
                    .made
                    .as_deref()
                    .and_then(|m| provenance_field(m, "snapshot id")),
            })
            .collect(),
        source: None,
        base: None,
    };
    if let Some(src) = src {
        let source = Managed::existing(src, access)?;
        let snaps = source.snaps()?;
        listed.base = newest_common(&links, &source.identity()?, &snaps).map(|l| l.name.clone());
        let mut mine: Vec<_> = snaps
            .into_iter()
            .filter_map(|s| Some((retention::parse(prefix, &s.name)?, s.name)))
            .collect();
        mine.sort();
        listed.source = Some(mine.into_iter().map(|(_, n)| n).collect());
    }
    Ok(listed)
}

/// What retention by `keep` in `tz` would do to `listed`'s chain: the newest common base
/// (when known) and protected snapshots stay.
pub fn retain(listed: &Listed, keep: &Keep, tz: &TimeZone) -> Vec<Verdict> {
    let snaps: Vec<Snap> = listed
        .links
        .iter()
        .map(|l| Snap {
            name: l.name.clone(),
            time: l.time,
            protected: l.protected,
            pinned: listed.base.as_deref() == Some(l.name.as_str()),
        })
        .collect();
    retention::plan(&snaps, keep, tz)
}

/// Retention's verdicts, one line each: `SNAPSHOT keep|remove RULE`.
pub fn plan_lines(verdicts: &[Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .map(|v| {
            let what = if v.keep { "keep" } else { "remove" };
            format!("{} {what} {}", v.name, v.why)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_keeps_the_base_and_the_newest_before_it_only() {
        let now: Timestamp = "2026-03-01T05:00:00Z".parse().unwrap();
        let names = [
            "rbdcp-20260301T010000Z",
            "other-snapshot",
            "rbdcp-20260301T020000Z",
            "rbdcp-migrate-3",
            "rbdcp-20260301T030000Z",
            // Newer than the base: a run that is not committed yet.
            "rbdcp-20260301T040000Z",
        ];
        let base = "rbdcp-20260301T030000Z";
        assert_eq!(
            prune("rbdcp", 1, &names, base, now),
            ["rbdcp-20260301T010000Z", "rbdcp-20260301T020000Z"]
        );
        assert_eq!(
            prune("rbdcp", 2, &names, base, now),
            ["rbdcp-20260301T010000Z"]
        );
        assert!(prune("rbdcp", 3, &names, base, now).is_empty());
        // Only names of exactly the pattern count.
        assert!(prune("rbdcp-migrate", 1, &names, base, now).is_empty());
    }
}
