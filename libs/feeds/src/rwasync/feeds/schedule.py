"""Feed schedules: an interval (`90s`, `15m`, `24h`, `1d`) or a cron expression (five fields,
evaluated in UTC, e.g. `0 3 * * *`), and the next run time with jitter, so that feeds registered
together do not all hit their providers in the same second.

Jitter adds a random delay of up to 10 % of the interval; for cron, up to 10 % of the gap to the
firing after, at most `MAX_CRON_JITTER`, so a cron feed still runs close to the time it names.
A feed put back on its schedule (enabled again) runs once soon, `resume`: now plus the same
jitter, at most `MAX_RESUME_JITTER`, then on its schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cronsim import CronSim, CronSimError

from rwasync.schema.feeds import MIN_INTERVAL_SECONDS, FeedSettingInvalid, parse_interval

JITTER_SHARE: Final = 0.1
MAX_CRON_JITTER: Final = timedelta(minutes=5)
MAX_RESUME_JITTER: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class Schedule:
    interval_seconds: int | None = None
    cron: str | None = None

    @property
    def manual(self) -> bool:
        return self.interval_seconds is None and self.cron is None

    def text(self) -> str | None:
        """The schedule as a registration writes it (None: runs only when triggered)."""
        if self.cron is not None:
            return self.cron
        if self.interval_seconds is not None:
            return f"{self.interval_seconds}s"
        return None

    def next_run(self, after: datetime, rng: random.Random | None = None) -> datetime | None:
        """The next time a run is due after `after`, jitter included (None: manual only)."""
        draw = (rng or random).random()
        if self.interval_seconds is not None:
            return after + self._interval() + self._jitter(after) * draw
        if self.cron is not None:
            return next(CronSim(self.cron, after)) + self._jitter(after) * draw
        return None

    def resume(self, now: datetime, rng: random.Random | None = None) -> datetime | None:
        """When a feed put back on its schedule runs: once soon (now, plus the schedule's jitter
        up to `MAX_RESUME_JITTER`, so that feeds enabled together do not all start at once),
        not where its schedule stood when it was disabled, long past or far ahead; its schedule
        goes on from that run. None: manual only."""
        if self.manual:
            return None
        draw = (rng or random).random()
        return now + min(self._jitter(now), MAX_RESUME_JITTER) * draw

    def _interval(self) -> timedelta:
        # A feed registered before intervals had their floor runs at the floor's pace.
        assert self.interval_seconds is not None
        return timedelta(seconds=max(self.interval_seconds, MIN_INTERVAL_SECONDS))

    def _jitter(self, after: datetime) -> timedelta:
        """The longest random delay of a run due after `after` (a cron's: of its next firing)."""
        if self.interval_seconds is not None:
            return self._interval() * JITTER_SHARE
        assert self.cron is not None
        firings = CronSim(self.cron, after)
        first = next(firings)
        return min((next(firings) - first) * JITTER_SHARE, MAX_CRON_JITTER)


def parse_schedule(text: str | None) -> Schedule:
    """A schedule from its text: an interval, a five-field cron expression, or none (None).
    Blank text is refused: it turned a scheduled feed into one run only on request, as an
    empty template variable would (hybrid trial)."""
    if text is None:
        return Schedule()
    if not text.strip():
        raise FeedSettingInvalid(
            "/schedule",
            "is blank: give an interval such as 24h or a cron expression such as '0 3 * * *' "
            "(with no schedule at all, null, a feed runs only on request)",
        )
    text = " ".join(text.split())
    if " " not in text:
        return Schedule(interval_seconds=parse_interval(text))
    if len(text.split(" ")) != 5:
        raise FeedSettingInvalid(
            "/schedule",
            f"invalid schedule {text!r}: an interval such as 24h, or a cron expression of five "
            "fields such as '0 3 * * *'",
        )
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise FeedSettingInvalid("/schedule", f"invalid cron expression {text!r}: {exc}") from None
    return Schedule(cron=text)
