"""Which episodes a product shows: small selector callables built from the ``selection`` config.

A selector takes the log's episodes and returns the chosen ones in the order they are shown. The orders are by
training time (the policy version that started the episode, then the episode index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from render.errors import SelectionError
from render.schedule import TrainingSchedule
from replay import EpisodeRecord
from replay.reader import TAG_FILTERS

Selector = Callable[[Sequence[EpisodeRecord]], list[EpisodeRecord]]
SeekCost = Callable[[EpisodeRecord], int]
TAGS = TAG_FILTERS


def chronological(
    episodes: Sequence[EpisodeRecord], tag: str = "any", *, finished_only: bool = False
) -> list[EpisodeRecord]:
    """Episodes with ``tag`` (``"any"`` for all) in training order."""
    if tag not in TAGS:
        raise SelectionError(f"unknown episode tag {tag!r}; choose one of {', '.join(TAGS)}")
    chosen = [e for e in episodes if (tag == "any" or e.tag == tag) and (e.finished or not finished_only)]
    return sorted(chosen, key=lambda e: (e.policy_versions[0], e.index))


def pick_episode(episodes: Sequence[EpisodeRecord], which: str | int, tag: str = "any") -> EpisodeRecord:
    """One episode: an index into the log (``"12"``, ``-1``), or the ``best``, ``worst`` or ``last``
    finished one among ``tag``. Among episodes of equal return, ``best`` and ``worst`` take the first recorded, as
    ``python -m replay.show``, the viewer and a time-lapse's highlights do."""
    text = str(which).strip().lower()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not -len(episodes) <= index < len(episodes):
            raise SelectionError(
                f"episode {index} is out of range; the log has {len(episodes)} episodes: pick one of "
                f"0..{len(episodes) - 1} (negative counts from the end), or best, worst or last"
            )
        return episodes[index]
    pool = chronological(episodes, tag, finished_only=True)  # an unfinished episode has no total reward
    if not pool:
        raise SelectionError(
            f"the log has no finished {tag!r} episodes to pick {text!r} from; pick one by index instead "
            "(episode=0 for the first recorded, episode=-1 for the last)"
        )
    if text == "best":
        return max(pool, key=lambda e: (e.total_reward, -e.index))
    if text == "worst":
        return min(pool, key=lambda e: (e.total_reward, e.index))
    if text == "last":
        return pool[-1]
    raise SelectionError(f"episode={which!r} is neither an index nor one of best, worst, last")


def evenly(count: int, tag: str = "train", seek_cost: SeekCost | None = None) -> Selector:
    """``count`` episodes evenly spaced over the run, first and last included.

    With ``seek_cost`` (steps to emulate before an episode's first frame, see
    :func:`render.feed.seek_distance`) each pick between the first and the last is instead the cheapest-to-reach
    episode within half a spacing of its even position (one per equal slice of the run): a time-lapse then
    re-simulates its episodes rather than the long way to them from the last snapshot. The first and last stay
    exact, so the selection always spans the whole run.
    """
    if count < 1:
        raise SelectionError(f"expected a positive selection count, got {count}")

    def select(episodes: Sequence[EpisodeRecord]) -> list[EpisodeRecord]:
        pool = chronological(episodes, tag, finished_only=True)
        if len(pool) <= count:
            return pool
        targets = np.linspace(0, len(pool) - 1, count).round().astype(int)
        reach = 0 if seek_cost is None or count < 2 else (len(pool) - 1) // ((count - 1) * 2)
        picks = [targets[0], targets[-1]]
        for target in targets[1:-1]:
            window = range(max(0, target - reach), min(len(pool), target + reach + 1))
            picks.append(min(window, key=lambda i: (seek_cost(pool[i]), abs(i - target))) if reach else target)
        return [pool[i] for i in sorted(set(picks))]

    return select


def every(n: int, tag: str = "train") -> Selector:
    """Every ``n``-th episode of the run, starting with the first."""
    if n < 1:
        raise SelectionError(f"expected a positive selection.every, got {n}")
    return lambda episodes: chronological(episodes, tag, finished_only=True)[::n]


def progress_range(
    start: float,
    stop: float,
    count: int,
    schedule: TrainingSchedule,
    tag: str = "train",
    seek_cost: SeekCost | None = None,
) -> Selector:
    """``count`` episodes spread as :func:`evenly` does among those played between progress ``start`` and
    ``stop``."""
    if not 0.0 <= start < stop <= 1.0:
        raise SelectionError(f"expected 0 <= start < stop <= 1 for a progress range, got {start}..{stop}")
    if schedule.num_updates is None:
        raise SelectionError(
            "this log stores no training config (it was not recorded by replay.train), so episodes cannot be placed "
            "by training progress; use selection=evenly or selection=every"
        )
    inner = evenly(count, tag, seek_cost)

    def select(episodes: Sequence[EpisodeRecord]) -> list[EpisodeRecord]:
        inside = [e for e in episodes if start <= schedule.progress(e.policy_versions[0]) <= stop]
        return inner(inside)

    return select


def highlights(count: int, schedule: TrainingSchedule, tag: str = "train") -> Selector:
    """The best finished episode of each of ``count`` equal stretches of training progress, in training order:
    a time-lapse of them shows the learning arc, and the run's best episode (``best``: of equal returns, the first
    recorded) is always among them.

    An episode belongs to the stretch its first policy version falls in (the last stretch includes its end); a
    stretch in which no episode started is skipped. Without a training config in the log, the stretches divide
    the policy versions from 0 to the last one instead.
    """
    if count < 1:
        raise SelectionError(f"expected a positive selection count, got {count}")

    def select(episodes: Sequence[EpisodeRecord]) -> list[EpisodeRecord]:
        pool = chronological(episodes, tag, finished_only=True)
        span = schedule.num_updates or max((e.policy_versions[0] for e in pool), default=0)

        def stretch(episode: EpisodeRecord) -> int:  # in integers: a version on a boundary starts its stretch
            return min(count - 1, episode.policy_versions[0] * count // span) if span else 0

        best: dict[int, EpisodeRecord] = {}
        for episode in pool:
            k = stretch(episode)
            if k not in best or episode.total_reward > best[k].total_reward:  # ties: the first recorded
                best[k] = episode
        return [best[k] for k in sorted(best)]

    return select
