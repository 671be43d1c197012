"""``grelu-sweep``: one sweep worker. Start it once for one worker, N times (same sweep, same
storage) for N workers on one machine or many; a re-started worker resumes the study.

    grelu-sweep sweep=ackley_width_lr
    grelu-sweep sweep=ackley_width_lr sweep.storage=journal:///shared/fs/study.log     # many machines
    grelu-sweep sweep=ackley_width_lr sweep.storage=postgresql://user@host/optuna      # a cluster

Before it claims a trial a worker checks that one can run here (the trial config composes, validates and can
be built, the devices exist, out_dir and the storage are writable, the storage answers); a trial that fails
for a reason of the machine's (no GPU, a full disk, missing data) goes back to the queue and stops the worker.

Exit codes (lightning_grelu/errors.py: TABLE): 0 done, 2 bad sweep spec or a machine that cannot run its trials
(nothing was lost: the trial in hand is back in the queue), 1 the worker itself crashed, 128+N stopped by
signal N (the trial in hand stopped at an epoch's end with its checkpoint and is back in the queue; start the
worker again to go on). A trial whose own parameters are wrong, or that crashes, is failed with its reason
and the worker goes on.
"""

from __future__ import annotations

from lightning_grelu.signals import Interrupted, raise_on_signals

raise_on_signals()  # first thing: Ctrl-C or SIGTERM is one line and 128+N, never a traceback

import shutil
import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from lightning_grelu.config_check import validate
from lightning_grelu.errors import ConfigError, MachineError, fail, interruption

SWEEP_CONF_DIR = Path(__file__).resolve().parents[1] / "sweep_conf"


def load_spec(overrides: list[str] | None = None, node: dict | None = None):
    """The checked spec, from command-line overrides (composed here) or from a node Hydra composed."""
    from lightning_grelu.sweeps.spec import parse

    if node is None:
        try:
            with initialize_config_dir(config_dir=str(SWEEP_CONF_DIR), version_base="1.3"):
                node = OmegaConf.to_container(compose("grelu_sweep", overrides=whole_mappings(overrides or [])).sweep,
                                              resolve=True)
        except Exception as e:  # unknown sweep name or key
            raise ConfigError(f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    spec = parse(node)
    check_trial_config(spec)
    return spec


def whole_mappings(overrides: list[str]) -> list[str]:
    """``sweep.KEY={...}`` (``sweep.space={model.depth: {...}}``, ``sweep.frontier.cells={model.depth: [1, 2]}``)
    gives the whole mapping: it replaces the spec's. Hydra would merge it into the old one, and refuse a key
    the old one lacks ("Could not override"), so it becomes Hydra's delete-then-add, ``~sweep.KEY
    +sweep.KEY={...}`` (a KEY the spec lacks is then Hydra's one line: "Could not delete")."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    parser, out = OverridesParser.create(), []
    for text in overrides:
        try:
            o = parser.parse_override(text)
        except Exception:  # not an override (a flag), or a malformed one: Hydra says what is wrong with it
            out.append(text)
            continue
        if o.type == OverrideType.CHANGE and o.key_or_group.startswith("sweep.") and isinstance(o.value(), dict):
            out += [f"~{o.key_or_group}", f"+{text}"]
        else:
            out.append(text)
    return out


def check_trial_config(spec) -> None:
    """Compose a trial's config (each parameter at its low end / first choice, and each other choice of each
    categorical parameter) before any trial runs, so that an unknown key, a bad base or a config that cannot
    be built fails now, in one line, before any claim."""
    from lightning_grelu.config_check import check_constructors, composition_error
    from lightning_grelu.sweeps.run_trial import compose_trial

    for sample in spec.samples():
        try:
            cfg = compose_trial("/tmp/unused", [*spec.base, *sample])
        except Exception as e:
            raise ConfigError(f"sweep: a trial's config does not compose: "
                              f"{composition_error(e, [*spec.base, *sample])}") from None
        try:
            validate(cfg)
            if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda"):  # torch alone tells; a CPU trial needs no torch
                from lightning_grelu.memory import check_devices

                check_devices(cfg.trainer)  # e.g. trial_overrides=['trainer=gpu'] on a CPU node: refused before any claim
            check_constructors(cfg, groups=("model", "data"))  # e.g. trial_overrides=['data=fashion_mnist'] under a base
            # that sets data.n (model and data: the groups a base's keys and a trial's choices mix)
        except ConfigError as e:
            where = f" (at {', '.join(sample)})" if len(spec.samples()) > 1 else ""
            raise ConfigError(f"sweep: a trial's config: {e}{where}") from None
    check_out_dir(Path(spec.out_dir))


def check_out_dir(out_dir: Path) -> None:
    """out_dir can be made and written, with room for a trial's records."""
    import tempfile

    existing = out_dir  # tried where it is, or where it would be made: a refused command makes nothing
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write_test."):
            pass
    except OSError as e:
        raise MachineError(f"sweep.out_dir {out_dir} is not writable: {e.strerror or e} (a read-only filesystem?); "
                           "choose another sweep.out_dir") from None
    if shutil.disk_usage(existing).free < 64 << 20:
        raise MachineError(f"sweep.out_dir {out_dir}: less than 64 MiB free; free some space or choose another")


