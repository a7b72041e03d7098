//! The command line of workflow binaries: what a generated `main()` calls.
//!
//! ```text
//! <workflow> --config FILE [--job-id ID] [--set KEY=VALUE]... [--explain]
//!            [--restore latest|ID | --fresh] [--list-checkpoints]
//!            [--coordinator --listen ADDR --workers N]
//! <workflow> --config FILE [--job-id ID] [--set KEY=VALUE]... --worker --join HOST:PORT
//! <workflow> --version
//! solstice --version
//! solstice list
//! solstice run --workflow NAME --config FILE [--job-id ID] [--set KEY=VALUE]... [--explain]
//! ```

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::job::{Job, JobBuilder};
use crate::pipeline::Pipeline;
use crate::state::manifest::CheckpointId;

/// Options of a job run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The job's YAML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Job id (overrides `job.id`).
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
    /// Overrides one config key, e.g. `--set stages.totals.parallelism=4`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Prints the physical plan and exits without running.
    #[arg(long)]
    pub explain: bool,
    /// Restores the state from a checkpoint: `latest` or a checkpoint id (`12`, `chk-00000012`).
    #[arg(long, value_name = "latest|ID", conflicts_with = "fresh")]
    pub restore: Option<String>,
    /// Starts over: discards the job's checkpoints and the output its sinks published before.
    #[arg(long)]
    pub fresh: bool,
    /// Lists the complete checkpoints of the job and exits.
    #[arg(long)]
    pub list_checkpoints: bool,
    /// Coordinates workers that join by hand (`--worker --join`) instead of running the job's
    /// tasks here; needs `--listen` and `--workers`, and the job secret (`SOLSTICE_SECRET` or
    /// `runtime.secret_file`).
    #[arg(long, requires_all = ["listen", "workers"], conflicts_with = "worker")]
    pub coordinator: bool,
    /// Where the coordinator listens for its workers, e.g. `0.0.0.0:7100`.
    #[arg(long, value_name = "ADDR", requires = "coordinator")]
    pub listen: Option<String>,
    /// How many workers the coordinator waits for before the job starts.
    #[arg(long, value_name = "N", requires = "coordinator")]
    pub workers: Option<usize>,
    /// Runs as a worker of the coordinator given by `--join` (spawned by it, or started by
    /// hand with the same binary and config).
    #[arg(long, requires = "join")]
    pub worker: bool,
    /// The coordinator a worker joins, `HOST:PORT`.
    #[arg(long, value_name = "HOST:PORT", requires = "worker")]
    pub join: Option<String>,
    /// Once listening, the coordinator writes its address (`HOST:PORT`) to this file: for a
    /// launcher that starts it with `--listen HOST:0`.
    #[arg(long, value_name = "FILE", requires = "coordinator")]
    pub address_file: Option<PathBuf>,
    /// Relative paths in the config resolve against this directory instead of the config
    /// file's.
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Submits the job to the Ray cluster at this address and follows it: `ray://HEAD:10001`
    /// (mapped to the job server at `http://HEAD:8265`) or the job server's `http://HEAD:8265`.
    /// The workers are configured by `runtime.ray`.
    #[arg(long, value_name = "ADDRESS", conflicts_with_all = ["coordinator", "worker", "explain", "list_checkpoints"])]
    pub ray_address: Option<String>,
}

#[derive(Parser, Debug)]
#[command(about = "Runs a Solstice workflow with a YAML config")]
struct WorkflowCli {
    #[command(flatten)]
    run: RunArgs,
    /// Prints the version and the build fingerprint, and exits.
    #[arg(short = 'V', long)]
    version: bool,
}

/// A workflow the `solstice` launcher can run by name.
#[derive(Clone, Copy)]
pub struct Workflow {
    /// The workflow's name.
    pub name: &'static str,
    /// Records its stages.
    pub build: fn(&mut JobBuilder) -> Result<()>,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.name)
            .finish()
    }
}

