"""grelu-bench's cases and modes: plain data, importable without torch, so that grelu-bench checks its arguments
before the benchmark's imports (torch, Lightning)."""

# name: (width, depth, batch, d_in, d_out, batches_per_epoch); the first four mirror the reference loop
CASES = {
    "cifar_d6_w10k": (10000, 6, 1024, 3072, 10, 8),
    "cifar_d6_w10k_b4096": (10000, 6, 4096, 3072, 10, 4),
    "sgemm_d10_w4096": (4096, 10, 4096, 14, 4, 4),
    "theory_width": (40000, 4, 100, 200, 1, 1),  # Ackley at m = n^2 L, full batch
    "small_fullbatch": (1000, 4, 100, 200, 1, 1),  # where per-step overhead dominates
    "tiny": (64, 2, 32, 16, 2, 2),  # CPU smoke size
}
# mode: (the module's class, its arguments): grelu caches the gates, grelu_recompute computes them every step
MODES = {"relu": ("ReLUModule", {}), "grelu": ("GReLUModule", {"cache_gates": True}),
         "grelu_recompute": ("GReLUModule", {"cache_gates": False})}
