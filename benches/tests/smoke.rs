//! Every workload at tiny size, with 1 and 2 threads: Solstice and the hand-written
//! implementation give the same checksum. Runs in CI as part of `cargo test --workspace`.

use std::process::Command;

use solstice_bench::digest::Digest;
use solstice_bench::runner::{measure, work_dir};
use solstice_bench::{Engine, RunCtx, Scale, Workload};

#[test]
fn solstice_and_hand_written_agree_on_every_workload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = Digest::default().value();
    for w in Workload::ALL {
        let records = Scale::Tiny.records(w);
        w.prepare(dir.path(), records).expect("generate input");
        for threads in [1, 2] {
            let ctx = |engine| RunCtx {
                records,
                threads,
                data: dir.path().to_path_buf(),
                work: work_dir(dir.path(), w, engine, threads),
                overrides: Vec::new(),
                processes: false,
            };
            let hand = measure(w, Engine::Hand, &ctx(Engine::Hand), 1).expect("hand-written run");
            let solstice =
                measure(w, Engine::Solstice, &ctx(Engine::Solstice), 1).expect("Solstice run");
            let what = format!("{} with {threads} thread(s)", w.title());
            assert_eq!(hand.checksum, solstice.checksum, "{what}");
            assert_ne!(hand.checksum, empty, "{what}: empty result");
            assert_eq!(
                (hand.records, solstice.records, solstice.threads),
                (records, records, threads)
            );
            assert!(solstice.seconds > 0.0 && solstice.peak_rss_kb > 0, "{what}");
        }
    }
}

#[test]
fn w1_checksum_is_the_sum() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = 10_000;
    Workload::W1.prepare(dir.path(), n).expect("generate input");
    let ctx = RunCtx {
        records: n,
        threads: 2,
        data: dir.path().to_path_buf(),
        work: dir.path().join("work"),
        overrides: Vec::new(),
        processes: false,
    };
    let expected: u64 = (0..n)
        .map(|x| x * 2 + 1)
        .filter(|x| !x.is_multiple_of(3))
        .sum();
    let got = measure(Workload::W1, Engine::Solstice, &ctx, 1).expect("Solstice run");
    assert_eq!(got.checksum, expected);
}

#[test]
fn the_binary_measures_in_child_processes_and_prints_the_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_solstice-bench"))
        .args(["all", "--scale", "tiny", "--repeat", "1"])
        .output()
        .expect("run solstice-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for w in Workload::ALL {
        for engine in ["hand-written", "solstice"] {
            for threads in [1, 2] {
                let row = format!("| {:<12} | {threads:>7} | {engine:<12} |", w.title());
                assert!(stdout.contains(&row), "no row `{row}` in\n{stdout}");
            }
        }
    }
    assert!(stdout.contains("w3 etl scaling"), "{stdout}");
    // W2 and W3 also on 2 worker processes of 1 thread (the same checksum, or the run fails).
    for w in [Workload::W2, Workload::W3] {
        let row = format!("| {:<12} | {:>7} | {:<12} |", w.title(), "2x1", "processes");
        assert!(stdout.contains(&row), "no row `{row}` in\n{stdout}");
    }
    assert!(!stdout.contains("MISMATCH") && !stderr.contains("MISMATCH"));
}

#[test]
fn checkpoint_measurements_run_at_tiny_size() {
    use solstice_bench::checkpoints as ck;
    let dir = tempfile::tempdir().expect("temp dir");
    for w in [Workload::W2, Workload::W3] {
        let records = Scale::Tiny.records(w);
        w.prepare(dir.path(), records).expect("generate input");
        let ctx = RunCtx {
            records,
            threads: 2,
            data: dir.path().to_path_buf(),
            work: work_dir(dir.path(), w, Engine::Solstice, 2),
            overrides: Vec::new(),
            processes: false,
        };
        for (i, every) in [ck::Every::Second, ck::Every::Records(records / 4)]
            .into_iter()
            .enumerate()
        {
            let chk = dir.path().join(format!("chk-{}-{i}", w.name()));
            let m = match w {
                Workload::W2 => ck::w2(&ctx, Some(&chk), every),
                _ => ck::w3(&ctx, Some(&chk), every),
            }
            .expect("checkpointed run");
            assert!(!m.checkpoints.is_empty(), "at least the final checkpoint");
            let read: u64 = m.checkpoints.iter().map(|c| c.records).sum();
            assert_eq!(
                read, records,
                "{every:?}: the checkpoints account for every record: {:?}",
                m.checkpoints
            );
        }
    }
    // The restart measurement needs a job that outlives its first checkpoint: it runs at
    // full size in `solstice-bench checkpoints` only.
}
