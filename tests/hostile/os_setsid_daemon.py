# expect: build
# message: daemon started
# message-hook: sandbox: os.fork is not allowed
# static: skip
# Double fork + setsid: a grandchild in its own session, outside the candidate's process group, that
# would outlive the candidate. The test checks that no process of the sandbox uids survives.
import os
import subprocess


def build_model(input_shape, num_classes):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            subprocess.Popen(["sleep", "1000"], start_new_session=True)
            while True:
                os.system("sleep 1000")
        os._exit(0)
    os.wait()
    raise RuntimeError("daemon started")