def run(overrides: list[str] | None = None, node: dict | None = None) -> None:
    from rich.console import Console

    console = Console(stderr=False, soft_wrap=True, highlight=False)
    made = None  # sweep.out_dir, when this command is the one that makes it: a refusal removes it again
    try:
        spec = load_spec(overrides, node)
        made = _first_missing(Path(spec.out_dir).resolve())
        if spec.extra.get("frontier"):
            from lightning_grelu.sweeps.frontier import Frontier
            from lightning_grelu.sweeps.spec import parse_frontier

            rows = Frontier(spec, parse_frontier(spec.extra["frontier"]), progress=console.print).run()
            for r in rows:
                console.print(r)
            console.print(f"{spec.name}: frontier written to {spec.out_dir}/frontier.(csv|md|png)")
            return
        from lightning_grelu.sweeps.worker import work

        done = work(spec, progress=console.print)
    except (Interrupted, Exception) as e:  # one line and the kind's exit code (errors.TABLE)
        stop = interruption(e)  # a signal, even one that library code re-wrapped while it unwound
        if stop is not None:
            print(f"grelu-sweep: {stop}: the trial in hand is back in the queue (it resumes from its checkpoint); "
                  "start the worker again to go on", file=sys.stderr)
            sys.exit(stop.exit_code)
        if isinstance(e, (ConfigError, MachineError)):  # a refusal leaves nothing it made
            _remove_if_empty(made, Path(spec.out_dir).resolve() if made else None)
        fail("grelu-sweep", e)
    console.print(f"{spec.name}: this worker ran {done['completed']} completed, {done['failed']} failed and "
                  f"{done['pruned']} pruned trials; storage {spec.storage_url()}")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what this command would make), or None."""
    if path.exists():
        return None
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


def _remove_if_empty(made: Path | None, out_dir: Path | None) -> None:
    """A refused command leaves nothing it made: out_dir when empty (or holding only an empty new storage
    file), and the folders above it up to ``made``, the outermost one this command made."""
    if made is None or out_dir is None or not out_dir.is_dir():
        return
    if not all(p.name == "study.db" and p.stat().st_size == 0 for p in out_dir.iterdir()):
        return
    shutil.rmtree(out_dir, ignore_errors=True)
    folder = out_dir.parent
    while (folder == made or made in folder.parents) and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


@hydra.main(version_base="1.3", config_path=str(SWEEP_CONF_DIR), config_name="grelu_sweep")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        node = OmegaConf.to_container(cfg.sweep, resolve=True)
    except Exception as e:
        fail("grelu-sweep", ConfigError(f"{type(e).__name__}: {str(e).splitlines()[0]}"))
    run(node=node)


def check_sweep_choice(args: list[str]) -> None:
    """``sweep=NAME`` names a file of sweep_conf/sweep/: a typo gets one line listing them, not Hydra's report."""
    options = sorted(p.stem for p in (SWEEP_CONF_DIR / "sweep").glob("*.yaml"))
    for a in args:
        key, sep, value = a.partition("=")
        if sep and key.lstrip("+") == "sweep" and value not in options:
            fail("grelu-sweep", ConfigError(f"unknown sweep {value!r}: choose one of {', '.join(options)} "
                                            "(sweep=NAME)"))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    check_sweep_choice(args)
    if any(a in ("-m", "--multirun") for a in args):
        fail("grelu-sweep", ConfigError("-m: a worker runs one study; start it N times for N workers (no Hydra "
                                        "multirun)"))
    if any(a.startswith("-") for a in args):  # --help, -h, --cfg job, --info, --shell-completion: Hydra's
        sys.argv = [sys.argv[0], *whole_mappings(args)]
        _hydra_main()
        return
    run(args)  # composed here, so that a bad override is one line rather than Hydra's report


if __name__ == "__main__":
    main()