impl Workflow {
    /// The registry entry of pipeline `P`.
    pub fn of<P: Pipeline>() -> Workflow {
        Workflow {
            name: P::NAME,
            build: P::build,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "solstice",
    about = "Lists and runs the Solstice workflows built into this binary"
)]
struct LauncherCli {
    #[command(subcommand)]
    command: Command,
    /// Prints the version and the build fingerprint, and exits.
    #[arg(short = 'V', long)]
    version: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists the registered workflows.
    List,
    /// Runs a workflow by name.
    Run {
        /// The workflow to run.
        #[arg(long)]
        workflow: String,
        #[command(flatten)]
        run: Box<RunArgs>,
    },
}

/// Sets up logging (`RUST_LOG`, default `info`, to stderr) and keeps panics of stage functions,
/// which the job reports as errors, from printing a second time (see [`quiet_stage_panics`]).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    quiet_stage_panics();
}

/// Installs a panic hook that logs panics on the executor's worker threads at debug level
/// instead of printing them: a job reports a stage's panic as its error
/// ([`Error::StagePanic`]). Panics on other threads go to the previous hook.
pub fn quiet_stage_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("solstice-worker"));
        if worker {
            tracing::debug!("stage panicked: {info}");
        } else {
            default(info);
        }
    }));
}

/// Builds and runs (or explains) a job from command-line options.
pub fn run_with(
    name: &str,
    build: fn(&mut JobBuilder) -> Result<()>,
    args: &RunArgs,
) -> Result<()> {
    run_embedded(name, build, args, &[])
}

/// Builds job `name` from the options of a workflow binary's command line, for a program that
/// embeds jobs rather than being a `#[pipeline]` binary (a benchmark, a service):
///
/// - with `--worker --join HOST:PORT`, this process serves the coordinator there until the job
///   is over, and the result is `Ok(None)`;
/// - otherwise the job is returned for the caller to run, set to run its tasks on worker
///   processes when `runtime.processes` is above 1 (or with `--coordinator`). The workers it
///   spawns are this executable, started with `worker_prefix` and then `--config FILE
///   [--job-id ID] [--set KEY=VALUE]... --worker --join ADDR`: the program must hand those
///   options back to this function.
pub fn job_from_args(
    name: &str,
    build: fn(&mut JobBuilder) -> Result<()>,
    args: &RunArgs,
    worker_prefix: &[&str],
) -> Result<Option<Job>> {
    let mut job = Job::build(name, config_from_args(args)?, build)?;
    if args.worker {
        let join = args
            .join
            .as_deref()
            .ok_or_else(|| Error::config("--join", "a worker needs --join HOST:PORT"))?;
        let join = resolve(join, "--join")?;
        let endpoint = processes::endpoint(
            job.config(),
            "worker",
            processes::secret(job.config(), true)?,
        )?;
        job.serve(join, endpoint)?;
        return Ok(None);
    }
    if let Some(spec) = processes::cluster_spec(&job, args, worker_prefix)? {
        job.on_cluster(spec);
    }
    Ok(Some(job))
}

/// The config the run options name: the file, the `--set` overrides, `--job-id` and
/// `--base-dir`.
pub(crate) fn config_from_args(args: &RunArgs) -> Result<Config> {
    let mut config = Config::load(&args.config, &args.set)?;
    if let Some(id) = &args.job_id {
        config.job.id = Some(id.clone());
    }
    if let Some(dir) = &args.base_dir {
        config.base_dir = Some(std::path::absolute(dir).map_err(|e| Error::io(dir, e))?);
    }
    Ok(config)
}

