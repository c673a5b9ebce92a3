"""Logging a failure without leaking a secret (SPEC §13.1).

A handler, emitter or deriver that raises is logged at WARNING. The traceback is
formatted here and masked with the secrets of the event's run — and with their escaped
forms (``repr``, JSON, backslash-doubled: a traceback quotes values) — before it becomes
the log message; the record carries no ``exc_info``, so no formatter can print the raw
exception.
"""

from __future__ import annotations

import logging
import traceback

from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.masking import mask_text
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.ports.async_secret_registry import AsyncSecretRegistry
from reactive_entities.ports.secret_registry import SecretRegistry

__all__ = [
    "log_failure",
    "log_failure_async",
    "log_masked_failure",
    "masked_error",
]


def log_failure(
    logger: logging.Logger,
    what: str,
    event: ChangeEvent,
    error: BaseException,
    secrets: SecretRegistry | None,
) -> None:
    """Log ``error``, raised by ``what`` while handling ``event``, masked."""
    run_secrets = EMPTY_SECRETS
    if secrets is not None and event.run_id is not None:
        run_secrets = secrets.secrets_for(event.run_id)
    log_masked_failure(logger, what, event, error, run_secrets)


def log_masked_failure(
    logger: logging.Logger,
    what: str,
    event: ChangeEvent,
    error: BaseException,
    run_secrets: SecretSet,
) -> None:
    """Log ``error`` masked with ``run_secrets`` (the event's run's, already looked up:
    the asyncio engine awaits its registry first)."""
    escaped = run_secrets.escaped()
    text = "".join(traceback.format_exception(error))
    logger.warning(
        "%s failed for %s %s:%s (change %s)\n%s",
        mask_text(what, escaped),
        event.op,
        event.kind,
        event.entity_id,
        event.change_id,
        mask_text(text, escaped),
    )


async def log_failure_async(
    logger: logging.Logger,
    what: str,
    event: ChangeEvent,
    error: BaseException,
    secrets: AsyncSecretRegistry | None,
) -> None:
    """:func:`log_failure` with an asyncio registry: the run's secrets are awaited."""
    run_secrets = EMPTY_SECRETS
    if secrets is not None and event.run_id is not None:
        run_secrets = await secrets.secrets_for(event.run_id)
    log_masked_failure(logger, what, event, error, run_secrets)


def masked_error(error: BaseException, run_secrets: SecretSet) -> str:
    """The one-line form of ``error`` a dead letter keeps: at most 2,000 characters,
    masked with ``run_secrets``."""
    text = "".join(traceback.format_exception_only(error)).strip()
    return mask_text(text[:2000], run_secrets)
