"""Which of two changes to an asset is newer (API.md, "Versions"), as a pure ordering.

A change replaces the stored state only when its version is greater: a later `updated_at` wins;
at equal `updated_at` a deletion beats an upsert; then the later-accepted change wins; and last
the event id, so that two changes accepted at the same instant on two replicas still order the
same everywhere. The reconciler's SQL guard (the `WHERE` of its upsert) implements exactly this
order by comparing the row `(updated_at, is_deletion, accepted_at, event_id)`; Postgres orders
`uuid` values bytewise, which is the order of their lowercase text used here. Keep them in step.
"""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """The version of one change; compare with `<`/`>` or `is_newer`. Datetimes must be aware."""

    updated_at: datetime
    is_deletion: bool
    accepted_at: datetime
    event_id: str

    def __post_init__(self) -> None:
        if self.updated_at.tzinfo is None or self.accepted_at.tzinfo is None:
            raise ValueError("Version timestamps must be timezone-aware")
        # The lowercase text of the UUID, so a `UUID` object and its text compare alike.
        object.__setattr__(self, "event_id", str(self.event_id).lower())


def is_newer(incoming: Version, stored: Version | None) -> bool:
    """Whether `incoming` replaces `stored` (anything replaces nothing)."""
    return stored is None or incoming > stored
