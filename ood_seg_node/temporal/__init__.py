# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Sequences, not frames: score fusion along the scene's motion and obstacle tracks with stable IDs."""

from ood_seg_node.temporal.fusion import FUSION_MODES, Correspondence, FusionStep, TemporalFusion
from ood_seg_node.temporal.tracking import ObstacleTracker, Track

__all__ = ["FUSION_MODES", "Correspondence", "FusionStep", "ObstacleTracker", "TemporalFusion", "Track"]
