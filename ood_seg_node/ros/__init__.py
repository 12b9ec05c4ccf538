# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The ROS edge: the node, the online evaluator, message conversion, markers, the DDS profile and replay.

Only this subpackage imports rclpy and the ROS message packages; everything it calls (pipeline, heads,
evaluation, bags) runs without them.
"""
