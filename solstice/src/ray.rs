//! Submitting a job to a Ray cluster (`--ray-address`): the launcher side.
//!
//! The runtime knows nothing of Ray: on the cluster, the job is a coordinator
//! (`--coordinator`) and workers that join it (`--worker --join`), as on hosts started by hand.
//! This module prepares the job's working directory (the binary unless `runtime.ray.binary`
//! names one, the config, the driver and `job.json`, which says how to start both) and hands
//! over to `ray/submit.py`, which submits it to Ray's job server and follows it. The driver
//! (`ray/solstice_ray_driver.py`) runs on the cluster and starts the processes.

use std::ffi::OsString;
use std::path::Path;

use serde::Serialize;

use crate::cli::RunArgs;
use crate::config::{Config, RayPlacement, RaySection};
use crate::error::{Error, Result};
use crate::job::JobBuilder;

/// The driver, as the cluster runs it.
const DRIVER: &str = include_str!("../../ray/solstice_ray_driver.py");

/// The client that submits the job and follows it.
const SUBMIT: &str = include_str!("../../ray/submit.py");

/// The pinned Ray requirement (`ray[default]==X`).
const REQUIREMENTS: &str = include_str!("../../ray/requirements.txt");

/// The largest working directory Ray accepts for a job (its package limit).
const RAY_UPLOAD_LIMIT: u64 = 512 << 20;

/// The Python that submits the job: needs `ray[default]` (its job client).
pub(crate) const PYTHON_ENV: &str = "SOLSTICE_RAY_PYTHON";

/// The Ray version this build is tested with (from `ray/requirements.txt`).
pub(crate) fn pinned_version() -> &'static str {
    REQUIREMENTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.split_once("==").map(|(_, v)| v.trim()))
        .unwrap_or("unknown")
}

/// What the driver reads from `job.json`.
#[derive(Serialize)]
struct DriverSpec {
    solstice_version: &'static str,
    ray_version: &'static str,
    workers: usize,
    cpus_per_worker: usize,
    placement: &'static str,
    /// The binary: a path relative to the working directory (uploaded) or absolute.
    binary: String,
    /// The coordinator's arguments, before `--listen ADDR --address-file FILE`.
    coordinator_args: Vec<String>,
    /// A worker's arguments, before `--join ADDR`.
    worker_args: Vec<String>,
    start_timeout_secs: u64,
}

/// The job server's URL for `address`: `ray://HOST:PORT` maps to `http://HOST:<dashboard>`.
fn job_server(address: &str, dashboard_port: u16) -> Result<String> {
    if let Some(rest) = address.strip_prefix("ray://") {
        let host = rest.split('/').next().unwrap_or_default();
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        };
        if host.is_empty() {
            return Err(Error::config(
                "--ray-address",
                format!("`{address}` names no host"),
            ));
        }
        return Ok(format!("http://{host}:{dashboard_port}"));
    }
    if address.starts_with("http://") || address.starts_with("https://") {
        return Ok(address.trim_end_matches('/').to_string());
    }
    Err(Error::config(
        "--ray-address",
        format!(
            "`{address}` is neither a Ray client address (ray://HEAD:10001) nor a job server \
             address (http://HEAD:8265)"
        ),
    ))
}

/// A Ray submission id: the job id, then the time, so that each submission has its own.
fn submission_id(job_id: &str) -> String {
    let clean: String = job_id
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{clean}-{}-{:03}", now.as_secs(), now.subsec_millis())
}

fn text(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        Error::config(
            path.display().to_string(),
            "a path that is not UTF-8 cannot be handed to Ray",
        )
    })
}

/// Submits job `name` (checked by building it here first) to the Ray cluster at `address` and
/// follows it; returns only on an error before the submitting client takes over (this process
/// becomes that client, whose exit status is the job's).
pub(crate) fn submit(
    name: &str,
    build: fn(&mut JobBuilder) -> Result<()>,
    args: &RunArgs,
    address: &str,
    prefix: &[&str],
) -> Result<()> {
    let config = crate::cli::config_from_args(args)?;
    // Relative paths resolve where the config file is on this machine, also on the cluster.
    let base_dir = config
        .base_dir
        .clone()
        .ok_or_else(|| Error::Internal("a config read from a file has a directory".into()))?;
    let ray = config.runtime.ray.clone().unwrap_or_default();
    let server = job_server(address, ray.dashboard_port.unwrap_or(8265))?;
    // The job must build here (stages, connectors' options) before it goes anywhere.
    let job = crate::job::Job::build(name, config.clone(), build)?;
    let job_id = job.id().to_string();
    drop(job);

    let stage = std::env::temp_dir().join(format!("solstice-ray-{job_id}-{}", std::process::id()));
    let staged = stage_dir(&stage, &config, &ray, args, prefix, &base_dir);
    if staged.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    staged?;

    let python = std::env::var_os(PYTHON_ENV).unwrap_or_else(|| OsString::from("python3"));
    let env_json = serde_json::to_string(&ray.python_env.clone().unwrap_or_default())
        .map_err(|e| Error::Internal(format!("runtime.ray.python_env: {e}")))?;
    let mut command = std::process::Command::new(&python);
    command
        .arg(stage.join("submit.py"))
        .arg("--address")
        .arg(&server)
        .arg("--given")
        .arg(address)
        .arg("--working-dir")
        .arg(&stage)
        .arg("--submission-id")
        .arg(submission_id(&job_id))
        .arg("--runtime-env")
        .arg(env_json)
        .arg("--ray-version")
        .arg(pinned_version());
    use std::os::unix::process::CommandExt;
    // Only returns on failure: from here on, the client's exit status is this process's.
    let e = command.exec();
    let _ = std::fs::remove_dir_all(&stage);
    Err(Error::config(
        PYTHON_ENV,
        format!(
            "cannot run `{}` to submit the job to Ray: {e}. Submitting needs a Python with \
             `ray[default]=={}` (set {PYTHON_ENV} to choose one)",
            python.to_string_lossy(),
            pinned_version()
        ),
    ))
}

