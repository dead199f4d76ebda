from __future__ import annotations

import gc

from auditflow.gctune import GEN0_THRESHOLD, tuned_collector


def test_the_collector_is_tuned_inside_the_block_and_restored_after_it() -> None:
    before = gc.get_threshold()
    with tuned_collector():
        assert gc.get_threshold() == (max(GEN0_THRESHOLD, before[0]), before[1], before[2])
        assert gc.get_freeze_count() > 0  # what start-up created is left out of collections
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
