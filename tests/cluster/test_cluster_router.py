"""The order in which generation replicas are offered a job (backend/cluster/router.py), without
starting Ray: the holder of the checkpoint first, then empty replicas, then the rest."""

from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="!!! the cluster tier needs the cluster extra (ray[serve])")

from backend.cluster.router import rank  # noqa: E402

pytestmark = pytest.mark.cluster


def test_the_holder_comes_first_then_empty_replicas_then_the_rest():
    replicas = [("a", {"tiny-inpaint"}), ("b", set()), ("c", {"tiny"}), ("d", set())]
    assert rank(replicas, "tiny") == [["c"], ["b", "d"], ["a"]]


def test_a_checkpoint_nobody_holds_goes_to_empty_replicas_before_evicting_one():
    assert rank([("a", {"tiny"}), ("b", set())], "tiny-sdxl") == [["b"], ["a"]]
    assert rank([("a", {"tiny"}), ("b", {"tiny-inpaint"})], "tiny-sdxl") == [["a", "b"]]


def test_several_holders_share_one_group_and_no_key_offers_everyone():
    assert rank([("a", {"tiny"}), ("b", {"tiny"})], "tiny") == [["a", "b"]]
    assert rank([("a", {"tiny"}), ("b", set())], "") == [["a", "b"]]
    assert rank([], "tiny") == []
