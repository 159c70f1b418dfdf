//! Backup snapshot names, the clock, and retention planning for `rbdcp backup`.
//!
//! Snapshots made by `rbdcp backup` are named `PREFIX-YYYYMMDDTHHMMSSZ` (UTC,
//! second resolution). Retention follows the prune rules of Proxmox Backup
//! Server (`compute_prune_info` / `mark_selections` in its `prune.rs`):
//!
//! * Snapshots are walked newest to oldest, once per rule, in the order
//!   last, hourly, daily, weekly, monthly, yearly.
//! * Each rule puts a snapshot in a bucket by its local time in the chosen
//!   zone: its own bucket (last), `%Y/%m/%d/%H` (hourly), `%Y/%m/%d`
//!   (daily), ISO `%G/%V` (weekly), `%Y/%m` (monthly) and `%Y` (yearly).
//! * A rule skips snapshots that already carry a mark, and those whose bucket
//!   holds a snapshot kept by an earlier rule. The newest snapshot of each
//!   new bucket is kept until the rule has `N` buckets; the first snapshot
//!   of one bucket more stops the rule. Older snapshots of a bucket this rule
//!   took are marked for removal, and later rules do not look at them again.
//! * Protected snapshots are always kept and never count for a rule.
//! * With no `--keep-*` at all, everything is kept.
//!
//! On top of that, a pinned snapshot (the newest base shared with a backup
//! chain) that no rule keeps is kept anyway.

use std::collections::HashSet;
use std::fmt;

use jiff::Timestamp;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone, TimeZoneDatabase};

/// Environment variable that overrides the clock (RFC 3339).
const VAR: &str = "RBDCP_NOW";

/// Returns the snapshot name for `at`: `PREFIX-%Y%m%dT%H%M%SZ` in UTC, for
/// example `rbdcp-20260301T020000Z`. Fractions of a second are dropped.
pub fn name(prefix: &str, at: Timestamp) -> String {
    let t = Offset::UTC.to_datetime(at);
    format!(
        "{prefix}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Returns the time in a snapshot name made by [`name`] with this `prefix`.
///
/// The name must be exactly `PREFIX-`, 8 digits, `T`, 6 digits and `Z`, and
/// name a real date and time; anything else (other tools' snapshots, other
/// prefixes, suffixes) gives `None`.
pub fn parse(prefix: &str, name: &str) -> Option<Timestamp> {
    let s = name.strip_prefix(prefix)?.strip_prefix('-')?.as_bytes();
    if s.len() != 16 || s[8] != b'T' || s[15] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| {
        s[from..to].iter().try_fold(0i16, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i16::from(b - b'0'))
        })
    };
    let small = |from: usize| i8::try_from(num(from, from + 2)?).ok();
    let t = DateTime::new(
        num(0, 4)?,
        small(4)?,
        small(6)?,
        small(9)?,
        small(11)?,
        small(13)?,
        0,
    )
    .ok()?;
    Offset::UTC.to_timestamp(t).ok()
}

/// Returns the current time in whole seconds: from `RBDCP_NOW` (RFC 3339,
/// such as `2026-03-01T02:00:00Z` or `2026-03-01T03:00:00+01:00`) when it is
/// set and not empty, else from the system clock.
pub fn now() -> Result<Timestamp, String> {
    match std::env::var_os(VAR) {
        Some(v) if !v.is_empty() => match v.to_str() {
            Some(v) => clock(v),
            None => Err(format!("{VAR}={v:?} is not valid UTF-8")),
        },
        _ => Ok(whole(Timestamp::now())),
    }
}

/// Parses a `RBDCP_NOW` value.
fn clock(v: &str) -> Result<Timestamp, String> {
    v.parse::<Timestamp>().map(whole).map_err(|e| {
        format!("{VAR}={v:?} is not an RFC 3339 time such as 2026-03-01T02:00:00Z: {e}")
    })
}

/// Rounds down to a whole second.
fn whole(t: Timestamp) -> Timestamp {
    let s = t.as_second() - i64::from(t.subsec_nanosecond() < 0);
    Timestamp::from_second(s).unwrap_or(t)
}

/// Returns the IANA time zone `name` (such as `UTC` or `Europe/Berlin`).
///
/// The system's zone database is asked first; the copy bundled into the
/// binary answers when there is none or it lacks the zone.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    jiff::tz::db()
        .get(name)
        .or_else(|_| TimeZoneDatabase::bundled().get(name))
        .map_err(|e| format!("unknown time zone {name:?}: {e}"))
}

/// How many snapshots each rule keeps (`--keep-last`, `--keep-hourly`, …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// The newest snapshots.
    pub last: usize,
    /// The newest snapshot of each hour.
    pub hourly: usize,
    /// The newest snapshot of each day.
    pub daily: usize,
    /// The newest snapshot of each ISO week (Monday to Sunday).
    pub weekly: usize,
    /// The newest snapshot of each month.
    pub monthly: usize,
    /// The newest snapshot of each year.
    pub yearly: usize,
}

impl Keep {
    /// True when no rule keeps anything, which means: keep everything.
    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|&(_, n)| n == 0)
    }

    /// The rules in the order they run.
    fn rules(&self) -> [(Why, usize); 6] {
        [
            (Why::Last, self.last),
            (Why::Hourly, self.hourly),
            (Why::Daily, self.daily),
            (Why::Weekly, self.weekly),
            (Why::Monthly, self.monthly),
            (Why::Yearly, self.yearly),
        ]
    }
}

