"""One training run per output folder: a lock file in --output-dir holding the running process's id.

Two runs writing the same folder would overwrite each other's best weights and resume state, so
the second stops at once. The lock is taken atomically (created only if absent); one left by a
process that no longer runs (killed, machine restarted) is taken over with a line saying so.
`fine_tuning.run` releases it when the script ends, however it ends.
"""
import json
import os
import sys
import time

LOCK_NAME = "run.lock"
_held = {}  # lock path -> the folder this process created for it (removed again if left empty), or None


class OutputDirBusy(Exception):
    """Another running process holds the folder (fine_tuning.run makes it an error line, exit status 2)."""


def lock_name():
    """run.lock; under --strategy multi-worker one per worker, which all share the folder."""
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task")
    return "run.%s-%d.lock" % (task["type"], task["index"]) if task else LOCK_NAME


def is_running(pid):
    """Whether process `pid` exists."""
    if sys.platform == "win32":  # there os.kill(pid, 0) would send Ctrl-C to the process, not ask about it
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, under another user
        exit_code = ctypes.c_ulong()
        finished = kernel32.GetExitCodeProcess(handle, ctypes.byref(exit_code)) and exit_code.value != 259
        kernel32.CloseHandle(handle)  # 259: STILL_ACTIVE
        return not finished
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def lock_output_dir(output_dir):
    """Hold output_dir for this process; OutputDirBusy while another running process holds it."""
    created = None if os.path.isdir(output_dir) else output_dir
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, lock_name())
    for _ in range(100):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = read_owner(path)
            if owner is None:  # removed meanwhile, or created by another run that has yet to write its id
                time.sleep(0.01)
                continue
            if owner == os.getpid():
                pass  # left by an earlier main() in this process (a notebook cell's, a test's): ours to take again
            elif is_running(owner):
                raise OutputDirBusy("%s is in use by a run of process %d (lock file %s): wait for it to end, "
                                    "or give another --output-dir" % (output_dir, owner, path))
            else:
                print("%s: process %d that held it no longer runs; taking it over" % (path, owner), file=sys.stderr)
            if read_owner(path) == owner:  # not taken over by another process since it was read
                os.remove(path)
            continue
        with os.fdopen(descriptor, "w") as writer:
            writer.write("%d\n" % os.getpid())
        _held[path] = created
        return path
    raise OutputDirBusy("%s holds no process id: if no run is using %s, delete it" % (path, output_dir))


def read_owner(path):
    """The process id in a lock file; None when it is gone or still empty."""
    try:
        with open(path) as reader:
            text = reader.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def release_output_dirs():
    """Remove this process's lock files, and the folders made for them that stayed empty."""
    for path, created in list(_held.items()):
        if read_owner(path) == os.getpid():
            os.remove(path)
        if created and not os.listdir(created):
            os.rmdir(created)
        del _held[path]
