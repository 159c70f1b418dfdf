//! The `rbdcp` binary: exit codes, messages, the JSON report, diff and verify output.

use serde_json::Value;

mod util;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    expect(&mut rbdcp(d), 2);
    expect(rbdcp(d).args(["copy", "a"]), 2);
    expect(rbdcp(d).args(["copy", "a", "b", "--frobnicate"]), 2);
    expect(rbdcp(d).args(["copy", "a", "b", "-j", "0"]), 2);
    expect(rbdcp(d).args(["copy", "a", "b", "--bps-limit", "fast"]), 2);
    expect(rbdcp(d).args(["copy", "a", "b", "--chunk-size", "1k"]), 2);
    let out = expect(rbdcp(d).args(["copy", "rbd:pool", "b"]), 2);
    assert!(
        stderr(&out).contains("invalid location \"rbd:pool\""),
        "{}",
        stderr(&out)
    );
    let out = expect(rbdcp(d).args(["copy", "a", "a"]), 2);
    assert!(stderr(&out).contains("same image"), "{}", stderr(&out));
    // --keep-parent makes an RBD clone: not of a file, not in place of an existing image.
    let out = expect(rbdcp(d).args(["copy", "a", "b", "--keep-parent"]), 2);
    assert!(
        stderr(&out).contains("not an RBD image"),
        "{}",
        stderr(&out)
    );
    let out = expect(
        rbdcp(d).args(["copy", "rbd:p/a", "rbd:p/b", "--keep-parent", "--overwrite"]),
        2,
    );
    assert!(stderr(&out).contains("remove it first"), "{}", stderr(&out));
    expect(rbdcp(d).args(["copy", "a", "b", "--parent-pool", "p"]), 2);
    expect(rbdcp(d).args(["plan", "p", "--shard", "2/2"]), 2);
    std::fs::write(d.join("bad.plan"), "rbd:p/a\n").unwrap();
    let out = expect(rbdcp(d).args(["plan", "bad.plan"]), 2);
    assert!(
        stderr(&out).contains("bad.plan, line 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_secret_key_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let out = expect(
        rbdcp(dir.path()).args(["copy", "rbd:p/i:key=AQDsecretsecret==", "x"]),
        2,
    );
    assert!(!stderr(&out).contains("AQDsecret"), "{}", stderr(&out));
}

#[test]
fn help_explains_every_flag_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = expect(rbdcp(dir.path()).args(["copy", "--help"]), 0);
    let help = stdout(&out);
    for flag in [
        "--jobs",
        "--chunk-size",
        "--bps-limit",
        "--iops-limit",
        "--verify",
        "--overwrite",
        "--json",
        "--no-progress",
        "--no-preallocate",
        "--retries",
        "--retry-max-wait",
        "--checkpoint-interval",
        "--restart",
        "--op-timeout",
        "--connect-timeout",
    ] {
        assert!(help.contains(flag), "copy --help lacks {flag}");
    }
    for code in [
        "0 done",
        "1 the job failed",
        "2 usage",
        "3 refused",
        "4 busy",
        "130/143",
    ] {
        assert!(
            help.contains(code),
            "copy --help lacks exit status {code}: {help}"
        );
    }
    assert!(help.contains("rbd:POOL[/NAMESPACE]/IMAGE[@SNAP]"), "{help}");
    // The command's own options come first, the connection options under their heading.
    let (own, connection) = help.split_once("Connection options:").expect("a heading");
    assert!(
        own.contains("--bps-limit") && !own.contains("--keyring"),
        "{help}"
    );
    for flag in ["--conf", "--id", "--keyring", "--connect-timeout"] {
        assert!(
            connection.contains(flag),
            "{flag} is not a connection option: {help}"
        );
    }
}

