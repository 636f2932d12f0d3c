# expect: build
# message: env-probe found []
# static: skip
# Looks for keys and tokens everywhere a process can see environments: its own os.environ,
# /proc/self/environ, pid 1, its parent, and every /proc/*/environ it can open (bytes paths). With the
# hook the reads are refused; without it the scrubbed environment, the pid namespace (only the zygote
# and the candidate are visible) and the non-dumpable uid drop leave nothing to find. Everything it
# read goes to stdout (copied into the candidate's output folder), the hits into the message.
import os

MARKERS = ("sk-", "hf_", "OPENAI", "HF_TOKEN", "SECRET", "secret")


def build_model(input_shape, num_classes):
    seen = {"os.environ": "\n".join(f"{k}={v}" for k, v in os.environ.items())}
    paths = ["/proc/self/environ", "/proc/1/environ", f"/proc/{os.getppid()}/environ"]
    paths += [f"/proc/{p}/environ" for p in os.listdir("/proc") if p.isdigit()]
    for path in paths:
        try:
            with open(os.fsencode(path), "rb") as f:
                seen[path] = f.read().replace(b"\0", b"\n").decode(errors="replace")
        except OSError as exc:
            seen[path] = f"<{type(exc).__name__}: {exc.strerror}>"
    for path, text in seen.items():
        print(f"== {path}\n{text}")
    hits = sorted(
        {line for text in seen.values() for line in text.splitlines() if any(m in line for m in MARKERS)}
    )
    raise RuntimeError(f"env-probe found {hits}")
