//! The command line, as clap reads it: every flag with its help line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Locations:
  PATH                a raw image file or a block device
  rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:conf=PATH][:id=NAME][:keyring=PATH]
                      an RBD image (qemu-img's spelling); put a backslash before a ':' in a path
  -                   standard input or output, where a stream makes sense

Sizes and rates: 4096, 4K, 4M, 1G, 200MiB, 1.5GiB (K, M, G, T are powers of 1024).

Exit status: 0 done (or nothing left to do); 1 the job failed (or the images differ), a retry
may help: a rerun of the same command resumes it; 2 usage, configuration or permission error,
do not retry; 3 refused until an operator decides (a broken backup chain; a progress record
made for another source);
4 busy: another run holds the destination; 130/143 stopped by SIGINT/SIGTERM (resumable).

Examples:
  rbdcp copy rbd:rbd/vm@s1 rbd:rbd/vm:conf=/etc/ceph/backup.conf
  rbdcp copy rbd:rbd/vm@s2 rbd:rbd/vm:conf=/etc/ceph/backup.conf --from-snap s1
  rbdcp export-diff rbd:rbd/vm@s2 vm-s2.diff --from-snap s1
  rbdcp verify rbd:rbd/vm@s2 rbd:rbd/vm@s2:conf=/etc/ceph/backup.conf --sample 5";

/// Copies RBD and raw block-device images fast: in parallel, sparse, under bandwidth and IOPS limits.
#[derive(Debug, Parser)]
#[command(name = "rbdcp", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How to reach a Ceph cluster, for `rbd:` locations that do not say (as the `rbd` command takes them).
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection options")]
pub struct ClusterArgs {
    /// Ceph conf file for rbd: locations without :conf= [default: Ceph's search path, /etc/ceph/ceph.conf].
    #[arg(short = 'c', long = "conf", value_name = "PATH", global = true)]
    pub conf: Option<PathBuf>,
    /// Ceph user for rbd: locations without :id=, with or without "client." [default: admin].
    #[arg(long, value_name = "NAME", global = true)]
    pub id: Option<String>,
    /// Keyring file for rbd: locations without :keyring= [default: as the conf says].
    #[arg(long, value_name = "PATH", global = true)]
    pub keyring: Option<PathBuf>,
    /// Seconds to wait for a cluster's monitors before failing.
    #[arg(long, value_name = "SECS", default_value_t = 30, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
    /// Seconds an OSD or monitor operation may take before it fails (and is retried) instead of waiting forever on a dead OSD.
    #[arg(long, value_name = "SECS", default_value_t = 60, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub op_timeout: u64,
}

/// How transient errors (time-outs, dropped connections, EAGAIN, EBUSY) are retried.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Retries of a failed read or write after the first attempt, with exponential backoff and jitter (0: none).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    /// The longest wait between two attempts, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_max_wait: u64,
}

