"""Kafka topic names, defined once, with an optional deployment prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The pipeline's topic names.

    Args:
        prefix: Prepended verbatim to every name (e.g. ``"acme."``), so several
            deployments can share one cluster.
    """

    prefix: str = ""

    @property
    def raw(self) -> str:
        """Posts as ingested by the connectors."""
        return f"{self.prefix}mentions.raw"

    @property
    def classified(self) -> str:
        """Posts with a classification."""
        return f"{self.prefix}mentions.classified"

    @property
    def needs_response(self) -> str:
        """The human queue: posts that need an answer, keyed by Mention id."""
        return f"{self.prefix}mentions.needs-response"

    @property
    def alerts(self) -> str:
        """Spike and crisis alerts."""
        return f"{self.prefix}mentions.alerts"

    @property
    def acks(self) -> str:
        """Acknowledgements of queue items: keyed by Mention id, written by the support tooling."""
        return f"{self.prefix}mentions.acks"

    @property
    def corrections(self) -> str:
        """People's label corrections, keyed by Mention id; compacted (the latest per id stays).

        Not in :meth:`all`: it is created compacted by the worker and by the
        commands that write it (``agents/queue/corrections.py``), not with the defaults.
        """
        return f"{self.prefix}mentions.corrections"

    @property
    def inbox_actions(self) -> str:
        """What people and helpdesks did to queue items (claim, respond, resolve...), keyed by id.

        Compacted, and each record carries the item's whole inbox state
        (``agents/queue/actions.py``). Not in :meth:`all`, like :attr:`corrections`.
        """
        return f"{self.prefix}mentions.inbox-actions"

    @property
    def spam_authors(self) -> str:
        """Authors support staff marked as spam, keyed by author key (``<source>:<id>``); compacted.

        The worker's author vetting reads it (flag ``marked_spam``). Not in :meth:`all`.
        """
        return f"{self.prefix}mentions.spam-authors"

    @property
    def dead_letter(self) -> str:
        """Anything that failed to decode, validate, classify or deliver, with its reason."""
        return f"{self.prefix}mentions.dead-letter"

    def all(self) -> tuple[str, ...]:
        """Every topic name, in pipeline order."""
        return (
            self.raw,
            self.classified,
            self.needs_response,
            self.acks,
            self.alerts,
            self.dead_letter,
        )
