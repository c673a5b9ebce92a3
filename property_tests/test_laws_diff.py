"""Laws of the per-field diff (SPEC §3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reactive_entities.domain.json import Document
from reactive_entities.testing import laws
from reactive_entities.testing.strategies import document_pairs, documents, equal_variants


@given(st.data(), documents())
def test_diff_of_equal_documents_is_empty(data: st.DataObject, doc: Document) -> None:
    """``diff(a, a)`` is empty, also against a structurally equal variant of ``a``."""
    variant = data.draw(equal_variants(doc))
    assert isinstance(variant, dict)
    laws.diff_of_equal_documents_is_empty(doc, variant)


@given(document_pairs())
def test_update_delta_turns_prev_into_next(pair: tuple[Document, Document]) -> None:
    """Applying an update's delta to prev gives a document structurally equal to next."""
    laws.update_delta_turns_prev_into_next(*pair)


@given(documents())
def test_create_and_remove_rules(doc: Document) -> None:
    """Creates and removes change every field; only a create has a delta."""
    laws.create_and_remove_rules(doc)
