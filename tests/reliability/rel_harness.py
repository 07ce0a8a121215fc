"""Tools of the reliability suite: real subprocesses to kill, and the checks a crashed library must pass.

Everything here looks at real files: the SQLite catalog (through a plain sqlite3 connection,
not our Catalog class, so a bug there cannot hide itself), the USearch file, the thumbnails.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from PIL import Image

import visualfinder
from visualfinder.config import Settings
from visualfinder.library.facade import CATALOG_FILE, open_library
from visualfinder.library.live_index import INDEX_FILE
from visualfinder.models.embedder import Embedder

# VF_RELIABILITY_LONG=1 runs the long part: many more kill trials and fuzz cases.
LONG = os.environ.get("VF_RELIABILITY_LONG", "") not in ("", "0")
# One seed for every random choice of the suite, so a failure can be replayed (VF_RELIABILITY_SEED).
SEED = int(os.environ.get("VF_RELIABILITY_SEED", "20261127"))


def scaled(ci: int, long: int) -> int:
    """How many trials/cases to run: `ci` in the default run, `long` on demand."""
    return long if LONG else ci


def rng_for(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


def tiny_model() -> Embedder:
    """The test model's identity and dimension (no torch import needed)."""
    return Embedder("vf-tiny", "none", "cpu")


def write_settings(data_dir: Path, **values: object) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "settings.toml").write_text(tomli_w.dumps(values), encoding="utf-8")


# --- subprocesses --------------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(visualfinder.__file__).resolve().parent.parent)
    return env


