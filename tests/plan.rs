//! `rbdcp plan` against real clusters: a plan of images and clones, listed children
//! first, runs parents first with `--keep-parent`; a failed step does not stop the
//! others; a rerun finishes what is left and copies nothing twice; shards keep a clone
//! with its parent.

use serde::Deserialize;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// `rbdcp plan --json`, typed.
#[derive(Debug, Deserialize)]
struct Report {
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
struct Step {
    line: usize,
    after: Option<usize>,
    status: String,
    error: Option<String>,
    exit: Option<u8>,
    snapshots: Vec<String>,
    clone_of: Option<Link>,
}

#[derive(Debug, Deserialize)]
struct Link {
    flattened: bool,
    linked_to: Option<String>,
}

fn run(dir: &std::path::Path, plan: &str, args: &[&str], code: i32) -> Report {
    let file = dir.join("plan");
    std::fs::write(&file, plan).unwrap();
    let out = expect(
        rbdcp(dir)
            .args(["plan", file.to_str().unwrap(), "--json"])
            .args(args),
        code,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_plan_runs_parents_first_survives_a_failed_step_and_reruns_to_its_end() {
    let Some((c1, c2)) = clusters() else { return };
    let (golden, kid, solo) = (name("plan-golden"), name("plan-kid"), name("plan-solo"));
    create(&c1, &golden, 8 * M, &[(0, 3 * M as usize)]);
    rbd(&c1, &["snap", "create", &format!("rbd/{golden}@base")]);
    rbd(&c1, &["snap", "protect", &format!("rbd/{golden}@base")]);
    rbd(
        &c1,
        &[
            "clone",
            &format!("rbd/{golden}@base"),
            &format!("rbd/{kid}"),
        ],
    );
    write(&c1, &kid, 5 * M, 20_000, 7);
    rbd(&c1, &["snap", "create", &format!("rbd/{kid}@k1")]);
    create(&c1, &solo, 4 * M, &[(M, M as usize)]);
    rbd(&c1, &["snap", "create", &format!("rbd/{solo}@s1")]);
    let line = |img: &str| {
        format!(
            "{} {}\n",
            loc(&c1, &format!("rbd/{img}")),
            loc(&c2, &format!("rbd/{img}"))
        )
    };
    let missing = name("plan-missing");
    // The clone first, a source that does not exist, then the clone's parent.
    let plan = format!(
        "# clones before parents on purpose\n{}{}\n{}{}",
        line(&kid),
        line(&solo),
        line(&missing),
        line(&golden)
    );
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--snapshots", "all", "--keep-parent"];
    let r = run(dir.path(), &plan, &flags, 1);
    let lines: Vec<usize> = r.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, [6, 2, 3, 5], "{r:?}");
    let kid_step = &r.steps[1];
    assert_eq!(kid_step.after, Some(6), "{r:?}");
    assert_eq!(kid_step.status, "copied", "{r:?}");
    assert_eq!(kid_step.snapshots, ["k1"]);
    let link = kid_step.clone_of.as_ref().expect("the clone's link");
    assert!(!link.flattened, "{r:?}");
    assert_eq!(
        link.linked_to.as_deref(),
        Some(format!("rbd:rbd/{golden}@base").as_str())
    );
    let failed = &r.steps[3];
    assert_eq!(
        (failed.status.as_str(), failed.exit),
        ("failed", Some(1)),
        "{r:?}"
    );
    assert!(failed.error.as_deref().unwrap().contains(&missing), "{r:?}");
    assert_eq!(
        r.steps[2].status, "copied",
        "the step after a failure runs: {r:?}"
    );
    for (img, snap) in [(&golden, "base"), (&kid, "k1"), (&solo, "s1")] {
        let spec = format!("rbd/{img}@{snap}");
        assert!(export(&c1, &spec) == export(&c2, &spec), "{spec} differs");
    }

    // The same plan without the bad line: every step is complete, nothing is copied.
    let plan = plan.replace(&line(&missing), "");
    let r = run(dir.path(), &plan, &flags, 0);
    assert!(r.steps.iter().all(|s| s.status == "complete"), "{r:?}");

    // Shards: the families in order of their roots are solo's (0) and golden's (1); the
    // clone runs in its parent's shard.
    let shard_plan: String = plan
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((src, dst)) if !l.starts_with('#') => {
                format!("{src} {}\n", dst.replacen(":conf=", "-sharded:conf=", 1))
            }
            _ => format!("{l}\n"),
        })
        .collect();
    let zero = run(
        dir.path(),
        &shard_plan,
        &[&flags[..], &["--shard", "0/2"]].concat(),
        0,
    );
    let lines: Vec<usize> = zero.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, [3], "{zero:?}");
    let one = run(
        dir.path(),
        &shard_plan,
        &[&flags[..], &["--shard", "1/2"]].concat(),
        0,
    );
    let lines: Vec<usize> = one.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, [5, 2], "{one:?}");
    assert!(one.steps.iter().all(|s| s.status == "copied"), "{one:?}");
    rbd(
        &c1,
        &["snap", "purge", "--no-progress", &format!("rbd/{kid}")],
    );
    rbd(&c1, &["rm", "--no-progress", &format!("rbd/{kid}")]);
    rbd(&c1, &["snap", "unprotect", &format!("rbd/{golden}@base")]);
}
