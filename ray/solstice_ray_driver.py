"""The entrypoint of a Solstice job on a Ray cluster (submitted by `--ray-address`).

Runs in the job's working directory on the head node, next to `job.json` (written by the
workflow binary that submitted the job). It checks that the cluster can hold the workers,
starts the coordinator (the workflow binary with `--coordinator`) here, reserves a placement
group of one bundle per worker, and creates one actor per bundle that runs the binary with
`--worker --join` as its child. A binary given as an http(s) URL is downloaded by the driver
and by each actor, each time it starts. Ray restarts an actor whose worker dies; the new worker joins
and the coordinator restores the job from its last checkpoint. The driver exits with the
coordinator's exit status, after removing its actors and the placement group.
"""

import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import warnings

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """What a child runs before exec: asks for SIGKILL when the thread that started it ends (an
    actor that crashes does not kill its children). libc is loaded here, before the fork, and
    not at import: the actor class is pickled with this module's globals."""
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def say(message):
    print(f"solstice: {message}", file=sys.stderr, flush=True)


class Refused(Exception):
    """The job cannot run on this cluster; the message says why."""


def is_url(binary):
    return binary.startswith(("http://", "https://"))


def download(url, who, node):
    """Downloads the workflow binary at `url` into this process's working directory as an
    executable file; its path and size. The caller removes it once the binary runs."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "workflow"
    path = os.path.abspath(f".solstice-{os.getpid()}-{name}")
    part = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
        os.chmod(part, 0o755)
        os.replace(part, path)
    except (OSError, ValueError) as e:
        remove_file(part)
        raise Refused(f"{who} on node {node} cannot download the workflow binary from {url}: "
                      f"{e}")
    return path, os.path.getsize(path)


def remove_file(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def local_binary(binary, who, node):
    """The path to run for `binary` on this node, whether to remove it once it runs, and a note
    for the log."""
    if is_url(binary):
        path, size = download(binary, who, node)
        return path, True, f" (downloaded from {binary}, {size / (1 << 20):.1f} MiB)"
    return os.path.abspath(binary), False, ""


@ray.remote
class SolsticeWorker:
    """One worker process of the job, as this actor's child. When the child dies, the actor
    exits too, so that Ray restarts it (and with it, a new worker)."""

    def __init__(self, index, binary, args, secret):
        self.index = index
        self.error = None
        self.node = ray.util.get_node_ip_address()
        self.child = None
        try:
            path, remove, note = local_binary(binary, f"worker {index}", self.node)
        except Refused as e:
            self.error = str(e)
            return
        env = dict(os.environ, SOLSTICE_SECRET=secret)
        with warnings.catch_warnings():
            # Deprecated, with nothing else that says whether Ray restarted this actor.
            warnings.simplefilter("ignore")
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        try:
            self.child = subprocess.Popen(
                [path, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )
        except OSError as e:
            self.child = None
            self.error = f"worker {index} on node {self.node} cannot run {path}: {e}"
            return
        finally:
            if remove:
                # The running process keeps the file; nothing is left behind on the node.
                remove_file(path)
        again = " again (its actor was restarted)" if restarted else ""
        print(f"[worker {index}] started{again}: pid {self.child.pid} on node {self.node}"
              f"{note}", flush=True)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self):
        for line in iter(self.child.stdout.readline, b""):
            sys.stdout.write(f"[worker {self.index}] {line.decode(errors='replace')}")
            sys.stdout.flush()
        code = self.child.wait()
        if code == 0:
            print(f"[worker {self.index}] finished", flush=True)
            return
        print(
            f"[worker {self.index}] exited with status {code}; its actor exits so that Ray "
            "starts another",
            flush=True,
        )
        os._exit(1)

    def started(self):
        """None once the worker process runs, else why it could not start."""
        return self.error


def check_resources(workers, cpus):
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_node = [int(n["Resources"].get("CPU", 0)) for n in nodes]
    room = sum(c // cpus for c in per_node)
    if room < workers:
        listed = ", ".join(
            f"{n['NodeManagerAddress']}: {c}" for n, c in zip(nodes, per_node)
        )
        raise Refused(
            f"runtime.ray asks for {workers} worker(s) of {cpus} CPU(s) each ({workers * cpus} "
            f"CPUs in bundles of {cpus}), but the cluster's {len(nodes)} node(s) have "
            f"{sum(per_node)} CPUs ({listed}): room for {room} such bundle(s). Lower "
            "runtime.ray.workers or runtime.ray.cpus_per_worker, or add nodes."
        )


def wait_for_address(path, coordinator, deadline):
    """The address the coordinator wrote to `path` once it listens."""
    while time.monotonic() < deadline:
        if coordinator.poll() is not None:
            raise Refused(f"the coordinator exited with status {coordinator.returncode} "
                          "before it listened")
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            time.sleep(0.05)
    raise Refused("the coordinator did not listen within runtime.ray.start_timeout_secs")


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    ray.init(address="auto", log_to_driver=True)
    if ray.__version__ != spec["ray_version"]:
        say(f"warning: the cluster runs Ray {ray.__version__}; this build of Solstice is "
            f"tested with Ray {spec['ray_version']}")
    workers, cpus = spec["workers"], spec["cpus_per_worker"]
    timeout = spec["start_timeout_secs"]
    node = ray.util.get_node_ip_address()
    coordinator = None
    actors = []
    pg = None

    def cleanup():
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone
                pass
        if pg is not None:
            remove_placement_group(pg)

    def on_term(signum, frame):
        say("the job is being stopped")
        if coordinator is not None and coordinator.poll() is None:
            coordinator.terminate()
            try:
                coordinator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                coordinator.kill()
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        check_resources(workers, cpus)
        binary, remove, note = local_binary(spec["binary"], "the driver", node)
        if note:
            say(f"the workflow binary{note}")
        if not os.path.isfile(binary):
            raise Refused(f"the workflow binary {binary} is not a file on node {node} (the "
                          "driver's); runtime.ray.binary must name a file every node can run")
        if not os.access(binary, os.X_OK):
            raise Refused(f"the workflow binary {binary} is not executable on node {node}")
        secret = secrets.token_hex(32)
        address_file = os.path.abspath(f"coordinator-{os.getpid()}.addr")
        try:
            coordinator = subprocess.Popen(
                [binary, *spec["coordinator_args"], "--listen", f"{node}:0",
                 "--address-file", address_file],
                env=dict(os.environ, SOLSTICE_SECRET=secret),
                preexec_fn=die_with_parent(),
            )
        except OSError as e:
            raise Refused(f"node {node} cannot run the workflow binary {binary}: {e}")
        finally:
            if remove:
                remove_file(binary)
        deadline = time.monotonic() + timeout
        address = wait_for_address(address_file, coordinator, deadline)
        say(f"coordinator at {address}; placing {workers} worker(s) of {cpus} CPU(s) "
            f"({spec['placement']})")
        strategy = "PACK" if spec["placement"] == "pack" else "SPREAD"
        pg = placement_group([{"CPU": cpus}] * workers, strategy=strategy)
        ready, _ = ray.wait([pg.ready()], timeout=max(1.0, deadline - time.monotonic()))
        if not ready:
            raise Refused(
                f"Ray did not place {workers} bundle(s) of {cpus} CPU(s) within {timeout} s: "
                "the cluster has the CPUs, but other jobs hold them (see `ray status`)"
            )
        for i in range(workers):
            actor = SolsticeWorker.options(
                num_cpus=cpus,
                max_restarts=-1,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=i
                ),
            ).remote(i, spec["binary"], [*spec["worker_args"], "--join", address], secret)
            actors.append(actor)
        errors = ray.get([a.started.remote() for a in actors],
                         timeout=max(1.0, deadline - time.monotonic()))
        errors = [e for e in errors if e]
        if errors:
            raise Refused("; ".join(errors))
        code = coordinator.wait()
    except Refused as e:
        say(str(e))
        code = 2
    except ray.exceptions.GetTimeoutError:
        say(f"the workers' actors did not start within {timeout} s (see `ray status`)")
        code = 2
    finally:
        if coordinator is not None and coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
        cleanup()
    sys.exit(code)


if __name__ == "__main__":
    main()
