"""How fast can in-memory mutate (a) be in this language? The hand-written floor
(``floor.py``) as Python and compiled with mypyc, beside the library's (a) and the bare
plugin step (z), in the same processes.

    python bench/floor_bench.py              # 100,000 mutates, 3 rounds
    python bench/floor_bench.py --n 20000 --rounds 1

Each round runs two child processes, one per build of the floor (the compiled one from a
temporary directory, built once); each child measures the floor, the library's (a) and (z)
in turn, so every ratio comes from one process. Prints medians and ratios; needs mypyc (a
dev dependency) and a C compiler for the compiled floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent


def measure(n: int) -> dict[str, float]:
    """In this process: µs per op of the floor, the library's (a), and (z)."""
    import gc

    import attrs
    import floor
    import memory_bench
    from workload import entity_id, initial_state, mutations

    plan = mutations(n, memory_bench.IDS)

    def floor_run(count: int) -> float:
        current: dict[str, Any] = {entity_id(k): initial_state(k) for k in range(memory_bench.IDS)}
        events = [0]

        def read(ids: list[str]) -> dict[str, Any]:
            return {i: current[i] for i in ids if i in current}

        def on_event(event: floor.Event) -> None:
            events[0] += 1

        mutate = floor.FloorEngine(read, [on_event]).mutate
        evolve = attrs.evolve
        gc.collect()
        started = time.perf_counter()
        for eid, changes in plan[:count]:

            def apply(eid: str = eid, changes: dict[str, Any] = changes) -> Any:
                nxt = evolve(current[eid], **changes)
                current[eid] = nxt
                return nxt

            mutate(eid, apply)
        seconds = time.perf_counter() - started
        if events[0] != count:
            raise AssertionError(f"floor delivered {events[0]} events for {count} writes")
        return seconds / count * 1e6

    def library_run(count: int) -> float:
        r = memory_bench.mutate_run(count, run_id=None, noop=False, mapping=False, plan=plan)
        return 1e6 / r.ops_per_s

    def bare_run(count: int) -> float:
        return 1e6 / memory_bench.bare_plugin_run(count, plan=plan).ops_per_s

    warm = min(n, 5_000)
    floor_run(warm)
    library_run(warm)
    return {
        "floor": floor_run(n),
        "a": library_run(n),
        "z": bare_run(n),
        "floor_compiled": float(Path(floor.__file__ or "").suffix == ".so"),
    }


def _compile_floor(into: Path) -> None:
    shutil.copy(HERE / "floor.py", into / "floor.py")
    env = {**os.environ, "MYPYPATH": str(HERE)}
    subprocess.run(
        [sys.executable, "-m", "mypyc", "floor.py"],
        cwd=into,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (into / "floor.py").unlink()  # the extension module, not the source, is imported


def _child(floor_dir: Path, n: int) -> dict[str, float]:
    code = (
        "import json, sys; "
        f"sys.path[:0] = [{str(floor_dir)!r}, {str(HERE)!r}]; "
        "import floor_bench; "
        f"print(json.dumps(floor_bench.measure({n})))"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="mutates per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        compiled_dir = Path(tmp)
        _compile_floor(compiled_dir)
        runs: dict[str, list[dict[str, float]]] = {"python": [], "compiled": []}
        for r in range(args.rounds):
            for build, where in (("python", HERE), ("compiled", compiled_dir)):
                result = _child(where, args.n)
                if result["floor_compiled"] != (build == "compiled"):
                    raise AssertionError(f"the {build} floor was not the one imported")
                runs[build].append(result)
                print(
                    f"round {r + 1}/{args.rounds} {build:8}: floor {result['floor']:.2f} µs, "
                    f"library (a) {result['a']:.2f} µs, (z) {result['z']:.2f} µs",
                    flush=True,
                )
    print("\nmedians (µs per op; ratios per process, then the median):")
    for build, results in runs.items():
        floor_us = median(x["floor"] for x in results)
        a_us = median(x["a"] for x in results)
        z_us = median(x["z"] for x in results)
        floor_z = median(x["floor"] / x["z"] for x in results)
        a_z = median(x["a"] / x["z"] for x in results)
        print(
            f"  floor as {build:8}: floor {floor_us:.2f}, (a) {a_us:.2f}, (z) {z_us:.2f}; "
            f"floor/(z) {floor_z:.2f}, (a)/(z) {a_z:.2f}"
        )


if __name__ == "__main__":
    main()
