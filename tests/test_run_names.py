"""Run directories: one documented way to name a run (paths.run_dir=DIR is that directory, with Hydra's
notes in it and nothing stray beside it), names that tell runs apart, no empty log files."""

import json

import pytest
import yaml
from conftest import TINY, run_cli


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


@pytest.mark.slow
def test_an_explicit_run_dir_is_the_run_dir_and_nothing_is_made_beside_it(tmp_path):
    out = run_cli(*TINY, "model.lr=2e-5", f"paths.run_dir={tmp_path / 'mine'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no runs/default/<time>_... beside it
    have = files_under(tmp_path / "mine")
    for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "config.yaml", "summary.json"):
        assert name in have, have
    assert not [f for f in have if f.endswith(".log")]  # no empty grelu-train.log
    assert "model.lr=2e-5" in yaml.safe_load((tmp_path / "mine" / ".hydra" / "overrides.yaml").read_text())

    # a refused command into the finished run changes nothing, Hydra's notes included
    before = {f: (tmp_path / "mine" / f).read_bytes() for f in have if f != ".lock"}
    again = run_cli(*TINY, "model.lr=2e-5", f"paths.run_dir={tmp_path / 'mine'}", cwd=tmp_path)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert {f: (tmp_path / "mine" / f).read_bytes() for f in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


@pytest.mark.slow
def test_default_run_dirs_are_named_by_their_overrides(tmp_path):
    names = []
    for lr in ("1e-5", "2e-5"):
        out = run_cli(*TINY, f"model.lr={lr}", f"paths.root={tmp_path / 'runs'}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        run_dir = out.stdout.strip().splitlines()[-1]
        names.append(run_dir.rsplit("/", 1)[1])
        assert json.loads(open(f"{run_dir}/summary.json").read())["lr"] == float(lr)
        assert not [f for f in files_under(tmp_path / "runs") if f.endswith(".log")]
    assert "_grelu_s0_" in names[0] and "model.lr=1e-5" in names[0] and "model.lr=2e-5" in names[1]
    assert "model.width=200" in names[0] and "paths.root" not in names[0]