/// [`run_with`] for a program that embeds jobs (see [`job_from_args`]): everything a workflow
/// binary does with its run options, including `--ray-address`, where `prefix` are the
/// arguments this executable needs before the run options to run this job again (a worker
/// spawned by the coordinator, or started on a Ray node): e.g. the launcher's
/// `run --workflow NAME`.
pub fn run_embedded(
    name: &str,
    build: fn(&mut JobBuilder) -> Result<()>,
    args: &RunArgs,
    prefix: &[&str],
) -> Result<()> {
    if let Some(address) = &args.ray_address {
        return crate::ray::submit(name, build, args, address, prefix);
    }
    let Some(mut job) = job_from_args(name, build, args, prefix)? else {
        return Ok(());
    };
    if args.explain {
        print!("{}", job.explain());
        return Ok(());
    }
    if args.list_checkpoints {
        let store = job.checkpoint_store()?.ok_or_else(|| {
            Error::config(
                args.config.display().to_string(),
                "--list-checkpoints needs `job.checkpoint` in the config",
            )
        })?;
        for id in store.list(job.id())? {
            println!("{id}");
        }
        return Ok(());
    }
    if let Some(restore) = &args.restore {
        job.restore_from(restore.parse()?);
    }
    if args.fresh {
        job.fresh();
    }
    let id = job.id().to_string();
    let job_metered = job.config().metered();
    let result = job.run()?;
    if result.startup.is_zero() {
        eprintln!(
            "job `{id}` finished in {:.3}s ({} tasks)",
            result.duration.as_secs_f64(),
            result.tasks
        );
    } else {
        eprintln!(
            "job `{id}` finished in {:.3}s ({} tasks; the first {:.3}s until its workers had \
             joined)",
            result.duration.as_secs_f64(),
            result.tasks,
            result.startup.as_secs_f64()
        );
    }
    if let Some(n) = result.last_checkpoint {
        eprintln!("last complete checkpoint: {}", CheckpointId(n));
    }
    if job_metered {
        eprint!("{}", result.summary());
    }
    for (name, n) in &result.counters {
        if let Some(stage) = name.strip_suffix(".skipped").filter(|_| *n > 0) {
            eprintln!("source `{stage}`: {n} bad record(s) skipped into its dead-letter file");
        }
    }
    Ok(())
}

/// True when `--version` (or `-V`) is among the arguments (before a `--`): the binary then prints
/// its version line instead of running anything, whatever else is given.
fn version_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--version" || a == "-V")
}

/// The version line of a binary: its name, the Solstice version, what it runs, and the
/// fingerprint of the executable ([`crate::build::fingerprint`]).
pub fn version_line(what: &str) -> Result<String> {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "solstice".to_string());
    Ok(format!(
        "{bin} {} ({what}, build {})",
        crate::build::VERSION,
        crate::build::fingerprint()?
    ))
}

/// The `main()` of a single-workflow binary.
pub fn main<P: Pipeline>() -> Result<()> {
    if version_requested() {
        println!("{}", version_line(&format!("pipeline {}", P::NAME))?);
        return Ok(());
    }
    let cli = WorkflowCli::parse();
    init();
    run_with(P::NAME, P::build, &cli.run)
}

/// The `main()` of a launcher binary that holds several workflows.
pub fn launcher(workflows: &[Workflow]) -> Result<()> {
    if version_requested() {
        let names: Vec<&str> = workflows.iter().map(|w| w.name).collect();
        println!(
            "{}",
            version_line(&format!("workflows {}", names.join(", ")))?
        );
        return Ok(());
    }
    let cli = LauncherCli::parse();
    init();
    match cli.command {
        Command::List => {
            for w in workflows {
                println!("{}", w.name);
            }
            Ok(())
        }
        Command::Run { workflow, run } => {
            let Some(w) = workflows.iter().find(|w| w.name == workflow) else {
                let names: Vec<&str> = workflows.iter().map(|w| w.name).collect();
                return Err(Error::config(
                    "--workflow",
                    format!("no workflow `{workflow}` (available: {})", names.join(", ")),
                ));
            };
            run_embedded(w.name, w.build, &run, &["run", "--workflow", w.name])
        }
    }
}

/// The one address `addr` (`HOST:PORT`) names.
fn resolve(addr: &str, flag: &str) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| Error::config(flag, format!("`{addr}`: {e}")))?
        .next()
        .ok_or_else(|| Error::config(flag, format!("`{addr}` names no address")))
}

/// How the command line makes a job of several processes.
mod processes {
    use std::ffi::OsString;
    use std::time::Duration;

    use super::{resolve, RunArgs};
    use crate::config::Config;
    use crate::error::{Error, Result};
    use crate::job::Job;
    use crate::runtime::cluster::{ClusterSpec, Membership, WorkerCommand, SECRET_ENV};
    use crate::runtime::transport::{
        generate_secret_hex, Endpoint, Hello, JobSecret, TransportConfig,
    };

