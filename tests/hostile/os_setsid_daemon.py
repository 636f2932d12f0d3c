# expect: build
# message: daemon started
# message-hook: sandbox: os.fork is not allowed
# static: skip
# Double fork + setsid: a grandchild in its own session, outside the candidate's process group, that
# would outlive the candidate. The test checks that no process of the sandbox uids survives. (The
# grandchild must not raise: it would end in the worker's error path and race to write the result.)
import contextlib
import os
import subprocess
import time


def build_model(input_shape, num_classes):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with contextlib.suppress(OSError):  # no sleep binary in the minimal view: stay a daemon
                subprocess.Popen(["sleep", "1000"], start_new_session=True)
            while True:
                time.sleep(1000)
        os._exit(0)
    os.wait()
    raise RuntimeError("daemon started")
