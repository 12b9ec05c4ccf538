# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ament_python package; also installs with plain ``pip install -e .`` (ROS 2 then comes from ros-* wheels)."""

from glob import glob as _glob

from setuptools import find_packages, setup

package_name = "ood_seg_node"


def glob(pattern: str) -> list[str]:
    return sorted(_glob(pattern))

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    package_data={package_name: ["weights/*.pt", "weights/*.json", "config/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{package_name}/weights",
         glob(f"{package_name}/weights/*.pt") + glob(f"{package_name}/weights/*.json")),
    ],
    # rclpy and the message packages come from the ROS distribution (or the ros-* wheels in a venv),
    # and torch/torchvision from the platform's build, so they are deliberately not install_requires.
    install_requires=["numpy", "opencv-python-headless", "pillow", "pyyaml", "tqdm", "matplotlib", "scipy", "rosbags",
                      "h5py"],
    zip_safe=True,
    maintainer="ood_seg_node developers",
    maintainer_email="dev@ood-seg-node.local",
    description="Pixel-wise out-of-distribution detection for road-scene segmentation as a ROS 2 node",
    license="Apache-2.0",
    # transformers only for the optional `segformer` segmenter (imported when it is built); onnx* only for
    # `ood_seg export` and backend onnxruntime (on a GPU, onnxruntime-gpu instead of onnxruntime)
    extras_require={
        "segformer": ["transformers"],
        "onnx": ["onnx>=1.17", "onnxscript>=0.3", "onnxruntime>=1.20"],
        "genval": ["albumentations>=2.0"],
        "inpaint": ["diffusers"],
        "test": ["pytest", "scikit-learn", "ruff", "mcap", "colcon-common-extensions", "transformers",
                 "onnx>=1.17", "onnxscript>=0.3", "onnxruntime>=1.20", "albumentations>=2.0",
                 "diffusers"],
    },
    entry_points={
        "console_scripts": [
            "ood_seg_node = ood_seg_node.ros.node:main",
            "ood_seg_evaluator = ood_seg_node.ros.evaluator_node:main",
            "ood_seg = ood_seg_node.cli:main",
        ],
    },
)
