"""GReLU->ReLU conversion time vs training-epoch time on the same data (target: <= 2 epochs).

    python benchmarks/conversion.py [--width 10000 --depth 6 --n 50000 --batch 4096] [--small] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_of, record, timed  # noqa: E402

from lightning_grelu.bench import _autocast  # noqa: E402
from lightning_grelu.nets import GateCache, GReLUMLP, grelu_to_relu  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=10000)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--d-in", type=int, default=3072)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--precision", default="bf16-mixed", help="of the training epoch (the solve is float64/32)")
    p.add_argument("--device", default="auto")
    p.add_argument("--small", action="store_true", help="width 256, depth 3, n 2000, d_in 64")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.small:
        a.width, a.depth, a.n, a.d_in, a.batch = 256, 3, 2000, 64, 500
    device = device_of(a.device)
    torch.manual_seed(0)
    net = GReLUMLP(a.d_in, 10, a.width, a.depth).to(device)
    x = torch.nn.functional.normalize(torch.randn(a.n, a.d_in, device=device), dim=1)
    y = torch.randn(a.n, 10, device=device)
    cache = GateCache.build(net, x)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-6)

    def epoch():
        for i in range(0, a.n, a.batch):
            idx = torch.arange(i, min(i + a.batch, a.n), device=device)
            with _autocast(device, a.precision):
                loss = 0.5 * ((net(x[idx], cache.lookup(idx)).float() - y[idx]) ** 2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    epoch_s = timed(epoch, device)
    convert_s = timed(lambda: grelu_to_relu(net, x, ridge=1e-6 if a.n > a.width else 0.0), device, repeats=1)
    record("conversion", {"width": a.width, "depth": a.depth, "n": a.n, "d_in": a.d_in, "batch": a.batch,
                          "precision": a.precision, "epoch_s": epoch_s, "conversion_s": convert_s,
                          "conversion_in_epochs": convert_s / epoch_s, "target_epochs": 2.0}, device, a.out)


if __name__ == "__main__":
    main()
