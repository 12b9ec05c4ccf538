# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Temporal fusion, ground geometry and obstacle tracks (ood_seg_node.temporal, ood_seg_node.camera)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ood_seg_node.camera import CameraView, ground_homography, mount_pose, pose_matrix
from ood_seg_node.datasets.synthetic import SyntheticSequence
from ood_seg_node.evaluation.temporal import TemporalMeter, gt_objects, match
from ood_seg_node.obstacles import Obstacle
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.temporal import ObstacleTracker, TemporalFusion
from ood_seg_node.temporal.fusion import Correspondence, depth_correspondence


@pytest.fixture(scope="module")
def drive() -> SyntheticSequence:
    return SyntheticSequence(2001, 6, height=96, width=192)


def _texture(height: int, width: int, shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (height, width + 40), dtype=np.uint8)
    base = np.repeat(np.repeat(base[:, ::4], 4, axis=1), 1, axis=0)[:, :width + 40]
    grey = base[:, 20 - shift:20 - shift + width]
    return np.repeat(grey[..., None], 3, axis=2).copy()


def test_ground_homography_agrees_with_the_rendered_depth_on_the_road(drive: SyntheticSequence) -> None:
    previous, current = drive[2], drive[3]
    homography = ground_homography(previous.view, current.view)
    exact = depth_correspondence(previous.view, current.view, current.depth)
    v, u = np.nonzero((current.ood_gt == 0) & exact.valid)
    mapped = np.stack([u, v, np.ones_like(u)]).astype(float)
    mapped = homography @ mapped
    error = np.hypot(mapped[0] / mapped[2] - exact.map_x[v, u], mapped[1] / mapped[2] - exact.map_y[v, u])
    motion = np.hypot(exact.map_x[v, u] - u, exact.map_y[v, u] - v)
    assert len(u) > 500 and np.median(motion) > 1.0  # the camera moved
    assert np.percentile(error, 99) < 0.05


def test_mount_pose_puts_the_optical_axis_forward_and_down() -> None:
    pitch = 0.1
    mount = mount_pose(1.4, pitch)
    forward = mount[:3, :3] @ np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(forward, [math.cos(pitch), 0.0, -math.sin(pitch)], atol=1e-12)
    np.testing.assert_allclose(mount[:3, :3] @ [1.0, 0.0, 0.0], [0.0, -1.0, 0.0], atol=1e-12)  # right = -y
    assert mount[2, 3] == 1.4
    view = CameraView((100.0, 100.0, 50.0, 40.0), 1.4, pitch, mount)
    down_in_base = mount[:3, :3] @ view.ground_normal
    np.testing.assert_allclose(down_in_base, [0.0, 0.0, -1.0], atol=1e-12)


def test_pose_matrix_rotates_like_the_quaternion_and_refuses_garbage() -> None:
    yaw = 0.3
    pose = pose_matrix((1.0, 2.0, 0.0), (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)))
    np.testing.assert_allclose(pose[:3, :3] @ [1.0, 0.0, 0.0], [math.cos(yaw), math.sin(yaw), 0.0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], [1.0, 2.0, 0.0])
    for quaternion in ((0.0, 0.0, 0.0, 0.0), (math.nan, 0.0, 0.0, 1.0)):
        with pytest.raises(ValueError, match="invalid pose"):
            pose_matrix((0.0, 0.0, 0.0), quaternion)


def test_flow_fusion_follows_a_moving_object_and_damps_a_one_frame_blob() -> None:
    fusion = TemporalFusion("flow", alpha=0.5)
    height, width = 64, 128
    scores = []
    for shift in range(4):
        score = np.zeros((height, width), np.float32)
        score[30:38, 40 + 2 * shift:48 + 2 * shift] = 1.0  # an object moving right with the texture
        if shift == 2:
            score[5:12, 100:108] = 1.0  # a blob seen in one frame only
        scores.append(score)
        step = fusion.step({"h": score}, _texture(height, width, 2 * shift))
    assert step.restart == "" and not step.cut
    fused = step.scores["h"]
    assert fused[32:36, 44 + 6:46 + 6].min() > 0.9  # the object kept its full score where it is now
    assert fused[7:10, 102:106].max() < 0.3  # last frame's blob: 0.5 then decayed to 0.25