/// A backup snapshot as seen by [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snap {
    /// The snapshot's name.
    pub name: String,
    /// When it was taken.
    pub time: Timestamp,
    /// Protected snapshots are never removed and never count for a rule.
    pub protected: bool,
    /// The newest common base of a backup chain: never removed.
    pub pinned: bool,
}

/// Why a snapshot is kept, or [`Why::None`] when it is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Why {
    /// Kept by `--keep-last`.
    Last,
    /// Kept by `--keep-hourly`.
    Hourly,
    /// Kept by `--keep-daily`.
    Daily,
    /// Kept by `--keep-weekly`.
    Weekly,
    /// Kept by `--keep-monthly`.
    Monthly,
    /// Kept by `--keep-yearly`.
    Yearly,
    /// Kept because it is protected.
    Protected,
    /// Kept because it is the base of a backup chain.
    Base,
    /// Kept because no `--keep-*` was given at all.
    All,
    /// Removed: no rule keeps it.
    None,
}

impl Why {
    /// True for the six `--keep-*` rules.
    fn is_rule(self) -> bool {
        matches!(
            self,
            Why::Last | Why::Hourly | Why::Daily | Why::Weekly | Why::Monthly | Why::Yearly
        )
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::Last => "keep-last",
            Why::Hourly => "keep-hourly",
            Why::Daily => "keep-daily",
            Why::Weekly => "keep-weekly",
            Why::Monthly => "keep-monthly",
            Why::Yearly => "keep-yearly",
            Why::Protected => "protected",
            Why::Base => "base",
            Why::All => "no-policy",
            Why::None => "none",
        })
    }
}

/// What [`plan`] decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The snapshot's name.
    pub name: String,
    /// True to keep it, false to remove it.
    pub keep: bool,
    /// Why it is kept, or [`Why::None`].
    pub why: Why,
}

/// Decides which snapshots to keep, with buckets in the time zone `tz`.
///
/// Returns one verdict per snapshot, newest first (equal times by name,
/// descending).
pub fn plan(snaps: &[Snap], keep: &Keep, tz: &TimeZone) -> Vec<Verdict> {
    let mut list: Vec<&Snap> = snaps.iter().collect();
    list.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    let mut marks = vec![None; list.len()];
    if !keep.is_empty() {
        for (rule, count) in keep.rules() {
            select(&list, &mut marks, rule, count, tz);
        }
    }
    list.iter()
        .zip(marks)
        .map(|(s, mark)| {
            let why = match mark {
                _ if s.protected => Why::Protected,
                _ if keep.is_empty() => Why::All,
                Some(w) if w.is_rule() => w,
                _ if s.pinned => Why::Base,
                _ => Why::None,
            };
            Verdict {
                name: s.name.clone(),
                keep: why != Why::None,
                why,
            }
        })
        .collect()
}

/// Runs one rule over `list` (newest first), as PBS's `mark_selections`.
///
/// A mark is `Some(rule)` for kept, `Some(Why::Protected)`, or
/// `Some(Why::None)` for removed.
fn select(list: &[&Snap], marks: &mut [Option<Why>], rule: Why, count: usize, tz: &TimeZone) {
    let key = |i: usize| bucket(rule, i, list[i].time, tz);
    let done: HashSet<i64> = (0..list.len())
        .filter(|&i| marks[i].is_some_and(Why::is_rule))
        .map(key)
        .collect();
    let mut taken = HashSet::new();
    for (i, s) in list.iter().enumerate() {
        if marks[i].is_some() {
            continue;
        }
        if s.protected {
            marks[i] = Some(Why::Protected);
            continue;
        }
        let k = key(i);
        if done.contains(&k) {
            continue;
        }
        if taken.contains(&k) {
            marks[i] = Some(Why::None);
        } else if taken.len() >= count {
            break;
        } else {
            taken.insert(k);
            marks[i] = Some(rule);
        }
    }
}

