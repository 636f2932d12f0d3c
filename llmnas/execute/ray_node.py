"""The node's side of the Ray executor (llmnas/execute/ray.py): a Ray actor holding one warm sandbox slot.

It wraps a one-slot LocalPool on its node, writes the run's data there once, evaluates jobs and sends
back the bytes of the files the sandbox left; the driver validates everything it gets.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from llmnas.execute.base import output_limits
from llmnas.execute.stale import sweep_sandbox
from sandbox.protocol import DATA_FILES, Job, Limits


class NodeSlot:
    """Runs on a Ray node (wrapped by ``ray.remote`` on the driver): one warm sandbox slot."""

    def __init__(self, limits_json: str, preload: tuple[str, ...]):
        from llmnas.execute.local import LocalPool

        self.limits = Limits.model_validate_json(limits_json)
        self._gpu_ids = self._assigned_gpus()
        self.pool = LocalPool(
            1, self.limits, preload=preload, gpus=[",".join(self._gpu_ids)] if self._gpu_ids else 0
        )
        self._data_ready = False
        self._outputs = output_limits(self.limits)

    @staticmethod
    def _assigned_gpus() -> list[str]:
        """The GPUs Ray assigned to this actor: the sandbox's scrubbed environment gets exactly these."""
        import ray

        return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]

    def info(self) -> dict:
        import ray

        from llmnas.version import VERSION

        return {
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "root": str(self.pool.root),
            "gpus": self._gpu_ids,
            "llmnas": VERSION,
        }

    def sweep(self, node: str, root: str) -> bool:
        """Clean up after a dead actor that ran on this node: kill what still runs in its sandbox
        folder (its zygote and candidate outlive it) and remove the folder."""
        import ray

        return node == ray.util.get_node_ip_address() and sweep_sandbox(Path(root))

    def _write_data(self, boxed: list) -> None:
        import numpy as np
        import ray

        arrays = ray.get(boxed[0])
        folder = self.pool.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        for name in DATA_FILES:
            path = folder / name
            np.save(path, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            path.chmod(0o644)
        self._data_ready = True

    def evaluate(self, job_json: str, boxed_data: list) -> dict[str, bytes]:
        """Evaluate one job in this node's sandbox; the bytes of what it left, by file name."""
        if not self._data_ready:
            self._write_data(boxed_data)
        job = Job.model_validate_json(job_json)
        job = job.model_copy(update={"data_dir": str(self.pool.data_dir)})
        out = Path(tempfile.mkdtemp(prefix="out-", dir=self.pool.root))
        try:
            self.pool.submit(job, out).result()
            files = {}
            for name, limit in self._outputs.items():
                path = out / name
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= limit:
                    files[name] = path.read_bytes()
            return files
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def close(self) -> None:
        self.pool.close()
