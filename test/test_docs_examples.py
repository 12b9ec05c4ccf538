# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The worked examples of docs/adding_a_head.md run as written: registered, scored, trained, loaded."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding_a_head.md"


def _python_blocks() -> dict[str, str]:
    """File path (the block's first comment line) -> code, for every python block of the page."""
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return {path: code for path, code in blocks}


def test_the_page_has_the_three_files():
    assert set(_python_blocks()) == {"ood_seg_node/heads/margin.py", "ood_seg_node/heads/probe.py",
                                     "ood_seg_node/training/probe.py"}


def test_the_examples_register_score_train_and_load(tmp_path, random_builtin_checkpoint):
    """Each block becomes its module; then the heads score, the trainer trains and the head loads its weights."""
    for path, code in _python_blocks().items():
        target = tmp_path / "modules" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    script = textwrap.dedent(f"""
        import importlib.util, math, sys, torch
        from pathlib import Path
        modules = Path({str(tmp_path / "modules")!r})

        def load(dotted, path):  # as if the file were in the package and its import line added
            spec = importlib.util.spec_from_file_location(dotted, modules / path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[dotted] = module
            spec.loader.exec_module(module)

        import ood_seg_node.heads, ood_seg_node.training.trainers
        load("ood_seg_node.heads.margin", "ood_seg_node/heads/margin.py")
        load("ood_seg_node.heads.probe", "ood_seg_node/heads/probe.py")
        load("ood_seg_node.training.probe", "ood_seg_node/training/probe.py")
        from ood_seg_node.heads import HEADS, build_head
        from ood_seg_node.pipeline import Pipeline
        from ood_seg_node.segmenters import build_segmenter
        from ood_seg_node.training.common import HeadTrainingConfig
        from ood_seg_node.training.loop import fit
        from ood_seg_node.training.trainers import TRAINERS

        assert "margin" in HEADS and "probe" in HEADS and "probe" in TRAINERS
        checkpoint = {random_builtin_checkpoint!r}
        image = (torch.rand(64, 128, 3) * 255).to(torch.uint8).numpy()
        result = Pipeline.from_names(head="margin", segmenter_checkpoint=checkpoint, device="cpu").process(image)
        assert result.score.shape == (64, 128) and bool((result.score <= 0).all())

        config = HeadTrainingConfig(head="probe", segmenter_checkpoint=checkpoint, out={str(tmp_path / "run")!r},
                                    sequences=2, frames_per_sequence=2, val_sequences=1, epochs=1, batch_size=2,
                                    height=64, width=128)
        trainer = TRAINERS.get("probe")(config, TRAINERS.get("probe").options_class())
        trained = fit(trainer, epochs=1, out=config.out)
        segmenter = build_segmenter("builtin", checkpoint)
        head = build_head("probe", segmenter, trained["checkpoint"])
        assert math.isfinite(head.default_threshold)
        pipeline = Pipeline(segmenter, head, device="cpu")
        score = pipeline.process(image).score
        assert score.shape == (64, 128) and bool(((score >= 0) & (score <= 1)).all())
        print("examples ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "examples ok" in result.stdout, result.stderr[-3000:]