/// How a job records its progress, and what to do with an earlier run's.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Seconds between two progress records (a rerun after a kill redoes at most about this much work).
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = positive_secs)]
    pub checkpoint_interval: f64,
    /// Throw away an earlier run's progress record and staged image or file, and start over.
    #[arg(long)]
    pub restart: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image, or with --from-snap only what changed between two snapshots.
    #[command(after_help = AFTER_HELP)]
    Copy(CopyArgs),
    /// Print the extents of an image that hold data, as `rbd diff` prints them.
    #[command(after_help = AFTER_HELP)]
    Diff(DiffArgs),
    /// Compare two images byte for byte, chunks in parallel (or a random sample of chunks); exit 0 if identical, 1 if not.
    #[command(after_help = AFTER_HELP)]
    Verify(VerifyArgs),
    /// Write an image's changes (or all its data) as an `rbd export-diff` v1 stream.
    #[command(name = "export-diff", after_help = AFTER_HELP)]
    ExportDiff(ExportDiffArgs),
    /// Apply an `rbd export-diff` v1 stream to an image, many writes in flight.
    #[command(name = "import-diff", after_help = AFTER_HELP)]
    ImportDiff(ImportDiffArgs),
    /// Write an image with its snapshots as an `rbd export --export-format 2` stream (or, format 1, its raw bytes).
    #[command(after_help = AFTER_HELP)]
    Export(ExportArgs),
    /// Create an image with its snapshots from an `rbd export --export-format 2` stream (or, format 1, from raw bytes), many writes in flight.
    #[command(after_help = AFTER_HELP)]
    Import(ImportArgs),
    /// Back up an RBD image: snapshot it, copy what changed since the newest snapshot both sides hold, keep a history with retention.
    #[command(after_help = BACKUP_HELP)]
    Backup(BackupArgs),
    /// Move an image with a short cut-over: copy rounds while it is in use, then a final round once its writer stopped.
    #[command(after_help = AFTER_HELP)]
    Migrate(MigrateArgs),
    /// Run many copies listed in a file (one `SRC DST` per line), parents before their clones; a rerun goes on where a run stopped.
    #[command(after_help = PLAN_HELP)]
    Plan(PlanArgs),
    /// Print a backup destination's chain of snapshots, and what retention would keep.
    #[command(name = "backup-list", after_help = BACKUP_HELP)]
    BackupList(BackupListArgs),
    /// Mark a backup snapshot (rbd:POOL/IMAGE@SNAP) so that retention never removes it.
    #[command(after_help = AFTER_HELP)]
    Protect(ProtectArgs),
    /// Remove the mark `rbdcp protect` set.
    #[command(after_help = AFTER_HELP)]
    Unprotect(ProtectArgs),
    /// Remove what an interrupted run staged for DST (a staged image or file) and its progress record; nothing else.
    #[command(after_help = AFTER_HELP)]
    Discard(DiscardArgs),
    /// Print a completion script for SHELL on standard output (e.g. `rbdcp completions bash > /etc/bash_completion.d/rbdcp`).
    Completions(CompletionsArgs),
    /// Write the man pages, rbdcp(1) and one per command (rbdcp-copy(1), ...), into DIR.
    #[command(hide = true)]
    Man(ManArgs),
}

/// `rbdcp completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

/// `rbdcp man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where the pages go (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

const BACKUP_HELP: &str = "\
Snapshots: a backup takes the source snapshot PREFIX-%Y%m%dT%H%M%SZ (UTC; the clock is
RBDCP_NOW, RFC 3339, when set), copies what changed since the newest snapshot both sides hold
as the same data (the destination records the source's cluster fsid, pool, image and snapshot
ids with each snapshot it received), creates it on the destination once every write landed,
then applies retention. Snapshots whose names do not match PREFIX-%Y%m%dT%H%M%SZ exactly are
never touched, and the newest common base is never removed.

Retention (Proxmox Backup Server's rules): --keep-last, --keep-hourly, --keep-daily,
--keep-weekly (ISO weeks), --keep-monthly, --keep-yearly, in that order; each keeps the newest
snapshot of each of its N newest calendar buckets (in --timezone) not already kept by an earlier
rule. No --keep-* at all: nothing is removed from the destination. The source keeps its
--source-keep-last newest PREFIX- snapshots up to the newest common base, and loses the older.

Caps: the source user needs snapshots (profile rbd); the destination user writes.

Exit status: 0 done (or nothing to do); 1 failed, a retry may help (a rerun resumes); 2 usage,
configuration or permission; 3 refused: a broken chain (see --on-broken-chain), or a progress
record made for another source; 4 busy: another run holds the destination.

Examples:
  rbdcp backup rbd:rbd/vm rbd:backup/vm:conf=/etc/ceph/backup.conf --keep-hourly 24 --keep-daily 7
  rbdcp backup-list rbd:backup/vm:conf=/etc/ceph/backup.conf --keep-daily 7
  rbdcp copy rbd:backup/vm@rbdcp-20260301T020000Z:conf=/etc/ceph/backup.conf rbd:rbd/vm-restored";

/// Retention rules (Proxmox Backup Server's).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Retention")]
pub struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: usize,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: usize,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: usize,
    /// Keep the newest snapshot of each of the N newest ISO weeks (Monday to Sunday) that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: usize,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: usize,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: usize,
    /// The time zone of the calendar buckets (an IANA name such as Europe/Berlin).
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub timezone: String,
}

/// What a broken chain gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnBroken {
    /// Refuse with exit code 3: an operator decides.
    Refuse,
    /// Rename the destination aside as IMAGE-broken-%Y%m%dT%H%M%SZ (never overwritten, never removed) and start a new chain with a full copy.
    Full,
}

