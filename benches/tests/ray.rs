//! `solstice-bench ray` on a real local Ray cluster (the harness of the workflows' Ray test):
//! both configurations run, their outputs agree, and the figures are printed. The input size is
//! `SOLSTICE_RAY_ORDERS` (default 20 000; the README's figures use 5 000 000 in a release
//! build).

// The harness serves the workflows' Ray test too; this test leaves some of it unused.
#[allow(dead_code)]
#[path = "../../workflows/tests/ray_cluster/mod.rs"]
mod ray_cluster;

#[test]
fn the_ray_benchmark_runs_on_a_local_cluster() {
    let Some(cluster) = ray_cluster::RayCluster::start() else {
        return;
    };
    let orders = std::env::var("SOLSTICE_RAY_ORDERS").unwrap_or_else(|_| "20000".into());
    let repeat = std::env::var("SOLSTICE_RAY_REPEAT").unwrap_or_else(|_| "1".into());
    let data = tempfile::tempdir().unwrap();
    let out = cluster
        .inside(env!("CARGO_BIN_EXE_solstice-bench"))
        .args(["ray", "--ray-address", "ray://127.0.0.1:10001"])
        .args(["--records", &orders, "--repeat", &repeat, "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    println!("{stdout}");
    assert!(
        stdout.contains("ratio Ray / processes: "),
        "no ratio in the report:\n{stdout}"
    );
    // Checkpoints every tenth of the input publish output before the end.
    assert!(
        !stdout.contains("first output published none"),
        "no output was published on Ray:\n{stdout}"
    );
    drop(cluster);
}
