//! `rbdcp migrate` against real clusters: rounds while the source changes, a final round
//! that ends identical, and the clean-up of the migration's snapshots.

use serde::Deserialize;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// `rbdcp migrate --json`, typed.
#[derive(Debug, Deserialize)]
struct Report {
    rounds: Vec<Round>,
    downtime_seconds: Option<f64>,
    verified: Option<bool>,
    removed: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Round {
    snapshot: String,
    delta_bytes: u64,
}

fn migrate(args: &[&str]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let out = expect(rbdcp(dir.path()).args(["migrate", "--json"]).args(args), 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn rounds_follow_the_writes_and_the_final_round_ends_identical() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("migrate");
    create(
        &c1,
        &img,
        16 * M,
        &[(0, 4 * M as usize), (9 * M, M as usize)],
    );
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}")),
        loc(&c2, &format!("rbd/{img}")),
    );

    // One round: everything.
    let r = migrate(&[&src, &dst, "--max-rounds", "1"]);
    assert_eq!(r.rounds.len(), 1);
    assert_eq!(r.rounds[0].snapshot, "rbdcp-migrate-1");
    assert!(r.rounds[0].delta_bytes >= 5 * M, "{r:?}");
    assert_eq!(r.downtime_seconds, None);

    // 2 MiB written: a round of about 2 MiB, then one of nothing, which is small enough.
    write(&c1, &img, 12 * M, 2 * M as usize, 1);
    let r = migrate(&[&src, &dst, "--until-delta", "1M"]);
    let names: Vec<&str> = r.rounds.iter().map(|r| r.snapshot.as_str()).collect();
    assert_eq!(names, ["rbdcp-migrate-2", "rbdcp-migrate-3"]);
    assert!(
        r.rounds[0].delta_bytes >= 2 * M && r.rounds[0].delta_bytes < 5 * M,
        "{r:?}"
    );
    assert_eq!(r.rounds[1].delta_bytes, 0);

    // The writer stops after a last write: the final round copies it and verifies.
    write(&c1, &img, 0, 512 * 1024, 2);
    let r = migrate(&[&src, &dst, "--final", "--cleanup", "--keep-last-snap"]);
    assert_eq!(r.rounds.len(), 1);
    assert_eq!(r.rounds[0].snapshot, "rbdcp-migrate-4");
    assert!(r.rounds[0].delta_bytes < 2 * M, "{r:?}");
    assert!(r.downtime_seconds.is_some());
    assert_eq!(r.verified, Some(true));
    assert_eq!(r.removed.len(), 6, "{r:?}");
    assert_eq!(snaps(&c1, &img), ["rbdcp-migrate-4"]);
    assert_eq!(snaps(&c2, &img), ["rbdcp-migrate-4"]);
    assert!(export(&c2, &format!("rbd/{img}")) == export(&c1, &format!("rbd/{img}")));
    rbd(&c1, &["snap", "purge", &format!("rbd/{img}")]);
}