#[test]
fn version_names_the_commit_and_the_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let text = stdout(&expect(rbdcp(dir.path()).arg("--version"), 0));
    // rbdcp 0.1.0 (1c589d8), librbd 1.16.0, librados 3.0.0
    let words: Vec<&str> = text.split_whitespace().collect();
    let dotted = |s: &str| {
        s.trim_end_matches(',')
            .split('.')
            .all(|n| n.parse::<u32>().is_ok())
    };
    assert_eq!(words.len(), 7, "{text}");
    assert_eq!(words[0], "rbdcp", "{text}");
    assert_eq!(words[1], env!("CARGO_PKG_VERSION"), "{text}");
    let commit = words[2].trim_start_matches('(').trim_end_matches("),");
    assert!(
        commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{text}"
    );
    assert_eq!((words[3], words[5]), ("librbd", "librados"), "{text}");
    assert!(dotted(words[4]) && dotted(words[6]), "{text}");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&expect(rbdcp(d).args(["completions", shell]), 0));
        for word in ["import-diff", "--max-in-flight", "--from-snap"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    expect(rbdcp(d).args(["man", "pages"]), 0);
    for cmd in [
        "copy",
        "diff",
        "verify",
        "export-diff",
        "import-diff",
        "discard",
    ] {
        let page = std::fs::read_to_string(d.join(format!("pages/rbdcp-{cmd}.1"))).unwrap();
        assert!(
            page.contains(&format!(".TH rbdcp-{cmd} 1")),
            "{cmd}: {page}"
        );
        assert!(
            page.contains("Exit status"),
            "rbdcp-{cmd}(1) lacks the exit codes"
        );
        assert!(page.contains("Examples"), "rbdcp-{cmd}(1) lacks examples");
    }
    let top = std::fs::read_to_string(d.join("pages/rbdcp.1")).unwrap();
    assert!(
        top.contains(".TH rbdcp 1") && top.contains("import"),
        "{top}"
    );
}

#[test]
fn a_missing_path_that_reads_like_an_rbd_image_says_how_to_name_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = expect(
        rbdcp(dir.path()).args(["copy", "rbd/vm@s1", "backup/vm"]),
        1,
    );
    assert!(
        stderr(&out).contains("an RBD image is written rbd:rbd/vm@s1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_source_exits_1_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = expect(rbdcp(dir.path()).args(["copy", "nope.img", "out.img"]), 1);
    assert_eq!(
        stderr(&out),
        "rbdcp: open nope.img: No such file or directory (os error 2)\n"
    );
    assert!(!dir.path().join("out.img").exists());
}

#[test]
fn copy_reports_json_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(
        &d.join("src.img"),
        256 * M,
        &[(0, 5 * M as usize), (100 * M, 3 * M as usize)],
    );
    util::put(&d.join("src.img"), 200 * M, &vec![0; 4 * M as usize]);
    let out = expect(
        rbdcp(d).args(["copy", "src.img", "dst.img", "--json", "-j", "3"]),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["size"], 256 * M);
    assert_eq!(v["bytes_read"], 12 * M);
    assert_eq!(v["bytes_written"], 8 * M);
    assert_eq!(v["bytes_zero"], 4 * M);
    assert_eq!(v["extents"], 3);
    assert_eq!(v["chunks"], 4);
    assert_eq!(v["verified"], Value::Null);
    let (secs, rate) = (
        v["seconds"].as_f64().unwrap(),
        v["bytes_per_second"].as_f64().unwrap(),
    );
    assert!(
        secs > 0.0 && (rate * secs - (16 * M) as f64).abs() < 1.0,
        "{v}"
    );
    assert!(util::same_bytes(&d.join("src.img"), &d.join("dst.img")));

    let out = expect(rbdcp(d).args(["copy", "src.img", "dst.img"]), 1);
    assert_eq!(
        stderr(&out),
        "rbdcp: dst.img already exists (add --overwrite to replace it)\n"
    );
    let out = expect(rbdcp(d).args(["copy", "src.img", "dst.img", "--json"]), 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("already exists"),
        "{v}"
    );

    let out = expect(
        rbdcp(d).args([
            "copy",
            "src.img",
            "dst.img",
            "--overwrite",
            "--verify",
            "--json",
        ]),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["verified"], true);
}

