#!/usr/bin/env bash
# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
# Creates .venv (if missing) with PyTorch, ROS 2 Kilted from the ros-* PyPI wheels, and this package (editable).
# On a machine with a ROS 2 distribution, use colcon instead (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch 2.14.1 + torchvision 0.29.1 (pip takes both from the local wheel cache for Python 3.11 when present)
python -c "import torch, torchvision" 2>/dev/null || python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q \
  ros-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs ros-visualization-msgs ros-std-msgs \
  ros-diagnostic-msgs ros-geometry-msgs ros-nav-msgs
# .[segformer] = transformers (optional segformer segmenter), .[onnx] = onnx, onnxscript, onnxruntime
# (ood_seg export, backend onnxruntime), .[genval] = albumentations (ood_seg validate's weather effects);
# none touches torch
python -m pip install -q -e ".[test,segformer,onnx,genval]"
echo "setup done: $(python -c 'import torch, rclpy, rosbags; print("torch", torch.__version__, "| rclpy ok | rosbags ok")')"
