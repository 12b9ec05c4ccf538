# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""OOD insertion by diffusion inpainting: GenVal's generator behind the paste inserter's interface.

GenVal (Loiseau et al., ECCV 2024) inpaints OOD objects into in-domain scenes with Stable Diffusion and takes
the object's extent from the generated pixels. Here the placement is the paste inserter's (a silhouette of a
physical size standing on the drivable area at perspective-correct scale), then each silhouette's box region
is inpainted from a text prompt with a local ``diffusers`` inpainting pipeline (``--inpaint-model DIR``, a
``save_pretrained`` folder such as ``stable-diffusion-2-inpainting``; never a download). The object mask is
what the model changed inside the inpainting mask (colour difference above a threshold, largest component,
holes filled); when it changed too little of it, the silhouette itself is the mask.

Deterministic in seed (one ``torch.Generator`` per object); fp16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ood_seg_node.cityscapes import OOD_ANOMALY, OOD_IGNORE, OOD_INLIER
from ood_seg_node.genval.geometry import GroundCamera
from ood_seg_node.genval.insertion import Inserted, InsertionError, ObjectBank, insert_objects

__all__ = ["DEFAULT_PROMPTS", "DiffusionInpainter"]

DEFAULT_PROMPTS = (
    "a cardboard box lying on the road", "a car tyre lying on the road", "a large rock on the asphalt",
    "a wooden pallet on the street", "a plastic bag of rubbish on the road", "a dog standing on the road",
    "a lost suitcase on the asphalt", "a fallen tree branch on the road",
)
_CHANGED = 30.0  # colour distance (0..441) that counts as changed by the model
_MIN_CHANGED_SHARE = 0.2  # below this share of the inpainting mask, the silhouette is the object


