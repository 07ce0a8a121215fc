"""Embedder details that the speed work relies on: preprocessing equal to open_clip's own."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from imagegen import product_image
from PIL import Image

from visualfinder.embedder import Embedder


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


def test_openmp_workers_wait_passively_unless_the_user_says_otherwise():
    """Spinning OpenMP workers made a batch-1 query 15-25x slower on a busy 2-core machine."""
    code = "import os, visualfinder.service, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.strip() == "PASSIVE", out.stderr[-2000:]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.strip() == "ACTIVE", out.stderr[-2000:]
