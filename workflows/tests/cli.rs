//! The workflow binaries as a user runs them: on the shipped sample, with `--explain`, through the
//! `solstice` launcher, and with a broken config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(root())
        .output()
        .expect("start workflow binary")
}

fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(str::to_string).collect()
}

/// The lines of every part file in sink directory `dir`, sorted.
fn published(dir: &Path) -> Vec<String> {
    let mut got = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            got.extend(lines(&path));
        }
    }
    got.sort();
    got
}

/// Each user's sequence of running totals, in output order.
fn per_user(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
        out.entry(v["user"].as_str().expect("user").to_string())
            .or_default()
            .push(l.clone());
    }
    out
}

#[test]
fn simple_etl_on_the_sample_produces_the_expected_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("totals");
    let set = format!("sinks.out.path={}", out.display());
    let o = run(
        env!("CARGO_BIN_EXE_simple_etl"),
        &["--config", "configs/simple_etl.yaml", "--set", &set],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = lines(&out.join("part-00000.jsonl"));
    let expected = lines(&root().join("workflows/data/simple_etl.expected.jsonl"));
    // Users interleave in any order; each user's totals come in input order.
    assert_eq!(per_user(&got), per_user(&expected));
    let staging: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".inprogress") || n.ends_with(".pending"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
}

