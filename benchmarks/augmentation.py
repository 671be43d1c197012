"""Training step with RandAugment vs without, images as uint8 on the device (target: <= 1.15x).

    python benchmarks/augmentation.py [--batch 4096 --width 10000 --depth 6] [--small] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_of, record, timed  # noqa: E402

from lightning_grelu.bench import _autocast  # noqa: E402
from lightning_grelu.data.base import Split  # noqa: E402
from lightning_grelu.data.images import ImageDataModule  # noqa: E402
from lightning_grelu.nets import GReLUMLP  # noqa: E402


class RandomImages(ImageDataModule):
    """CIFAR-shaped uint8 images (the pipeline's cost does not depend on their content)."""

    def __init__(self, n: int, **kw):
        super().__init__(**kw)
        self.n = n

    def load_images(self):
        gen = torch.Generator().manual_seed(0)
        imgs = torch.randint(0, 256, (self.n, 3, 32, 32), generator=gen, dtype=torch.uint8)
        labels = torch.randint(0, 10, (self.n,), generator=gen)
        return {"train": (imgs, labels), "test": (imgs[:10], labels[:10])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--width", type=int, default=10000)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument("--device", default="auto")
    p.add_argument("--small", action="store_true", help="batch 256, width 256, depth 3")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.small:
        a.batch, a.width, a.depth = 256, 256, 3
    device = device_of(a.device)
    torch.manual_seed(0)
    result = {"batch": a.batch, "width": a.width, "depth": a.depth, "precision": a.precision}
    net = GReLUMLP(3072, 10, a.width, a.depth).to(device)  # gates recomputed: augmented data cannot cache them
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-6)
    for augment in (False, True):
        dm = RandomImages(a.batch, augment=augment)
        dm.setup("fit")
        split: Split = dm.splits["train"].to(device)
        y = split.y.to(device)

        def step():
            x = dm.featurize(split.x, train=True)
            with _autocast(device, a.precision):
                loss = 0.5 * ((net(x).float() - y) ** 2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        result["step_s_augment" if augment else "step_s_plain"] = timed(step, device)
    result["ratio"] = result["step_s_augment"] / result["step_s_plain"]
    result["target_ratio"] = 1.15
    record("augmentation", result, device, a.out)


if __name__ == "__main__":
    main()