def start_cli(
    args: list[str],
    log_dir: Path,
    prefix: list[str] | None = None,
    *,
    script: Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen:
    """`python -m visualfinder ARGS` in its own session, output to files (a pipe could fill up).

    `script`: run that wrapper of the CLI instead (it takes ARGS); `pass_fds`: kept open for it.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / "stdout.txt", "w")  # noqa: SIM115 - closed by finish()
    err = open(log_dir / "stderr.txt", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [*(prefix or []), sys.executable, *([str(script)] if script else ["-m", "visualfinder"]), *args],
        stdout=out, stderr=err, env=cli_env(), start_new_session=True, pass_fds=pass_fds,
    )  # fmt: skip
    proc.log_files = (out, err, log_dir)  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    """Wait for the process; (return code, stdout, stderr)."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    out, err, log_dir = proc.log_files  # type: ignore[attr-defined]
    out.close()
    err.close()
    return rc, (log_dir / "stdout.txt").read_text(), (log_dir / "stderr.txt").read_text()


def kill9(proc: subprocess.Popen) -> bool:
    """SIGKILL the process; False if it had already exited."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def catalog_generation(data_dir: Path) -> int:
    """The catalog's commit counter as a reader sees it now (-1 before the catalog exists)."""
    path = data_dir / CATALOG_FILE
    if not path.exists():
        return -1
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else -1
    except sqlite3.Error:  # being created right now
        return -1


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll until `predicate` holds (True) or the process exits first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("the process neither reached the kill point nor finished")


def without_dac_prefix() -> list[str] | None:
    """A command prefix that makes file permissions apply even to root (None: impossible here)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


# --- checks --------------------------------------------------------------------------------


@dataclass
class CatalogSnapshot:
    """What a plain sqlite3 reader finds in the catalog file."""

    rows: dict[str, tuple] = field(
        default_factory=dict
    )  # path -> (id, status, error, len(blob), model, thumb)
    generation: int = 0


def check_catalog_file(data_dir: Path, known_paths: set[str] | None = None) -> CatalogSnapshot:
    """The catalog file is sound: integrity, foreign keys, one row per path, well-formed embeddings.

    `known_paths`: every path that existed on disk at some point; a row for anything else is a bug.
    """
    model = tiny_model()
    conn = sqlite3.connect(data_dir / CATALOG_FILE, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        dupes = conn.execute("SELECT path, COUNT(*) FROM images GROUP BY path HAVING COUNT(*) > 1").fetchall()
        assert dupes == []
        snap = CatalogSnapshot()
        snap.generation = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        vectors: dict[int, list[tuple]] = {}
        for image_id, key, blob, vector_gen in conn.execute(
            "SELECT image_id, model_key, vector, vector_gen FROM embeddings"
        ):
            assert vector_gen <= snap.generation, image_id
            vectors.setdefault(image_id, []).append((key, len(blob)))
        for image_id, path, status, error, thumb, size, mtime_ns in conn.execute(
            "SELECT id, path, status, error, thumb_path, size, mtime_ns FROM images"
        ):
            mine = [n for key, n in vectors.pop(image_id, []) if key == model.key]
            if status == "ok":
                assert mine == [2 * model.dim], f"{path}: embeddings {mine}"
                assert thumb and Path(thumb).is_file(), f"{path}: thumbnail {thumb} missing"
                with Image.open(thumb) as im:
                    im.load()  # a committed row never points at a half-written thumbnail
            else:
                assert mine == [] and error, path
            snap.rows[path] = (image_id, status, error, sum(mine), thumb, size, mtime_ns)
        assert vectors == {}  # no embedding without its image
        ids = [r[0] for r in snap.rows.values()]
        assert len(ids) == len(set(ids))
        if known_paths is not None:
            # path_to_db maps odd bytes reversibly; the corpora of these tests use plain names
            assert set(snap.rows) <= known_paths, set(snap.rows) - known_paths
        return snap
    finally:
        conn.close()


@dataclass
class IndexCheck:
    health: str
    vectors: int
    embedded: int


def check_index_on_a_copy(data_dir: Path, scratch: Path) -> IndexCheck:
    """Open a copy of the library as the next process would; its index must match the catalog.

    A copy, so the crashed state itself stays for the next real run to recover from.
    """
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    for name in (CATALOG_FILE, f"{CATALOG_FILE}-wal", f"{CATALOG_FILE}-shm", INDEX_FILE, f"{INDEX_FILE}.json",
                 "settings.toml"):  # fmt: skip
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, scratch / name)
    lib = open_library(Settings.load(scratch))
    try:
        assert lib.index_health in ("ok", "caught up", "rebuilt"), lib.index_health
        assert_index_matches_catalog(lib)
        return IndexCheck(lib.index_health, len(lib.vector_index), lib.catalog.count_embedded(lib.model_key))
    finally:
        lib.close()


def assert_index_matches_catalog(lib) -> None:
    keys = sorted(lib.vector_index.keys().tolist())
    assert keys == sorted(lib.catalog.embedded_ids(lib.model_key).tolist())
    assert len(lib.vector_index) == lib.catalog.count_embedded(lib.model_key)
    assert lib.vector_index.generation == lib.catalog.generation


def assert_each_finds_its_files(libraries, files: list[str], rng: random.Random, samples: int = 10) -> None:
    """Each library finds a sample of `files` as themselves: score ~1 and the same bytes."""
    from searching import search_image

    for lib in libraries:
        for query in rng.sample(files, samples):
            best = search_image(lib, query, k=1)[0]
            assert best.score > 0.999 and Path(best.path).read_bytes() == Path(query).read_bytes()


def files_under(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


def synthetic_library(data_dir: Path, count: int, seed: int = 0, start: int = 0) -> list[int]:
    """A catalog of `count` embedded rows with random unit vectors, as indexing would leave it.

    For tests of the index file, which never look at the images: one real thumbnail is shared
    by every row (as copies share theirs). Returns the new ids.
    """
    import numpy as np

    from visualfinder.catalog.store import Catalog, CatalogChanges, ImageWrite

    model = tiny_model()
    thumb = data_dir / "thumbs" / "synthetic.jpg"
    if not thumb.exists():
        thumb.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 100, 50)).save(thumb, "JPEG")
    catalog = Catalog(data_dir / CATALOG_FILE)
    try:
        folder = catalog.add_folder("/synthetic")
        vectors = np.random.default_rng(seed).standard_normal((count, model.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids: list[int] = []
        for lo in range(0, count, 5000):
            writes = [
                ImageWrite(f"/synthetic/{start + i:07d}.jpg", folder.id, 1000, i, content_hash=f"h{start + i}",
                           width=8, height=8, format="JPEG", embedding=vectors[i], model_key=model.key,
                           thumb_path=str(thumb))
                for i in range(lo, min(count, lo + 5000))
            ]  # fmt: skip
            ids += catalog.apply(CatalogChanges(inserts=writes)).inserted_ids
        return ids
    finally:
        catalog.close()


def delete_rows(data_dir: Path, ids: list[int]) -> None:
    from visualfinder.catalog.store import Catalog, CatalogChanges

    catalog = Catalog(data_dir / CATALOG_FILE)
    try:
        catalog.apply(CatalogChanges(deletes=ids))
    finally:
        catalog.close()


def catalog_fingerprint(data_dir: Path) -> tuple[int, int, str]:
    """(rows, generation, hash of every id, path and embedding): equal means untouched."""
    import hashlib

    conn = sqlite3.connect(data_dir / CATALOG_FILE, timeout=30)
    try:
        digest = hashlib.sha256()
        rows = 0
        for image_id, path, key, blob in conn.execute(
            """SELECT i.id, i.path, e.model_key, e.vector FROM images i
               LEFT JOIN embeddings e ON e.image_id = i.id ORDER BY i.id, e.model_key"""
        ):
            digest.update(f"{image_id}:{path}:{key}:".encode())
            digest.update(blob or b"")
            rows += 1
        generation = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        return rows, generation, digest.hexdigest()
    finally:
        conn.close()


class Workers:
    """Threads that repeat an action until stopped, collecting every exception.

    `on_error` is what a client does at an exception: "stop" ends that client (a soak: the
    first failure is the finding), "continue" records it and goes on after a short pause (a
    load test: every failure is counted). `fail` records a wrong answer that raised nothing.
    """

    def __init__(self, on_error: str = "stop", join_s: float = 60):
        if on_error not in ("stop", "continue"):
            raise ValueError(f"on_error is 'stop' or 'continue', not {on_error!r}")
        self.on_error = on_error
        self.join_s = join_s
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.counts: Counter = Counter()
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def fail(self, what: str) -> None:
        with self._lock:
            self.errors.append(what)

    def repeat(self, name: str, action, pause: float = 0.002) -> None:
        """Run `action` on a thread of its own until `finish`; `pause` between two runs keeps a
        busy client from spinning (and starving the indexer of the GIL)."""

        def loop():
            while not self.stop.is_set():
                try:
                    action()
                except Exception:  # noqa: BLE001 - kept for the test's assertion
                    self.fail(f"{name}: {traceback.format_exc()}")
                    if self.on_error == "stop":
                        return
                    self.stop.wait(0.5)
                else:
                    with self._lock:
                        self.counts[name] += 1
                self.stop.wait(pause)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.join_s)
            assert not thread.is_alive(), f"{thread.name} hangs"