#[test]
fn verify_finds_the_first_differing_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), 64 * M, &[(0, 10 * M as usize)]);
    util::sparse_file(&d.join("b.img"), 64 * M, &[(0, 10 * M as usize)]);
    let out = expect(rbdcp(d).args(["verify", "a.img", "b.img"]), 0);
    assert!(
        stdout(&out).starts_with("identical: 67108864 bytes"),
        "{}",
        stdout(&out)
    );

    util::put(&d.join("b.img"), 9 * M + 5, b"x");
    util::put(&d.join("b.img"), 40 * M, b"y"); // in a hole of a.img
    let out = expect(rbdcp(d).args(["verify", "a.img", "b.img"]), 1);
    assert_eq!(
        stdout(&out),
        format!(
            "differ at offset {} length {}\ndiffer at offset {} length {}\n",
            8 * M,
            2 * M,
            40 * M,
            4096
        )
    );
    assert!(
        stderr(&out).contains("a.img and b.img differ: 2 chunk(s) differ"),
        "{}",
        stderr(&out)
    );

    let out = expect(rbdcp(d).args(["verify", "a.img", "b.img", "--json"]), 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["identical"], false);
    assert_eq!(v["differing_chunks"], 2);
    assert_eq!(v["first_differences"][0]["offset"], 8 * M);

    std::fs::File::options()
        .write(true)
        .open(d.join("b.img"))
        .unwrap()
        .set_len(65 * M)
        .unwrap();
    let out = expect(rbdcp(d).args(["verify", "a.img", "b.img"]), 1);
    assert!(
        stdout(&out).starts_with("sizes differ: a.img holds 67108864 bytes, b.img 68157440"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn diff_lists_data_extents_like_rbd_diff() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(
        &d.join("a.img"),
        1 << 30,
        &[(4 * M, 4 * M as usize), (512 * M, 65536)],
    );
    let out = expect(rbdcp(d).args(["diff", "a.img"]), 0);
    assert_eq!(
        stdout(&out),
        "Offset     Length   Type\n4194304    4194304  data\n536870912  65536    data\n"
    );
    let out = expect(rbdcp(d).args(["diff", "a.img", "--format", "json"]), 0);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"offset": 4194304, "length": 4194304, "exists": "true"},
            {"offset": 536870912, "length": 65536, "exists": "true"}
        ])
    );
}

#[test]
fn a_bps_limit_holds_within_ten_percent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 12 MiB at 4 MiB/s: about three seconds.
    util::sparse_file(&d.join("a.img"), 64 * M, &[(0, 12 * M as usize)]);
    let out = expect(
        rbdcp(d).args([
            "copy",
            "a.img",
            "b.img",
            "--bps-limit",
            "4M",
            "--chunk-size",
            "1M",
            "--json",
        ]),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rate = v["bytes_read"].as_f64().unwrap() / v["seconds"].as_f64().unwrap();
    let ratio = rate / (4 * M) as f64;
    // The limit bounds the rate from above; a loaded machine can only make the job
    // slower, so the lower bound is generous (the engine's own tests use a fake clock).
    assert!(
        (0.5..=1.1).contains(&ratio),
        "measured {rate:.0} B/s, {ratio:.3} of the limit"
    );
}

/// Names in `d`, sorted.
fn names(d: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_interrupted_copy_keeps_its_progress_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), 64 * M, &[(0, 32 * M as usize)]);
    // At 4 MiB/s the copy would take 8 s; it is stopped once a checkpoint was recorded.
    let mut child = rbdcp(d)
        .args([
            "copy",
            "a.img",
            "b.img",
            "--bps-limit",
            "4M",
            "--chunk-size",
            "1M",
            "-j",
            "2",
            "--checkpoint-interval",
            "0.1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let record = d.join(".b.img.rbdcp-partial.resume");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&record).is_ok_and(|r| !r.contains("\"mark\":0,")) {
        assert!(
            started.elapsed().as_secs() < 60,
            "no checkpoint was recorded"
        );
        assert!(child.try_wait().unwrap().is_none(), "the copy ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    assert!(err.contains("rbdcp discard b.img"), "{err}");
    assert_eq!(
        names(d),
        [
            ".b.img.rbdcp-partial",
            ".b.img.rbdcp-partial.resume",
            "a.img"
        ],
        "the staged copy and its record are kept, the lock is gone"
    );
    let out = expect(
        rbdcp(d).args([
            "copy",
            "a.img",
            "b.img",
            "--chunk-size",
            "1M",
            "-j",
            "2",
            "--json",
        ]),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let from = v["resumed_from"].as_u64().expect("resumed");
    assert!(from > 0 && from < 32 * M, "{v}");
    assert_eq!(from % M, 0, "a chunk boundary: {v}");
    assert_eq!(v["bytes_skipped"].as_u64(), Some(from), "{v}");
    assert_eq!(v["bytes_read"].as_u64(), Some(32 * M - from), "{v}");
    assert!(util::same_bytes(&d.join("a.img"), &d.join("b.img")));
    assert_eq!(names(d), ["a.img", "b.img"]);
}

#[test]
fn discard_removes_only_what_was_staged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("keep.img"), b"user data").unwrap();
    std::fs::write(d.join(".x.img.rbdcp-partial"), b"half").unwrap();
    std::fs::write(d.join(".x.img.rbdcp-partial.resume"), b"{}").unwrap();
    let out = expect(rbdcp(d).args(["discard", "x.img", "--json"]), 0);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["discarded"], true);
    assert_eq!(names(d), ["keep.img"]);
    let out = expect(rbdcp(d).args(["discard", "keep.img", "--json"]), 0);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["discarded"], false);
    assert_eq!(
        names(d),
        ["keep.img"],
        "an image the user had is never touched"
    );
}

