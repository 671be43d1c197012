"""The wheel folder that travels to a GPU machine without network (`make wheels`: .whl/, git-ignored).

    python benchmarks/offline_wheels.py --list                  # what the GPU image lacks, pinned
    python benchmarks/offline_wheels.py --download .whl         # those, as CPython 3.12 x86_64 wheels
    python benchmarks/offline_wheels.py --from-installed DIR    # those, repacked from this Python's own install

The list is computed, never typed: every distribution that pyproject.toml's dependencies and `dev` extra
need, followed through their own requirements as installed here (so at the versions the suite is tested
with), minus the packages `gpu_image.txt` says the GPU machine's image already holds (and what those need).
--download asks the package registry (run it where one is reachable); --from-installed needs none, and
its wheels suit only a Python of this one's version and platform (the bare-machine rehearsal's test).
Exit 0 done, 1 a wheel could not be had (named), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata as md
import io
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
PLATFORMS = ["manylinux_2_34", "manylinux_2_31", "manylinux_2_28", "manylinux_2_27", "manylinux_2_24",
             "manylinux_2_17", "manylinux2014", "manylinux1"]
TARGET_PYTHON = "3.12"  # the GPU machine's


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = HERE / "gpu_image.txt") -> set[str]:
    return {norm(ln.strip()) for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def roots(pyproject: Path = HERE.parent / "pyproject.toml") -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return project["dependencies"] + project.get("optional-dependencies", {}).get("dev", [])


def needed(image: set[str], python: str | None = None) -> dict[str, str]:
    """{distribution: installed version} for everything the suite needs that the image lacks."""
    env = default_environment()
    if python:
        env.update(python_version=python, python_full_version=python + ".0")
    found: dict[str, str] = {}
    todo = [Requirement(r) for r in roots()]
    seen = set()
    while todo:
        req = todo.pop()
        key = (norm(req.name), frozenset(req.extras))
        if key in seen or norm(req.name) in image:
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            sys.exit(f"offline-wheels: error: {req.name} (needed by the suite) is not installed here; "
                     "run this with the suite's environment (make setup)")
        found[norm(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({**env, "extra": e}) for e in [""] + sorted(req.extras)):
                todo.append(sub)
    return dict(sorted(found.items()))


def download(pins: dict[str, str], dest: Path) -> list[str]:
    """Binary wheels for CPython 3.12 on x86_64 Linux; a source-only release is built into a wheel."""
    plat = [a for p in PLATFORMS for a in ("--platform", f"{p}_x86_64")]
    missing = []
    for name, version in pins.items():
        spec = f"{name}=={version}"
        got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                              "--python-version", TARGET_PYTHON, "--implementation", "cp", *plat, "-d", str(dest),
                              spec], capture_output=True, text=True)
        if got.returncode != 0:  # e.g. antlr4-python3-runtime: a source archive only, pure Python
            got = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), spec],
                                 capture_output=True, text=True)
        if got.returncode != 0:
            missing.append(f"{spec}: {(got.stderr.strip().splitlines() or ['?'])[-1]}")
    return missing


def repack(name: str, dest: Path) -> Path:
    """A wheel of an installed distribution, from the files its RECORD lists (scripts are rebuilt by pip)."""
    dist = md.distribution(name)
    site = Path(dist.locate_file(""))
    info = next(f for f in dist.files if f.parts[0].endswith(".dist-info")).parts[0]
    tags = [ln.split(":", 1)[1].strip() for ln in dist.read_text("WHEEL").splitlines() if ln.startswith("Tag:")]
    parts = [list(dict.fromkeys(t.split("-")[i] for t in tags)) for i in range(3)]  # py2-none-any, py3-none-any
    wheel = dest / f"{info[:-len('.dist-info')]}-{'-'.join('.'.join(p) for p in parts)}.whl"  # -> py2.py3-none-any
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    rows, buf = [], io.StringIO()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in dist.files:
            if f.parts[0] == ".." or "__pycache__" in f.parts or (f.parts[0] == info and f.name in skip):
                continue
            data = (site / f).read_bytes()
            z.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append([str(f), f"sha256={digest}", str(len(data))])
        csv.writer(buf, lineterminator="\n").writerows(rows + [[f"{info}/RECORD", "", ""]])
        z.writestr(f"{info}/RECORD", buf.getvalue())
    return wheel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--list", action="store_true")
    g.add_argument("--download", metavar="DIR")
    g.add_argument("--from-installed", metavar="DIR")
    a = p.parse_args()
    dest = Path(a.download or a.from_installed or ".")
    if not a.list and dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        p.error(f"{dest} exists and is not an empty folder: name a new one (two versions of a wheel stop the install)")
    pins = needed(image_packages(), None if a.from_installed or a.list else TARGET_PYTHON)
    if a.list:
        print("\n".join(f"{k}=={v}" for k, v in pins.items()))
        return
    dest.mkdir(parents=True, exist_ok=True)
    missing = download(pins, dest) if a.download else []
    if a.from_installed:
        for name in pins:
            repack(name, dest)
    size = sum(f.stat().st_size for f in dest.glob("*.whl"))
    print(f"{len(list(dest.glob('*.whl')))} wheels in {dest}, {size / 1e6:.1f} MB")
    for line in missing:
        print(f"offline-wheels: missing {line}", file=sys.stderr)
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
