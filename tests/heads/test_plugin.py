"""The README's promise, proved: adding a head takes one file, one config part and one entry in
``kpreg/heads/__init__.py`` — the head suite, the config suite and the benchmark smoke test then cover it with no
other edit. The test writes such a head into a copy of the repository and runs those suites there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # runs the head, config and benchmark suites in a copy of the repository

HEAD_FILE = '''"""A test-only head: expectation of a softmax map (soft-argmax) trained with an L2 loss in normalised units."""

from __future__ import annotations

import torch

from kpreg.coords import cells_to_pixels, pixels_to_cells, pixels_to_normalized
from kpreg.heads.neck import SpatialHead
from kpreg.losses import coord_loss_per_joint
from kpreg.ops import bilinear_splat, soft_argmax, softmax_2d


class MyHead(SpatialHead):
    name = "myhead"
    variants = {"my head": {}}

    def loss(self, raw, keypoints, visibility, scale=None):
        size = self.spec.input_size
        pred = pixels_to_normalized(cells_to_pixels(soft_argmax(raw.float()), self.output_stride), size)
        return {"l2": coord_loss_per_joint(pred, pixels_to_normalized(keypoints.float(), size), "l2")}

    def decode(self, raw):
        coords = cells_to_pixels(soft_argmax(raw.float()), self.output_stride)  # (B, K, 2) input pixels
        return coords, softmax_2d(raw).flatten(-2).amax(-1)

    def ideal_output(self, keypoints):
        cells = pixels_to_cells(keypoints.float(), self.output_stride)
        return bilinear_splat(cells, self.grid_size).clamp(min=1e-30).log()
'''

HEAD_PART = """model:
  head:
    class_path: kpreg.heads.MyHead
    init_args:
      output_stride: 4
"""


def test_a_new_head_needs_one_file_one_config_part_and_one_registration(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".venv", "runs", "wandb", "__pycache__", ".pytest_cache", "*.png")
    for part in ("kpreg", "tests", "configs", "benchmarks"):
        shutil.copytree(REPO / part, repo / part, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", repo / "pyproject.toml")
    # 1. one file
    (repo / "kpreg" / "heads" / "myhead.py").write_text(HEAD_FILE)
    # 2. one config part
    (repo / "configs" / "heads" / "myhead.yaml").write_text(HEAD_PART)
    # 3. one registration: its import and its __all__ entry
    init = repo / "kpreg" / "heads" / "__init__.py"
    text = init.read_text().replace("__all__ = [", "from kpreg.heads.myhead import MyHead\n\n__all__ = [\"MyHead\", ", 1)
    init.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    suites = ["tests/heads/test_suite.py", "tests/cli/test_configs.py", "tests/test_benchmarks.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "-k", "MyHead or myhead or heads.py or every", *suites],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = [line for line in proc.stdout.splitlines() if line.startswith("PASSED")]
    covered = {s for s in ("test_shapes_range_and_backward[MyHead]", "test_round_trip_within_the_declared_tolerance",
                           "test_flip_merge_is_mirror_symmetric", "test_data_part_x_head_part_trains_and_validates",
                           "myhead", "heads.py") if any(s in line for line in passed)}
    assert len(covered) == 6, (covered, passed)  # the suites ran on the new head, in every part of the promise