#[test]
fn explain_prints_the_physical_plan() {
    let o = run(
        env!("CARGO_BIN_EXE_simple_etl"),
        &["--config", "configs/simple_etl.yaml", "--explain"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "job `simple_etl`: 6 stages in 3 chains, 4 tasks on 2 threads, 128 key groups\n\
         chain 0 x1: orders (source) -> normalize (map) -> positive (filter) -> by_user (key_by)\n\
         chain 1 x2: totals (stateful)\n  <- chain 0: hash by key, key groups per subtask [0..64, 64..128]\n\
         chain 2 x1: out (sink)\n  <- chain 1: rebalance\n\
         note: stage `totals` is elastic (2, 10); it runs at its minimum, 2 subtask(s), until elastic \
         scaling is available\n"
    );
}

#[test]
fn launcher_lists_and_runs_workflows() {
    let o = run(env!("CARGO_BIN_EXE_solstice"), &["list"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "simple_etl\nwordcount\n"
    );

    let tmp = tempfile::tempdir().unwrap();
    let set = format!("sinks.counts.path={}", tmp.path().join("counts").display());
    let o = run(
        env!("CARGO_BIN_EXE_solstice"),
        &[
            "run",
            "--workflow",
            "wordcount",
            "--config",
            "configs/wordcount.yaml",
            "--job-id",
            "wc1",
            "--set",
            &set,
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("job `wc1` finished"));
    // One final count per word, each written once (the parts split the words between them).
    let got = published(&tmp.path().join("counts"));
    let expected = lines(&root().join("workflows/data/wordcount.expected.jsonl"));
    assert_eq!(got, expected);

    let o = run(
        env!("CARGO_BIN_EXE_solstice"),
        &["run", "--workflow", "nope", "--config", "x.yaml"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("no workflow `nope` (available: simple_etl, wordcount)"));
}

#[test]
fn config_errors_exit_non_zero_with_one_paragraph() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "job: { id: x }\nsources: { orders: { path: a.jsonl, colour: red } }\n",
    )
    .unwrap();
    let o = run(
        env!("CARGO_BIN_EXE_simple_etl"),
        &["--config", bad.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("sources.orders") && err.contains("colour"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );

    let o = run(
        env!("CARGO_BIN_EXE_simple_etl"),
        &["--config", "configs/missing.yaml"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("configs/missing.yaml"));
}

#[test]
fn an_unusable_sink_path_is_refused_before_the_job_runs() {
    for args in [
        &[
            "--config",
            "configs/simple_etl.yaml",
            "--set",
            "sinks.out.path=/dev/null",
        ][..],
        &[
            "--config",
            "configs/simple_etl.yaml",
            "--set",
            "sinks.out.path=/dev/null",
            "--explain",
        ][..],
    ] {
        let o = run(env!("CARGO_BIN_EXE_simple_etl"), args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            // The path came from the command line, so the error names that flag.
            err.contains("sinks.out.path: /dev/null is not a directory")
                && err.contains("--set sinks.out.path=/dev/null")
                && !err.contains("os error"),
            "{err}"
        );
        assert!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn bad_records_fail_with_file_and_line_or_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("orders.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 1, \"user\": \"a\", \"amount\": 5.0}\n{\"id\": 2, \"user\": \"b\", \"amount\": }\n",
    )
    .unwrap();
    let src = format!("sources.orders.path={}", input.display());
    let out = format!("sinks.out.path={}", tmp.path().join("out").display());
    let args = [
        "--config",
        "configs/simple_etl.yaml",
        "--set",
        &src,
        "--set",
        &out,
    ];
    let o = run(env!("CARGO_BIN_EXE_simple_etl"), &args);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("orders.jsonl:2:") && err.contains("stage `orders`"),
        "{err}"
    );

    let dead = format!(
        "sources.orders.dead_letter={}",
        tmp.path().join("dead.jsonl").display()
    );
    let mut skip = args.to_vec();
    skip.extend(["--set", "sources.orders.on_error=skip", "--set", &dead]);
    let o = run(env!("CARGO_BIN_EXE_simple_etl"), &skip);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("source `orders`: 1 bad record(s) skipped"),
        "{err}"
    );
    assert_eq!(lines(&tmp.path().join("dead.jsonl")).len(), 1);
    assert_eq!(lines(&tmp.path().join("out/part-00000.jsonl")).len(), 1);
}

#[test]
fn version_prints_the_version_and_the_build_fingerprint() {
    let bins = [
        (env!("CARGO_BIN_EXE_simple_etl"), "pipeline simple_etl"),
        (env!("CARGO_BIN_EXE_solstice"), "workflows "),
    ];
    for (bin, what) in bins {
        for flag in ["--version", "-V"] {
            let out = run(bin, &[flag]);
            assert!(out.status.success(), "{bin} {flag}: {out:?}");
            let line = String::from_utf8(out.stdout).unwrap();
            let fingerprint = line
                .trim_end()
                .strip_suffix(')')
                .and_then(|l| l.rsplit_once("build "))
                .map(|(_, f)| f.to_string())
                .unwrap_or_default();
            assert!(
                line.contains(solstice::build::VERSION) && line.contains(what),
                "{bin} {flag}: {line}"
            );
            assert_eq!(
                fingerprint,
                solstice::build::fingerprint_of(Path::new(bin)).unwrap(),
                "{bin} {flag}: {line}"
            );
        }
    }
}

#[test]
fn a_rerun_is_refused_and_fresh_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let sets = [
        format!("sinks.out.path={}", out.display()),
        format!(
            "job.checkpoint.backend=file://{}",
            tmp.path().join("chk").display()
        ),
        "job.checkpoint.interval_records=3".to_string(),
    ];
    let mut args: Vec<&str> = vec!["--config", "configs/simple_etl.yaml"];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let published = || published(&out);
    let mut expected = lines(&root().join("workflows/data/simple_etl.expected.jsonl"));
    expected.sort();

    let o = run(env!("CARGO_BIN_EXE_simple_etl"), &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(published(), expected);

    let o = run(env!("CARGO_BIN_EXE_simple_etl"), &args);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("job `simple_etl` has complete checkpoints")
            && err.contains("--restore latest")
            && err.contains("--fresh"),
        "{err}"
    );
    assert_eq!(published(), expected, "the refused run published nothing");

    let mut fresh = args.clone();
    fresh.push("--fresh");
    let o = run(env!("CARGO_BIN_EXE_simple_etl"), &fresh);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(published(), expected, "one copy of the output");

    fresh.extend(["--restore", "latest"]);
    let o = run(env!("CARGO_BIN_EXE_simple_etl"), &fresh);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    // From another working directory, the shipped config still finds its input.
    let tmp = tempfile::tempdir().unwrap();
    let config = root().join("configs/simple_etl.yaml");
    let out = format!("sinks.out.path={}", tmp.path().join("out").display());
    let o = Command::new(env!("CARGO_BIN_EXE_simple_etl"))
        .args(["--config", config.to_str().unwrap(), "--set", &out])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp.path().join("out/part-00000.jsonl").is_file());

    // A bare file name: its directory is the working directory.
    let o = Command::new(env!("CARGO_BIN_EXE_simple_etl"))
        .args(["--config", "simple_etl.yaml", "--explain"])
        .current_dir(root().join("configs"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A missing relative path says what it was relative to: the file's directory, or, given
    // by --set, the working directory.
    let copy = tmp.path().join("copy.yaml");
    std::fs::copy(&config, &copy).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_simple_etl"))
        .args(["--config", copy.to_str().unwrap(), "--explain"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    assert!(
        err.contains("sources.orders.path")
            && err.contains("(relative to the config file's directory, ")
            && (err.contains(&*tmp.path().to_string_lossy())
                || err.contains(&*dir.to_string_lossy())),
        "{err}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_simple_etl"))
        .args([
            "--config",
            copy.to_str().unwrap(),
            "--set",
            "sources.orders.path=nowhere.jsonl",
            "--explain",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nowhere.jsonl") && err.contains("(relative to the working directory, "),
        "{err}"
    );
}