/// `rbdcp backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The image to back up (rbd:POOL/IMAGE, no snapshot).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// The backup image (rbd:POOL/IMAGE, no snapshot), in the same cluster or another.
    #[arg(value_name = "DST")]
    pub dst: String,
    /// Snapshot names are PREFIX-%Y%m%dT%H%M%SZ.
    #[arg(long, value_name = "PREFIX", default_value = "rbdcp", value_parser = prefix)]
    pub prefix: String,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// PREFIX- snapshots kept on the source, the newest common base included; older ones are removed once the backup is committed.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub source_keep_last: u64,
    /// When the destination exists but shares no snapshot with the source (or was written since its newest snapshot).
    #[arg(long, value_name = "WHAT", value_enum, default_value = "refuse")]
    pub on_broken_chain: OnBroken,
    /// Change nothing and create no snapshot: print one line per destination snapshot, this run's included: SNAPSHOT keep|remove RULE.
    #[arg(long)]
    pub dry_run: bool,
    /// Put a new backup image's data in POOL (its header stays in the image's pool), as `rbd create --data-pool` does: an erasure-coded pool, say.
    #[arg(long, value_name = "POOL")]
    pub data_pool: Option<String>,
    /// Write rbdcp_backup_POOL_IMAGE.prom (Prometheus text format, for node_exporter's textfile collector) into DIR.
    #[arg(long, value_name = "DIR")]
    pub metrics_textfile: Option<PathBuf>,
    #[command(flatten)]
    pub workers: Workers,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// List changes by whole objects (copies each changed object whole).
    #[arg(long)]
    pub whole_object: bool,
    /// Re-read the destination after the copy and compare every chunk's crc32 with the source's.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub resume: ResumeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn prefix(s: &str) -> Result<String, String> {
    match s {
        "" => Err("must not be empty".into()),
        s if s.contains(['@', '/', ':']) || s.chars().any(char::is_whitespace) => {
            Err("must not hold '@', '/', ':' or spaces".into())
        }
        s => Ok(s.to_owned()),
    }
}

/// `rbdcp migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The image to move (rbd:POOL/IMAGE), in use until the final round.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Where it goes (rbd:POOL/IMAGE), in the same cluster or another.
    #[arg(value_name = "DST")]
    pub dst: String,
    /// Round snapshots are PREFIX-migrate-N.
    #[arg(long, value_name = "PREFIX", default_value = "rbdcp", value_parser = prefix)]
    pub prefix: String,
    /// Stop the rounds once one copied at most SIZE of changes.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = any_size)]
    pub until_delta: u64,
    /// Stop after N rounds.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rounds: u64,
    /// The final round, once the writer has stopped: the last change, then a verification; its seconds are the downtime.
    #[arg(long = "final")]
    pub last: bool,
    /// After the final round compare the newest snapshot on both sides: full, none, or a sample of PERCENT of the chunks.
    #[arg(long, value_name = "full|none|PERCENT", default_value = "full", value_parser = verify_mode)]
    pub verify: VerifyMode,
    /// After the final round, remove the migration's snapshots on both sides.
    #[arg(long, requires = "last")]
    pub cleanup: bool,
    /// With --cleanup, keep the last snapshot on both sides.
    #[arg(long, requires = "cleanup")]
    pub keep_last_snap: bool,
    #[command(flatten)]
    pub workers: Workers,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Put a new destination's data in POOL, as `rbd create --data-pool` does.
    #[arg(long, value_name = "POOL")]
    pub data_pool: Option<String>,
    #[command(flatten)]
    pub parent: ParentArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub resume: ResumeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What a copy does with a clone's parent.
#[derive(Debug, Args)]
pub struct ParentArgs {
    /// If the source is a clone, make a new destination a clone too, of rbdcp's copy of the source's parent snapshot (found by its provenance record, whatever its image is called), and copy only the clone's own data. Refused (exit 3) when no such copy exists. Without it a clone is copied flattened: its parent's data too.
    #[arg(long)]
    pub keep_parent: bool,
    /// Where --keep-parent looks for the parent's copy: the images of POOL, on the destination's cluster (default: the destination's pool).
    #[arg(long, value_name = "POOL", requires = "keep_parent")]
    pub parent_pool: Option<String>,
}

/// How `migrate --final` verifies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VerifyMode {
    /// Every chunk.
    Full,
    /// Not at all.
    None,
    /// This share of the chunks.
    Sample(f64),
}

