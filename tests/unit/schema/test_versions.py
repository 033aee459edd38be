"""Version order (docs/api.md, "Versions and ordering"): the newest change wins whatever the
delivery order."""

import functools
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rwasync.schema.versions import Version, is_newer

pytestmark = pytest.mark.unit

T0 = datetime(2025, 5, 1, tzinfo=UTC)
ID_A = "00000000-0000-4000-8000-000000000001"
ID_B = "00000000-0000-4000-8000-000000000002"


def version(
    updated: int = 0, *, deletion: bool = False, accepted: int = 0, event_id: str = ID_A
) -> Version:
    return Version(
        updated_at=T0 + timedelta(seconds=updated),
        is_deletion=deletion,
        accepted_at=T0 + timedelta(seconds=accepted),
        event_id=event_id,
    )


def test_anything_replaces_nothing() -> None:
    assert is_newer(version(), None)


def test_later_updated_at_wins_whatever_else() -> None:
    older = version(0, deletion=True, accepted=100, event_id=ID_B)
    newer = version(1, deletion=False, accepted=0, event_id=ID_A)

    assert is_newer(newer, older)
    assert not is_newer(older, newer)


def test_at_equal_updated_at_a_deletion_beats_an_upsert() -> None:
    upsert = version(5, accepted=100, event_id=ID_B)
    deletion = version(5, deletion=True, accepted=0, event_id=ID_A)

    assert is_newer(deletion, upsert)
    assert not is_newer(upsert, deletion)


def test_then_the_later_accepted_change_wins() -> None:
    first = version(5, accepted=1, event_id=ID_B)
    second = version(5, accepted=2, event_id=ID_A)

    assert is_newer(second, first)
    assert not is_newer(first, second)


def test_then_the_event_id_decides_so_replicas_agree() -> None:
    a = version(5, accepted=1, event_id=ID_A)
    b = version(5, accepted=1, event_id=ID_B)

    assert is_newer(b, a)
    assert not is_newer(a, b)


def test_the_same_version_is_not_newer_than_itself() -> None:
    assert not is_newer(version(5), version(5))


def test_instants_compare_across_offsets() -> None:
    plus_two = timezone(timedelta(hours=2))
    same = Version(T0.astimezone(plus_two), False, T0.astimezone(plus_two), ID_A)

    assert same == version()
    assert not is_newer(same, version())


def test_event_ids_compare_as_lowercase_uuid_text() -> None:
    as_uuid = Version(T0, False, T0, uuid.UUID(ID_B))  # type: ignore[arg-type]
    as_upper = Version(T0, False, T0, ID_B.upper())

    assert as_uuid == as_upper == version(event_id=ID_B)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Version(datetime(2025, 5, 1), False, T0, ID_A)


# Few distinct values, so that ties on every field happen often.
versions = st.builds(
    version,
    st.integers(0, 3),
    deletion=st.booleans(),
    accepted=st.integers(0, 3),
    event_id=st.sampled_from([ID_A, ID_B, str(uuid.UUID(int=7))]),
)


def fold(changes: list[Version]) -> Version | None:
    """What the store ends with when the changes arrive in this order."""
    stored: Version | None = None
    for change in changes:
        if is_newer(change, stored):
            stored = change
    return stored


@settings(max_examples=300)
@given(
    st.lists(versions, min_size=1, max_size=12).flatmap(
        lambda vs: st.tuples(st.just(vs), st.permutations(vs))
    )
)
def test_the_outcome_does_not_depend_on_delivery_order(
    orders: tuple[list[Version], list[Version]],
) -> None:
    changes, shuffled = orders

    assert fold(shuffled) == fold(changes) == fold(list(reversed(changes))) == max(changes)
    assert functools.reduce(lambda a, b: b if is_newer(b, a) else a, shuffled) == max(changes)


@given(versions, versions)
def test_is_newer_is_a_strict_total_order(a: Version, b: Version) -> None:
    assert is_newer(a, b) + is_newer(b, a) + (a == b) == 1
