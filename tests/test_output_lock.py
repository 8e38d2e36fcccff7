"""One training run per output folder: the lock file, without TensorFlow (two real runs: test_reliability)."""
import os
import subprocess
import sys

import pytest

import output_lock
from output_lock import OutputDirBusy, lock_output_dir, release_output_dirs


@pytest.fixture
def live_pid():
    """The id of a process that runs for the test's length."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_lock_holds_our_id_and_goes_with_the_folder_it_created_when_released(tmp_path):
    output_dir = tmp_path / "out"
    path = lock_output_dir(str(output_dir))
    assert open(path).read() == "%d\n" % os.getpid()
    release_output_dirs()
    assert not output_dir.exists()  # a run that failed before writing anything leaves nothing


def test_a_folder_held_by_a_running_process_is_refused_naming_it_and_left_alone(tmp_path, live_pid):
    (tmp_path / "run.lock").write_text("%d\n" % live_pid)
    with pytest.raises(OutputDirBusy, match=r"^%s is in use by a run of process %d " % (tmp_path, live_pid)):
        lock_output_dir(str(tmp_path))
    release_output_dirs()
    assert (tmp_path / "run.lock").read_text() == "%d\n" % live_pid


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over_with_a_line(tmp_path, capsys):
    gone = dead_pid()
    (tmp_path / "run.lock").write_text("%d\n" % gone)
    lock_output_dir(str(tmp_path))
    assert capsys.readouterr().err == "%s: process %d that held it no longer runs; taking it over\n" % (
        tmp_path / "run.lock", gone)
    assert (tmp_path / "run.lock").read_text() == "%d\n" % os.getpid()
    release_output_dirs()
    assert os.listdir(tmp_path) == []  # released; the folder was there before, so it stays


def test_each_worker_of_a_multi_worker_run_has_its_own_lock_in_the_shared_folder(monkeypatch):
    assert output_lock.lock_name() == "run.lock"
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    assert output_lock.lock_name() == "run.worker-1.lock"