def test_restarts_on_cuts_and_missing_motion() -> None:
    image = _texture(32, 64)
    score = {"h": np.ones((32, 64), np.float32)}
    fusion = TemporalFusion("flow", max_gap_s=0.5)
    assert fusion.step(score, image, stamp=1.0).restart == "first frame"
    assert fusion.step(score, image, stamp=1.1).restart == ""
    assert fusion.step(score, image, stamp=2.0).restart.startswith("stamp gap")
    assert fusion.step(score, image, stamp=1.5).restart.startswith("stamp gap")  # a bag looping back
    assert fusion.step({"h": np.ones((16, 32), np.float32)}, image, stamp=1.6).restart == "image size changed"
    ground = TemporalFusion("ground")
    ground.step(score, image)
    step = ground.step(score, image)
    assert step.restart == "no camera pose" and not step.cut
    passthrough = TemporalFusion("none")
    out = passthrough.step(score, image)
    assert out.scores["h"] is score["h"] and out.cut
    for bad, message in ((dict(mode="kalman"), "temporal_fusion"), (dict(alpha=0.0), "temporal_alpha"),
                         (dict(max_gap_s=math.inf), "temporal_max_gap")):
        with pytest.raises(ValueError, match=message):
            TemporalFusion(**bad)


def _obstacle(x0: int, y0: int, size: int = 8) -> Obstacle:
    return Obstacle(x0, y0, x0 + size, y0 + size, size * size, 1.0, 1.0, (x0 + size / 2, y0 + size / 2))


def test_tracks_keep_ids_confirm_after_n_of_m_and_forget_one_frame_blobs() -> None:
    tracker = ObstacleTracker(confirm_hits=3, window=5)
    ids, confirmed = [], []
    for frame in range(5):
        obstacles = [_obstacle(20 + frame, 20)] + ([_obstacle(80, 5)] if frame == 1 else [])
        tracks = tracker.update(obstacles)
        assert [t.obstacle for t in tracks] == obstacles
        ids.append(tracks[0].id)
        confirmed.append(tracks[0].confirmed)
        if frame == 1:
            blob = tracks[1]
            assert blob.id != tracks[0].id and not blob.confirmed and blob.seen_total == 1
    assert len(set(ids)) == 1
    assert confirmed == [False, False, True, True, True]
    assert tracks[0].confidence == 1.0 and tracks[0].seen == 5 and tracks[0].age == 4
    for _ in range(5):  # the blob was last seen 4 frames ago: dropped after the window
        tracker.update([_obstacle(25, 20)])
    assert tracker.live == 1
    tracker.reset()
    assert tracker.update([_obstacle(25, 20)])[0].id > max(ids + [blob.id])  # IDs are never reused


def test_association_uses_the_motion_compensation() -> None:
    height, width = 40, 80
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    moved_left = Correspondence(u - 12.0, v, np.ones((height, width), bool))  # the scene moved 12 px right
    plain = ObstacleTracker(confirm_hits=1, window=2)
    compensated = ObstacleTracker(confirm_hits=1, window=2)
    first = [plain.update([_obstacle(10, 10)])[0].id, compensated.update([_obstacle(10, 10)])[0].id]
    assert plain.update([_obstacle(22, 10)])[0].id != first[0]  # 8 px boxes 12 px apart: no overlap
    assert compensated.update([_obstacle(22, 10)], moved_left)[0].id == first[1]


def test_pipeline_first_frame_is_scored_alone_and_later_frames_are_fused(drive: SyntheticSequence) -> None:
    plain = Pipeline.from_names(head="energy", device="cpu")
    fused = Pipeline.from_names(head="energy", device="cpu", temporal_fusion="ground")
    frames = [drive[i] for i in range(3)]
    a = [plain.process(f.image) for f in frames]
    b = [fused.process(f.image, view=f.view) for f in frames]
    assert b[0].restart == "first frame" and b[1].restart == ""
    np.testing.assert_allclose(b[0].score, a[0].score, atol=1e-5)
    assert np.abs(b[2].score - a[2].score).max() > 1e-2
    assert "fusion" in b[2].timings_ms
    for result in b:
        assert [t.obstacle for t in result.tracks] == result.obstacles
    fused.restart()
    again = fused.process(frames[2].image, view=frames[2].view)
    assert again.restart == "first frame"
    np.testing.assert_allclose(again.score, a[2].score, atol=1e-5)


