//! Metrics of scheduled backups for node_exporter's textfile collector: one file per image
//! in Prometheus' text format, replaced atomically (a temporary file, then a rename).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::location::RbdSpec;

/// What one backup run reports.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// When it started, in seconds since the epoch.
    pub started: f64,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Whether it succeeded.
    pub success: bool,
    /// Bytes it wrote to the destination (data and zeroes).
    pub bytes: u64,
    /// Whether it made a full copy (a new chain).
    pub full: bool,
    /// `PREFIX-` snapshots on the source and on the destination afterwards, where known.
    pub snapshots: Option<(usize, usize)>,
}

/// The file for `image` in `dir`: `rbdcp_backup_POOL[_NAMESPACE]_IMAGE.prom`, every
/// character other than a letter, a digit or `_` made `_`.
pub fn path(dir: &Path, image: &RbdSpec) -> PathBuf {
    let mut name = image.pool.clone();
    if let Some(ns) = &image.namespace {
        name = format!("{name}_{ns}");
    }
    name = format!("{name}_{}", image.image);
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join(format!("rbdcp_backup_{clean}.prom"))
}

/// Writes the metrics of `run` for `image` into `dir`. A failed run keeps the last
/// success's time, the full copies count and the snapshot counts that the file held.
pub fn write(dir: &Path, image: &RbdSpec, run: &Run) -> Result<()> {
    let path = path(dir, image);
    let old = fs::read_to_string(&path).unwrap_or_default();
    let before = |metric: &str| value(&old, metric);
    let label = escape(&image.head().to_string());
    let last_success = match run.success {
        true => Some(run.started + run.seconds),
        false => before("rbdcp_backup_last_success_timestamp_seconds"),
    };
    let fulls = before("rbdcp_backup_full_copies_total").unwrap_or(0.0)
        + if run.success && run.full { 1.0 } else { 0.0 };
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(text, "{name}{{image=\"{label}\"{labels}}} {v}");
        }
    };
    if let Some(t) = last_success {
        metric(
            "rbdcp_backup_last_success_timestamp_seconds",
            "gauge",
            "When the last successful backup ended (seconds since the epoch).",
            &[("", t)],
        );
    }
    metric(
        "rbdcp_backup_last_run_timestamp_seconds",
        "gauge",
        "When the last backup run started (seconds since the epoch).",
        &[("", run.started)],
    );
    metric(
        "rbdcp_backup_last_run_success",
        "gauge",
        "1 if the last backup run succeeded, else 0.",
        &[("", f64::from(u8::from(run.success)))],
    );
    metric(
        "rbdcp_backup_duration_seconds",
        "gauge",
        "How long the last backup run took.",
        &[("", run.seconds)],
    );
    metric(
        "rbdcp_backup_bytes_copied",
        "gauge",
        "Bytes the last backup run wrote to the destination.",
        &[("", run.bytes as f64)],
    );
    metric(
        "rbdcp_backup_full_copies_total",
        "counter",
        "Full copies (new chains) made since this file was first written.",
        &[("", fulls)],
    );
    let counts = match run.snapshots {
        Some((s, d)) => Some((s as f64, d as f64)),
        None => before_sides(&old),
    };
    if let Some((s, d)) = counts {
        metric(
            "rbdcp_backup_snapshots",
            "gauge",
            "Backup snapshots (PREFIX-) on each side after the last run that counted them.",
            &[(",side=\"source\"", s), (",side=\"destination\"", d)],
        );
    }
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name()
            .map_or("rbdcp".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let label = path.display().to_string();
    let io = |e| Error::Open {
        op: "write metrics",
        image: label.clone(),
        err: e,
    };
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)
}

/// The value of the first sample of `metric` in `text`.
fn value(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The source and destination snapshot counts in `text`.
fn before_sides(text: &str) -> Option<(f64, f64)> {
    let side = |s: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("rbdcp_backup_snapshots{") && l.contains(&format!("side=\"{s}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    Some((side("source")?, side("destination")?))
}

/// `text` as a label value: backslash, double quote and newline escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: Option<&str>, image: &str) -> RbdSpec {
        format!(
            "rbd:rbd/{}{image}",
            ns.map(|n| format!("{n}/")).unwrap_or_default()
        )
        .parse::<crate::Location>()
        .map(|l| match l {
            crate::Location::Rbd(s) => s,
            _ => unreachable!(),
        })
        .unwrap()
    }

    #[test]
    fn the_file_name_keeps_letters_digits_and_underscores() {
        let dir = Path::new("/m");
        assert_eq!(
            path(dir, &spec(None, "vm-1.disk")),
            Path::new("/m/rbdcp_backup_rbd_vm_1_disk.prom")
        );
        assert_eq!(
            path(dir, &spec(Some("team-a"), "vm")),
            Path::new("/m/rbdcp_backup_rbd_team_a_vm.prom")
        );
    }

    #[test]
    fn a_failed_run_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let image = spec(None, "vm");
        let ok = Run {
            started: 1000.0,
            seconds: 5.0,
            success: true,
            bytes: 4096,
            full: true,
            snapshots: Some((1, 1)),
        };
        write(dir.path(), &image, &ok).unwrap();
        let failed = Run {
            started: 2000.0,
            seconds: 1.0,
            success: false,
            ..Run::default()
        };
        write(dir.path(), &image, &failed).unwrap();
        let text = fs::read_to_string(path(dir.path(), &image)).unwrap();
        let get = |m| value(&text, m);
        assert_eq!(
            get("rbdcp_backup_last_success_timestamp_seconds"),
            Some(1005.0)
        );
        assert_eq!(get("rbdcp_backup_last_run_timestamp_seconds"), Some(2000.0));
        assert_eq!(get("rbdcp_backup_last_run_success"), Some(0.0));
        assert_eq!(get("rbdcp_backup_full_copies_total"), Some(1.0));
        assert!(
            text.contains("rbdcp_backup_snapshots{image=\"rbd:rbd/vm\",side=\"source\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE rbdcp_backup_full_copies_total counter"));
        // Nothing but the file is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
