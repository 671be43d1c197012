"""A Python shaped like the bare GPU machine's, built from this one's installs in seconds.

The GPU machine's python3 holds the packages of benchmarks/gpu_image.txt (torch, Lightning, numpy,
scipy, pandas, matplotlib, pytest, hypothesis, ...) and none of the suite's others. ``bare_python``
makes a venv (no system site-packages) whose site-packages links exactly the distributions of that
list that this Python has installed, file by file as their RECORDs name them, nothing else: Hydra,
Optuna, W&B, psycopg and the suite itself are absent until the carried wheels bring them."""

from __future__ import annotations

import importlib.metadata as md
import os
import site
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from offline_wheels import image_packages, norm  # noqa: E402


def _site_dirs() -> list[str]:
    return [d for d in site.getsitepackages() if d.startswith(sys.prefix) and Path(d).is_dir()]


def bare_python(root: Path) -> Path:
    """The interpreter of a venv at ``root`` that sees only the image's packages; returns its path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    py = root / "bin" / "python"
    target = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    image = image_packages()
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)  # (site dir, top-level entry) -> distributions
    chosen = []
    for src in _site_dirs():
        for dist in md.distributions(path=[src]):
            name = norm(dist.metadata["Name"])
            for f in dist.files or []:
                if f.parts[0] != "..":
                    owners[(src, f.parts[0])].add(name)
            if name in image and dist.files:
                chosen.append((src, dist))
    for src, dist in chosen:
        for f in dist.files:
            if f.parts[0] == ".." or "__pycache__" in f.parts:
                continue
            top = f.parts[0]
            if owners[(src, top)] <= image:  # the whole entry belongs to the image: one link
                link, real = target / top, Path(src) / top
            else:  # shared with a distribution the machine lacks (a namespace folder): this file alone
                link, real = target / f, Path(src) / f
            if link.exists() or link.is_symlink() or not real.exists():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(real, link)
    return py
