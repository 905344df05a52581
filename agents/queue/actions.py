"""What people (and the systems the sinks deliver to) do to queue items: the inbox's action records.

Every action on a queue item (claim, release, take over, first response,
resolve, reopen, reassign team, correct the label, mark the author as spam) is
one record on ``mentions.inbox-actions``, a compacted topic keyed by the
Mention id. Compaction keeps only the latest record of each item, so each
record carries the item's whole state *after* the action (:class:`ItemState`)
plus the action itself and the last :data:`HISTORY` actions: any inbox replica
rebuilds every item's state by reading the topic from the start, and two
replicas show the same state.

:func:`apply` is the one place the rules live (who may claim what, which
action moves which clock); the inbox, the helpdesk sync-back and the commands
all go through it, so an action that breaks a rule is refused the same way
everywhere (:class:`ActionRefused`).
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from listener.record import Label

ActionKind = Literal[
    "claim",
    "release",
    "take_over",
    "first_response",
    "resolve",
    "reopen",
    "reassign_team",
    "correct_label",
    "mark_spam",
]
Status = Literal["open", "claimed", "responded", "resolved"]
Role = Literal["agent", "lead"]

HISTORY = 50
"""Actions kept on each record (older ones are dropped; the item's state is whole regardless)."""


class ActionRefused(ValueError):
    """An action the item's state or the person's role does not allow; the message says why."""


class Action(BaseModel):
    """One action on one queue item.

    ``by`` is the person (inbox login) or the system (``zendesk``, ``pagerduty``...)
    that acted; ``source`` says through what (``inbox``, ``cli``, ``zendesk``...).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ActionKind
    by: str = Field(min_length=1, max_length=200)
    at: float = Field(description="Unix seconds.")
    source: str = Field(default="inbox", max_length=50)
    team: str | None = Field(default=None, max_length=100, description="reassign_team: the team.")
    label: Label | None = Field(default=None, description="correct_label: the new label.")
    note: str | None = Field(default=None, max_length=2000)


class ItemState(BaseModel):
    """A queue item's inbox state after its latest action."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=3, description='The Mention id, "<source>:<native id>".')
    status: Status = "open"
    holder: str | None = Field(default=None, description="Who has it claimed.")
    team: str | None = None
    label: Label | None = Field(default=None, description="The label as corrected, if it was.")
    first_response_at: float | None = None
    resolved_at: float | None = None
    author_spam: bool = False
    history: tuple[Action, ...] = ()

    def encode(self) -> bytes:
        """The record value on ``mentions.inbox-actions``."""
        return orjson.dumps(self.model_dump(mode="json"))


def decode_state(value: bytes) -> ItemState:
    """An :class:`ItemState` from its record value.

    Raises:
        pydantic.ValidationError: Not an item state.
    """
    return ItemState.model_validate_json(value)


def apply(state: ItemState, action: Action, role: Role = "agent") -> ItemState:
    """The item's state after ``action`` by someone with ``role``.

    Rules: a claimed item cannot be claimed by someone else (``take_over``,
    which a lead may do, moves it explicitly); only its holder or a lead
    releases it; a resolved item takes only ``reopen`` (and label corrections);
    only a lead reassigns the team. The first ``first_response`` stops the SLA
    clock (later ones keep the first time); ``resolve`` also counts as the
    first response if there was none.

    Raises:
        ActionRefused: The action is not allowed; the message says why.
    """
    kind, by = action.kind, action.by
    if state.status == "resolved" and kind not in ("reopen", "correct_label", "mark_spam"):
        raise ActionRefused(f"{state.id} is resolved; reopen it first")
    changes: dict[str, object] = {}
    if kind == "claim":
        if state.holder not in (None, by):
            raise ActionRefused(f"{state.id} is claimed by {state.holder}; take it over instead")
        changes = {"holder": by, "status": _held(state)}
    elif kind == "take_over":
        if role != "lead" and state.holder not in (None, by):
            raise ActionRefused("only a lead can take over an item someone else holds")
        changes = {"holder": by, "status": _held(state)}
    elif kind == "release":
        if state.holder is not None and state.holder != by and role != "lead":
            raise ActionRefused(f"{state.id} is held by {state.holder}, not {by}")
        changes = {"holder": None, "status": "responded" if state.first_response_at else "open"}
    elif kind == "first_response":
        changes = {
            "first_response_at": state.first_response_at or action.at,
            "status": "responded",
        }
    elif kind == "resolve":
        changes = {
            "first_response_at": state.first_response_at or action.at,
            "resolved_at": action.at,
            "status": "resolved",
        }
    elif kind == "reopen":
        changes = {
            "resolved_at": None,
            "status": "responded" if state.first_response_at else "open",
        }
    elif kind == "reassign_team":
        if role != "lead":
            raise ActionRefused("only a lead can reassign an item to another team")
        if not action.team:
            raise ActionRefused("reassign_team needs a team")
        changes = {"team": action.team, "holder": None}
        changes["status"] = "responded" if state.first_response_at else "open"
    elif kind == "correct_label":
        if action.label is None:
            raise ActionRefused("correct_label needs a label")
        changes = {"label": action.label}
    elif kind == "mark_spam":
        changes = {"author_spam": True}
    history = (*state.history, action)[-HISTORY:]
    return state.model_copy(update={**changes, "history": history})


def _held(state: ItemState) -> Status:
    return "responded" if state.first_response_at else "claimed"
