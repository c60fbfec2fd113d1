"""One live driver per run (automl/run/lease.py): who may drive a run, with known answers."""
import json
import os
import subprocess
import sys
import time

import pytest

from automl.core.errors import AutoMLError
from automl.run.lease import Lease
from automl.search.studies import GRACE_S


def _write(run_dir, **holder):
    (run_dir / "driver.lease").write_text(json.dumps(holder))


def test_a_live_driver_on_this_host_refuses_a_second_and_a_dead_one_is_taken_over(tmp_path):
    me = Lease(tmp_path, None)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write(tmp_path, host=me.me["host"], pid=other.pid, beat=time.time())
        with pytest.raises(AutoMLError, match=f"another driver \\(pid {other.pid} on this host\\)"):
            me.check()
    finally:
        other.kill()
        other.wait()
    me.check()                                                     # its process is gone: resume at once
    me.acquire()
    assert json.loads((tmp_path / "driver.lease").read_text())["pid"] == os.getpid()
    me.release()
    assert not (tmp_path / "driver.lease").exists()


@pytest.mark.parametrize("storage, hint", [(None, "SQLite cannot be shared between hosts"),
                                           ("postgresql://u@db/automl", "")])
def test_a_driver_on_another_host_is_refused_while_its_heartbeat_is_fresh(tmp_path, storage, hint):
    lease = Lease(tmp_path, storage)
    _write(tmp_path, host="elsewhere", pid=4242, beat=time.time() - 5)
    with pytest.raises(AutoMLError) as e:
        lease.check()
    assert "a driver on host elsewhere (pid 4242)" in str(e.value) and hint in str(e.value)
    _write(tmp_path, host="elsewhere", pid=4242, beat=time.time() - GRACE_S - 1)
    lease.check()                                                  # silent for longer than the grace: dead
