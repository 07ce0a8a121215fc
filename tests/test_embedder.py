"""Embedder details that the speed work relies on: preprocessing equal to open_clip's own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import torch
from imagegen import product_image
from PIL import Image

from visualfinder.models.embedder import Embedder


def test_preprocess_gives_exactly_what_the_model_transform_gives():
    embedder = Embedder("vf-tiny", "none", "cpu", backend="torch").load()
    images = [
        product_image(4, (500, 375)),
        product_image(5, (90, 300)),
        Image.new("RGB", (64, 64), (255, 0, 0)),
    ]
    for image in images:
        ours = embedder.preprocess(image)
        theirs = embedder._transform(image)
        assert ours.shape == theirs.shape and ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_embeddings_do_not_depend_on_how_the_batch_was_assembled():
    embedder = Embedder("vf-tiny", "none", "cpu", backend="torch").load()
    images = [product_image(seed) for seed in range(5)]
    together = embedder.embed_images(images)
    one_by_one = np.vstack([embedder.embed_images([image]) for image in images])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


# Every native library with an OpenMP runtime (torch's libgomp, numkong's copy under usearch)
# reads OMP_WAIT_POLICY once, when it loads: record what each saw, in the CLI's import order.
_WAIT_POLICY_PROBE = """
import os, sys
seen = {}
def hook(event, args):
    if event == "import" and args[0] in ("usearch", "numkong", "torch", "onnxruntime") and args[0] not in seen:
        seen[args[0]] = os.environ.get("OMP_WAIT_POLICY")
sys.addaudithook(hook)
import visualfinder.cli.main
import visualfinder.library.facade  # what a command imports after parsing (--help stops before)
from visualfinder.models.embedder import Embedder
Embedder("vf-tiny", "none", "cpu", backend="torch").load()
import onnxruntime
print(sorted(seen.items()))
"""


def test_openmp_workers_wait_passively_unless_the_user_says_otherwise():
    """Spinning OpenMP workers made a batch-1 query 15-25x slower on a busy 2-core machine, and
    `index` from the CLI 3-6x slower: usearch loaded numkong's OpenMP runtime before the policy
    was set (tests/benchmarks/test_omp_wait.py)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for policy in (None, "ACTIVE"):
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        out = subprocess.run([sys.executable, "-c", _WAIT_POLICY_PROBE], capture_output=True, text=True, env=env,
                             timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        seen = dict(ast.literal_eval(out.stdout.strip().splitlines()[-1]))
        assert {"usearch", "torch", "onnxruntime"} <= set(seen), seen
        assert set(seen.values()) == {policy or "PASSIVE"}, seen