fn verify_mode(s: &str) -> Result<VerifyMode, String> {
    match s {
        "full" => Ok(VerifyMode::Full),
        "none" => Ok(VerifyMode::None),
        p => match p.trim_end_matches('%').parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 100.0 => Ok(VerifyMode::Sample(v)),
            _ => Err("must be full, none, or a percentage above 0 and at most 100".into()),
        },
    }
}

/// `rbdcp backup-list`.
#[derive(Debug, Args)]
pub struct BackupListArgs {
    /// The backup image (rbd:POOL/IMAGE).
    #[arg(value_name = "DST")]
    pub dst: String,
    /// Also list the source's PREFIX- snapshots and the newest common base.
    #[arg(long, value_name = "SRC")]
    pub source: Option<String>,
    /// Snapshot names are PREFIX-%Y%m%dT%H%M%SZ.
    #[arg(long, value_name = "PREFIX", default_value = "rbdcp", value_parser = prefix)]
    pub prefix: String,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `rbdcp protect` and `rbdcp unprotect`.
#[derive(Debug, Args)]
pub struct ProtectArgs {
    /// The backup snapshot: rbd:POOL/IMAGE@SNAP.
    #[arg(value_name = "DST@SNAP")]
    pub snap: String,
}

/// `rbdcp discard`.
#[derive(Debug, Args)]
pub struct DiscardArgs {
    /// The destination as the interrupted command named it.
    #[arg(value_name = "DST")]
    pub dst: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Bandwidth and IOPS limits.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Limit the bytes read and written per second (e.g. 100M); smooth, not per-second bursts.
    #[arg(long, value_name = "RATE", value_parser = nonzero_size)]
    pub bps_limit: Option<u64>,
    /// Limit the chunk operations per second (a read with its write, or a zeroing).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub iops_limit: Option<u64>,
    /// Limit the bytes of chunks being read or written at once (at least 1M), which bounds
    /// the memory a run uses; more workers than fit share it.
    #[arg(long, value_name = "SIZE", default_value = "24M", value_parser = in_flight)]
    pub max_in_flight: u64,
}

fn in_flight(s: &str) -> Result<u64, String> {
    match nonzero_size(s)? {
        n if n < 1 << 20 => Err("must be at least 1M".into()),
        n => Ok(n),
    }
}

/// Reporting flags.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON object with the totals on standard output at the end.
    #[arg(long)]
    pub json: bool,
    /// Show no progress (the same as --progress none).
    #[arg(long)]
    pub no_progress: bool,
    /// How progress goes to standard error: auto (a bar on a terminal, else lines), bar, lines, json (JSON Lines: bytes_done, bytes_total, bytes_per_second, eta_seconds, retries) or none.
    #[arg(long, value_name = "MODE", value_enum, default_value = "auto")]
    pub progress: super::progress::Mode,
    /// Seconds between two progress lines (lines and json), at least 1.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_interval: u64,
}

