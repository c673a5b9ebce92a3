"""The benchmark workload of BENCHMARKS.md §3, exactly: constants, state, initial states,
patches, and the mutation sequence. Shared by every scenario."""

from __future__ import annotations

from typing import Any

import attrs

STATUSES = ["open", "investigating", "identified", "monitoring", "resolved"]
SEVERITIES = ["sev1", "sev2", "sev3", "sev4"]
SECRETS = [
    "sk-live-4f9a1c2e7b",
    "ghp_Q8wE2rT5yU1iO3pA",
    "xoxb-2219-7731-AbCdEf",
    "AKIAIOSFODNN7EXAMPLE",
    "pw!Tr0ub4dor&3",
]
RUN_ID = "run-bench-1"
KIND = "it"
FIELDS = (
    "status",
    "severity",
    "title",
    "summary",
    "owner",
    "impact_score",
    "affected_count",
    "acknowledged",
    "tags",
    "meta",
)


def entity_id(k: int) -> str:
    """``id(k)`` of the workload."""
    return f"it-{k}"


@attrs.frozen
class It:
    """The 10-field state of §3.2; the enums are validated by attrs validators."""

    status: str = attrs.field(validator=attrs.validators.in_(STATUSES))
    severity: str = attrs.field(validator=attrs.validators.in_(SEVERITIES))
    title: str
    summary: str
    owner: str
    impact_score: float
    affected_count: int
    acknowledged: bool
    tags: list[str]
    meta: dict[str, str]


def initial(k: int) -> dict[str, Any]:
    """The initial state of entity ``k`` (§3.3) as a mapping."""
    return {
        "status": "open",
        "severity": "sev3",
        "title": f"Incident it-{k} rev 0 key={SECRETS[0]}",
        "summary": f"Summary for it-{k} rev 0; token {SECRETS[1]} used",
        "owner": "owner-0",
        "impact_score": 0.0,
        "affected_count": 0,
        "acknowledged": False,
        "tags": ["t0a", "t0b", "t0c"],
        "meta": {"region": "eu-west-1", "service": f"svc-{k}", "ticket": "T-0"},
    }


def initial_state(k: int) -> It:
    """The initial state of entity ``k`` as an ``It`` instance."""
    return It(**initial(k))


def patch(k: int, p: int, g: int) -> dict[str, Any]:
    """The patch for field pair ``p`` at generation ``g`` of entity ``k`` (§3.4)."""
    if p == 0:
        return {"status": STATUSES[g % 5], "severity": SEVERITIES[(2 + g) % 4]}
    if p == 1:
        return {"title": f"Incident it-{k} rev {g} key={SECRETS[0]}", "impact_score": g * 1.5}
    if p == 2:
        return {
            "summary": f"Summary for it-{k} rev {g}; token {SECRETS[1]} used",
            "acknowledged": g % 2 == 1,
        }
    if p == 3:
        return {"owner": f"owner-{g}", "affected_count": g * 10}
    return {
        "tags": [f"t{g}a", f"t{g}b", f"t{g}c"],
        "meta": {"region": "eu-west-1", "service": f"svc-{k}", "ticket": f"T-{g}"},
    }


def mutations(n: int, ids: int) -> list[tuple[str, dict[str, Any]]]:
    """Mutation ``i`` of ``n`` over ``ids`` entities (§3.5), built before timing."""
    out = []
    for i in range(n):
        k = i % ids
        r = i // ids
        out.append((entity_id(k), patch(k, r % 5, r // 5 + 1)))
    return out
