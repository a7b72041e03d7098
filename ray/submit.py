"""Submits a Solstice job to a Ray cluster and follows it (the client side of `--ray-address`).

Started by the workflow binary, which prepares the job's working directory (the binary, the
config, the driver and `job.json`). Streams the job's log to stdout, exits with the job's exit
status, and stops the job on the cluster on Ctrl-C (SIGINT) or SIGTERM.
"""

import argparse
import asyncio
import atexit
import json
import shutil
import signal
import sys
import time

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def fail(message, code=2):
    print(f"solstice: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def stop(client, job, why):
    print(f"solstice: {why}: stopping Ray job {job}", file=sys.stderr, flush=True)
    try:
        client.stop_job(job)
    except Exception as e:  # noqa: BLE001 - any failure to stop is reported, not raised
        fail(f"cannot stop Ray job {job}: {e}", 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job))
        if status.split(".")[-1] in TERMINAL:
            print(f"solstice: Ray job {job} is {status.split('.')[-1]}", file=sys.stderr)
            return
        time.sleep(0.5)
    fail(f"Ray job {job} did not stop within 60 s; see `ray job status {job}`", 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True, help="the job server, http://HEAD:8265")
    parser.add_argument("--given", required=True, help="the address as the user gave it")
    parser.add_argument("--working-dir", required=True)
    parser.add_argument("--submission-id", required=True)
    parser.add_argument("--runtime-env", default="{}", help="JSON: more runtime_env entries")
    parser.add_argument("--ray-version", required=True, help="the Ray version Solstice pins")
    args = parser.parse_args()
    pinned = args.ray_version
    # Uploaded with the job (or refused): the local copy goes whatever happens.
    atexit.register(shutil.rmtree, args.working_dir, ignore_errors=True)

    try:
        import ray
        from ray.job_submission import JobSubmissionClient
    except ImportError as e:
        fail(
            f"the Python that submits to Ray ({sys.executable}) cannot import Ray's job "
            f"client ({e}). Install it with `pip install 'ray[default]=={pinned}'`, or point "
            "SOLSTICE_RAY_PYTHON at a Python that has it."
        )
    if ray.__version__ != pinned:
        print(
            f"solstice: warning: submitting with Ray {ray.__version__}; this build of "
            f"Solstice is tested with Ray {pinned}",
            file=sys.stderr,
        )

    try:
        client = JobSubmissionClient(args.address)
    except Exception as e:  # noqa: BLE001 - every way of not reaching the cluster
        via = "" if args.given == args.address else f" (from {args.given})"
        fail(
            f"no Ray cluster answers at {args.address}{via}: {e}. Check the address and "
            "that the cluster runs: `ray start --head` starts one, and its job server (part of "
            "`ray[default]`, port 8265 unless the head was started with --dashboard-port) must "
            "be reachable from this machine."
        )

    runtime_env = json.loads(args.runtime_env)
    runtime_env["working_dir"] = args.working_dir
    try:
        job = client.submit_job(
            entrypoint="python solstice_ray_driver.py job.json",
            submission_id=args.submission_id,
            runtime_env=runtime_env,
        )
    except Exception as e:  # noqa: BLE001 - the job server's refusal, as it gave it
        fail(f"the Ray cluster at {args.address} refused the job: {e}")
    print(f"solstice: submitted Ray job {job} to {args.address}", file=sys.stderr, flush=True)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)

    async def follow():
        async for lines in client.tail_job_logs(job):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        asyncio.run(follow())
        # The log ends with the job; its status may lag a little behind.
        deadline = time.monotonic() + 60
        while True:
            info = client.get_job_info(job)
            status = str(info.status).split(".")[-1]
            if status in TERMINAL or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop(client, job, "interrupted")
        sys.exit(130)
    if status == "SUCCEEDED":
        sys.exit(0)
    code = getattr(info, "driver_exit_code", None) or 1
    # The message goes on with the end of the log, which was streamed already.
    reason = (info.message or "").split(", last available logs")[0].strip()
    fail(f"Ray job {job} {status.lower()}: {reason}", code)


if __name__ == "__main__":
    main()