/// `rbdcp export-diff`.
#[derive(Debug, Args)]
pub struct ExportDiffArgs {
    /// The image (usually rbd:POOL/IMAGE@SNAP); its snapshot becomes the stream's to-snap.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// The stream file, or - for standard output; a file is renamed into place when complete.
    #[arg(value_name = "PATH")]
    pub out: String,
    /// Only what changed since snapshot BASE (the stream's from-snap).
    #[arg(long, value_name = "BASE")]
    pub from_snap: Option<String>,
    /// List changes by whole objects (fast with fast-diff on huge thin images).
    #[arg(long)]
    pub whole_object: bool,
    /// Also write the crc32 of every data record to this sidecar file.
    #[arg(long, value_name = "PATH")]
    pub crc: Option<PathBuf>,
    /// Replace the stream file (and the sidecar) if they exist.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub workers: Workers,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `rbdcp import-diff`.
#[derive(Debug, Args)]
pub struct ImportDiffArgs {
    /// The stream file, or - for standard input.
    #[arg(value_name = "PATH")]
    pub input: String,
    /// The image to update: an rbd: image holding the stream's from-snap, or a raw file.
    #[arg(value_name = "DST")]
    pub dst: String,
    /// Check every data record against this sidecar (from export-diff --crc) before writing it.
    #[arg(long, value_name = "PATH")]
    pub crc: Option<PathBuf>,
    /// Writes in flight, each one record [default: 512, with at most 64 MiB of records in memory; at most 128 threads for a destination that is not RBD].
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub resume: ResumeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `rbdcp export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image (rbd:POOL/IMAGE); with @SNAP the export ends at that snapshot, which is then the stream's head.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// The stream file, or - for standard output (format 2 only); a file is renamed into place when complete.
    #[arg(value_name = "PATH")]
    pub out: String,
    /// 2: the image's shape, image-meta and every snapshot (each with its protection) as `rbd export --export-format 2` writes them, for `rbd import --export-format 2` or `rbdcp import`; 1: the raw bytes of the image (as `rbdcp copy SRC PATH`).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub export_format: u8,
    /// Replace the file if it exists.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub workers: Workers,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `rbdcp import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The stream file, or - for standard input (format 2 only).
    #[arg(value_name = "PATH")]
    pub input: String,
    /// The image to create (rbd:POOL/IMAGE); it must not exist, unless an interrupted import of the same stream left it.
    #[arg(value_name = "DST")]
    pub dst: String,
    /// 2: an `rbd export --export-format 2` stream: the image is created with its shape, image-meta and snapshots (protected where they were), one diff after the other; 1: raw image bytes (as `rbdcp copy PATH DST`).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub export_format: u8,
    /// Put the new image's data in POOL (an erasure-coded pool with allow_ec_overwrites, say), its header in DST's pool, as `rbd import --data-pool` does.
    #[arg(long, value_name = "POOL")]
    pub data_pool: Option<String>,
    /// Writes in flight, each one record [default: 512, with at most 64 MiB of records in memory].
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub resume: ResumeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How many workers and how big a chunk.
#[derive(Debug, Args)]
pub struct Workers {
    /// Workers, each with one chunk in flight [default: 16 for 4 MiB chunks (64 MiB / chunk size, at least 4, at most 64); they share --max-in-flight].
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Bytes per chunk, from 4K to 1G; rounded up to a multiple of the image's object size.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = chunk_size)]
    pub chunk_size: u64,
}

const PLAN_HELP: &str = "\
A plan file holds one copy per line, SRC DST, as `rbdcp copy` takes them; blank lines and
lines starting with # are skipped:

