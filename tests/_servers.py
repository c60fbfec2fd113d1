"""Real servers for the scaling-out tests, started on loopback in temp dirs: a PostgreSQL server
(initdb + pg_ctl) and a local Ray cluster (``ray start --head`` plus one more node as its own process
group, so the test can kill that node). Each helper says why it cannot run when a tool is missing.

``require(component)`` skips a test whose component (ray, postgresql) is missing, with a reason tagged
``[missing:<component>]``; under ``CI=true`` (CI installs them all) tests/conftest.py turns every skip
so tagged into a failure, and ``.ci/run`` refuses a run whose skip summary shows the tag."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MISSING = "[missing:{}]"  # the tag of a skip for a missing component (see the module docstring)


def pg_bin(tool: str) -> str | None:
    """A PostgreSQL program: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest first),
    where `apt-get install postgresql` puts the server binaries without putting them on PATH."""
    found = shutil.which(tool)
    if found:
        return found
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[-2].split(".")
                                                                         if x.isdigit()], reverse=True)
    return next((os.path.join(d, tool) for d in dirs if os.access(os.path.join(d, tool), os.X_OK)), None)


def pg_missing() -> str | None:
    """Why PostgreSQL cannot be started here (None: it can)."""
    tag = MISSING.format("postgresql")
    for tool in ("initdb", "pg_ctl", "createdb"):
        if pg_bin(tool) is None:
            return f"{tag} {tool} not found (PostgreSQL server binaries are needed: apt-get install postgresql)"
    if os.geteuid() == 0:  # initdb refuses root: the server runs as the postgres user
        if shutil.which("runuser") is None:
            return f"{tag} runuser not found (as root the server is started as the postgres user)"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return f"{tag} no postgres user (as root the server runs as it; apt-get install postgresql adds it)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return f'{tag} psycopg2 not installed (pip install -e ".[postgres]")'
    return None


def ray_missing() -> str | None:
    """Why a local Ray cluster cannot be started here (None: it can)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return f'{MISSING.format("ray")} ray not installed (pip install -e ".[ray]")'
    return None


CHECKS = {"ray": ray_missing, "postgresql": pg_missing}


def require(component: str) -> None:
    """Skip the calling test, with the reason, when `component` (ray, postgresql) is missing here."""
    why = CHECKS[component]()
    if why is not None:
        import pytest

        pytest.skip(why)


class Postgres:
    """A throwaway PostgreSQL server: ``url`` for SQLAlchemy/Optuna; ``stop()`` ends it."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="pg"))
        self.port = free_port()
        as_root = os.geteuid() == 0  # initdb refuses root: run the server as the postgres user
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        if as_root:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", "automl", "--auth=trust", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(data), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "automl", "automl")
        self.url = f"postgresql+psycopg2://automl@127.0.0.1:{self.port}/automl"

    def _run(self, tool, *args):
        subprocess.run([*self._prefix, pg_bin(tool), *args], check=True, capture_output=True, text=True, timeout=120)

    def stop(self):
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RayCluster:
    """A head node and one more node (its own process group: ``kill_node()`` takes it down with its
    workers), loopback only, 1 CPU each; ``address`` for ``--ray-address``."""

    def __init__(self):
        self.ray = str(Path(sys.executable).parent / "ray")
        self.port = free_port()
        self.temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must fit
        self.address = f"127.0.0.1:{self.port}"
        # Ray's token authentication: one token for the head, the node, the drivers and `ray status`
        # (RAY_AUTH_MODE=token in every process: without it a joining node sends no token); the workers
        # import job functions from tests/ too
        tests = str(Path(__file__).resolve().parent)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": os.urandom(16).hex(),
                    "PYTHONPATH": os.pathsep.join([tests, str(Path(tests).parent), os.environ.get("PYTHONPATH", "")])}
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        subprocess.run([self.ray, "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                        "--num-cpus=1", f"--temp-dir={self.temp}", "--include-dashboard=false",
                        "--disable-usage-stats"], check=True, capture_output=True, text=True, env=self.env,
                       timeout=180)
        self.node = subprocess.Popen([self.ray, "start", f"--address={self.address}", "--node-ip-address=127.0.0.1",
                                      "--num-cpus=1", "--block"], start_new_session=True, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_nodes(2)

    def alive_nodes(self) -> int:
        out = subprocess.run([self.ray, "status", f"--address={self.address}"], capture_output=True, text=True,
                             env=self.env, timeout=60).stdout
        active = out.split("Active:", 1)[1].split("Pending:", 1)[0] if "Active:" in out else ""
        return sum(1 for line in active.splitlines() if "node_" in line)

    def wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if self.alive_nodes() >= n:
                return
            time.sleep(1.0)
        raise RuntimeError(f"ray cluster: {n} nodes did not come up in {timeout:.0f} s")

    def _node_processes(self) -> list[tuple[int, str]]:
        """(pid, args) of the extra node's processes: its process group and their children (Ray's workers
        run in process groups of their own, children of the node's raylet)."""
        rows = []
        for line in subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True,
                                   text=True).stdout.splitlines():
            parts = line.split(None, 3)
            if len(parts) == 4:
                rows.append((int(parts[0]), int(parts[1]), int(parts[2]), parts[3]))
        group = {pid for pid, _, pgid, _ in rows if pgid == self.node.pid}
        return [(pid, args) for pid, ppid, pgid, args in rows if pid in group or ppid in group]

    def node_runs_task(self) -> bool:
        """Whether a worker of the extra node runs a task now (Ray titles it ray::<function>)."""
        idle = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
        return any(args.startswith("ray::") and not args.startswith(idle) for _, args in self._node_processes())

    def kill_node(self) -> None:
        """SIGKILL the extra node: its raylet, agents and workers at once, as when a machine goes away."""
        for pid, _ in self._node_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.node.wait(timeout=30)

    def stop(self) -> None:
        if self.node.poll() is None:
            self.kill_node()
        subprocess.run([self.ray, "stop", "--force"], capture_output=True, env=self.env, timeout=120)
        shutil.rmtree(self.temp, ignore_errors=True)
