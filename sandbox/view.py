"""The file system a candidate sees: a new root that holds only what evaluating it needs.

``enter`` (the zygote, or a fresh worker, once, after preload, as the first process of its own mount
namespace) mounts a tmpfs root, binds into it what evaluation needs at the same paths, covers the
datasets that Python packages ship, and pivot_roots into it; the old root is detached. Every candidate
is forked from there, and its cell (sandbox/cell.py) adds fresh scratch folders and a working tmpfs on
top. What the view holds (``plan`` computes it, ``describe`` lists it):

  /proc /sys                   the namespace's own /proc (its pid namespace), /sys (the cells' cgroups)
  /dev                         null zero full random urandom, nvidia* where present, fd and std* links
  /etc/ld.so.cache             the loader's index, for libraries loaded late (CUDA's driver); no other /etc
  library folders, read-only   /lib*, /usr/lib*, /usr/local/lib*, each Python prefix's lib and lib64, the
                               folder of every library this process has mapped; in them every
                               python*/site-packages and dist-packages not on sys.path is empty
  Python, read-only            every sys.path folder under a Python prefix, and the package folder of every
                               module imported from elsewhere: of a source checkout, the `sandbox` package
  /tmp /var/tmp /run /dev/shm  empty tmpfs
  the pool's folder            at its own path, read-write: job files, the data folder, working folders

Datasets in the Python folders are covered with an empty read-only folder or file: files named like
data (``DATA_FILE``: tables, arrays, pickles, compressed files, MNIST's idx files) and known dataset
folders (``DATASET_FOLDERS``); a folder of nothing but data is covered whole.

Not in the view: home folders (but the path down to a Python prefix), source checkouts, run folders,
the user's data files, other pools and runs, /etc (but the loader's index), /usr/share, /usr/bin, /opt,
/var, /srv, /mnt, /media. What it does NOT hide: the code and libraries it holds (data a package keeps
under another name or inside a library folder stays readable), /proc and /sys of the namespace, the
pool's own folder (modes and the uid protect what is in it: other slots' working folders are 0700).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field

from sandbox import libc
from sandbox.mounts import INODES, POOL, SHARED, ZYGOTE_TMP_MB, _under

SYSTEM_LIBS = (
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
    "/usr/local/lib",
    "/usr/local/lib64",
)
DEVICES = ("null", "zero", "full", "random", "urandom")
GPU_DEVICE = re.compile(r"nvidia")  # nvidia0…, nvidiactl, nvidia-uvm(-tools), nvidia-modeset, nvidia-caps/
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
LOADER_CACHE = "/etc/ld.so.cache"
LOADER_CONF = ("/etc/ld.so.conf", "/etc/ld.so.conf.d")
DATA_FILE = re.compile(
    r"\.(csv|tsv|npz|npy|arff|mat|parquet|feather|h5|hdf5|pkl|pickle|joblib|sav|svmlight|libsvm|data|dat)"
    r"(\.[a-z0-9]+)?$|\.(gz|gzip|bz2|xz|lzma|zst|zip|tgz|tar|7z)$|ubyte",
    re.IGNORECASE,
)
CODE_FILE = re.compile(r"\.(py|pyc|pyd|so)$|\.so\.", re.IGNORECASE)
DATASET_FOLDERS = ("sklearn/datasets/data", "sklearn/datasets/descr", "sklearn/datasets/images")
PACKAGE_FOLDERS = ("site-packages", "dist-packages")
ROOT_MB = 16
CACHE = ".view-masks.json"  # in the pool's folder
_HIDDEN_SOURCES = "/.llmnas"  # in the new root: the empty folder and file that cover what is hidden


@dataclass
class Plan:
    """Paths on the host, bound at the same paths in the view (``links``: literal paths whose symbolic
    links are recreated there, so that e.g. /lib -> usr/lib still resolves)."""

    libraries: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # package folders not on sys.path: empty
    python: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)  # imported from elsewhere (the sandbox package)
    pool: str | None = None
    devices: list[str] = field(default_factory=list)
    masked_folders: list[str] = field(default_factory=list)
    masked_files: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


def _real(path: str) -> str:
    return os.path.realpath(path)


def _outermost(paths) -> list[str]:
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: (len(p), p)):
        if not _under(path, tuple(kept)):
            kept.append(path)
    return kept


def prefixes() -> tuple[str, ...]:
    return tuple({_real(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)})


def _mapped_folders() -> set[str]:
    """Folders of the files this process has mapped (libraries loaded so far)."""
    found = set()
    with contextlib.suppress(OSError), open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/") and not parts[5].rstrip().endswith("(deleted)"):
                found.add(os.path.dirname(parts[5].rstrip("\n")))
    return found


def _loader_folders() -> set[str]:
    """The folders /etc/ld.so.conf names (what ld.so.cache points into)."""
    files = [LOADER_CONF[0]]
    with contextlib.suppress(OSError):
        files += sorted(
            os.path.join(LOADER_CONF[1], n) for n in os.listdir(LOADER_CONF[1]) if n.endswith(".conf")
        )
    found = set()
    for name in files:
        with contextlib.suppress(OSError), open(name) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line.startswith("/"):
                    found.add(line)
    return found


def _excluded(path: str, pool: str | None) -> bool:
    roots = ("/proc", "/sys", "/dev", *SHARED, *((pool,) if pool else ()))
    return _under(path, roots)


def _module_paths(covered: tuple[str, ...]) -> list[str]:
    """The package folder (or file) of every imported module that lies outside ``covered``."""
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not os.path.isabs(file) or not os.path.exists(file):
            continue
        if _under(_real(file), covered):
            continue
        top = sys.modules.get(name.partition(".")[0])
        paths = [p for p in getattr(top, "__path__", None) or () if isinstance(p, str) and os.path.isdir(p)]
        if name == "__main__" or not paths:
            paths = [file]
        found += [p for p in paths if not _under(_real(p), covered)]
    return found


def _scan(path: str, skip: tuple[str, ...], folders: list[str], files: list[str]) -> bool:
    """Walk ``path`` (but the folders in ``skip``), adding to ``folders`` and ``files`` what to cover;
    returns whether everything below is data (then the caller may cover the folder whole)."""
    mine_d: list[str] = []
    mine_f: list[str] = []
    only_data = True
    try:
        entries = list(os.scandir(path))
    except OSError:
        return False
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if _under(entry.path, skip):
                only_data = False
            elif _scan(entry.path, skip, mine_d, mine_f):
                mine_d.append(entry.path)
            else:
                only_data = False
        elif not entry.is_symlink() and DATA_FILE.search(entry.name):
            mine_f.append(entry.path)
        else:
            only_data = False
    if only_data and (mine_d or mine_f):
        return True  # nothing but data below: the caller covers this folder whole
    folders += mine_d
    files += mine_f
    return False


def data_masks(trees: list[str], skip: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The folders and files to cover in ``trees`` (but not under ``skip``): data files, folders of
    nothing but data, and DATASET_FOLDERS."""
    folders: list[str] = []
    files: list[str] = []
    for tree in trees:
        if _scan(tree, skip, folders, files):
            folders.append(tree)
        folders += [os.path.join(tree, f) for f in DATASET_FOLDERS if os.path.isdir(os.path.join(tree, f))]
    folders = _outermost(folders)
    return folders, [f for f in files if not _under(f, tuple(folders))]


