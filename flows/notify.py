"""Be told when a night fails: a Prefect automation that calls a webhook when a nightly flow
run ends Failed (Prefect's own automations and webhook block; nothing polls).

Idempotent: ``claims serve --notify-url`` / ``claims deploy --notify-url`` may be run again
(a new URL replaces the old one); there is one block and one automation of these names.
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import SecretStr

from config.settings import ConfigError

AUTOMATION = "claims-nightly-failed"
WEBHOOK_BLOCK = "claims-nightly-failed"
FLOW = "claims-nightly"
# Prefect renders this template with the event's flow run: its name and its state message
# ("N of M partitions failed: <key>: <reason>"): partition keys and rules, never personal data.
PAYLOAD = (
    '{"text": "claims: the nightly flow run {{ flow_run.name }} failed: '
    '{{ flow_run.state.message | replace(\'"\', "\'") }}", '
    '"flow_run_id": "{{ flow_run.id }}", "flow_run_name": "{{ flow_run.name }}"}'
)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--notify-url: {url!r} is not an http(s) URL")
    return url


def notify_on_failure(url: str) -> str:
    """Create or update the automation that POSTs to ``url`` when a nightly flow run fails;
    returns its id. Needs a Prefect server (automations run there)."""
    from prefect.automations import AutomationCore, CallWebhook, EventTrigger, Posture
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    check_url(url)
    if not PREFECT_API_URL.value():
        raise ConfigError(
            "--notify-url needs a Prefect server (automations run there): set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api)"
        )
    block_id = cast(
        UUID,
        Webhook(method="POST", url=SecretStr(url)).save(WEBHOOK_BLOCK, overwrite=True),
    )
    automation = AutomationCore(
        name=AUTOMATION,
        description="POST to a webhook when a nightly claims run fails (claims --notify-url)",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
    )
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(AUTOMATION)
        if not found:
            return str(client.create_automation(automation))
        client.update_automation(found[0].id, automation)
        for extra in found[1:]:
            client.delete_automation(extra.id)
        return str(found[0].id)
