"""What a reproduction job is, and how a target is being run (profile, seeds, overrides, part)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Job:
    label: str  # unique within a target and profile; the run directory's name
    overrides: list[str]  # grelu-train overrides
    tags: dict = field(default_factory=dict)


@dataclass
class Context:
    """How a target is being run: the profile, and the reductions a caller asked for."""

    profile: str
    seeds: int | None = None  # keep only the first N seeds (tests, quick looks)
    overrides: list[str] = field(default_factory=list)  # appended to every job
    part: tuple[int, int] | None = None  # (K, N): run only the K-th of N interleaved parts of the jobs
    storage: str | None = None  # width-scan targets: the study's storage (None: a journal file in the work dir)
    workers: int = 1  # width-scan targets: local worker processes

    def in_part(self, items: list) -> list:
        """The items of this part: every N-th, from the (K-1)-th (all of them when no part is set)."""
        if self.part is None:
            return items
        k, n = self.part
        return [item for i, item in enumerate(items) if i % n == k - 1]
