"""The seeded fault schedule of a chaos run: the same seed and length give the same schedule.

Every kind of fault the issue names happens at least once in every run (a shorter run only
packs them closer); a longer run adds seeded extra ones. Faults fall in the first
`FAULT_FRACTION` of the run; the rest lets the stack converge before the end checks. The
schedule decides what and when only: chaos/run.py applies it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAULT_FRACTION = 0.7
FIRST_FAULT_SECONDS = 8.0
EXTRA_FAULT_EVERY_SECONDS = 20.0

PROCESS_KILLS = ("worker", "api", "postgres")
PROXIED = ("postgres", "temporal", "stripe")
PROXY_MODES = ("latency", "reset", "stall")
STRIPE_MODES = ("5xx", "latency", "webhook_duplicate", "webhook_reorder", "webhook_drop")


@dataclass(frozen=True)
class Fault:
    at_seconds: float
    kind: str            # "kill" | "restart" | "proxy" | "stripe"
    target: str          # worker, api, postgres, temporal, stripe
    mode: str            # sigkill, restart, latency, reset, stall, 5xx, webhook_drop, ...
    duration_seconds: float
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def name(self) -> str:
        """The row of the final table this fault counts in."""
        return f"{self.kind} {self.target} {self.mode}"

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return (f"t+{self.at_seconds:6.1f}s {self.name} for {self.duration_seconds:.1f}s"
                + (f" ({extra})" if extra else ""))


def _required() -> list[tuple[str, str, str]]:
    kinds = [("kill", target, "sigkill") for target in PROCESS_KILLS]
    kinds.append(("restart", "temporal", "restart"))
    kinds += [("proxy", target, mode) for target in PROXIED for mode in PROXY_MODES]
    kinds += [("stripe", "stripe", mode) for mode in STRIPE_MODES]
    return kinds


def _params(rng: random.Random, kind: str, mode: str) -> dict[str, Any]:
    if kind == "proxy" and mode == "latency":
        return {"latency_ms": rng.randint(50, 500)}
    if kind == "stripe":
        return {
            "5xx": lambda: {"error_rate": round(rng.uniform(0.2, 0.5), 2),
                            "error_phase": rng.choice(["before", "after"])},
            "latency": lambda: {"latency_ms": rng.randint(100, 1500)},
            "webhook_duplicate": lambda: {"webhook_duplicate_rate": round(
                rng.uniform(0.3, 0.8), 2)},
            "webhook_reorder": lambda: {"webhook_reorder_window_ms": rng.randint(300, 1500)},
            "webhook_drop": lambda: {"webhook_drop_rate": round(rng.uniform(0.3, 0.8), 2)},
        }[mode]()
    return {}


def _duration(rng: random.Random, kind: str, mode: str, slot: float) -> float:
    if kind == "kill":
        low, high = 0.5, 3.0      # how long the process stays dead before its restart
    elif kind == "restart":
        low, high = 0.5, 2.0
    elif mode == "stall":
        low, high = 1.0, 6.0
    elif mode == "reset":
        low, high = 0.5, 2.0
    else:
        low, high = 2.0, 10.0
    return round(min(rng.uniform(low, high), max(low, slot * 0.8)), 2)


def build(seed: int, run_seconds: float) -> list[Fault]:
    """The faults of a run, in time order."""
    rng = random.Random(seed)
    window_end = max(FIRST_FAULT_SECONDS + 10.0, run_seconds * FAULT_FRACTION)
    kinds = _required()
    extra = int((window_end - FIRST_FAULT_SECONDS) // EXTRA_FAULT_EVERY_SECONDS)
    extra = max(0, extra - len(kinds))
    kinds += [rng.choice(_required()) for _ in range(extra)]
    rng.shuffle(kinds)
    slot = (window_end - FIRST_FAULT_SECONDS) / len(kinds)
    faults = []
    for index, (kind, target, mode) in enumerate(kinds):
        at = FIRST_FAULT_SECONDS + index * slot + rng.uniform(0, slot * 0.2)
        faults.append(Fault(round(at, 2), kind, target, mode,
                            _duration(rng, kind, mode, slot), _params(rng, kind, mode)))
    return faults


def fault_names() -> list[str]:
    """Every row of the faults table, in a stable order."""
    return [f"{kind} {target} {mode}" for kind, target, mode in _required()]