/// The bucket of the snapshot at `index`, taken at `time`, for `rule`.
///
/// Two snapshots share a bucket exactly when PBS's strftime of their local
/// times gives the same string; keys of different rules are never compared.
/// `--keep-last` gives each snapshot a bucket of its own.
fn bucket(rule: Why, index: usize, time: Timestamp, tz: &TimeZone) -> i64 {
    let t = tz.to_datetime(time);
    let year = i64::from(t.year());
    let month = year * 100 + i64::from(t.month());
    let day = month * 100 + i64::from(t.day());
    match rule {
        Why::Hourly => day * 100 + i64::from(t.hour()),
        Why::Daily => day,
        Why::Weekly => {
            let w = t.date().iso_week_date();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        Why::Monthly => month,
        Why::Yearly => year,
        _ => index as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn snap(at: &str) -> Snap {
        let time = ts(at);
        Snap {
            name: name("rbdcp", time),
            time,
            protected: false,
            pinned: false,
        }
    }

    fn snaps(ats: &[&str]) -> Vec<Snap> {
        ats.iter().map(|at| snap(at)).collect()
    }

    /// `count` snapshots `step` seconds apart, the first at `from`.
    fn every(from: &str, step: i64, count: i64) -> Vec<Snap> {
        let start = ts(from).as_second();
        (0..count)
            .map(|i| {
                let time = Timestamp::from_second(start + i * step).unwrap();
                Snap {
                    name: name("rbdcp", time),
                    time,
                    protected: false,
                    pinned: false,
                }
            })
            .collect()
    }

    fn berlin() -> TimeZone {
        zone("Europe/Berlin").unwrap()
    }

    /// One `STAMP why` line per verdict, without the `rbdcp-` prefix.
    fn table(v: &[Verdict]) -> Vec<String> {
        v.iter()
            .map(|v| {
                assert_eq!(v.keep, v.why != Why::None, "{v:?}");
                format!("{} {}", v.name.trim_start_matches("rbdcp-"), v.why)
            })
            .collect()
    }

    /// Only the kept lines of [`table`].
    fn kept(v: &[Verdict]) -> Vec<String> {
        table(v)
            .into_iter()
            .filter(|l| !l.ends_with(" none"))
            .collect()
    }

    fn count(v: &[Verdict], why: Why) -> usize {
        v.iter().filter(|v| v.why == why).count()
    }

    fn why(v: &[Verdict], stamp: &str) -> Why {
        let n = format!("rbdcp-{stamp}");
        v.iter().find(|v| v.name == n).unwrap().why
    }

    #[test]
    fn name_format() {
        let t = ts("2026-03-01T02:00:00Z");
        assert_eq!(name("rbdcp", t), "rbdcp-20260301T020000Z");
        // 03:00:00.5 at +01:00 is 02:00:00.5 UTC; the fraction is dropped.
        let t = ts("2026-03-01T03:00:00.5+01:00");
        assert_eq!(name("rbdcp", t), "rbdcp-20260301T020000Z");
        assert_eq!(name("a-b", t), "a-b-20260301T020000Z");
    }

    #[test]
    fn name_parse_round_trip() {
        for at in [
            "2026-03-01T02:00:00Z",
            "2024-02-29T23:59:59Z",
            "1999-12-31T00:00:00Z",
            "2027-01-03T12:34:56Z",
        ] {
            let t = ts(at);
            for prefix in ["rbdcp", "a-b", "x"] {
                assert_eq!(parse(prefix, &name(prefix, t)), Some(t), "{prefix} {at}");
            }
        }
        assert_eq!(
            parse("a-b", "a-b-20260301T020000Z"),
            Some(ts("2026-03-01T02:00:00Z"))
        );
    }

    #[test]
    fn parse_rejects_other_names() {
        for n in [
            "",
            "rbdcp",
            "rbdcp-",
            "rbdcp-migrate-3",
            "rbdcp-20260301T020000Z.x",
            "rbdcp-20260301T020000Z ",
            " rbdcp-20260301T020000Z",
            "rbdcpx-20260301T020000Z",
            "rbdcp-x-20260301T020000Z",
            "rbdcp20260301T020000Z",
            "rbdcp_20260301T020000Z",
            "RBDCP-20260301T020000Z",
            "other-20260301T020000Z",
            "rbdcp-20260301T020000",
            "rbdcp-20260301t020000z",
            "rbdcp-20260301 020000Z",
            "rbdcp-2026030T1020000Z",
            "rbdcp-+2026301T020000Z",
            "rbdcp-2026-03-01T02:00:00Z",
            "rbdcp-20260301T0200000Z",
            "rbdcp-２０２６0301T020000Z",
        ] {
            assert_eq!(parse("rbdcp", n), None, "{n:?}");
        }
        // A prefix that contains '-': "a" must not claim "a-b-…" names.
        assert_eq!(parse("a", "a-b-20260301T020000Z"), None);
        assert_eq!(parse("a-b", "a-20260301T020000Z"), None);
    }

    #[test]
    fn parse_rejects_invalid_dates() {
        for n in [
            "rbdcp-20260230T000000Z", // no February 30
            "rbdcp-20260229T000000Z", // 2026 is no leap year
            "rbdcp-20261301T000000Z",
            "rbdcp-20260001T000000Z",
            "rbdcp-20260100T000000Z",
            "rbdcp-20260301T240000Z",
            "rbdcp-20260301T026000Z",
            "rbdcp-20260301T020060Z", // no leap seconds
        ] {
            assert_eq!(parse("rbdcp", n), None, "{n:?}");
        }
        assert_eq!(
            parse("rbdcp", "rbdcp-20240229T000000Z"),
            Some(ts("2024-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn clock_values() {
        let want = ts("2026-03-01T02:00:00Z");
        assert_eq!(clock("2026-03-01T02:00:00Z"), Ok(want));
        assert_eq!(clock("2026-03-01T03:00:00+01:00"), Ok(want));
        assert_eq!(clock("2026-03-01T02:00:00.999Z"), Ok(want));
        // Rounds down, also before 1970.
        assert_eq!(
            whole(ts("1969-12-31T23:59:59.5Z")),
            ts("1969-12-31T23:59:59Z")
        );
        for bad in ["yesterday", "2026-03-01T02:00:00", "2026-02-30T02:00:00Z"] {
            let e = clock(bad).unwrap_err();
            assert!(e.contains("RBDCP_NOW") && e.contains(bad), "{e}");
        }
    }

    /// Runs [`child`] in a fresh copy of this test binary with `env` set
    /// (`None` removes the variable), so no test changes this process's
    /// environment. Returns what the child printed.
    fn probe(what: &str, env: &[(&str, Option<&str>)]) -> String {
        let path = module_path!().split_once("::").map_or("", |(_, p)| p);
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([&format!("{path}::child"), "--exact", "--nocapture"])
            .env("RBDCP_TEST_PROBE", what);
        for &(k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{text}");
        let line = text.lines().find_map(|l| l.strip_prefix("PROBE="));
        line.unwrap_or_else(|| panic!("no probe output: {text}"))
            .to_string()
    }

    /// The child side of [`probe`]; does nothing in a normal test run.
    #[test]
    fn child() {
        let Ok(what) = std::env::var("RBDCP_TEST_PROBE") else {
            return;
        };
        let out = match what.as_str() {
            "now" => match now() {
                Ok(t) => format!("ok {t}"),
                Err(e) => format!("err {e}"),
            },
            _ => match zone(&what) {
                Ok(tz) => format!("ok {}", tz.to_datetime(ts("2026-07-01T00:00:00Z"))),
                Err(e) => format!("err {e}"),
            },
        };
        println!("PROBE={out}");
    }

    #[test]
    fn now_from_env() {
        let set = |v| probe("now", &[(VAR, Some(v))]);
        assert_eq!(set("2026-03-01T02:00:00Z"), "ok 2026-03-01T02:00:00Z");
        assert_eq!(set("2026-03-01T03:00:00+01:00"), "ok 2026-03-01T02:00:00Z");
        assert_eq!(set("2026-03-01T02:00:00.75Z"), "ok 2026-03-01T02:00:00Z");
        let e = set("bogus");
        assert!(e.starts_with("err RBDCP_NOW=\"bogus\""), "{e}");
        // Unset or empty: the system clock, in whole seconds.
        for out in [probe("now", &[(VAR, None)]), set("")] {
            let t = ts(out.strip_prefix("ok ").unwrap());
            assert_eq!(t.subsec_nanosecond(), 0);
            let d = Timestamp::now().as_second() - t.as_second();
            assert!((0..60).contains(&d), "{t}");
        }
    }

    #[test]
    fn zones() {
        let summer = ts("2026-07-01T00:00:00Z");
        let winter = ts("2026-01-01T00:00:00Z");
        assert_eq!(zone("UTC").unwrap().to_datetime(summer).hour(), 0);
        assert_eq!(berlin().to_datetime(summer).hour(), 2);
        assert_eq!(berlin().to_datetime(winter).hour(), 1);
        let e = zone("Mars/Olympus_Mons").unwrap_err();
        assert!(e.contains("Mars/Olympus_Mons"), "{e}");
    }

    #[test]
    fn zones_missing_from_system_database() {
        // A TZDIR with one TZif-looking file and no real zones stands in for
        // a partial system database: the bundled copy must answer.
        let dir = std::env::temp_dir().join(format!("retention-tz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Fake"), [b"TZif".as_slice(), &[0; 50]].concat()).unwrap();
        let tzdir = dir.to_str().unwrap();
        let berlin = probe("Europe/Berlin", &[("TZDIR", Some(tzdir))]);
        let utc = probe("UTC", &[("TZDIR", Some(tzdir))]);
        let bad = probe("Mars/Olympus_Mons", &[("TZDIR", Some(tzdir))]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(berlin, "ok 2026-07-01T02:00:00");
        assert_eq!(utc, "ok 2026-07-01T00:00:00");
        assert!(bad.starts_with("err "), "{bad}");
    }

    #[test]
    fn why_display() {
        let all = [
            (Why::Last, "keep-last"),
            (Why::Hourly, "keep-hourly"),
            (Why::Daily, "keep-daily"),
            (Why::Weekly, "keep-weekly"),
            (Why::Monthly, "keep-monthly"),
            (Why::Yearly, "keep-yearly"),
            (Why::Protected, "protected"),
            (Why::Base, "base"),
            (Why::All, "no-policy"),
            (Why::None, "none"),
        ];
        for (w, s) in all {
            assert_eq!(w.to_string(), s);
        }
    }

    #[test]
    fn keep_is_empty() {
        assert!(Keep::default().is_empty());
        let yearly = Keep {
            yearly: 1,
            ..Keep::default()
        };
        let last = Keep {
            last: 1,
            ..Keep::default()
        };
        assert!(!yearly.is_empty() && !last.is_empty());
    }

    #[test]
    fn buckets() {
        let utc = TimeZone::UTC;
        let b = |rule, at: &str, tz: &TimeZone| bucket(rule, 0, ts(at), tz);
        // ISO weeks: 2026-12-28 (Mon) .. 2027-01-03 (Sun) is 2026-W53,
        // 2027-01-04 starts 2027-W01; 2021-01-03 (Sun) is 2020-W53.
        assert_eq!(b(Why::Weekly, "2026-12-28T00:00:00Z", &utc), 202653);
        assert_eq!(b(Why::Weekly, "2027-01-03T23:59:59Z", &utc), 202653);
        assert_eq!(b(Why::Weekly, "2027-01-04T00:00:00Z", &utc), 202701);
        assert_eq!(b(Why::Weekly, "2021-01-03T12:00:00Z", &utc), 202053);
        assert_eq!(b(Why::Weekly, "2020-12-27T12:00:00Z", &utc), 202052);
        // Fall back in Berlin: 00:30Z is 02:30 CEST, 01:30Z is 02:30 CET.
        let tz = berlin();
        assert_eq!(b(Why::Hourly, "2026-10-25T00:30:00Z", &tz), 2026102502);
        assert_eq!(b(Why::Hourly, "2026-10-25T01:30:00Z", &tz), 2026102502);
        // Spring forward: 00:30Z is 01:30 CET, 01:30Z already 03:30 CEST.
        assert_eq!(b(Why::Hourly, "2026-03-29T00:30:00Z", &tz), 2026032901);
        assert_eq!(b(Why::Hourly, "2026-03-29T01:30:00Z", &tz), 2026032903);
        assert_eq!(b(Why::Daily, "2026-03-01T02:00:00Z", &utc), 20260301);
        assert_eq!(b(Why::Monthly, "2026-03-01T02:00:00Z", &utc), 202603);
        assert_eq!(b(Why::Yearly, "2026-03-01T02:00:00Z", &utc), 2026);
        // keep-last: every snapshot its own bucket, whatever its time.
        assert_eq!(bucket(Why::Last, 7, ts("2026-03-01T02:00:00Z"), &utc), 7);
    }

    #[test]
    fn keep_last_3_of_5() {
        // Input in any order; the three newest are kept.
        let s = snaps(&[
            "2026-03-03T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-03-05T00:00:00Z",
            "2026-03-02T00:00:00Z",
            "2026-03-04T00:00:00Z",
        ]);
        let v = plan(
            &s,
            &Keep {
                last: 3,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "20260305T000000Z keep-last",
                "20260304T000000Z keep-last",
                "20260303T000000Z keep-last",
                "20260302T000000Z none",
                "20260301T000000Z none",
            ]
        );
    }

    #[test]
    fn order_ties_by_name_and_last_counts_snapshots() {
        let t = ts("2026-03-01T02:00:00Z");
        let at = |n: &str, s: i64| Snap {
            name: n.to_string(),
            time: Timestamp::from_second(t.as_second() + s).unwrap(),
            protected: false,
            pinned: false,
        };
        let s = [
            at("rbdcp-b", 0),
            at("rbdcp-old", -3600),
            at("rbdcp-a", 0),
            at("rbdcp-new", 3600),
            at("rbdcp-c", 0),
        ];
        // Newest first: new, then the three at t by name descending (c, b,
        // a), then old. keep-last 3 keeps new, c and b: three snapshots,
        // though c and b share a time.
        let v = plan(
            &s,
            &Keep {
                last: 3,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "new keep-last",
                "c keep-last",
                "b keep-last",
                "a none",
                "old none"
            ]
        );
    }

    #[test]
    fn hourly_keeps_newest_of_each_hour() {
        let s = snaps(&[
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:15:00Z",
            "2026-03-01T10:30:00Z",
            "2026-03-01T10:45:00Z",
            "2026-03-01T11:00:00Z",
            "2026-03-01T11:30:00Z",
            "2026-03-01T09:50:00Z",
        ]);
        // 11:30 opens hour 11 (1 of 2), 11:00 is in it: removed. 10:45 opens
        // hour 10 (2 of 2); 10:30, 10:15, 10:00 in it: removed. 09:50 would
        // be a third hour: the rule stops and it stays unmarked: removed.
        let v = plan(
            &s,
            &Keep {
                hourly: 2,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "20260301T113000Z keep-hourly",
                "20260301T110000Z none",
                "20260301T104500Z keep-hourly",
                "20260301T103000Z none",
                "20260301T101500Z none",
                "20260301T100000Z none",
                "20260301T095000Z none",
            ]
        );
    }

    #[test]
    fn daily_7_over_two_weeks() {
        // 4 a day (00, 06, 12, 18 UTC), 2026-03-01 .. 2026-03-14: 56.
        let s = every("2026-03-01T00:00:00Z", 6 * 3600, 56);
        let v = plan(
            &s,
            &Keep {
                daily: 7,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        // The 18:00 one of each of the 7 newest days, 03-14 .. 03-08.
        assert_eq!(
            kept(&v),
            [
                "20260314T180000Z keep-daily",
                "20260313T180000Z keep-daily",
                "20260312T180000Z keep-daily",
                "20260311T180000Z keep-daily",
                "20260310T180000Z keep-daily",
                "20260309T180000Z keep-daily",
                "20260308T180000Z keep-daily",
            ]
        );
        assert_eq!((v.len(), count(&v, Why::None)), (56, 49));
    }

    #[test]
    fn daily_with_gaps() {
        // Days without a snapshot do not count: keep-daily 3 reaches back
        // over six calendar days here.
        let s = snaps(&[
            "2026-03-01T12:00:00Z",
            "2026-03-02T12:00:00Z",
            "2026-03-05T12:00:00Z",
            "2026-03-06T12:00:00Z",
            "2026-03-10T12:00:00Z",
        ]);
        let v = plan(
            &s,
            &Keep {
                daily: 3,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "20260310T120000Z keep-daily",
                "20260306T120000Z keep-daily",
                "20260305T120000Z keep-daily",
                "20260302T120000Z none",
                "20260301T120000Z none",
            ]
        );
    }

    #[test]
    fn last_then_daily_skips_days_already_kept() {
        // 06:00 and 18:00 each day, 03-01 .. 03-05.
        let s = every("2026-03-01T06:00:00Z", 12 * 3600, 10);
        let keep = Keep {
            last: 2,
            daily: 3,
            ..Keep::default()
        };
        // keep-last: both of 03-05. daily: 03-05 is already included, so it
        // takes 03-04, 03-03, 03-02 (18:00 each, the 06:00 ones removed as
        // the same day); 03-01 would be a fourth day: stop.
        let v = plan(&s, &keep, &TimeZone::UTC);
        assert_eq!(
            table(&v),
            [
                "20260305T180000Z keep-last",
                "20260305T060000Z keep-last",
                "20260304T180000Z keep-daily",
                "20260304T060000Z none",
                "20260303T180000Z keep-daily",
                "20260303T060000Z none",
                "20260302T180000Z keep-daily",
                "20260302T060000Z none",
                "20260301T180000Z none",
                "20260301T060000Z none",
            ]
        );
    }

    #[test]
    fn weekly_across_2026_w53() {
        // Daily at 12:00, 2026-12-14 (Mon) .. 2027-01-10 (Sun): 28 days in
        // four ISO weeks: 2026-W51, W52, W53 (12-28 .. 01-03), 2027-W01.
        let s = every("2026-12-14T12:00:00Z", 86400, 28);
        let v = plan(
            &s,
            &Keep {
                weekly: 3,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        // The Sunday of 2027-W01, 2026-W53 and 2026-W52. With calendar years
        // (%Y/%V) 2026-12-31 would wrongly be a week of its own.
        assert_eq!(
            kept(&v),
            [
                "20270110T120000Z keep-weekly",
                "20270103T120000Z keep-weekly",
                "20261227T120000Z keep-weekly",
            ]
        );
        assert_eq!(why(&v, "20261231T120000Z"), Why::None);
        assert_eq!(why(&v, "20270101T120000Z"), Why::None);
        assert_eq!(count(&v, Why::None), 25);
    }

    #[test]
    fn weekly_across_2020_w53() {
        // 2020-12-28 .. 2021-01-03 is 2020-W53; 2021-01-04 is 2021-W01.
        let s = snaps(&[
            "2020-12-27T12:00:00Z",
            "2020-12-28T12:00:00Z",
            "2021-01-01T12:00:00Z",
            "2021-01-03T12:00:00Z",
            "2021-01-04T12:00:00Z",
        ]);
        let v = plan(
            &s,
            &Keep {
                weekly: 2,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "20210104T120000Z keep-weekly",
                "20210103T120000Z keep-weekly",
                "20210101T120000Z none",
                "20201228T120000Z none",
                "20201227T120000Z none",
            ]
        );
    }

    #[test]
    fn weekly_removals_hide_from_monthly() {
        // The ISO week 2026-04-27 (Mon) .. 05-03 spans April and May.
        let s = snaps(&[
            "2026-04-25T12:00:00Z",
            "2026-04-28T12:00:00Z",
            "2026-04-30T12:00:00Z",
            "2026-05-02T12:00:00Z",
        ]);
        let keep = Keep {
            weekly: 1,
            monthly: 2,
            ..Keep::default()
        };
        // weekly: 05-02 kept; 04-30 and 04-28 are in its week: marked
        // removed; 04-25 is a second week: stop. monthly: May is included;
        // 04-30 and 04-28 carry a mark and are skipped, so April's monthly
        // is 04-25, not 04-30 (PBS does the same).
        let v = plan(&s, &keep, &TimeZone::UTC);
        assert_eq!(
            table(&v),
            [
                "20260502T120000Z keep-weekly",
                "20260430T120000Z none",
                "20260428T120000Z none",
                "20260425T120000Z keep-monthly",
            ]
        );
    }

    #[test]
    fn monthly_and_yearly_over_three_years() {
        // Daily at 03:00, 2024-01-01 .. 2026-12-31: 366 + 365 + 365 days.
        let s = every("2024-01-01T03:00:00Z", 86400, 1096);
        assert_eq!(s[1095].name, "rbdcp-20261231T030000Z");
        let keep = Keep {
            monthly: 6,
            yearly: 3,
            ..Keep::default()
        };
        // monthly: last day of 2026-12 .. 2026-07. yearly: 2026 is already
        // included, so it adds 2025 and 2024 only (2 of 3, no third year).
        let v = plan(&s, &keep, &TimeZone::UTC);
        assert_eq!(
            kept(&v),
            [
                "20261231T030000Z keep-monthly",
                "20261130T030000Z keep-monthly",
                "20261031T030000Z keep-monthly",
                "20260930T030000Z keep-monthly",
                "20260831T030000Z keep-monthly",
                "20260731T030000Z keep-monthly",
                "20251231T030000Z keep-yearly",
                "20241231T030000Z keep-yearly",
            ]
        );
        assert_eq!(count(&v, Why::None), 1088);
        // yearly alone: the last day of each year.
        let v = plan(
            &s,
            &Keep {
                yearly: 3,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            kept(&v),
            [
                "20261231T030000Z keep-yearly",
                "20251231T030000Z keep-yearly",
                "20241231T030000Z keep-yearly",
            ]
        );
    }

    #[test]
    fn hourly_over_dst_in_berlin() {
        // Fall back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z):
        // 23:30Z = 01:30 CEST, 00:30Z = 02:30 CEST, 01:30Z = 02:30 CET,
        // 02:30Z = 03:30 CET. Both 02:30 are local hour 02: one bucket.
        let fall = snaps(&[
            "2026-10-24T23:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T02:30:00Z",
        ]);
        let keep = Keep {
            hourly: 10,
            ..Keep::default()
        };
        assert_eq!(
            table(&plan(&fall, &keep, &berlin())),
            [
                "20261025T023000Z keep-hourly",
                "20261025T013000Z keep-hourly",
                "20261025T003000Z none",
                "20261024T233000Z keep-hourly",
            ]
        );
        // In UTC they are four hours.
        assert_eq!(count(&plan(&fall, &keep, &TimeZone::UTC), Why::Hourly), 4);

        // Spring forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z):
        // 23:30Z = 00:30, 00:30Z = 01:30, 01:30Z = 03:30, 02:30Z = 04:30.
        // No local hour 02; four real hours stay four buckets, and keep 3
        // keeps the three newest.
        let spring = snaps(&[
            "2026-03-28T23:30:00Z",
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T02:30:00Z",
        ]);
        let keep = Keep {
            hourly: 3,
            ..Keep::default()
        };
        assert_eq!(
            table(&plan(&spring, &keep, &berlin())),
            [
                "20260329T023000Z keep-hourly",
                "20260329T013000Z keep-hourly",
                "20260329T003000Z keep-hourly",
                "20260328T233000Z none",
            ]
        );
    }

    #[test]
    fn daily_over_dst_in_berlin() {
        // 2026-10-25 has 25 hours in Berlin: 10-24T22:00Z .. 10-25T23:00Z.
        // 21:30Z on 10-24 = 23:30 CEST on 10-24; 22:30Z on 10-24 = 00:30
        // CEST on 10-25; 22:30Z on 10-25 = 23:30 CET on 10-25; 23:30Z on
        // 10-25 = 00:30 CET on 10-26.
        let fall = snaps(&[
            "2026-10-24T21:30:00Z",
            "2026-10-24T22:30:00Z",
            "2026-10-25T22:30:00Z",
            "2026-10-25T23:30:00Z",
        ]);
        let keep = Keep {
            daily: 5,
            ..Keep::default()
        };
        assert_eq!(
            table(&plan(&fall, &keep, &berlin())),
            [
                "20261025T233000Z keep-daily",
                "20261025T223000Z keep-daily",
                "20261024T223000Z none",
                "20261024T213000Z keep-daily",
            ]
        );
        assert_eq!(
            table(&plan(&fall, &keep, &TimeZone::UTC)),
            [
                "20261025T233000Z keep-daily",
                "20261025T223000Z none",
                "20261024T223000Z keep-daily",
                "20261024T213000Z none",
            ]
        );
        // 2026-03-29 has 23 hours: 03-28T23:00Z .. 03-29T22:00Z.
        // 22:30Z on 03-28 = 23:30 CET on 03-28; 23:30Z on 03-28 = 00:30 on
        // 03-29; 21:30Z on 03-29 = 23:30 CEST on 03-29; 22:30Z on 03-29 =
        // 00:30 CEST on 03-30.
        let spring = snaps(&[
            "2026-03-28T22:30:00Z",
            "2026-03-28T23:30:00Z",
            "2026-03-29T21:30:00Z",
            "2026-03-29T22:30:00Z",
        ]);
        assert_eq!(
            table(&plan(&spring, &keep, &berlin())),
            [
                "20260329T223000Z keep-daily",
                "20260329T213000Z keep-daily",
                "20260328T233000Z none",
                "20260328T223000Z keep-daily",
            ]
        );
    }

    #[test]
    fn daily_in_new_york_differs_from_utc() {
        // EST (UTC-5) in early March 2026: 02:00Z on 03-01 is 21:00 on
        // 02-28, 20:00Z on 03-01 is 15:00 on 03-01, 03:00Z on 03-02 is
        // 22:00 on 03-01.
        let s = snaps(&[
            "2026-03-01T02:00:00Z",
            "2026-03-01T20:00:00Z",
            "2026-03-02T03:00:00Z",
        ]);
        let keep = Keep {
            daily: 2,
            ..Keep::default()
        };
        assert_eq!(
            table(&plan(&s, &keep, &TimeZone::UTC)),
            [
                "20260302T030000Z keep-daily",
                "20260301T200000Z keep-daily",
                "20260301T020000Z none",
            ]
        );
        let ny = zone("America/New_York").unwrap();
        assert_eq!(
            table(&plan(&s, &keep, &ny)),
            [
                "20260302T030000Z keep-daily",
                "20260301T200000Z none",
                "20260301T020000Z keep-daily",
            ]
        );
    }

    #[test]
    fn protected_kept_and_not_counted() {
        let mut s = snaps(&[
            "2026-02-28T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
            "2026-03-03T00:00:00Z",
            "2026-03-04T00:00:00Z",
            "2026-03-05T00:00:00Z",
        ]);
        for i in [0, 3, 5] {
            s[i].protected = true;
        }
        // keep-last 2 passes over 03-05 and 03-03 (protected, not counted),
        // keeps 03-04 and 03-02, stops at 03-01; 02-28 is protected anyway.
        let v = plan(
            &s,
            &Keep {
                last: 2,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "20260305T000000Z protected",
                "20260304T000000Z keep-last",
                "20260303T000000Z protected",
                "20260302T000000Z keep-last",
                "20260301T000000Z none",
                "20260228T000000Z protected",
            ]
        );
        // A protected snapshot does not take its day either.
        let mut s = snaps(&[
            "2026-03-01T10:00:00Z",
            "2026-03-01T08:00:00Z",
            "2026-02-28T08:00:00Z",
        ]);
        s[0].protected = true;
        let v = plan(
            &s,
            &Keep {
                daily: 1,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "20260301T100000Z protected",
                "20260301T080000Z keep-daily",
                "20260228T080000Z none",
            ]
        );
    }

    #[test]
    fn pinned_kept_as_base() {
        let mut s = every("2026-03-01T00:00:00Z", 86400, 5);
        s[1].pinned = true; // 03-02: removed by the rules, kept as base
        s[3].pinned = true; // 03-04: kept by keep-last anyway
        let v = plan(
            &s,
            &Keep {
                last: 2,
                ..Keep::default()
            },
            &TimeZone::UTC,
        );
        assert_eq!(
            table(&v),
            [
                "20260305T000000Z keep-last",
                "20260304T000000Z keep-last",
                "20260303T000000Z none",
                "20260302T000000Z base",
                "20260301T000000Z none",
            ]
        );
    }

    #[test]
    fn empty_policy_keeps_all() {
        let mut s = every("2026-03-01T00:00:00Z", 86400, 3);
        s[0].protected = true;
        s[1].pinned = true;
        let v = plan(&s, &Keep::default(), &TimeZone::UTC);
        assert_eq!(
            table(&v),
            [
                "20260303T000000Z no-policy",
                "20260302T000000Z no-policy",
                "20260301T000000Z protected",
            ]
        );
        let one = Keep {
            last: 1,
            ..Keep::default()
        };
        assert!(plan(&[], &one, &TimeZone::UTC).is_empty());
    }

    #[test]
    fn years_of_hourly_snapshots() {
        // Hourly at :00 UTC, 2024-03-01T00 .. 2026-03-04T11 (a Wednesday):
        // 365 + 365 + 3 = 733 whole days and 12 hours: 17604 snapshots.
        let s = every("2024-03-01T00:00:00Z", 3600, 17604);
        assert_eq!(s[17603].name, "rbdcp-20260304T110000Z");
        let keep = Keep {
            last: 0,
            hourly: 24,
            daily: 7,
            weekly: 4,
            monthly: 12,
            yearly: 3,
        };
        let v = plan(&s, &keep, &TimeZone::UTC);
        // hourly 24: 03-04 11..00 and 03-03 23..12; stops at 03-03 11:00.
        // daily 7: 03-04 and 03-03 are included (03-03 00..11 skipped, left
        //   unmarked); 23:00 of 03-02, 03-01, 02-28, 02-27, 02-26, 02-25,
        //   02-24, the rest of those days removed; stops at 02-23 23:00.
        // weekly 4: W10 (03-02 ..) and W09 (02-23 .. 03-01) are included;
        //   Sunday 23:00 of W08 02-22, W07 02-15, W06 02-08, W05 02-01; the
        //   rest of those weeks removed, which includes 01-26 .. 01-31;
        //   stops at 01-25 23:00 (W04).
        // monthly 12: 2026-03 and 2026-02 are included; January's newest
        //   unmarked one is 01-25 23:00 (01-26 .. 01-31 carry weekly's
        //   remove mark); then the last day 23:00 of 2025-12 .. 2025-02;
        //   stops at 2025-01-31 23:00.
        // yearly 3: 2026 and 2025 are included; 2024-12-31 23:00, the rest
        //   of 2024 removed; no 2023 snapshots, so 1 of 3.
        assert_eq!(count(&v, Why::Last), 0);
        assert_eq!(count(&v, Why::Hourly), 24);
        assert_eq!(count(&v, Why::Daily), 7);
        assert_eq!(count(&v, Why::Weekly), 4);
        assert_eq!(count(&v, Why::Monthly), 12);
        assert_eq!(count(&v, Why::Yearly), 1);
        assert_eq!(count(&v, Why::None), 17604 - 48);
        for (stamp, w) in [
            ("20260304T110000Z", Why::Hourly),
            ("20260303T120000Z", Why::Hourly),
            ("20260303T110000Z", Why::None),
            ("20260302T230000Z", Why::Daily),
            ("20260224T230000Z", Why::Daily),
            ("20260223T230000Z", Why::None),
            ("20260222T230000Z", Why::Weekly),
            ("20260201T230000Z", Why::Weekly),
            ("20260131T230000Z", Why::None),
            ("20260125T230000Z", Why::Monthly),
            ("20251231T230000Z", Why::Monthly),
            ("20250228T230000Z", Why::Monthly),
            ("20250131T230000Z", Why::None),
            ("20241231T230000Z", Why::Yearly),
            ("20240301T000000Z", Why::None),
        ] {
            assert_eq!(why(&v, stamp), w, "{stamp}");
        }
    }
}
