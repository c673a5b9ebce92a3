"""Laws of ``plan_change`` (SPEC §3, §4, §6, §7)."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from reactive_entities.domain.json import Document
from reactive_entities.testing import laws
from reactive_entities.testing.laws import PlanInputs
from reactive_entities.testing.strategies import documents, plan_contexts, plan_inputs


@given(plan_inputs())
def test_plan_change_leaves_no_secret(inputs: PlanInputs) -> None:
    """No secret anywhere in the planned event or rows; sensitive fields read ``****``."""
    laws.plan_change_leaves_no_secret(inputs)


@given(plan_inputs())
def test_plan_change_is_none_iff_diff_is_empty(inputs: PlanInputs) -> None:
    """A change is planned exactly when the unmasked diff is not empty."""
    laws.plan_change_is_none_iff_diff_is_empty(inputs)


@given(plan_inputs())
def test_plan_change_rows_follow_changed_fields(inputs: PlanInputs) -> None:
    """Rows come one per changed field, in ``changed_fields`` order, with the right op."""
    laws.plan_change_rows_follow_changed_fields(inputs)


@given(plan_inputs())
def test_plan_change_masked_flag(inputs: PlanInputs) -> None:
    """``masked`` is true exactly when masking changed a row's from or to value."""
    laws.plan_change_masked_flag(inputs)


@given(
    st.sampled_from(sorted(laws.PLAN_TABLE)),
    documents().filter(bool),
    plan_contexts(),
    st.data(),
)
def test_plan_change_follows_the_op_table(
    pair: tuple[laws.Before, laws.Action],
    doc: Document,
    context: PlanInputs,
    data: st.DataObject,
) -> None:
    """Each (entity before × action) pair plans the table's op, sensitive fields or not."""
    sensitive = data.draw(st.frozensets(st.sampled_from(sorted(doc))), label="sensitive")
    context = attrs.evolve(context, sensitive=sensitive)
    laws.plan_change_follows_table(pair[0], pair[1], doc, context)
