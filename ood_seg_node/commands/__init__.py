# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""One module per ``ood_seg`` sub-command, each with ``add_arguments(parser)`` and ``run(args) -> int``."""

COMMANDS: dict[str, str] = {
    "demo": "the embedded default end to end: synthetic bag -> real node over DDS -> evaluation report",
    "make-bag": "write a rosbag2 (mcap or sqlite3) from the synthetic world or a benchmark dataset",
    "evaluate": "evaluate heads offline on a dataset, a bag, or precomputed score maps",
    "train-segmenter": "train the builtin segmenter on the synthetic world",
    "train-head": "train an OOD head (obsnet, rpl, nflowjs, dicnet) on the synthetic world",
    "bench": "print the performance ratios of the README's performance section",
}