/// Fills the job's working directory `stage`: the binary (unless the config names one), the
/// config, the driver, the client and `job.json`.
fn stage_dir(
    stage: &Path,
    config: &Config,
    ray: &RaySection,
    args: &RunArgs,
    prefix: &[&str],
    base_dir: &Path,
) -> Result<()> {
    if stage.exists() {
        std::fs::remove_dir_all(stage).map_err(|e| Error::io(stage, e))?;
    }
    std::fs::create_dir_all(stage).map_err(|e| Error::io(stage, e))?;
    let binary = match &ray.binary {
        Some(path) => path.strip_prefix("file://").unwrap_or(path).to_string(),
        None => {
            let exe =
                std::env::current_exe().map_err(|e| Error::io("the running executable", e))?;
            let size = std::fs::metadata(&exe)
                .map_err(|e| Error::io(&exe, e))?
                .len();
            if size > RAY_UPLOAD_LIMIT {
                return Err(Error::config(
                    "runtime.ray.binary",
                    format!(
                        "the workflow binary {} is {} MiB, over the {} MiB Ray takes with a \
                         job: build it without debug info (`[profile.release] debug = false`, \
                         or `strip`), or put it where every node can run it and name it in \
                         runtime.ray.binary",
                        exe.display(),
                        size >> 20,
                        RAY_UPLOAD_LIMIT >> 20
                    ),
                ));
            }
            let file = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "workflow".into());
            let target = stage.join(&file);
            // A hard link where the file system allows one; else a copy (modes are kept).
            if std::fs::hard_link(&exe, &target).is_err() {
                std::fs::copy(&exe, &target).map_err(|e| Error::io(&target, e))?;
            }
            format!("./{file}")
        }
    };
    let config_copy = stage.join("job.yaml");
    std::fs::copy(&args.config, &config_copy).map_err(|e| Error::io(&args.config, e))?;
    for (file, content) in [("solstice_ray_driver.py", DRIVER), ("submit.py", SUBMIT)] {
        let path = stage.join(file);
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
    }
    let cpus = ray.cpus_per_worker.unwrap_or(1);
    let mut common: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    common.extend(["--config".into(), "job.yaml".into()]);
    common.extend(["--base-dir".into(), text(base_dir)?]);
    if let Some(id) = &args.job_id {
        common.extend(["--job-id".into(), id.clone()]);
    }
    for set in &args.set {
        common.extend(["--set".into(), set.clone()]);
    }
    if config.runtime.threads.is_none() {
        common.extend(["--set".into(), format!("runtime.threads={cpus}")]);
    }
    // A worker that fails before it joins is restarted by Ray without end: the coordinator
    // gives up after the start timeout instead of waiting forever.
    let start_timeout = ray.start_timeout_secs.unwrap_or(120);
    if config.runtime.join_timeout_secs.is_none() {
        common.extend([
            "--set".into(),
            format!("runtime.join_timeout_secs={start_timeout}"),
        ]);
    }
    let workers = ray.workers.unwrap_or(2);
    let mut coordinator_args = common.clone();
    if let Some(restore) = &args.restore {
        coordinator_args.extend(["--restore".into(), restore.clone()]);
    }
    if args.fresh {
        coordinator_args.push("--fresh".into());
    }
    coordinator_args.extend([
        "--coordinator".into(),
        "--workers".into(),
        workers.to_string(),
    ]);
    let mut worker_args = common;
    worker_args.push("--worker".into());
    let spec = DriverSpec {
        solstice_version: crate::build::VERSION,
        ray_version: pinned_version(),
        workers,
        cpus_per_worker: cpus,
        placement: match ray.placement.unwrap_or_default() {
            RayPlacement::Spread => "spread",
            RayPlacement::Pack => "pack",
        },
        binary,
        coordinator_args,
        worker_args,
        start_timeout_secs: start_timeout,
    };
    let json = serde_json::to_vec_pretty(&spec)
        .map_err(|e| Error::Internal(format!("cannot write job.json: {e}")))?;
    let path = stage.join("job.json");
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_the_job_server() {
        assert_eq!(
            job_server("ray://head:10001", 8265).unwrap(),
            "http://head:8265"
        );
        assert_eq!(job_server("ray://head", 9000).unwrap(), "http://head:9000");
        assert_eq!(
            job_server("http://head:8265/", 8265).unwrap(),
            "http://head:8265"
        );
        let e = job_server("head:10001", 8265).unwrap_err().to_string();
        assert!(e.contains("ray://HEAD:10001"), "{e}");
        assert!(job_server("ray://:10001", 8265).is_err());
    }

    #[test]
    fn the_pin_is_read_from_the_requirements() {
        let v = pinned_version();
        assert!(v.chars().next().is_some_and(|c| c.is_ascii_digit()), "{v}");
    }

    #[test]
    fn submission_ids_start_with_the_job_id() {
        let id = submission_id("my job/1");
        assert!(id.starts_with("my_job_1-"), "{id}");
    }
}