def test_meter_flicker_and_obstacle_counts_on_a_known_sequence(drive: SyntheticSequence) -> None:
    frames = [drive[i] for i in range(4)]
    for frame in frames:
        frame.ood_gt = np.zeros_like(frame.ood_gt)  # all road, one square object
        frame.ood_gt[40:60, 80:100] = 1
        frame.depth = None  # no geometry: DIS flow between the frames (identical images below)
        frame.image = frames[0].image
    meter = TemporalMeter({"steady": 0.5, "blinking": 0.5}, min_area=50)
    tracker = {name: ObstacleTracker() for name in meter.thresholds}
    for i, frame in enumerate(frames):
        blinking = np.zeros(frame.ood_gt.shape, np.float32)
        blinking[40:60, 80:100] = 1.0
        steady = blinking.copy()
        steady[5:25, 150:170] = 1.0  # a false object that stays
        if i % 2:
            blinking[5:25, 10:30] = 1.0  # a false object every other frame
        scores = {"steady": steady, "blinking": blinking}
        tracks = {name: tracker[name].follow(score, 0.5, 50, score.shape)[1] for name, score in scores.items()}
        meter.add(frame, scores, tracks, first=i == 0)
    result = meter.result()
    assert result["steady"]["flicker"] == 0.0
    assert result["blinking"]["flicker"] > 0.3
    assert result["steady"]["components"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "tp": 4, "fp": 4, "fn": 0})
    assert result["steady"]["confirmed"]["fp"] == 2  # confirmed from its third frame on
    assert result["blinking"]["components"] == pytest.approx(
        {"precision": 4 / 6, "recall": 1.0, "f1": 0.8, "tp": 4, "fp": 2, "fn": 0})
    assert result["blinking"]["confirmed"]["fp"] == 0  # seen in 1 of 3 frames at most: never confirmed
    assert result["blinking"]["false_never_confirmed_share"] == 1.0
    assert result["steady"]["first_frame"]["frames"] == 1 and result["steady"]["later_frames"]["frames"] == 3


def test_gt_objects_and_matching() -> None:
    gt = np.zeros((50, 50), np.uint8)
    gt[5:15, 5:15] = 1
    gt[30:32, 30:32] = 1  # 4 px: below the smallest object
    assert gt_objects(gt, 50) == [(5, 5, 15, 15)]
    found, hit = match([(4, 4, 14, 14), (30, 30, 40, 40)], [(5, 5, 15, 15)])
    assert found == 1 and hit == [True, False]


def test_evaluate_compares_fusion_modes_on_one_forward(tmp_path, capsys) -> None:
    import json

    from ood_seg_node.cli import main as cli_main

    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--dataset", "synthetic", "--seed", "2001", "--sequences", "2", "--frames", "4",
                     "--height", "64", "--width", "128", "--head", "msp", "--temporal-fusion", "none", "flow",
                     "ground", "--device", "cpu", "--overlays", "1", "--out", str(out)]) == 0
    heads = json.loads((out / "metrics.json").read_text())["heads"]
    assert set(heads) == {"msp", "msp@flow", "msp@ground"}
    first = {name: run["temporal"]["first_frame"] for name, run in heads.items()}
    assert first["msp"]["frames"] == 2  # one first frame per drive
    assert first["msp"] == first["msp@flow"] == first["msp@ground"]  # a sequence's first frame is scored alone
    assert heads["msp"]["temporal"]["overhead"] == 0.0 and heads["msp@flow"]["temporal"]["overhead"] > 0.0
    assert heads["msp@flow"]["ap"] != heads["msp"]["ap"]
    assert list((out / "overlays").glob("worst_msp@ground_1_*.png")) and (out / "temporal.png").is_file()
    capsys.readouterr()
    assert cli_main(["evaluate", "--dataset", "synthetic", "--frames", "2", "--height", "32", "--width", "64",
                     "--head", "msp", "--temporal-fusion", "flow", "--shard", "0/2", "--device", "cpu",
                     "--out", str(tmp_path / "shard")]) != 0
    assert "no --shard with it" in capsys.readouterr().err


def test_ground_fusion_without_camera_poses_is_refused_in_one_line(drive: SyntheticSequence) -> None:
    from ood_seg_node.datasets.base import Frame
    from ood_seg_node.evaluation.metrics import EvaluationError
    from ood_seg_node.offline_evaluation import PipelineScorer, evaluate_frames

    frames = [Frame(f.image, f.ood_gt, f.semantic, f.name, f.sequence, f.index) for f in (drive[0], drive[1])]
    scorer = PipelineScorer(Pipeline.from_names(head="msp", device="cpu"), fusion_modes=["ground"])
    with pytest.raises(EvaluationError, match="needs each frame's camera pose") as error:
        evaluate_frames(lambda: iter(frames), [scorer], kind="obstacle")
    assert "\n" not in str(error.value)