#[test]
fn a_record_for_another_source_is_refused_with_3_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), 8 * M, &[(0, 8 * M as usize)]);
    util::sparse_file(&d.join("c.img"), 8 * M, &[(M, M as usize)]);
    std::fs::write(d.join(".b.img.rbdcp-partial"), vec![7; 8 * M as usize]).unwrap();
    let record = r#"{"version":1,"job":"copy","source":{"path":"c.img","size":"8388608"},"plan":{},"mark":4194304,"bytes_done":4194304,"crc":null,"window":null,"holder":"rbdcp on host h, process 1"}"#;
    std::fs::write(d.join(".b.img.rbdcp-partial.resume"), record).unwrap();
    let out = expect(rbdcp(d).args(["copy", "a.img", "b.img"]), 3);
    let err = stderr(&out);
    assert!(
        err.contains("refusing to write b.img: the source's"),
        "{err}"
    );
    assert!(err.contains("changed: recorded"), "{err}");
    assert!(!d.join("b.img").exists());
    expect(rbdcp(d).args(["copy", "a.img", "b.img", "--restart"]), 0);
    assert!(util::same_bytes(&d.join("a.img"), &d.join("b.img")));
    assert_eq!(names(d), ["a.img", "b.img", "c.img"]);
}

/// Progress a log can hold: `lines` and `json` print at most one line per interval and one
/// at the end, with bytes done, total, rate, ETA and retries.
#[test]
fn progress_lines_come_once_per_interval_and_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), 32 * M, &[(0, 6 * M as usize)]);
    for mode in ["lines", "json"] {
        let started = std::time::Instant::now();
        let out = expect(
            rbdcp(d).args([
                "copy",
                "a.img",
                &format!("{mode}.img"),
                "--bps-limit",
                "3M",
                "--progress",
                mode,
                "--progress-interval",
                "1",
            ]),
            0,
        );
        let secs = started.elapsed().as_secs_f64();
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(!lines.is_empty(), "{mode}: no progress at all");
        // At most one per whole second elapsed, plus the last.
        assert!(
            lines.len() <= secs as usize + 1,
            "{mode}: {} lines in {secs:.1} s: {err}",
            lines.len()
        );
        let last = lines.last().unwrap();
        match mode {
            "json" => {
                for l in &lines {
                    let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                    for key in [
                        "bytes_done",
                        "bytes_total",
                        "bytes_per_second",
                        "eta_seconds",
                        "retries",
                    ] {
                        assert!(v.get(key).is_some(), "{l} lacks {key}");
                    }
                }
                let v: Value = serde_json::from_str(last).unwrap();
                assert_eq!(v["bytes_done"], v["bytes_total"], "{last}");
            }
            _ => assert!(
                last.starts_with("rbdcp: copy: 6 MiB of 6 MiB (100%)") && last.contains("retries"),
                "{last}"
            ),
        }
    }
    // Nothing with --no-progress.
    let out = expect(
        rbdcp(d).args(["copy", "a.img", "none.img", "--no-progress"]),
        0,
    );
    assert_eq!(stderr(&out), "");
}

/// The README's examples on local files run as written (block devices and RBD images left
/// out), in a directory holding `disk.img` and `backup/`.
#[test]
fn the_readmes_local_examples_run_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut in_sh = false;
    let mut examples = Vec::new();
    for line in readme.lines() {
        match line {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh
                && l.starts_with("rbdcp ")
                && !l.contains("rbd:")
                && !l.contains("/dev/") =>
            {
                examples.push(l.to_owned())
            }
            _ => {}
        }
    }
    assert!(examples.len() >= 2, "{examples:?}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("disk.img"), 16 * M, &[(M, 2 * M as usize)]);
    std::fs::create_dir(d.join("backup")).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rbdcp"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for example in &examples {
        let out = std::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", example])
            .current_dir(d)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{example}: {out:?}");
    }
    assert!(util::same_bytes(
        &d.join("disk.img"),
        &d.join("backup/disk.img")
    ));
}
