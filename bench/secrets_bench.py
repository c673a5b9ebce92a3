"""Masking with many secrets and registering them one call at a time (issue 12, SPEC §16.6).

    python bench/secrets_bench.py

Acceptance: masking 100 KB with 10,000 secrets ≤ 50 ms; registering 10,000 secrets one
call each ≤ 2 s in total. Also compares the Aho–Corasick automaton with a compiled
alternation (the other candidate) on the same text. Figures are medians of 5 runs.
"""

from __future__ import annotations

import random
import re
import statistics
import string
import time

from reactive_entities import compose
from reactive_entities.domain.masking import mask_text
from reactive_entities.domain.secret_set import SecretSet

N_SECRETS = 10_000
TEXT_BYTES = 100_000


def _secrets(rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits + "-_./:"
    out: set[str] = set()
    while len(out) < N_SECRETS:
        out.add("".join(rng.choice(alphabet) for _ in range(rng.randint(8, 32))))
    return sorted(out)


def _text(rng: random.Random, secrets: list[str]) -> str:
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))]
    words += [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
        for _ in range(5000)
    ]
    pieces: list[str] = []
    size = 0
    while size < TEXT_BYTES:
        piece = rng.choice(secrets) if rng.random() < 0.002 else rng.choice(words)
        pieces.append(piece)
        size += len(piece) + 1
    return " ".join(pieces)[:TEXT_BYTES]


def _median_ms(run: object, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    """Print the figures."""
    rng = random.Random(12)
    secrets = _secrets(rng)
    text = _text(rng, secrets)

    engine = compose.in_memory()
    started = time.perf_counter()
    for value in secrets:
        engine.secrets.register("run-1", [value])
    register_s = time.perf_counter() - started
    started = time.perf_counter()
    secret_set = engine.secrets.secrets_for("run-1")
    snapshot_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    masked = mask_text(text, secret_set)
    first_mask_ms = (time.perf_counter() - started) * 1000
    assert not any(s in masked for s in secrets)
    automaton_ms = _median_ms(lambda: mask_text(text, secret_set))
    clean = "x" * TEXT_BYTES
    automaton_clean_ms = _median_ms(lambda: mask_text(clean, secret_set))
    few = SecretSet.of(secrets[:5])
    few_ms = _median_ms(lambda: mask_text(text, few))

    started = time.perf_counter()
    alternation = re.compile(
        "(?=(" + "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)) + "))"
    )
    compile_ms = (time.perf_counter() - started) * 1000
    alternation_ms = _median_ms(lambda: [m.span(1) for m in alternation.finditer(text)], rounds=1)

    print(f"register {N_SECRETS:,} secrets one call each: {register_s * 1000:.0f} ms total")
    print(f"first lookup (builds the SecretSet): {snapshot_ms:.0f} ms")
    print(f"first mask of {TEXT_BYTES // 1000} KB (builds the automaton): {first_mask_ms:.0f} ms")
    print(
        f"mask {TEXT_BYTES // 1000} KB with {N_SECRETS:,} secrets (automaton): "
        f"{automaton_ms:.1f} ms; text without secrets: {automaton_clean_ms:.1f} ms"
    )
    print(f"mask {TEXT_BYTES // 1000} KB with 5 secrets (one regex): {few_ms:.2f} ms")
    print(
        f"compiled alternation of {N_SECRETS:,} literals: compile {compile_ms:.0f} ms, "
        f"scan {alternation_ms:.0f} ms"
    )
    engine.close()


if __name__ == "__main__":
    main()