    /// The job secret: `SOLSTICE_SECRET`, else `runtime.secret_file`; else a fresh one unless
    /// `required`.
    pub(super) fn secret(config: &Config, required: bool) -> Result<JobSecret> {
        if let Ok(hex) = std::env::var(SECRET_ENV) {
            return JobSecret::from_hex(&hex).map_err(|e| Error::config(SECRET_ENV, e.to_string()));
        }
        if let Some(file) = &config.runtime.secret_file {
            let path = config.resolve_path("runtime.secret_file", file);
            let hex = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            return JobSecret::from_hex(&hex).map_err(|e| {
                Error::config(
                    format!("runtime.secret_file ({})", path.display()),
                    e.to_string(),
                )
            });
        }
        if required {
            return Err(Error::config(
                &config.origin,
                format!(
                    "processes started by hand need the job secret: set {SECRET_ENV} (hex, e.g. \
                     from `openssl rand -hex 32`) or runtime.secret_file"
                ),
            ));
        }
        JobSecret::from_hex(&generate_secret_hex()?)
    }

    /// What this process tells its peers: `role`, its build and its configuration's hash.
    pub(super) fn endpoint(config: &Config, role: &str, secret: JobSecret) -> Result<Endpoint> {
        let transport = TransportConfig::with_heartbeat_ms(config.heartbeat().as_millis() as u64);
        transport.check()?;
        Ok(Endpoint {
            secret,
            hello: Hello {
                identity: format!(
                    "{role} pid {} on {}",
                    std::process::id(),
                    crate::runtime::worker::hostname()
                )
                .into_bytes(),
                build: crate::build::fingerprint()?.into_bytes(),
                config: config.fingerprint()?.into_bytes(),
            },
            config: transport,
        })
    }

    /// The job's workers, if it runs on workers: `--coordinator`, or `runtime.processes` above 1.
    pub(super) fn cluster_spec(
        job: &Job,
        args: &RunArgs,
        prefix: &[&str],
    ) -> Result<Option<ClusterSpec>> {
        let config = job.config();
        let (membership, listen, by_hand) = if args.coordinator {
            let listen = args
                .listen
                .as_deref()
                .ok_or_else(|| Error::config("--listen", "a coordinator needs --listen ADDR"))?;
            let workers = args.workers.unwrap_or(0);
            if workers == 0 {
                return Err(Error::config(
                    "--workers",
                    "a coordinator needs at least 1 worker",
                ));
            }
            (
                Membership::Join { workers },
                resolve(listen, "--listen")?,
                true,
            )
        } else if config.processes() > 1 {
            let program =
                std::env::current_exe().map_err(|e| Error::io("the running executable", e))?;
            let mut worker_args: Vec<OsString> = prefix.iter().map(OsString::from).collect();
            let config_path =
                std::path::absolute(&args.config).map_err(|e| Error::io(&args.config, e))?;
            worker_args.push("--config".into());
            worker_args.push(config_path.into());
            if let Some(id) = &args.job_id {
                worker_args.push("--job-id".into());
                worker_args.push(id.into());
            }
            for set in &args.set {
                worker_args.push("--set".into());
                worker_args.push(set.into());
            }
            let membership = Membership::Spawn {
                processes: config.processes(),
                command: WorkerCommand {
                    program,
                    args: worker_args,
                },
            };
            // Spawned workers are on this host: the coordinator listens on loopback only.
            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            (membership, listen, false)
        } else {
            return Ok(None);
        };
        let local_store = config
            .checkpoint_url()
            .filter(|url| url.starts_with("file:"));
        Ok(Some(ClusterSpec {
            membership,
            listen,
            endpoint: endpoint(config, "coordinator", secret(config, by_hand)?)?,
            rejoin_timeout: Duration::from_secs(config.runtime.rejoin_timeout_secs.unwrap_or(60)),
            join_timeout: config.runtime.join_timeout_secs.map(Duration::from_secs),
            local_store,
            address_file: args.address_file.clone(),
        }))
    }
}
