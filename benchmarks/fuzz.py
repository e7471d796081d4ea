"""Fuzz the parsers of everything grade reads from disk, with a large budget.

    python benchmarks/fuzz.py [--target cube|looks|preset|edl|all] [--examples N] [--seed S]

Each target generates hostile inputs with Hypothesis (the strategies of
``tests/hostile/fuzzing.py``, which the property tests run with a small budget) and feeds them to
the parser. The contract: refuse with ``InputError`` (one line, naming the file) or return a valid
result. Anything else (another exception, a failed check) is a finding: the harness keeps going,
and reports each distinct finding (exception type and where it was raised) with the smallest input
that triggered it. Exit status 1 when there are findings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile import fuzzing as F  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TARGETS = ("cube", "looks", "preset", "edl")


def _where(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    inside = [f for f in frames if "/grade/" in f.filename] or frames
    last = inside[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def fuzz(target: str, examples: int, rng_seed: int, folder: Path) -> tuple[Counter, dict]:
    """Run one target; returns the outcome counts and the findings ``{(type, where): (input, message)}``."""
    if target == "preset":  # a LUT preset and a learned one; an input is (which seed, its mutated bytes)
        seeds = [F.valid_preset_bytes(), F.valid_preset_bytes(learned=True)]
        strategy = st.sampled_from(range(len(seeds))).flatmap(
            lambda i: F.preset_inputs(seeds[i]).map(lambda data, i=i: (i, data))
        )

        def run(pair, folder):
            return F.run_preset(pair[1], folder, seeds[pair[0]])

    else:
        strategy = {"cube": F.cube_inputs, "looks": F.looks_inputs, "edl": F.edl_inputs}[target]()
        run = {"cube": F.run_cube, "looks": F.run_looks, "edl": F.run_edl}[target]
    outcomes: Counter = Counter()
    findings: dict = {}

    @seed(rng_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def check(value) -> None:
        try:
            outcomes[run(value, folder)] += 1
        except Exception as e:  # a finding: keep the smallest input per (type, place)
            outcomes["finding"] += 1
            key = (type(e).__name__, _where(e))
            msg = " ".join(str(e).split())[:300]
            if key not in findings or len(repr(value)) < len(repr(findings[key][0])):
                findings[key] = (value, msg)

    check()
    return outcomes, findings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    p.add_argument("--examples", type=int, default=20000, help="inputs per target (default 20000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    total = 0
    for target in TARGETS if args.target == "all" else (args.target,):
        with tempfile.TemporaryDirectory(prefix=f"grade-fuzz-{target}-") as tmp:
            t0 = time.perf_counter()
            outcomes, findings = fuzz(target, args.examples, args.seed, Path(tmp))
            took = time.perf_counter() - t0
        counts = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        print(f"{target}: {sum(outcomes.values())} inputs in {took:.0f} s ({counts}); findings: {len(findings)}")
        for (kind, where), (value, msg) in sorted(findings.items()):
            print(f"  {kind} at {where}: {msg}\n    input: {value!r}"[:2000])
        total += len(findings)
    return 1 if total else 0


if __name__ == "__main__":
    raise SystemExit(main())
