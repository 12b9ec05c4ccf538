# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""GenVal-style synthetic validation (Loiseau et al., ECCV 2024), without ROS.

Label-preserving covariate shifts and OOD insertions generated from the user's own frames, the reliability
metrics measured on them, and the calibration (temperature, mask threshold) fitted from them for the node.
"""