def _silhouettes(seed: int) -> ObjectBank:
    """Blob-shaped placeholders of several aspects and sizes: they fix where and how large objects are."""
    rng = np.random.default_rng(seed)
    cutouts, heights = [], []
    for _ in range(12):
        height, width = 64, int(64 * rng.uniform(0.7, 1.8))
        alpha = np.zeros((height, width), np.uint8)
        cv2.ellipse(alpha, (width // 2, height // 2), (width // 2 - 1, height // 2 - 1), 0, 0, 360, 255, -1)
        alpha[height // 2:, 2:-2] = 255  # flat base: the object rests on the ground
        cutouts.append(np.dstack([np.full((height, width, 3), 128, np.uint8), alpha]))
        heights.append(float(rng.uniform(0.3, 0.9)))
    return ObjectBank(cutouts, heights)


class DiffusionInpainter:
    """Insert objects by inpainting; called like :func:`~ood_seg_node.genval.insertion.insert_objects`.

    Args:
        model_dir: a local diffusers inpainting pipeline folder (``model_index.json`` inside).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        steps: denoising steps per object.
        guidance: classifier-free guidance scale.
        size: side of the square crop the model sees (a multiple of 8; SD inpainting models use 512).
        prompts: object descriptions, drawn per object.

    Raises:
        InsertionError: diffusers is not installed, the folder is missing, or it holds no loadable pipeline.
    """

    def __init__(self, model_dir: str | Path, *, device: str = "auto", steps: int = 25, guidance: float = 7.5,
                 size: int = 512, prompts: tuple[str, ...] = DEFAULT_PROMPTS) -> None:
        try:
            import torch
            from diffusers import StableDiffusionInpaintPipeline
        except ImportError:
            raise InsertionError("--inpaint-model needs the diffusers package (pip install diffusers, or the "
                                 "[inpaint] extra)") from None
        from ood_seg_node.pipeline import resolve_device

        folder = Path(model_dir).expanduser()
        if not (folder / "model_index.json").is_file():
            raise InsertionError(f"inpainting model folder {folder} has no model_index.json (a diffusers "
                                 "save_pretrained folder is needed; nothing is downloaded)")
        if size % 8 or size < 32 or steps < 1:
            raise InsertionError(f"inpainting size must be a multiple of 8 >= 32 and steps >= 1, got {size}, {steps}")
        self.device = resolve_device(device)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        try:
            self.pipe = StableDiffusionInpaintPipeline.from_pretrained(
                folder, local_files_only=True, dtype=dtype, safety_checker=None, requires_safety_checker=False)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise InsertionError(f"cannot load the inpainting pipeline in {folder}: "
                                 f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps, self.guidance, self.size, self.prompts = steps, guidance, size, prompts

    def __call__(self, image: np.ndarray, drivable: np.ndarray, *, count: int, seed: int,
                 camera: GroundCamera | None = None, ood_gt: np.ndarray | None = None) -> Inserted:
        placed = insert_objects(image, drivable, bank=_silhouettes(seed), count=count, seed=seed, camera=camera,
                                ood_gt=ood_gt)
        gt = placed.ood_gt.copy()
        out = image.copy()
        rng = np.random.default_rng(seed)
        for index, (x0, y0, x1, y1) in enumerate(placed.boxes):
            silhouette = (placed.ood_gt[y0:y1, x0:x1] == OOD_ANOMALY) & ((ood_gt[y0:y1, x0:x1] != OOD_ANOMALY)
                                                                         if ood_gt is not None else True)
            # the generated object decides its own extent: the placeholder's pixels go back to road / ignore
            region = gt[y0:y1, x0:x1]
            region[silhouette] = np.where(drivable[y0:y1, x0:x1][silhouette], OOD_INLIER, OOD_IGNORE)
            prompt = self.prompts[int(rng.integers(len(self.prompts)))]
            gt[self._inpaint(out, (x0, y0, x1, y1), silhouette, prompt, seed * 1000 + index)] = OOD_ANOMALY
        return Inserted(out, gt, placed.boxes)

    def _inpaint(self, out: np.ndarray, box: tuple[int, int, int, int], silhouette: np.ndarray, prompt: str,
                 seed: int) -> np.ndarray:
        """Inpaint one object into ``out`` (in place); returns the HxW mask of the object's pixels."""
        import torch
        from PIL import Image

        height, width = out.shape[:2]
        x0, y0, x1, y1 = box
        side = min(max(height, width), max(64, 3 * max(x1 - x0, y1 - y0)))
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        left = int(np.clip(cx - side // 2, 0, max(0, width - side)))
        top = int(np.clip(cy - side // 2, 0, max(0, height - side)))
        crop_w, crop_h = min(side, width), min(side, height)
        crop = out[top:top + crop_h, left:left + crop_w]
        mask = np.zeros((crop_h, crop_w), np.uint8)
        mask[y0 - top:y1 - top, x0 - left:x1 - left][silhouette] = 255
        grow = max(1, round(0.08 * max(x1 - x0, y1 - y0)))
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        square = (self.size, self.size)
        result = self.pipe(prompt, image=Image.fromarray(cv2.resize(crop, square, interpolation=cv2.INTER_AREA)),
                           mask_image=Image.fromarray(cv2.resize(mask, square, interpolation=cv2.INTER_NEAREST)),
                           height=self.size, width=self.size, num_inference_steps=self.steps,
                           guidance_scale=self.guidance, generator=torch.Generator().manual_seed(seed),
                           output_type="np").images[0]
        generated = cv2.resize(np.clip(result * 255 + 0.5, 0, 255).astype(np.uint8), (crop_w, crop_h),
                               interpolation=cv2.INTER_AREA)
        inside = mask > 0
        distance = np.linalg.norm(generated.astype(np.float32) - crop.astype(np.float32), axis=2)
        changed = _largest_filled(cv2.GaussianBlur(distance, (0, 0), 1.0) > _CHANGED) & inside
        if changed.sum() < _MIN_CHANGED_SHARE * max(int(silhouette.sum()), 1):
            changed = np.zeros_like(inside)
            changed[y0 - top:y1 - top, x0 - left:x1 - left] = silhouette
        soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(0.5, grow / 2))[..., None]
        crop[:] = np.clip(soft * generated + (1 - soft) * crop + 0.5, 0, 255).astype(np.uint8)
        full = np.zeros((height, width), bool)
        full[top:top + crop_h, left:left + crop_w] = changed
        return full


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a mask, with its holes filled."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    keep = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(keep, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(keep, contours, -1, 1, thickness=-1)
    return keep.astype(bool)