def _cached_masks(pool: str | None, trees: list[str], skip: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """data_masks, computed once per pool: the first zygote walks the trees (about 0.3 s for torch,
    numpy and scikit-learn) and leaves the answer in the pool's folder (root's, mode 600) for the rest."""
    if pool is None or os.geteuid() != 0:
        return data_masks(trees, skip)
    key = {"trees": trees, "skip": list(skip)}
    lock = os.open(os.path.join(pool, CACHE + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = os.path.join(pool, CACHE)
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                cached = json.load(f)
            if cached.get("key") == key:
                return cached["folders"], cached["files"]
        folders, files = data_masks(trees, skip)
        tmp = f"{path}.{os.getpid()}"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "w") as f:
            json.dump({"key": key, "folders": folders, "files": files}, f)
        os.replace(tmp, path)
        return folders, files
    finally:
        os.close(lock)


def plan(pool: str | None = None) -> Plan:
    """What the view of this interpreter holds (nothing is mounted here)."""
    pool = _real(pool) if pool else None
    pre = prefixes()
    p = Plan(pool=pool)
    on_path = {_real(e) for e in sys.path if e and os.path.isdir(e)}
    python = [e for e in on_path if _under(e, pre) and not (pool and _under(e, (pool,)))]
    literal_libs = [d for d in SYSTEM_LIBS if os.path.isdir(d)]
    literal_libs += [
        os.path.join(x, sub) for x in pre for sub in ("lib", "lib64") if os.path.isdir(os.path.join(x, sub))
    ]
    literal_libs += [
        d for d in _mapped_folders() | _loader_folders() if os.path.isdir(d) and not _excluded(d, pool)
    ]
    p.python = _outermost(python)
    p.libraries = [d for d in _outermost(_real(d) for d in literal_libs) if not _under(d, tuple(p.python))]
    for lib in p.libraries:
        with contextlib.suppress(OSError):
            for version in os.listdir(lib):
                for sub in PACKAGE_FOLDERS if version.startswith("python") else ():
                    folder = os.path.join(lib, version, sub)
                    if os.path.isdir(folder) and not any(_under(t, (folder,)) for t in p.python):
                        p.hidden.append(folder)
    covered = (*p.python, *p.libraries, *((pool,) if pool else ()))
    p.modules = _outermost(_real(m) for m in _module_paths(covered))
    trees = _outermost([*p.python, *(m for m in p.modules if os.path.isdir(m))])
    p.masked_folders, p.masked_files = _cached_masks(pool, trees, tuple(p.hidden))
    p.devices = [n for n in DEVICES if os.path.exists(f"/dev/{n}")]
    with contextlib.suppress(OSError):
        p.devices += sorted(n for n in os.listdir("/dev") if GPU_DEVICE.match(n))
    p.links = sorted(
        {*literal_libs, *(e for e in sys.path if e and os.path.isdir(e)), *(pool and [pool] or [])}
    )
    return p


def describe(p: Plan) -> list[str]:
    """One line per mount of the view, for docs and reports."""
    lines = [f"{m} (scratch tmpfs)" for m in SHARED]
    lines += [
        "/proc (rbind)",
        "/sys (rbind)",
        *(f"/dev/{d} (bind)" for d in p.devices),
        f"{LOADER_CACHE} (ro)",
    ]
    lines += [f"{d} (ro)" for d in (*p.libraries, *p.python, *p.modules)]
    lines += [f"{d} (empty)" for d in (*p.hidden, *p.masked_folders, *p.masked_files)]
    if p.pool:
        lines.append(f"{p.pool} (rw)")
    return lines


# --------------------------------------------------------------------------- building it
def _mkdirs(path: str) -> None:
    """Create the folders of ``path`` (inside the new root, no symbolic links on the way), mode 755."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        os.mkdir(folder, 0o755)
        os.chmod(folder, 0o755)


def _target(root: str, path: str, is_dir: bool) -> str:
    target = root + path
    if is_dir:
        _mkdirs(target)
    elif not os.path.lexists(target):
        _mkdirs(os.path.dirname(target))
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o444))
    return target


def _bind(source: str, target: str, readonly: bool = True) -> None:
    libc.mount(source, target, None, libc.MS_BIND | libc.MS_REC)
    if readonly:
        locked = os.statvfs(target).f_flag & (libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
        libc.mount(None, target, None, libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY | locked)


def _links(root: str, literal: str) -> None:
    """Recreate in the new root each symbolic link on the way to ``literal`` (/lib -> usr/lib)."""
    at = "/"
    for part in literal.strip("/").split("/"):
        path = os.path.join(at, part)
        if os.path.islink(path):
            where = root + os.path.join(_real(at), part)
            if not os.path.lexists(where):
                _mkdirs(os.path.dirname(where))
                os.symlink(os.readlink(path), where)
        at = _real(path)


def build(p: Plan, root: str) -> None:
    """Mount the view described by ``p`` at ``root`` (an empty folder); raises OSError on any failure."""
    libc.mount(
        "llmnas-view",
        root,
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV,
        f"mode=0755,size={ROOT_MB}m,nr_inodes={INODES}",
    )
    empty_dir, empty_file = root + _HIDDEN_SOURCES + "/empty", root + _HIDDEN_SOURCES + "/empty-file"
    _mkdirs(empty_dir)
    os.close(os.open(empty_file, os.O_CREAT | os.O_WRONLY, 0o444))
    os.chmod(empty_dir, 0o555)
    _mkdirs(root + "/dev")
    for folder, mode in SHARED.items():
        options = f"mode={mode},size={ZYGOTE_TMP_MB}m,nr_inodes={INODES}"
        libc.mount(
            "llmnas-tmp", _target(root, folder, True), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, options
        )
    for special in ("/proc", "/sys"):
        _bind(special, _target(root, special, True), readonly=False)
    for name in p.devices:
        host = f"/dev/{name}"
        _bind(host, _target(root, host, os.path.isdir(host)), readonly=False)
    for name, to in DEV_LINKS.items():
        os.symlink(to, f"{root}/dev/{name}")
    if os.path.isfile(LOADER_CACHE):
        _bind(LOADER_CACHE, _target(root, LOADER_CACHE, False))
    for path in sorted(p.libraries, key=len):
        _bind(path, _target(root, path, True))
    for path in sorted(p.python, key=len) + p.modules:
        _bind(path, _target(root, path, os.path.isdir(path)))
    for path in p.hidden:
        _bind(empty_dir, root + path)
    if p.pool:
        _bind(p.pool, _target(root, p.pool, True), readonly=False)
    for path in p.masked_folders:
        _bind(empty_dir, root + path)
    for path in p.masked_files:
        _bind(empty_file, root + path)
    for literal in p.links:
        _links(root, literal)
    libc.mount(None, root, None, libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV)


def _pivot(root: str) -> None:
    """Make ``root`` the root of this mount namespace and detach the old one."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    new = os.open(root, os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.fchdir(new)
        try:
            libc.pivot_root(".", ".")
        except OSError:  # the initial ramfs cannot be pivoted away from: move the root over it instead
            libc.mount(".", "/", None, libc.MS_MOVE)
            os.chroot(".")
        else:
            os.fchdir(old)
            libc.umount(".")
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def enter(pool: str | None = None) -> Plan:
    """Build the view in this process's mount namespace (which must be its own) and move into it. The
    working folder is kept when the view has it. Raises OSError when a step fails."""
    pool = pool if pool is not None else os.environ.get(POOL) or None
    cwd = os.getcwd()
    p = plan(pool)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    root = tempfile.mkdtemp(prefix="llmnas-view-", dir="/tmp")
    build(p, root)
    _pivot(root)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    return p
