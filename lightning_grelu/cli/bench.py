"""``grelu-bench``: time the suite's real training path against a plain PyTorch loop, in one run
(the benchmark itself is :mod:`lightning_grelu.bench`).

    grelu-bench --case cifar_d6_w10k_b4096 --precision bf16-mixed      # on a GPU
    grelu-bench --case tiny --device cpu                               # anywhere, seconds

Exit codes (lightning_grelu/errors.py: TABLE): 0 done, 1 a crash or the reference script failed, 2 bad
arguments or a machine that cannot run it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from lightning_grelu.bench_cases import CASES, MODES
from lightning_grelu.errors import ArgumentParser, SuiteError, fail


def _count(low: int):
    """argparse type: an integer >= low (a bad value is argparse's one line, exit 2)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


def main(argv: list[str] | None = None) -> None:
    import logging
    import sys
    import warnings

    p = ArgumentParser(prog="grelu-bench", description=__doc__.split("\n\n")[0].split(" (")[0])
    p.add_argument("--case", default="tiny", choices=sorted(CASES))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--precision", default=None, choices=["32-true", "bf16-mixed", "bf16-true", "16-mixed", "64-true"],
                   help="default: bf16-mixed on GPU, 32-true on CPU")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--warmup", type=_count(0), default=5)
    p.add_argument("--steps", type=_count(1), default=10)
    p.add_argument("--repeats", type=_count(1), default=5)
    p.add_argument("--inner-steps", type=_count(1), default=1, help="model.inner_steps for full-batch cases")
    p.add_argument("--out", default=None, help="write <case>_<precision>.jsonl here (e.g. results/speed/paper)")
    p.add_argument("--reference", default=None, help="also run this reference script (e.g. gpu_anchor.py) "
                   "and store its JSON lines beside ours")
    args = p.parse_args(argv)
    if min(args.warmup, args.steps, args.repeats, args.inner_steps) < 1:
        p.error("--warmup, --steps, --repeats and --inner-steps must be >= 1")
    if args.reference and not Path(args.reference).is_file():
        p.error(f"--reference {args.reference}: no such file (e.g. benchmarks/reference/gpu_anchor.py)")
    if args.out:  # fail before the benchmark runs, not after
        existing = Path(args.out)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            p.error(f"--out {args.out}: {existing} is not a directory")
    import torch  # the arguments above are checked without it (seconds of imports)

    from lightning_grelu.bench import print_table, run_case, write_results

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible here")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32-true")
    warnings.filterwarnings("ignore")
    import lightning.pytorch  # noqa: F401  (its import sets its loggers to INFO: quiet them after it)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    try:
        results = run_case(args.case, args.modes, precision, device, args.warmup, args.steps, args.repeats,
                           inner_steps=args.inner_steps)
        print_table(results)
        reference = []
        if args.reference:
            out = subprocess.run([sys.executable, args.reference], capture_output=True, text=True)
            if out.returncode != 0:  # told as a crash (exit 1): the reference's own last line
                raise SuiteError(f"the reference {args.reference} failed: "
                                 f"{(out.stderr.strip().splitlines() or ['(no stderr)'])[-1]}")
            reference = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            print(f"reference {args.reference}: {len(reference)} records")
        if args.out:
            write_results(Path(args.out), results, "grelu-bench " + " ".join(sys.argv[1:] if argv is None else argv),
                          device, reference, append=True)
            print(f"wrote {args.out}")
    except Exception as e:  # one line, the kind's exit code (errors.TABLE)
        fail("grelu-bench", e, "HYDRA_FULL_ERROR=1 for the traceback")




if __name__ == "__main__":
    main()