  # golden images first or not: rbdcp orders parents before their clones
  rbd:rbd/vm-1:conf=/etc/ceph/a.conf rbd:rbd/vm-1:conf=/etc/ceph/b.conf
  rbd:rbd/golden:conf=/etc/ceph/a.conf rbd:images/golden:conf=/etc/ceph/b.conf

Every flag applies to every line. A step that fails is reported and the others go on (its
clones are not run); the exit status is the first failed step's. Each step is resumable,
and a step whose destination holds its result already is complete, so running the same
plan again after a kill or a failure finishes it; with --snapshots, every step ends in a
snapshot, which makes a rerun of a finished plan copy nothing.

--shard K/N runs the K-th of N shares of the plan (K from 0), so N hosts (the pods of a
Kubernetes indexed Job, with K from JOB_COMPLETION_INDEX) split it; a clone runs in its
parent's shard.

Exit status: 0 every step done; otherwise the first failed step's status
(1 failed, a retry may help; 2 usage or permission; 3 refused; 4 busy).";

/// `rbdcp plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The plan file: one `SRC DST` per line.
    #[arg(value_name = "PLAN")]
    pub plan: std::path::PathBuf,
    /// Run only the K-th of N shares of the plan (K from 0); a clone runs with its parent.
    #[arg(long, value_name = "K/N", value_parser = shard)]
    pub shard: Option<(usize, usize)>,
    /// Copy each source's snapshot history, as `copy --snapshots` does: all or since:BASE.
    #[arg(long, value_name = "all|since:BASE", value_parser = snapshots)]
    pub snapshots: Option<Snapshots>,
    /// Put new rbd: destinations' data in POOL, as `rbd create --data-pool` does.
    #[arg(long, value_name = "POOL")]
    pub data_pool: Option<String>,
    #[command(flatten)]
    pub parent: ParentArgs,
    #[command(flatten)]
    pub workers: Workers,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Re-read each destination after its copy and compare every chunk's crc32 with the source's.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub resume: ResumeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || "must be K/N with 0 <= K < N, e.g. 0/4".to_owned();
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if k >= n {
        return Err(bad());
    }
    Ok((k, n))
}

/// `rbdcp copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The image to read.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// The image to write; a file is written under a temporary name and renamed at the end.
    #[arg(value_name = "DST")]
    pub dst: String,
    #[command(flatten)]
    pub workers: Workers,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Copy only what changed between snapshot BASE and the source's snapshot; an rbd: destination must hold BASE.
    #[arg(long, value_name = "BASE")]
    pub from_snap: Option<String>,
    /// Do not create the source's snapshot on an rbd: destination after the copy.
    #[arg(long)]
    pub no_dst_snap: bool,
    /// Copy the source's snapshot history (RBD to RBD): all (every snapshot, oldest first, each from the one before, up to SRC's @SNAP if named; a new destination) or since:BASE (the snapshots after BASE, which the destination holds).
    #[arg(long, value_name = "all|since:BASE", value_parser = snapshots, conflicts_with_all = ["from_snap", "no_dst_snap", "overwrite"])]
    pub snapshots: Option<Snapshots>,
    /// Put a new rbd: destination's data in POOL (its header stays in the image's pool), as `rbd create --data-pool` does: an erasure-coded pool, say.
    #[arg(long, value_name = "POOL")]
    pub data_pool: Option<String>,
    #[command(flatten)]
    pub parent: ParentArgs,
    /// List changes by whole objects (fast with fast-diff on huge thin images; copies each changed object whole).
    #[arg(long)]
    pub whole_object: bool,
    /// Re-read the destination after the copy and compare every chunk's crc32 with the source's.
    #[arg(long)]
    pub verify: bool,
    /// Replace the destination if it exists (a block device is written in place).
    #[arg(long)]
    pub overwrite: bool,
    /// Do not reserve disk space for the data before writing it.
    #[arg(long)]
    pub no_preallocate: bool,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub resume: ResumeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Which snapshots `copy --snapshots` copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshots {
    /// The whole history.
    All,
    /// The snapshots after this one.
    Since(String),
}

fn snapshots(s: &str) -> Result<Snapshots, String> {
    match s {
        "all" => Ok(Snapshots::All),
        _ => match s.strip_prefix("since:") {
            Some(base) if !base.is_empty() => Ok(Snapshots::Since(base.to_owned())),
            _ => Err("must be `all` or `since:BASE`".into()),
        },
    }
}

/// Output formats of `rbdcp diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Columns `Offset Length Type`, as `rbd diff` prints them.
    Plain,
    /// An array of `{"offset", "length", "exists"}` objects, as `rbd diff --format json` prints them.
    Json,
}

/// `rbdcp diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The image to list.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// List only what changed since snapshot BASE (an rbd: source).
    #[arg(long, value_name = "BASE")]
    pub from_snap: Option<String>,
    /// List whole objects, as `rbd diff --whole-object` (fast with fast-diff).
    #[arg(long)]
    pub whole_object: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Plain)]
    pub format: Format,
}

/// `rbdcp verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The first image.
    #[arg(value_name = "A")]
    pub a: String,
    /// The second image.
    #[arg(value_name = "B")]
    pub b: String,
    #[command(flatten)]
    pub workers: Workers,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Compare only a random PERCENT of the chunks (above 0, at most 100), for a quick scrub.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    pub sample: Option<f64>,
    /// Pick the --sample chunks with seed N: the same seed picks the same chunks [default: a random seed, printed].
    #[arg(long, value_name = "N", requires = "sample")]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A share in percent, above 0 and at most 100, with or without a `%`.
fn percent(text: &str) -> Result<f64, String> {
    match text.strip_suffix('%').unwrap_or(text).parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "{text:?} is not a percentage above 0 and at most 100"
        )),
    }
}

fn positive_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

fn nonzero_size(text: &str) -> Result<u64, String> {
    rbdcp::size::parse_nonzero(text)
}

fn any_size(text: &str) -> Result<u64, String> {
    rbdcp::size::parse(text)
}

fn chunk_size(text: &str) -> Result<u64, String> {
    match rbdcp::size::parse(text)? {
        n if (4096..=1 << 30).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is outside 4K..1G")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" {
                    assert!(
                        arg.get_help().is_some(),
                        "{} --{id} has no help",
                        cmd.get_name()
                    );
                }
            }
            cmd.get_subcommands().for_each(walk);
        }
        walk(&Cli::command());
    }
}
