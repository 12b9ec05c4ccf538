# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Shared fixtures: tiny random-weight checkpoints, so tests never depend on the shipped weights."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # two cores are shared with DDS processes in the node tests; one torch thread keeps them responsive
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def random_builtin_checkpoint(tmp_path_factory) -> str:
    from ood_seg_node.checkpoints import save_checkpoint
    from ood_seg_node.segmenters.builtin import BuiltinSegmenter

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "builtin_random.pt"
    save_checkpoint(path, BuiltinSegmenter().state_dict(), kind="segmenter", name="builtin",
                    config={"input_size": [64, 128]})
    return str(path)
