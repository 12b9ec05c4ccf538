# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Pixel-wise out-of-distribution detection for road-scene segmentation, with a ROS 2 node at the edge."""

__version__ = "0.1.0"
