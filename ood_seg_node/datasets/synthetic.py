# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""A procedural Lost&Found-style street world: the embedded default dataset.

Why it exists: the package must run end to end (segmenter training, OOD-head training, demo, evaluation)
without downloading any dataset. This module renders temporally coherent drive sequences through a
pinhole camera: a textured road with markings and inlier clutter (manholes, patches, cracks, shadows,
puddles), sidewalks, buildings, vegetation, street furniture, vehicles and pedestrians, each pixel labelled
with a Cityscapes trainId, plus unknown obstacles lying on the road (semantic 255, ``ood_gt`` 1).

How: the world is a list of planar faces fixed in world coordinates (built once per seed). Each frame
computes per-pixel ground coordinates analytically, then rasterises the faces near-to-far into a z-buffer
with ``cv2.fillPoly`` and shades them in surface coordinates, so textures stick to the world and objects
grow as the camera approaches. Only numpy and OpenCV are used.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY, OOD_IGNORE, OOD_INLIER, TRAIN_ID
from ood_seg_node.datasets.base import DatasetError, Frame

__all__ = ["CameraModel", "SyntheticSequence", "make_obstacle_patch"]

_ROAD, _SIDEWALK, _BUILDING, _WALL, _FENCE = (
    TRAIN_ID[n] for n in ("road", "sidewalk", "building", "wall", "fence")
)
_POLE, _LIGHT, _SIGN, _VEG, _TERRAIN = (
    TRAIN_ID[n] for n in ("pole", "traffic light", "traffic sign", "vegetation", "terrain")
)
_SKY, _PERSON, _CAR, _TRUCK, _BUS, _BICYCLE = (
    TRAIN_ID[n] for n in ("sky", "person", "car", "truck", "bus", "bicycle")
)
_OBSTACLE = IGNORE_INDEX

_NEAR = 0.3  # m, near clipping plane
_FAR_GROUND = 350.0  # m, ground beyond this is covered by the distant backdrop
_VIEW_AHEAD = 240.0  # m, faces farther ahead than this are not rendered
_TEX = 256  # texels per side of the tileable noise textures
_UP = np.array([0.0, 1.0, 0.0])

# World coordinates: X right, Y up, Z forward (along the road). Road-aligned coordinates (s, Z): s is the
# lateral offset from the road centre line x_c(Z); the road is gently curved, so X = x_c(Z) + s.


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera mounted on the car, looking forward and pitched down, no roll or yaw.

    Attributes:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels.
        height_m: camera height above the (flat) ground in metres.
        pitch_rad: downward pitch in radians (positive = looking down).
        width, height: image size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    height_m: float
    pitch_rad: float
    width: int
    height: int

    @classmethod
    def for_size(cls, height: int, width: int) -> CameraModel:
        """The default camera for an image size; the focal length scales with width (Cityscapes-like)."""
        f = 1.104 * width
        return cls(
            fx=f,
            fy=f,
            cx=(width - 1) / 2.0,
            cy=(height - 1) / 2.0,
            height_m=1.25,
            pitch_rad=0.035,
            width=width,
            height=height,
        )

    @property
    def k(self) -> np.ndarray:
        """The 3x3 intrinsic matrix (row-major), e.g. for sensor_msgs/CameraInfo."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------- textures


def _band_noise(rng: np.random.Generator, size: int, k0: float, octave_width: float = 0.5) -> np.ndarray:
    """Tileable noise with energy around k0 cycles per tile (log-normal band), zero mean, unit std."""
    spec = np.fft.rfft2(rng.standard_normal((size, size)))
    ky = np.fft.fftfreq(size)[:, None] * size
    kx = np.fft.rfftfreq(size)[None, :] * size
    k = np.maximum(np.hypot(kx, ky), 1e-3)
    spec *= np.exp(-((np.log(k) - math.log(k0)) ** 2) / (2 * octave_width**2))
    out = np.fft.irfft2(spec, s=(size, size))
    out -= out.mean()
    return (out / (out.std() + 1e-9)).astype(np.float32)


def _crack_texture(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Random-walk cracks (1 = crack) on a tileable float texture."""
    img = np.zeros((size, size), np.uint8)
    for _ in range(count):
        p = rng.uniform(0, size, 2)
        heading = rng.uniform(0, 2 * math.pi)
        pts = []
        for _ in range(int(rng.integers(8, 40))):
            pts.append(p.copy())
            heading += rng.normal(0, 0.5)
            p = p + 6 * np.array([math.cos(heading), math.sin(heading)])
        pts_arr = np.array(pts)
        for dx in (-size, 0, size):  # draw wrapped copies so the texture tiles
            for dy in (-size, 0, size):
                cv2.polylines(
                    img,
                    [np.round(pts_arr + (dx, dy)).astype(np.int32)],
                    False,
                    255,
                    1,
                    cv2.LINE_AA,
                )
    return img.astype(np.float32) / 255.0


@dataclass
class _Textures:
    band: np.ndarray  # features ~8 texels
    coarse: np.ndarray  # features ~40 texels
    cracks: np.ndarray

    @classmethod
    def make(cls, rng: np.random.Generator, crack_count: int = 25) -> _Textures:
        cracks = _crack_texture(rng, 512, crack_count)
        return cls(_band_noise(rng, _TEX, 32.0), _band_noise(rng, _TEX, 6.0), cracks)


def _sample(tex: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear wrap-around lookup of a tileable texture at texel coordinates of any shape."""
    shape = x.shape
    # BORDER_WRAP wraps any coordinate remap can hold in fixed point (|x| < ~6e7 texels), so no np.mod
    xf = np.asarray(x, np.float32).reshape(1, -1)
    yf = np.asarray(y, np.float32).reshape(1, -1)
    size = xf.shape[1]
    if size == 0:
        return np.zeros(shape, np.float32)
    if size < 32000:  # cv2.remap maps must stay below 32767 per side
        return cv2.remap(tex, xf, yf, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).reshape(shape)
    cols = 1024
    pad = (-size) % cols
    xf = np.pad(xf[0], (0, pad)).reshape(-1, cols)
    yf = np.pad(yf[0], (0, pad)).reshape(-1, cols)
    out = cv2.remap(tex, xf, yf, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return out.reshape(-1)[:size].reshape(shape)


# ----------------------------------------------------------------------------------- materials & faces


@dataclass
class _Material:
    """How a surface looks; ``kind`` selects the pattern, the rest are its parameters (colours in 0..1)."""

    kind: str
    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise: float = 0.05
    scale: float = 0.05  # metres per noise texel
    period: float = 1.0
    angle: float = 0.0
    extra: tuple[float, ...] = ()
    emissive: bool = False
    gloss: float = 0.0

    def __post_init__(self) -> None:
        self.c1 = np.asarray(self.color, np.float32)
        self.c2 = np.asarray(self.color2, np.float32)


@dataclass
class _Part:
    """A region of a face: contours in face (u, v) metres, filled even-odd (so rings have holes)."""

    contours: list[np.ndarray]
    material: _Material
    label: int
    normal: str = "flat"  # flat | cyl (vertical axis) | cylh (horizontal axis) | sphere

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre and half extent of the part in (u, v), for the curved-normal stand-ins."""
        cached = self.__dict__.get("_bounds")
        if cached is None:
            cont = np.concatenate(self.contours)
            lo, hi = cont.min(0), cont.max(0)
            cached = self.__dict__["_bounds"] = ((lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-6))
        return cached


@dataclass
class _Face:
    """A planar polygon group in world coordinates; u along ``axis_u``, v along ``axis_v``."""

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    parts: list[_Part]
    billboard: bool = False  # turns about the vertical axis to face the camera
    cull: bool = False  # one-sided: seen only from the side of cross(axis_u, axis_v)
    obstacle: bool = False
    lod: int = 0  # 0 always drawn, 1 only near the camera, 2 only far from it
    zmin: float = field(default=0.0, init=False)
    zmax: float = field(default=0.0, init=False)
    points: np.ndarray = field(init=False, repr=False)
    splits: np.ndarray = field(init=False, repr=False)
    owner: list[int] = field(init=False, repr=False)
    normal: np.ndarray = field(init=False, repr=False)
    world: np.ndarray = field(init=False, repr=False)
    flat_ok: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Recompute cached geometry after parts or axes changed."""
        conts = [c for p in self.parts for c in p.contours]
        self.points = np.concatenate(conts).astype(np.float64)
        self.splits = np.cumsum([len(c) for c in conts])[:-1]
        self.owner = [k for k, p in enumerate(self.parts) for _ in p.contours]  # part index of each contour
        self.normal = np.cross(self.axis_u, self.axis_v)
        self.flat_ok = all(
            p.material.kind in ("plain", "glass", "mix", "leaves", "facade") for p in self.parts
        )
        self.world = (
            self.origin[None]
            + self.points[:, :1] * self.axis_u[None]
            + self.points[:, 1:] * self.axis_v[None]
        )
        span = np.abs(self.points[:, 0]).max() if self.billboard else 0.0
        self.zmin = float(self.world[:, 2].min() - span)
        self.zmax = float(self.world[:, 2].max() + span)


def _rect(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.float64)


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 20, a0: float = 0.0) -> np.ndarray:
    a = a0 + np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cu + ru * np.cos(a), cv + rv * np.sin(a)], 1)


def _blob(
    rng: np.random.Generator,
    cu: float,
    cv: float,
    r: float,
    n: int = 18,
    rough: float = 0.25,
    flat_bottom: float | None = None,
) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    rad = r * (1 + rough * np.convolve(np.tile(rng.normal(0, 1, n), 3), np.ones(3) / 3, "same")[n : 2 * n])
    pts = np.stack([cu + rad * np.cos(a), cv + 0.85 * rad * np.sin(a)], 1)
    if flat_bottom is not None:
        pts[:, 1] = np.maximum(pts[:, 1], flat_bottom)
    return pts


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def _rgb(c: np.ndarray) -> tuple[float, float, float]:
    return float(c[0]), float(c[1]), float(c[2])


def _jitter(
    rng: np.random.Generator, c: tuple[float, float, float], amount: float = 0.05
) -> tuple[float, float, float]:
    """A colour with each channel scaled by its own random factor (hue and brightness both vary)."""
    return _rgb(np.clip(np.asarray(c) * (1 + rng.normal(0, amount, 3)), 0, 1))


def _box_faces(
    center: np.ndarray,
    yaw: float,
    length: float,
    width: float,
    y0: float,
    y1: float,
    mats: dict[str, _Part | list[_Part]],
    *,
    obstacle: bool = False,
) -> list[_Face]:
    """Faces of an upright box (back/front/left/right/top).

    ``mats`` maps a face name to a template part whose contours are replaced by the face rectangle (a
    missing name omits the face); extra parts drawn on top of it may follow under the name plus '+'.
    """
    h = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    r = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    c = np.array([center[0], 0.0, center[2]])
    specs = {
        "back": (c - h * length / 2 + r * width / 2, -r, _UP, width, y0, y1),
        "front": (c + h * length / 2 - r * width / 2, r, _UP, width, y0, y1),
        "right": (c + h * length / 2 + r * width / 2, -h, _UP, length, y0, y1),
        "left": (c - h * length / 2 - r * width / 2, h, _UP, length, y0, y1),
        "top": (c - h * length / 2 - r * width / 2 + _UP * y1, h, r, length, 0.0, width),
    }
    faces = []
    for name, (o, au, av, ulen, va, vb) in specs.items():
        tpl = mats.get(name)
        if not isinstance(tpl, _Part):
            continue
        extra = mats.get(name + "+", [])
        parts = [_Part([_rect(0, va, ulen, vb)], tpl.material, tpl.label, tpl.normal)]
        parts += extra if isinstance(extra, list) else [extra]
        faces.append(_Face(o, au, av, parts, cull=True, obstacle=obstacle))
    return faces


# ------------------------------------------------------------------------------------------ shading


def _hash2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return x - np.floor(x)


def _shade(
    mat: _Material, u: np.ndarray, v: np.ndarray, tex: _Textures, px_m: float = 0.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (N,3 float32) and optional opacity (N bool) of a material at surface coordinates (metres).

    ``px_m`` is the size of a pixel on the surface; see-through patterns (foliage gaps, fence mesh, slats)
    finer than a few pixels are drawn opaque, as annotators label them, instead of as aliasing speckle.
    """
    c1, c2 = mat.c1, mat.c2
    kind = mat.kind
    if u.size < 12 and kind in ("plain", "mix", "facade", "glass", "leaves"):  # too small to show texture
        return np.broadcast_to(c1, (u.size, 3)).copy(), None
    n = _sample(tex.band, u / mat.scale, v / mat.scale + 37.0) if mat.noise else np.zeros_like(u)
    alpha = None
    if kind == "plain":
        col = c1[None] * (1 + mat.noise * n)[:, None]
    elif kind == "mix":
        w = np.clip(0.5 + 0.6 * _sample(tex.coarse, u / mat.period, v / mat.period), 0, 1)[:, None]
        col = (c1[None] * (1 - w) + c2[None] * w) * (1 + mat.noise * n)[:, None]
    elif kind in ("stripes", "checker"):
        if kind == "stripes":
            t = (u * math.cos(mat.angle) + v * math.sin(mat.angle)) / mat.period
            sel = (t - np.floor(t)) < 0.5
        else:
            sel = ((np.floor(u / mat.period) + np.floor(v / mat.period)) % 2) == 0
        col = np.where(sel[:, None], c1[None], c2[None]) * (1 + mat.noise * n)[:, None]
    elif kind == "facade":
        win_w, win_h, sx, sy, v0, top = mat.extra
        iu, iv = np.floor(u / sx), np.floor((v - v0) / sy)
        fu, fv = u / sx - iu, (v - v0) / sy - iv
        win = (np.abs(fu - 0.5) < win_w / 2) & (np.abs(fv - 0.45) < win_h / 2) & (v > v0) & (v < top - 0.6)
        shop = (v > 0.4) & (v < v0 - 0.6) & (np.abs(fu - 0.5) < 0.38)
        band = (np.abs(fv - 0.5) > 0.46) & (v > v0)  # floor slabs
        col = c1[None] * (1 + mat.noise * n - 0.15 * band)[:, None]
        glazed = np.nonzero(win | shop)[0]
        col[glazed] = c2[None] * (0.45 + 0.9 * _hash2(iu[glazed], iv[glazed]) + 0.1 * n[glazed])[:, None]
    elif kind == "leaves":
        n2 = _sample(tex.coarse, u / 0.25, v / 0.25)
        col = c1[None] * (0.65 + 0.25 * n + 0.2 * n2)[:, None]
        col = np.where((n2 > 0.9)[:, None], col * np.asarray(c2, np.float32)[None] / max(c1.max(), 1e-3), col)
        alpha = (n * 0.6 + n2) > -2.1 if px_m < 0.02 else None
    elif kind == "glass":
        top = mat.extra[0] if mat.extra else 1.0
        w = np.clip((v - 0.0) / max(top, 1e-3), 0, 1)[:, None]
        col = c1[None] * (1 - w) + c2[None] * w + 0.03 * n[:, None]
    elif kind == "mesh":
        p, bar, top = mat.extra
        fu, fv = u / p - np.floor(u / p), v / p - np.floor(v / p)
        alpha = (fu < bar) | (fv < bar) | (v < 0.06) | (v > top - 0.06) | ((u % 2.5) < 0.06)
        col = c1[None] * (1 + mat.noise * n)[:, None]
        if px_m > p / 3:
            col, alpha = col * 0.75, None
    elif kind == "slats":
        fu = u / mat.period - np.floor(u / mat.period)
        alpha = (
            (fu < mat.extra[0])
            | (np.abs(v - mat.extra[1] * 0.3) < 0.05)
            | (np.abs(v - mat.extra[1] * 0.8) < 0.05)
        )
        col = (
            c1[None]
            * (1 + mat.noise * n)[:, None]
            * (0.9 + 0.2 * _hash2(np.floor(u / mat.period), 0 * u))[:, None]
        )
        if px_m > mat.period / 3:
            col, alpha = col * 0.8, None
    else:
        raise ValueError(f"unknown material kind {kind!r}")
    return col.astype(np.float32), alpha


# -------------------------------------------------------------------------------------- rasteriser


@dataclass
class _Light:
    sun: np.ndarray  # unit vector towards the sun
    ambient: float
    diffuse: float


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """World->camera rotation; rows are camera right, down, forward expressed in world coordinates."""
    sp, cp, sy, cy = math.sin(pitch), math.cos(pitch), math.sin(yaw), math.cos(yaw)
    return np.array([[cy, 0.0, -sy], [-sp * sy, -cp, -sp * cy], [sy * cp, -sp, cy * cp]])


@dataclass
class _Buffers:
    """Per-pixel colour (float RGB), depth (camera z), label and obstacle flag, plus flat views."""

    color: np.ndarray
    depth: np.ndarray
    label: np.ndarray
    obstacle: np.ndarray

    def __post_init__(self) -> None:
        # 1-D views: scattering through flat indices is cheaper than through (row, column) pairs
        self.color_f = self.color.reshape(-1, 3)
        self.depth_f = self.depth.reshape(-1)
        self.label_f = self.label.reshape(-1)
        self.obstacle_f = self.obstacle.reshape(-1)


def _clip_near(pc: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon against z >= _NEAR."""
    inside = pc[:, 2] >= _NEAR
    if inside.all():
        return pc
    out = []
    n = len(pc)
    for i in range(n):
        a, b = pc[i], pc[(i + 1) % n]
        ia, ib = inside[i], inside[(i + 1) % n]
        if ia:
            out.append(a)
        if ia != ib:
            t = (_NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if len(out) >= 3 else np.zeros((0, 3))


def _draw_faces(
    faces: list[_Face],
    cam: CameraModel,
    center: np.ndarray,
    rot: np.ndarray,
    buf: _Buffers,
    tex: _Textures,
    light: _Light,
) -> None:
    """Rasterise faces into the buffers with a z-buffer, shading surviving pixels in surface coordinates.

    Orientation, back-face and frustum culling and projection run vectorised over all faces at once; only
    the survivors are filled one by one, nearest first, so occluded pixels are rejected before shading.
    """
    if not faces:
        return
    height, width = buf.depth.shape
    fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
    counts = np.fromiter((len(f.points) for f in faces), np.int64, len(faces))
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pts = np.concatenate([f.points for f in faces])
    origin = np.array([f.origin for f in faces])
    au = np.array([f.axis_u for f in faces])
    av = np.array([f.axis_v for f in faces])
    nrm = np.array([f.normal for f in faces])
    bb = np.fromiter((f.billboard for f in faces), bool, len(faces))
    cull = np.fromiter((f.cull for f in faces), bool, len(faces))
    to_cam = center - origin
    if bb.any():  # billboards turn about the vertical axis to face the camera
        h = np.maximum(np.hypot(to_cam[bb, 0], to_cam[bb, 2]), 1e-6)
        nb = np.stack([to_cam[bb, 0] / h, np.zeros_like(h), to_cam[bb, 2] / h], 1)
        nrm[bb] = nb
        au[bb] = np.stack([nb[:, 2], np.zeros_like(h), -nb[:, 0]], 1)
        av[bb] = _UP
    side = np.einsum("ij,ij->i", nrm, to_cam)
    nrm[side < 0] *= -1  # two-sided faces are lit from the side the camera sees
    rep = np.repeat(np.arange(len(faces)), counts)
    world = origin[rep] + pts[:, :1] * au[rep] + pts[:, 1:] * av[rep]
    pc = (world - center) @ rot.T
    z = pc[:, 2]
    zp = np.maximum(z, _NEAR)
    px = fx * pc[:, 0] / zp + cx
    py = fy * pc[:, 1] / zp + cy
    zmin, zmax = np.minimum.reduceat(z, start), np.maximum.reduceat(z, start)
    xmin, xmax = np.minimum.reduceat(px, start), np.maximum.reduceat(px, start)
    ymin, ymax = np.minimum.reduceat(py, start), np.maximum.reduceat(py, start)
    ex, ey = xmax - xmin, ymax - ymin
    tiny = (ex * ey < 0.3) & (np.maximum(ex, ey) < 1.5) & (zmin >= _NEAR)  # far below a pixel: invisible
    ok = (
        ~(cull & (side <= 0))
        & (zmax >= _NEAR)
        & (xmax >= -1)
        & (xmin <= width)
        & (ymax >= -1)
        & (ymin <= height)
    )
    ok &= ~tiny
    idx = np.nonzero(ok)[0]
    for i in idx[np.argsort(zmin[idx], kind="stable")]:
        a, b = start[i], start[i] + counts[i]
        pix = np.stack([px[a:b], py[a:b]], 1) if zmin[i] >= _NEAR else None
        _raster_face(faces[i], au[i], av[i], nrm[i], pc[a:b], pix, cam, center, rot, buf, tex, light)


def _raster_face(
    face: _Face,
    au: np.ndarray,
    av: np.ndarray,
    nrm: np.ndarray,
    pc: np.ndarray,
    pix: np.ndarray | None,
    cam: CameraModel,
    center: np.ndarray,
    rot: np.ndarray,
    buf: _Buffers,
    tex: _Textures,
    light: _Light,
) -> None:
    """Fill one face into the z-buffered image.

    ``pc`` are its vertices in camera coordinates, ``pix`` their projections (None: some lie behind the
    near plane and the contours are clipped here).
    """
    height, width = buf.depth.shape
    fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
    zc = pc[:, 2]
    if pix is not None:
        pix_all = pix
        conts = np.split(pix, face.splits) if len(face.splits) else [pix]
    else:
        conts = []
        for c in np.split(pc, face.splits):
            c = _clip_near(c)
            conts.append(
                np.stack([fx * c[:, 0] / c[:, 2] + cx, fy * c[:, 1] / c[:, 2] + cy], 1)
                if len(c)
                else np.zeros((0, 2))
            )
        pix_all = np.concatenate(conts)
        if len(pix_all) == 0:
            return
    lo, hi = pix_all.min(0), pix_all.max(0)
    x0, y0 = max(int(math.floor(lo[0])), 0), max(int(math.floor(lo[1])), 0)
    x1, y1 = min(int(math.ceil(hi[0])) + 1, width), min(int(math.ceil(hi[1])) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return
    if buf.depth[y0:y1, x0:x1].max() <= max(float(zc.min()), _NEAR):
        return  # everything in its bounding box is already nearer: fully occluded
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if len(face.parts) == 1:
        cv2.fillPoly(
            mask,
            [np.round((c - (x0, y0)) * 16).astype(np.int32) for c in conts if len(c) >= 3],
            1,
            lineType=cv2.LINE_8,
            shift=4,
        )
    else:
        for k in range(len(face.parts)):
            group = [
                np.round((c - (x0, y0)) * 16).astype(np.int32)
                for c, o in zip(conts, face.owner, strict=True)
                if o == k and len(c) >= 3
            ]
            if group:
                cv2.fillPoly(mask, group, k + 1, lineType=cv2.LINE_8, shift=4)
    iy, ix = np.nonzero(mask)
    if iy.size == 0:
        return
    zmin = float(zc.min())
    flat = (iy + y0) * width + (ix + x0)
    if iy.size <= 64 and not face.obstacle and face.flat_ok and float(zc.max()) - zmin < 0.15 * zmin:
        # small and far: constant depth and untextured colours are indistinguishable from the full path
        zm = np.float32(zc.mean())
        keep = buf.depth_f[flat] > zm
        if keep.any():
            flat = flat[keep]
            sun = light.ambient + light.diffuse * max(float(nrm @ light.sun), 0.0)
            pal = np.array(
                [p.material.c1 * (1.0 if p.material.emissive else sun) for p in face.parts], np.float32
            )
            lab = np.array([p.label for p in face.parts], np.uint8)
            k = mask[iy[keep], ix[keep]] - 1
            buf.depth_f[flat] = zm
            buf.color_f[flat] = pal[k]
            buf.label_f[flat] = lab[k]
        return
    o_c = rot @ (face.origin - center)
    n_c = rot @ nrm
    xs = ((ix + x0) - cx) * np.float32(1 / fx)
    ys = ((iy + y0) - cy) * np.float32(1 / fy)
    den = n_c[0] * xs + n_c[1] * ys + n_c[2]
    num = float(n_c @ o_c)
    # edge-on planes have unstable depth: fall back to the face's centre depth
    ok = np.abs(den) > 1e-6
    t = np.full(den.shape, max(float(o_c[2]), _NEAR), np.float32)
    np.divide(num, den, out=t, where=ok)
    t[t < _NEAR * 0.5] = max(float(o_c[2]), _NEAR)
    keep = t < buf.depth_f[flat]
    if not keep.all():
        if not keep.any():
            return
        flat, t, xs, ys, iy, ix = flat[keep], t[keep], xs[keep], ys[keep], iy[keep], ix[keep]
    u_c, v_c = rot @ au, rot @ av
    rx, ry, rz = t * xs - o_c[0], t * ys - o_c[1], t - o_c[2]
    u = (rx * u_c[0] + ry * u_c[1] + rz * u_c[2]).astype(np.float32)
    v = (rx * v_c[0] + ry * v_c[1] + rz * v_c[2]).astype(np.float32)
    single = len(face.parts) == 1
    pk = None if single else mask[iy, ix]
    for k, part in enumerate(face.parts):
        if single:
            us, vs, fl, ts = u, v, flat, t
        else:
            sel = pk == k + 1
            if not sel.any():
                continue
            us, vs, fl, ts = u[sel], v[sel], flat[sel], t[sel]
        col, alpha = _shade(part.material, us, vs, tex, float(ts.mean()) / fx)
        if not part.material.emissive:
            col *= _lighting(part, us, vs, nrm, au, av, light)[:, None]
        if alpha is not None:
            fl, ts, col = fl[alpha], ts[alpha], col[alpha]
        buf.depth_f[fl] = ts
        buf.color_f[fl] = col
        buf.label_f[fl] = part.label
        if face.obstacle:
            buf.obstacle_f[fl] = True


def _lighting(
    part: _Part, u: np.ndarray, v: np.ndarray, nrm: np.ndarray, au: np.ndarray, av: np.ndarray, light: _Light
) -> np.ndarray:
    """Ambient + Lambert shading with per-pixel normals for curved stand-ins (cylinders, spheres)."""
    if part.normal == "flat" or u.size < 8:
        return np.full(u.shape, light.ambient + light.diffuse * max(float(nrm @ light.sun), 0.0), np.float32)
    mid, half = part.bounds()
    x = np.clip((u - mid[0]) / half[0], -0.99, 0.99)
    y = np.clip((v - mid[1]) / half[1], -0.99, 0.99)
    if part.normal == "cyl":
        nz = np.sqrt(1 - x * x)
        n = x[:, None] * au[None] + nz[:, None] * nrm[None]
    elif part.normal == "cylh":
        nz = np.sqrt(1 - y * y)
        n = y[:, None] * av[None] + nz[:, None] * nrm[None]
    else:
        nz = np.sqrt(np.clip(1 - x * x - y * y, 0.02, 1))
        n = x[:, None] * au[None] + y[:, None] * av[None] + nz[:, None] * nrm[None]
    lam = np.clip(n @ light.sun, 0, None)
    shade = light.ambient * (0.75 + 0.25 * nz) + light.diffuse * lam
    if part.material.gloss:
        shade = shade + part.material.gloss * lam**24
    return shade.astype(np.float32)


def _fill_ground_polys(
    polys: list[np.ndarray],
    mask: np.ndarray,
    cam: CameraModel,
    center: np.ndarray,
    rot: np.ndarray,
    value: int = 255,
) -> None:
    """Fill world ground polygons (k,2 arrays of x, z at y=0) into an image-space mask."""
    if not polys:
        return
    pts = np.concatenate(polys)
    p3 = np.stack([pts[:, 0] - center[0], np.full(len(pts), -center[1]), pts[:, 1] - center[2]], 1)
    pc = p3 @ rot.T
    z = pc[:, 2]
    zs = np.maximum(z, _NEAR)
    pix = np.stack([cam.fx * pc[:, 0] / zs + cam.cx, cam.fy * pc[:, 1] / zs + cam.cy], 1)
    lim = 4 * mask.shape[1]
    out = []
    start = 0
    for poly in polys:
        end = start + len(poly)
        zp = z[start:end]
        if zp.max() >= _NEAR:
            if zp.min() >= _NEAR:
                q = pix[start:end]
            else:
                c = _clip_near(pc[start:end])
                q = (
                    np.stack([cam.fx * c[:, 0] / c[:, 2] + cam.cx, cam.fy * c[:, 1] / c[:, 2] + cam.cy], 1)
                    if len(c) >= 3
                    else None
                )
            if q is not None and q[:, 1].max() >= 0 and q[:, 0].max() >= 0 and q[:, 0].min() < mask.shape[1]:
                out.append(np.round(np.clip(q, -lim, lim) * 16).astype(np.int32))
        start = end
    for q in out:  # one call per polygon: a single call would fill overlaps even-odd
        cv2.fillPoly(mask, [q], value, lineType=cv2.LINE_8, shift=4)


def _ground_hull(points: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Convex hull (k,2 of x, z) of the sun shadow that 3-D points cast on the ground."""
    ys = np.maximum(points[:, 1], 0.0)
    g = np.stack([points[:, 0] - ys * sun[0] / sun[1], points[:, 2] - ys * sun[2] / sun[1]], 1)
    return cv2.convexHull(g.astype(np.float32)).reshape(-1, 2).astype(np.float64)


# -------------------------------------------------------------------------------------- obstacles

_OBSTACLE_KINDS = ("box", "cylinder", "pipe", "blob", "plate", "tyre", "bag", "ball")
_OBSTACLE_P = (0.24, 0.12, 0.08, 0.16, 0.1, 0.1, 0.12, 0.08)


def _obstacle_material(rng: np.random.Generator, asphalt: tuple[float, float, float]) -> _Material:
    """An unknown object's surface: saturated, patterned, dark/white, wooden, or deliberately road-like."""
    kind = rng.choice(
        ["solid", "stripes", "checker", "noise", "roadlike", "dark", "white", "wood"],
        p=[0.26, 0.13, 0.08, 0.1, 0.13, 0.1, 0.08, 0.12],
    )
    sat = _hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    other = _hsv(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.1, 1.0))
    gloss = float(rng.choice([0.0, 0.25]))
    if kind == "solid":
        return _Material("plain", sat, noise=rng.uniform(0.0, 0.08), scale=0.02, gloss=gloss)
    if kind == "stripes":
        return _Material(
            "stripes",
            sat,
            other,
            noise=0.04,
            scale=0.02,
            period=rng.uniform(0.04, 0.25),
            angle=rng.uniform(0, math.pi),
        )
    if kind == "checker":
        return _Material("checker", sat, other, noise=0.03, scale=0.02, period=rng.uniform(0.03, 0.12))
    if kind == "noise":
        return _Material("mix", sat, other, noise=0.15, scale=0.01, period=rng.uniform(0.005, 0.03))
    if kind == "roadlike":
        g = _jitter(rng, asphalt, 0.12)
        return _Material("mix", g, _jitter(rng, g, 0.15), noise=0.12, scale=0.015, period=0.02)
    if kind == "dark":
        return _Material(
            "plain",
            _hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.05, 0.18)),
            noise=0.1,
            scale=0.02,
            gloss=gloss,
        )
    if kind == "white":
        return _Material(
            "plain",
            _hsv(rng.random(), rng.uniform(0, 0.1), rng.uniform(0.8, 1.0)),
            noise=0.05,
            scale=0.02,
            gloss=gloss,
        )
    wood = _hsv(rng.uniform(0.06, 0.11), rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.75))
    return _Material(
        "stripes",
        wood,
        _jitter(rng, wood, 0.15),
        noise=0.1,
        scale=0.01,
        period=rng.uniform(0.01, 0.05),
        angle=float(rng.choice([0.0, math.pi / 2])),
    )


def _obstacle(
    rng: np.random.Generator, pos: np.ndarray, size: float, asphalt: tuple[float, float, float]
) -> tuple[list[_Face], list[np.ndarray], list[np.ndarray]]:
    """An unknown object standing on the ground at ``pos`` (x, 0, z).

    Returns:
        faces, sun-shadow caster point sets (world 3-D), ambient-occlusion footprints (x, z polygons).
    """
    kind = rng.choice(_OBSTACLE_KINDS, p=_OBSTACLE_P)
    mat = _obstacle_material(rng, asphalt)
    yaw = rng.uniform(0, 2 * math.pi)
    hdir = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    rdir = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    x, z = float(pos[0]), float(pos[2])
    lab = _OBSTACLE
    faces: list[_Face] = []

    def flat(contours: list[np.ndarray], normal: str = "flat", m: _Material = mat) -> _Part:
        return _Part(contours, m, lab, normal)

    if kind == "box":
        length, width = size * rng.uniform(0.7, 1.6), size * rng.uniform(0.6, 1.4)
        hh = size * rng.uniform(0.3, 1.1)
        tpl = flat([np.zeros((1, 2))])
        top = (
            flat([np.zeros((1, 2))], m=mat)
            if rng.random() < 0.8
            else _Part(
                [np.zeros((1, 2))],
                _Material("plain", _jitter(rng, mat.color, 0.3), noise=0.05, scale=0.02),
                lab,
            )
        )
        faces = _box_faces(
            pos,
            yaw,
            length,
            width,
            0.0,
            hh,
            {"back": tpl, "front": tpl, "left": tpl, "right": tpl, "top": top},
            obstacle=True,
        )
        radius = 0.5 * math.hypot(length, width)
    elif kind in ("cylinder", "ball", "blob", "bag"):
        r = size * rng.uniform(0.25, 0.55)
        if kind == "cylinder":
            hh = size * rng.uniform(0.5, 1.4)
            parts = [flat([_rect(-r, 0, r, hh)], "cyl")]
            faces.append(
                _Face(
                    np.array([x, hh, z]),
                    hdir,
                    rdir,
                    [
                        flat([_ellipse(0, 0, r, r, 20)]),
                        _Part(
                            [_ellipse(0, 0, 0.85 * r, 0.85 * r, 20)],
                            _Material("plain", _jitter(rng, mat.color, 0.2), noise=0.1, scale=0.02),
                            lab,
                        ),
                    ],
                    cull=True,
                    obstacle=True,
                )
            )
        elif kind == "ball":
            hh = 2 * r
            parts = [flat([_ellipse(0, r, r, r, 24)], "sphere")]
            mat.gloss = 0.3
        elif kind == "blob":
            hh = 1.3 * r * rng.uniform(0.6, 1.2)
            parts = [flat([_blob(rng, 0, hh / 2, max(r, hh / 2), 20, 0.3, flat_bottom=0.0)], "sphere")]
        else:
            hh = 1.6 * r
            body = _blob(rng, 0, 0.75 * r, r, 18, 0.15, flat_bottom=0.0)
            ears = [
                _ellipse(-0.25 * r, 1.55 * r, 0.12 * r, 0.3 * r, 10),
                _ellipse(0.25 * r, 1.55 * r, 0.12 * r, 0.3 * r, 10),
            ]
            mat = _Material("plain", mat.color, noise=0.12, scale=0.01, gloss=0.35)
            parts = [flat([body], "sphere"), flat([ears[0]]), flat([ears[1]])]
        faces.append(_Face(np.array([x, 0.0, z]), rdir, _UP, parts, billboard=True, obstacle=True))
        radius = r
    elif kind == "pipe":
        r = size * rng.uniform(0.12, 0.3)
        length = size * rng.uniform(1.2, 3.0)
        faces.append(
            _Face(
                np.array([x, 0.0, z]),
                hdir,
                _UP,
                [flat([_rect(-length / 2, 0, length / 2, 2 * r)], "cylh")],
                obstacle=True,
            )
        )
        cap = _Material("plain", _jitter(rng, mat.color, 0.25), noise=0.05, scale=0.02)
        for sgn in (-1.0, 1.0):
            o = np.array([x, 0.0, z]) + hdir * sgn * length / 2
            au = -rdir * sgn  # outward normal cross(au, up) = sgn * hdir
            faces.append(
                _Face(o, au, _UP, [_Part([_ellipse(0, r, r, r, 16)], cap, lab)], cull=True, obstacle=True)
            )
        radius, hh = length / 2, 2 * r
    elif kind == "plate":
        n = int(rng.integers(3, 8))
        a = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = size * rng.uniform(0.3, 0.7, n)
        pts = np.stack([rad * np.cos(a), size * 0.5 + rad * np.sin(a)], 1)
        pts[:, 1] -= pts[:, 1].min()
        faces.append(_Face(np.array([x, 0.0, z]), hdir, _UP, [flat([pts])], obstacle=True))
        radius, hh = float(np.abs(pts[:, 0]).max()), float(pts[:, 1].max())
    else:  # tyre
        rr = size * rng.uniform(0.35, 0.6)
        rubber = _Material("plain", _hsv(0, 0, rng.uniform(0.06, 0.14)), noise=0.2, scale=0.008)
        rim = _Material("plain", _hsv(0, 0, rng.uniform(0.35, 0.7)), noise=0.05, scale=0.02, gloss=0.2)
        if rng.random() < 0.5:  # standing
            parts = [
                _Part([_ellipse(0, rr, rr, rr, 28), _ellipse(0, rr, 0.6 * rr, 0.6 * rr, 20)], rubber, lab)
            ]
            if rng.random() < 0.6:
                parts.append(_Part([_ellipse(0, rr, 0.6 * rr, 0.6 * rr, 20)], rim, lab))
            faces.append(_Face(np.array([x, 0.0, z]), hdir, _UP, parts, obstacle=True))
            hh = 2 * rr
        else:  # lying flat
            hh = 0.4 * rr
            faces.append(
                _Face(
                    np.array([x, 0.0, z]),
                    rdir,
                    _UP,
                    [_Part([_rect(-rr, 0, rr, hh)], rubber, lab, "cyl")],
                    billboard=True,
                    obstacle=True,
                )
            )
            faces.append(
                _Face(
                    np.array([x, hh, z]),
                    hdir,
                    rdir,
                    [
                        _Part(
                            [_ellipse(0, 0, rr, rr, 28), _ellipse(0, 0, 0.6 * rr, 0.6 * rr, 20)], rubber, lab
                        )
                    ],
                    cull=True,
                    obstacle=True,
                )
            )
        radius = rr
    casters = [
        np.array(
            [[x + dx, yy, z + dz] for dx in (-radius, radius) for dz in (-radius, radius) for yy in (0.0, hh)]
        )
    ]
    ao = [_ellipse(x, z, radius * 1.3, radius * 1.3, 12)]
    return faces, casters, ao


# ------------------------------------------------------------------------------------------- world


@dataclass
class _Vehicle:
    kind: str  # car | truck | bus
    s: float
    z0: float
    speed: float  # m/s along +Z (negative: oncoming)
    length: float
    width: float
    color: tuple[float, float, float]


@dataclass
class _Walker:
    s: float
    z0: float
    speed: float
    parts: list[_Part]


@dataclass
class _Decal:
    kind: str
    s0: float
    s1: float
    z0: float
    z1: float
    color: tuple[float, float, float] = (0.85, 0.85, 0.85)
    raster: np.ndarray | None = None  # bool mask sampled at 5 cm for arrows


@dataclass
class _World:
    """Everything fixed for one seed: road layout, appearance, weather, static faces, moving actors."""

    road: tuple[float, ...] = ()
    lane_w: float = 3.25
    half_l: float = 3.25
    half_r: float = 3.25
    s_ego: float = 1.6
    sw_l: float = 2.5
    sw_r: float = 2.5
    seg_z: list[np.ndarray] = field(default_factory=list)  # per side (0 left, 1 right): segment starts
    seg_code: list[np.ndarray] = field(default_factory=list)  # 0 road (crossing), 1 pavement, 2 terrain
    lines: list[tuple[float, float, float, float]] = field(default_factory=list)  # s, width, dash, period
    line_color: tuple[float, float, float] = (0.85, 0.85, 0.82)
    decals: list[_Decal] = field(default_factory=list)
    faces: list[_Face] = field(default_factory=list)
    shadows: list[np.ndarray] = field(default_factory=list)
    ao: list[np.ndarray] = field(default_factory=list)
    vehicles: list[_Vehicle] = field(default_factory=list)
    walkers: list[_Walker] = field(default_factory=list)
    asphalt: tuple[float, float, float] = (0.35, 0.35, 0.36)
    pave: tuple[float, float, float] = (0.6, 0.58, 0.56)
    curb: tuple[float, float, float] = (0.7, 0.7, 0.68)
    grass: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.3, 0.4, 0.15),
        (0.45, 0.42, 0.25),
    )
    tile: float = 0.3
    light: _Light = field(default_factory=lambda: _Light(np.array([0.3, 0.8, 0.5]), 0.6, 0.4))
    sky_zenith: tuple[float, float, float] = (0.3, 0.5, 0.85)
    sky_horizon: tuple[float, float, float] = (0.75, 0.82, 0.9)
    clouds: float = 0.3
    overcast: bool = False
    fog: float = 0.003
    fog_color: tuple[float, float, float] = (0.75, 0.78, 0.82)
    wet: float = 0.0
    shadow_strength: float = 0.5
    exposure: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    backdrop_h: np.ndarray = field(default_factory=lambda: np.zeros(1))
    backdrop_label: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint8))
    backdrop_color: np.ndarray = field(default_factory=lambda: np.zeros((1, 3)))
    tex: _Textures | None = None
    face_zmin: np.ndarray = field(default_factory=lambda: np.zeros(0))
    face_zmax: np.ndarray = field(default_factory=lambda: np.zeros(0))
    face_lod: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shadow_z: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    ao_z: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def xc(self, z: np.ndarray | float) -> np.ndarray | float:
        a1, p1, f1, a2, p2, f2 = self.road
        return a1 * np.sin(2 * np.pi * z / p1 + f1) + a2 * np.sin(2 * np.pi * z / p2 + f2)

    def dxc(self, z: float) -> float:
        a1, p1, f1, a2, p2, f2 = self.road
        return float(
            a1 * 2 * math.pi / p1 * math.cos(2 * math.pi * z / p1 + f1)
            + a2 * 2 * math.pi / p2 * math.cos(2 * math.pi * z / p2 + f2)
        )

    def at(self, s: float, z: float, y: float = 0.0) -> np.ndarray:
        return np.array([float(self.xc(z)) + s, y, z])

    def yaw(self, z: float) -> float:
        return math.atan(self.dxc(z))


_CAR_COLORS = (
    (0.92, 0.92, 0.92),
    (0.08, 0.08, 0.09),
    (0.6, 0.62, 0.64),
    (0.35, 0.36, 0.38),
    (0.1, 0.15, 0.35),
    (0.55, 0.08, 0.08),
    (0.12, 0.25, 0.15),
    (0.7, 0.65, 0.55),
    (0.25, 0.35, 0.55),
)
_FACADE_COLORS = (
    (0.78, 0.72, 0.62),
    (0.6, 0.6, 0.6),
    (0.55, 0.33, 0.25),
    (0.88, 0.86, 0.82),
    (0.82, 0.76, 0.55),
    (0.62, 0.68, 0.72),
    (0.45, 0.45, 0.47),
    (0.72, 0.6, 0.5),
)


def _vehicle_faces(
    v: _Vehicle, world: _World, t: float, far: bool = False
) -> tuple[list[_Face], np.ndarray, np.ndarray]:
    """Faces, sun-caster corners and AO footprint of a vehicle at time t (deterministic: no randomness).

    ``far`` gives the level of detail for distant cars: one box with glass bands instead of body + cabin.
    """
    z = v.z0 + v.speed * t
    pos = world.at(v.s, z)
    yaw = world.yaw(z) + (math.pi if v.speed < 0 else 0.0)
    body = _Material("plain", v.color, noise=0.02, scale=0.05, gloss=0.15)
    dark = _Material("plain", (0.06, 0.06, 0.07), noise=0.1, scale=0.02)
    glass = _Material("glass", (0.05, 0.07, 0.09), (0.35, 0.4, 0.48), noise=0.0, extra=(0.5,))
    tail = _Material("plain", (0.75, 0.05, 0.05), noise=0.0, emissive=True)
    head = _Material("plain", (0.9, 0.9, 0.8), noise=0.0, emissive=True)
    plate = _Material("plain", (0.9, 0.9, 0.88), noise=0.0)
    lab = {"car": _CAR, "truck": _TRUCK, "bus": _BUS}[v.kind]
    L, W = v.length, v.width  # noqa: N806 (vehicle length and width, as in the drawings)

    def p(c: list[np.ndarray], m: _Material, normal: str = "flat") -> _Part:
        return _Part(c, m, lab, normal)

    blank = [np.zeros((1, 2))]
    faces: list[_Face] = []
    wheel_r = 0.33 if v.kind == "car" else 0.5
    wheels = [p([_ellipse(u, wheel_r, wheel_r, wheel_r, 14)], dark) for u in (0.8, L - 0.9)]
    if v.kind == "car" and far:
        y0, y1, cab_top = 0.25, 0.95, 1.45
        band = [p([_rect(0.9, y1 + 0.05, L - 1.0, cab_top - 0.05)], glass)]
        faces += _box_faces(
            pos,
            yaw,
            L,
            W,
            y0,
            cab_top,
            {
                "back": p(blank, body),
                "back+": [
                    p([_rect(0.2, y1 + 0.05, W - 0.2, cab_top - 0.05)], glass),
                    p([_rect(0.08, 0.7, 0.38, 0.85)], tail),
                    p([_rect(W - 0.38, 0.7, W - 0.08, 0.85)], tail),
                ],
                "front": p(blank, body),
                "front+": [p([_rect(0.2, y1 + 0.05, W - 0.2, cab_top - 0.05)], glass)],
                "left": p(blank, body),
                "left+": band + wheels,
                "right": p(blank, body),
                "right+": band + wheels,
            },
        )
        height = cab_top
    elif v.kind == "car":
        y0, y1, cab_top = 0.25, 0.95, 1.45
        rear = [
            p([_rect(0.05, 0.25, W - 0.05, 0.38)], dark),
            p([_rect(W / 2 - 0.26, 0.42, W / 2 + 0.26, 0.54)], plate),
            p([_rect(0.08, 0.7, 0.38, 0.85)], tail),
            p([_rect(W - 0.38, 0.7, W - 0.08, 0.85)], tail),
        ]
        front = [
            p([_rect(0.1, 0.65, 0.4, 0.78)], head),
            p([_rect(W - 0.4, 0.65, W - 0.1, 0.78)], head),
            p([_rect(0.55, 0.5, W - 0.55, 0.75)], dark),
        ]
        faces += _box_faces(
            pos,
            yaw,
            L,
            W,
            y0,
            y1,
            {
                "back": p(blank, body),
                "back+": rear,
                "front": p(blank, body),
                "front+": front,
                "left": p(blank, body),
                "left+": wheels,
                "right": p(blank, body),
                "right+": wheels,
                "top": p(blank, body),
            },
        )
        hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
        cab_c = pos - hvec * 0.08 * L
        cab = _box_faces(
            cab_c,
            yaw,
            0.52 * L,
            0.9 * W,
            y1,
            cab_top,
            {k: p(blank, body) for k in ("back", "front", "left", "right")},
        )
        cab += _box_faces(cab_c, yaw, 0.42 * L, 0.86 * W, y1, cab_top + 0.02, {"top": p(blank, body)})
        ln, wc = 0.52 * L, 0.9 * W
        for f in cab[:2]:  # rear and front screens inside body-coloured pillars
            f.parts.append(p([_rect(0.1, y1 + 0.04, wc - 0.1, cab_top - 0.07)], glass))
            f.refresh()
        for f in cab[2:4]:  # side windows: trapezoids inside a body-coloured frame
            f.parts = [
                p([np.array([[0, y1], [ln, y1], [ln - 0.35, cab_top], [0.35, cab_top]])], body),
                p(
                    [
                        np.array(
                            [
                                [0.1, y1 + 0.04],
                                [ln - 0.1, y1 + 0.04],
                                [ln - 0.4, cab_top - 0.05],
                                [0.4, cab_top - 0.05],
                            ]
                        )
                    ],
                    glass,
                ),
            ]
            f.refresh()
        faces += cab
        height = cab_top
    elif v.kind == "truck":
        cab_l = 2.2
        hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
        cab_pos = pos + hvec * (L / 2 - cab_l / 2)
        box_pos = pos - hvec * cab_l / 2
        cargo = _Material(
            "plain",
            _jitter(np.random.default_rng(int(abs(v.z0) * 10)), (0.85, 0.85, 0.85), 0.1),
            noise=0.04,
            scale=0.1,
        )
        faces += _box_faces(
            cab_pos,
            yaw,
            cab_l,
            W,
            0.4,
            2.9,
            {
                "back": p(blank, body),
                "front": p(blank, body),
                "front+": [p([_rect(0.15, 1.6, W - 0.15, 2.5)], glass)],
                "left": p(blank, body),
                "right": p(blank, body),
                "top": p(blank, body),
            },
        )
        faces += _box_faces(
            box_pos,
            yaw,
            L - cab_l,
            W,
            0.9,
            3.6,
            {
                "back": p(blank, cargo),
                "back+": [p([_rect(W / 2 - 0.01, 0.9, W / 2 + 0.01, 3.6)], dark)],
                "front": p(blank, cargo),
                "left": p(blank, cargo),
                "left+": wheels,
                "right": p(blank, cargo),
                "right+": wheels,
                "top": p(blank, cargo),
            },
        )
        height = 3.6
    else:  # bus
        band = [p([_rect(0.8, 1.2, L - 0.5, 2.6)], glass)]
        faces += _box_faces(
            pos,
            yaw,
            L,
            W,
            0.3,
            3.1,
            {
                "back": p(blank, body),
                "back+": [
                    p([_rect(0.2, 1.5, W - 0.2, 2.6)], glass),
                    p([_rect(0.1, 0.6, 0.4, 0.9)], tail),
                    p([_rect(W - 0.4, 0.6, W - 0.1, 0.9)], tail),
                ],
                "front": p(blank, body),
                "front+": [p([_rect(0.1, 1.0, W - 0.1, 2.8)], glass)],
                "left": p(blank, body),
                "left+": band + wheels,
                "right": p(blank, body),
                "right+": band + wheels,
                "top": p(blank, body),
            },
        )
        height = 3.1
    hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    rvec = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    corners = np.array(
        [
            pos + hvec * a * L / 2 + rvec * b * W / 2 + _UP * y
            for a in (-1, 1)
            for b in (-1, 1)
            for y in (0.3, height)
        ]
    )
    foot = np.array(
        [
            [
                pos[0] + hvec[0] * a * (L / 2 + 0.2) + rvec[0] * b * (W / 2 + 0.2),
                pos[2] + hvec[2] * a * (L / 2 + 0.2) + rvec[2] * b * (W / 2 + 0.2),
            ]
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
    )
    return faces, corners, foot


# ------------------------------------------------------------------------------------ world building


def _billboard_caster(origin: np.ndarray, contour: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """3-D points of a billboard contour turned broadside to the sun (for its ground shadow)."""
    us = np.array([sun[2], 0.0, -sun[0]])
    us /= max(np.linalg.norm(us), 1e-6)
    return origin[None] + contour[:, :1] * us[None] + contour[:, 1:2] * _UP[None]


class _Builder:
    """Populates a `_World` from independent random streams (layout, look, obstacles)."""

    def __init__(self, seed: int, z_end: float, obstacles: bool) -> None:
        layout, look, obst, tex = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
        self.rng = layout
        self.look = look
        self.w = _World()
        self.z_end = z_end
        self.casters: list[np.ndarray] = []
        self._appearance()
        self.w.tex = _Textures.make(tex, int(look.integers(5, 60)))
        self._road()
        self._roadside()
        self._traffic()
        self._decals()
        self._backdrop()
        if obstacles:
            self._obstacles(obst)
        self._finish()

    # -- appearance and weather
    def _appearance(self) -> None:
        w, r = self.w, self.look
        w.overcast = bool(r.random() < 0.35)
        if w.overcast:
            sun = np.array([0.2, 0.95, 0.2])
            amb, dif = 0.9, 0.1
            w.sky_zenith = _hsv(0.6, r.uniform(0.0, 0.1), r.uniform(0.6, 0.8))
            w.sky_horizon = _hsv(0.6, r.uniform(0.0, 0.06), r.uniform(0.75, 0.92))
            w.clouds = r.uniform(0.5, 1.0)
        else:
            el, az = math.radians(r.uniform(15, 65)), r.uniform(0, 2 * math.pi)
            sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
            amb, dif = r.uniform(0.45, 0.6), r.uniform(0.5, 0.7)
            w.sky_zenith = _hsv(r.uniform(0.56, 0.62), r.uniform(0.4, 0.7), r.uniform(0.7, 0.95))
            w.sky_horizon = _hsv(r.uniform(0.55, 0.6), r.uniform(0.1, 0.25), r.uniform(0.85, 0.98))
            w.clouds = r.uniform(0.0, 0.6)
        sun /= np.linalg.norm(sun)
        norm = amb + dif * sun[1]  # a horizontal surface in the sun shows its base colour
        w.light = _Light(sun, amb / norm, dif / norm)
        w.shadow_strength = 0.0 if w.overcast else 1.0
        if r.random() < 0.2:
            w.fog = r.uniform(0.008, 0.02)
            w.sky_zenith = _rgb(0.4 * np.array(w.sky_zenith) + 0.6 * np.array(w.sky_horizon))
        else:
            w.fog = r.uniform(0.0015, 0.005)
        w.fog_color = _rgb(np.array(w.sky_horizon) * r.uniform(0.9, 1.0))
        w.wet = float(r.uniform(0.4, 1.0)) if r.random() < 0.25 else 0.0
        w.exposure = r.uniform(0.8, 1.15)
        w.white_balance = _rgb(1 + r.normal(0, 0.03, 3))
        g = r.uniform(0.27, 0.42)
        w.asphalt = _hsv(
            r.uniform(0.55, 0.7) if r.random() < 0.6 else r.uniform(0.05, 0.12), r.uniform(0, 0.08), g
        )
        w.pave = _hsv(r.uniform(0.0, 0.12), r.uniform(0.0, 0.25), r.uniform(0.5, 0.72))
        w.curb = _hsv(0.1, r.uniform(0, 0.05), r.uniform(0.62, 0.8))
        w.grass = (
            _hsv(r.uniform(0.2, 0.27), r.uniform(0.45, 0.65), r.uniform(0.3, 0.45)),
            _hsv(r.uniform(0.11, 0.16), r.uniform(0.3, 0.5), r.uniform(0.35, 0.5)),
        )
        w.tile = float(r.choice([0.2, 0.3, 0.4, 0.6]))
        w.line_color = (0.88, 0.88, 0.85) if r.random() < 0.85 else (0.9, 0.75, 0.2)

    # -- road geometry and markings
    def _road(self) -> None:
        w, r = self.w, self.rng
        w.road = (
            r.uniform(0, 14),
            r.uniform(300, 800),
            r.uniform(0, 6.3),
            r.uniform(0, 3),
            r.uniform(100, 250),
            r.uniform(0, 6.3),
        )
        n_lanes = int(r.choice([2, 3, 4], p=[0.5, 0.2, 0.3]))
        n_left = n_lanes // 2
        n_right = n_lanes - n_left
        lw = r.uniform(2.9, 3.6)
        park_l = 2.2 if r.random() < 0.35 else 0.0
        park_r = 2.2 if r.random() < 0.55 else 0.0
        w.lane_w = lw
        w.half_l = n_left * lw + park_l
        w.half_r = n_right * lw + park_r
        ego_lane = n_right - 1 if n_right == 1 or r.random() < 0.6 else n_right - 2
        w.s_ego = (ego_lane + 0.5) * lw
        rural = r.random() < 0.15
        w.sw_l = 0.0 if rural else r.uniform(1.8, 4.5)
        w.sw_r = 0.0 if rural else r.uniform(1.8, 4.5)
        self.rural = rural
        self.park = (park_l, park_r)
        self.lanes = (n_left, n_right)
        dash, period = (3.0, 9.0) if r.random() < 0.6 else (6.0, 18.0)
        lines = []
        if n_lanes == 2 and r.random() < 0.6:
            lines.append((0.0, 0.12, dash, period))
        elif r.random() < 0.5:
            lines += [(-0.1, 0.1, 1e9, 1e9), (0.1, 0.1, 1e9, 1e9)]
        else:
            lines.append((0.0, 0.15, 1e9, 1e9))
        for k in range(1, n_right):
            lines.append((k * lw, 0.12, dash, period))
        for k in range(1, n_left):
            lines.append((-k * lw, 0.12, dash, period))
        if r.random() < 0.75:
            lines.append((n_right * lw - 0.15 + (0.3 if park_r else 0.0), 0.15, 1e9, 1e9))
            lines.append((-n_left * lw + 0.15 - (0.3 if park_l else 0.0), 0.15, 1e9, 1e9))
        w.lines = lines

    # -- what lines the road: buildings, vegetation, fences, walls, crossings, furniture
    def _roadside(self) -> None:
        w, r = self.w, self.rng
        crossings = []
        z = r.uniform(30, 120)
        while z < self.z_end:
            if r.random() < (0.25 if self.rural else 0.6):
                crossings.append((z, r.uniform(8, 14)))
            z += r.uniform(80, 220)
        self.crossings = crossings
        kinds = ["buildings", "park", "hedge", "fence", "wall"]
        probs = np.array([0.1, 0.5, 0.15, 0.15, 0.1] if self.rural else [0.62, 0.12, 0.08, 0.1, 0.08])
        for side in (0, 1):
            sgn = 1.0 if side else -1.0
            edge = (w.half_r if side else w.half_l) + (w.sw_r if side else w.sw_l)
            starts, codes = [-100.0], [1 if not self.rural else 2]
            z = -60.0
            ci = 0
            while z < self.z_end:
                if ci < len(crossings) and z + 15 > crossings[ci][0]:
                    zc, cw = crossings[ci]
                    starts += [zc, zc + cw]
                    codes += [0, 1 if not self.rural else 2]
                    z = zc + cw
                    ci += 1
                    continue
                kind = str(r.choice(kinds, p=probs))
                seg_len = r.uniform(15, 80)
                if ci < len(crossings):
                    seg_len = min(seg_len, crossings[ci][0] - z)
                seg_len = max(seg_len, 3.0)
                starts.append(z)
                codes.append(1 if (kind == "buildings" and not self.rural) else 2)
                self._segment(kind, side, sgn, edge, z, z + seg_len)
                z += seg_len
            w.seg_z.append(np.array(starts))
            w.seg_code.append(np.array(codes))
            self._furniture(side, sgn)

    def _add(self, faces: list[_Face], casters: list[np.ndarray], ao: list[np.ndarray] | None = None) -> None:
        self.w.faces += faces
        self.casters += casters
        self.w.ao += ao or []

    def _building(self, sgn: float, s_front: float, z0: float, z1: float, second_row: bool = False) -> None:
        r = self.rng
        z = z0
        while z < z1 - 4:
            bw = min(r.uniform(8, 26), z1 - z)
            depth = r.uniform(10, 22)
            height = r.uniform(6, 26) * (1.3 if second_row else 1.0)
            zc = z + bw / 2
            sf = s_front + (r.uniform(0, 1.5) if r.random() < 0.3 else 0.0)
            pos = self.w.at(sgn * (sf + depth / 2), zc)
            col = _jitter(r, _FACADE_COLORS[int(r.integers(len(_FACADE_COLORS)))], 0.08)
            sy = r.uniform(2.8, 3.5)
            mat = _Material(
                "facade",
                col,
                _hsv(r.uniform(0.55, 0.65), r.uniform(0.1, 0.3), r.uniform(0.15, 0.35)),
                noise=r.uniform(0.02, 0.08),
                scale=0.08,
                extra=(
                    r.uniform(0.35, 0.65),
                    r.uniform(0.4, 0.6),
                    r.uniform(2.2, 4.0),
                    sy,
                    r.uniform(3.0, 4.5),
                    height,
                ),
            )
            tpl = _Part([np.zeros((1, 2))], mat, _BUILDING)
            self._add(
                _box_faces(
                    pos,
                    self.w.yaw(zc),
                    bw,
                    depth,
                    0.0,
                    height,
                    {"back": tpl, "front": tpl, "left": tpl, "right": tpl},
                ),
                [
                    np.array(
                        [
                            pos + (a * bw / 2 * np.array([0, 0, 1.0])) + np.array([b * depth / 2, y, 0])
                            for a in (-1, 1)
                            for b in (-1, 1)
                            for y in (0.0, height)
                        ]
                    )
                ],
            )
            z += bw + (r.uniform(1, 6) if r.random() < 0.3 else 0.0)

    def _tree(self, s: float, z: float, scale: float = 1.0) -> None:
        r = self.rng
        pos = self.w.at(s, z)
        trunk_h = r.uniform(1.8, 3.5) * scale
        crown = r.uniform(1.5, 3.8) * scale
        leaves = _Material(
            "leaves",
            _hsv(r.uniform(0.2, 0.3), r.uniform(0.45, 0.75), r.uniform(0.2, 0.4)),
            _hsv(r.uniform(0.15, 0.25), 0.5, 0.5),
            noise=0.5,
            scale=0.03,
        )
        bark = _Material(
            "plain", _hsv(0.08, r.uniform(0.2, 0.5), r.uniform(0.15, 0.35)), noise=0.2, scale=0.02
        )
        tw = r.uniform(0.12, 0.25) * scale
        trunk = _rect(-tw, 0, tw, trunk_h + crown * 0.5)
        blob = _blob(r, 0, trunk_h + crown * 0.85, crown, 22, 0.2)
        face = _Face(
            pos,
            np.array([1.0, 0, 0]),
            _UP,
            [_Part([trunk], bark, _VEG, "cyl"), _Part([blob], leaves, _VEG, "sphere")],
            billboard=True,
        )
        sun = self.w.light.sun
        self._add([face], [_billboard_caster(pos, trunk, sun), _billboard_caster(pos, blob, sun)])

    def _bush(self, s: float, z: float) -> None:
        r = self.rng
        pos = self.w.at(s, z)
        rad = r.uniform(0.4, 1.2)
        leaves = _Material(
            "leaves",
            _hsv(r.uniform(0.2, 0.3), r.uniform(0.5, 0.8), r.uniform(0.2, 0.38)),
            (0.3, 0.35, 0.1),
            noise=0.5,
            scale=0.03,
        )
        blob = _blob(r, 0, rad * 0.7, rad, 16, 0.25, flat_bottom=0.0)
        self._add(
            [_Face(pos, np.array([1.0, 0, 0]), _UP, [_Part([blob], leaves, _VEG, "sphere")], billboard=True)],
            [_billboard_caster(pos, blob, self.w.light.sun)],
        )

    def _along(
        self,
        sgn: float,
        s: float,
        z0: float,
        z1: float,
        height: float,
        part: _Part,
        box: float = 0.0,
        step: float = 8.0,
    ) -> None:
        """A fence (thin two-sided faces) or a wall/hedge (boxes of depth ``box``) following the curve."""
        z = z0
        while z < z1 - 0.5:
            ln = min(step, z1 - z)
            zc = z + ln / 2
            yaw = self.w.yaw(zc)
            pos = self.w.at(sgn * s, zc)
            if box > 0:
                pos = self.w.at(sgn * (s + box / 2), zc)
                faces = _box_faces(
                    pos,
                    yaw,
                    ln,
                    box,
                    0.0,
                    height,
                    {k: part for k in ("back", "front", "left", "right", "top")},
                )
            else:
                hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
                faces = [
                    _Face(
                        pos - hvec * ln / 2,
                        hvec,
                        _UP,
                        [_Part([_rect(0, 0, ln, height)], part.material, part.label)],
                    )
                ]
            corners = np.array(
                [pos + np.array([0, y, dz]) for y in (0.0, height) for dz in (-ln / 2, ln / 2)]
            )
            self._add(faces, [corners])
            z += ln

    def _segment(self, kind: str, side: int, sgn: float, edge: float, z0: float, z1: float) -> None:
        r = self.rng
        if kind == "buildings":
            self._building(sgn, edge + (r.uniform(0, 4) if r.random() < 0.4 else 0.3), z0, z1)
            return
        if kind in ("hedge", "fence", "wall"):
            h = {"hedge": r.uniform(0.8, 2.0), "fence": r.uniform(1.0, 2.2), "wall": r.uniform(0.8, 3.0)}[
                kind
            ]
            if kind == "hedge":
                part = _Part(
                    [],
                    _Material(
                        "leaves",
                        _hsv(r.uniform(0.2, 0.3), 0.6, r.uniform(0.2, 0.35)),
                        (0.25, 0.3, 0.1),
                        noise=0.5,
                        scale=0.03,
                    ),
                    _VEG,
                )
                self._along(sgn, edge + 0.4, z0, z1, h, part, box=r.uniform(0.6, 1.2))
            elif kind == "wall":
                col = _hsv(r.uniform(0.05, 0.15), r.uniform(0.0, 0.2), r.uniform(0.45, 0.75))
                part = _Part(
                    [], _Material("mix", col, _jitter(r, col, 0.1), noise=0.08, scale=0.04, period=0.1), _WALL
                )
                self._along(sgn, edge + 0.2, z0, z1, h, part, box=0.3)
            else:
                col = _hsv(r.uniform(0, 1), r.uniform(0, 0.3), r.uniform(0.25, 0.7))
                if r.random() < 0.5:
                    mat = _Material(
                        "mesh", col, noise=0.05, scale=0.02, extra=(r.uniform(0.05, 0.15), 0.15, h)
                    )
                else:
                    mat = _Material(
                        "slats",
                        _hsv(0.08, r.uniform(0.2, 0.5), r.uniform(0.35, 0.6)),
                        noise=0.1,
                        scale=0.02,
                        period=r.uniform(0.1, 0.2),
                        extra=(r.uniform(0.5, 0.9), h),
                    )
                self._along(sgn, edge + 0.2, z0, z1, h, _Part([], mat, _FENCE))
            if r.random() < 0.6:
                self._building(sgn, edge + r.uniform(4, 12), z0, z1)
            else:
                for z in np.arange(z0 + r.uniform(0, 6), z1, r.uniform(5, 10)):
                    self._tree(sgn * (edge + r.uniform(2, 8)), float(z))
            return
        # park: terrain with trees and bushes, maybe buildings far behind
        for z in np.arange(z0 + r.uniform(0, 5), z1, r.uniform(4, 10)):
            self._tree(sgn * (edge + r.uniform(1, 14)), float(z + r.uniform(-1, 1)))
        for z in np.arange(z0 + r.uniform(0, 5), z1, r.uniform(3, 9)):
            self._bush(sgn * (edge + r.uniform(0.8, 6)), float(z))
        if r.random() < 0.5:
            self._building(sgn, edge + r.uniform(15, 30), z0, z1, second_row=True)

    def _person(self, rng: np.random.Generator) -> list[_Part]:
        hh = rng.uniform(1.55, 1.92)
        skin = _Material(
            "plain",
            _hsv(rng.uniform(0.04, 0.09), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.85)),
            noise=0.05,
            scale=0.01,
        )
        shirt = _Material(
            "plain", _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.1, 0.9)), noise=0.1, scale=0.01
        )
        pants = _Material(
            "plain",
            _hsv(rng.choice([0.6, 0.08, 0.0]), rng.uniform(0, 0.5), rng.uniform(0.08, 0.5)),
            noise=0.1,
            scale=0.01,
        )
        hair = _Material("plain", _hsv(0.08, 0.5, rng.uniform(0.05, 0.5)), noise=0.2, scale=0.01)
        step = rng.uniform(0.0, 0.12)
        lg = [
            np.array([[-0.17 - step, 0], [-0.04, 0], [-0.03, 0.48 * hh], [-0.16, 0.48 * hh]]),
            np.array([[0.04, 0], [0.17 + step, 0], [0.16, 0.48 * hh], [0.03, 0.48 * hh]]),
        ]
        torso = np.array([[-0.17, 0.46 * hh], [0.17, 0.46 * hh], [0.22, 0.82 * hh], [-0.22, 0.82 * hh]])
        arms = [
            np.array([[-0.3, 0.47 * hh], [-0.2, 0.47 * hh], [-0.19, 0.8 * hh], [-0.27, 0.8 * hh]]),
            np.array([[0.2, 0.47 * hh], [0.3, 0.47 * hh], [0.27, 0.8 * hh], [0.19, 0.8 * hh]]),
        ]
        head = _ellipse(0, 0.9 * hh, 0.09, 0.115, 14)
        hair_c = _ellipse(0, 0.93 * hh, 0.095, 0.085, 14)
        return (
            [_Part([c], pants, _PERSON, "cyl") for c in lg]
            + [_Part([torso], shirt, _PERSON, "cyl")]
            + [_Part([c], shirt, _PERSON, "cyl") for c in arms]
            + [_Part([head], skin, _PERSON, "sphere"), _Part([hair_c], hair, _PERSON, "sphere")]
        )

    def _bicycle(self, s: float, z: float) -> None:
        r = self.rng
        pos = self.w.at(s, z)
        yaw = self.w.yaw(z)
        hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
        frame = _Material(
            "plain", _hsv(r.random(), r.uniform(0, 0.9), r.uniform(0.1, 0.8)), noise=0.05, scale=0.01
        )
        tyre = _Material("plain", (0.05, 0.05, 0.05), noise=0.05, scale=0.01)
        wr = 0.34
        parts = [
            _Part([_ellipse(u, wr, wr, wr, 18), _ellipse(u, wr, wr - 0.05, wr - 0.05, 18)], tyre, _BICYCLE)
            for u in (-0.52, 0.52)
        ]
        joints = {
            "rh": (-0.52, wr),
            "bb": (-0.02, 0.3),
            "st": (-0.16, 0.85),
            "ht": (0.4, 0.85),
            "fh": (0.52, wr),
        }
        for a, b in (("rh", "bb"), ("bb", "st"), ("st", "ht"), ("ht", "bb"), ("ht", "fh"), ("rh", "st")):
            pa, pb = np.array(joints[a]), np.array(joints[b])
            d = pb - pa
            nrm = np.array([-d[1], d[0]]) / np.linalg.norm(d) * 0.02
            parts.append(_Part([np.array([pa - nrm, pb - nrm, pb + nrm, pa + nrm])], frame, _BICYCLE))
        parts.append(_Part([_rect(-0.26, 0.87, -0.06, 0.92)], tyre, _BICYCLE))
        parts.append(_Part([_rect(0.36, 0.85, 0.44, 1.0), _rect(0.3, 0.98, 0.5, 1.02)], tyre, _BICYCLE))
        face = _Face(pos - hvec * 0.0, hvec, _UP, parts)
        self._add([face], [np.array([pos + hvec * u + _UP * y for u in (-0.8, 0.8) for y in (0.0, 0.9)])])

    def _pole(self, pos: np.ndarray, height: float, radius: float, mat: _Material) -> _Face:
        return _Face(
            pos,
            np.array([1.0, 0, 0]),
            _UP,
            [_Part([_rect(-radius, 0, radius, height)], mat, _POLE, "cyl")],
            billboard=True,
        )

    def _furniture(self, side: int, sgn: float) -> None:
        w, r = self.w, self.rng
        half = w.half_r if side else w.half_l
        sw = w.sw_r if side else w.sw_l
        metal = _Material("plain", _hsv(0.6, r.uniform(0, 0.15), r.uniform(0.3, 0.6)), noise=0.05, scale=0.02)
        in_cross = self._in_crossing
        # street lamps
        z = r.uniform(0, 30)
        spacing = r.uniform(22, 40)
        lamp_h = r.uniform(6, 9)
        while z < self.z_end:
            if not in_cross(z, 2):
                pos = w.at(sgn * (half + 0.5), z)
                arm = r.uniform(1.0, 2.5)
                faces = [
                    self._pole(pos, lamp_h, 0.08, metal),
                    _Face(
                        pos + _UP * lamp_h,
                        np.array([-sgn, 0, 0]),
                        _UP,
                        [
                            _Part([_rect(0, -0.05, arm, 0.05)], metal, _POLE),
                            _Part([_rect(arm - 0.5, -0.15, arm, 0.0)], metal, _POLE),
                        ],
                    ),
                ]
                self._add(
                    faces,
                    [
                        np.array(
                            [
                                pos + _UP * y + np.array([dx, 0, 0])
                                for y in (0, lamp_h)
                                for dx in (-0.08, 0.08)
                            ]
                        )
                    ],
                    [_ellipse(pos[0], pos[2], 0.3, 0.3, 8)],
                )
            z += spacing
        # traffic signs
        for z in np.arange(r.uniform(5, 50), self.z_end, r.uniform(30, 90)):
            z = float(z)
            if in_cross(z, 2) or r.random() < 0.3:
                continue
            self._sign(w.at(sgn * (half + 0.4 + (0 if sw else 0.6)), z))
        for zc, _ in self.crossings:  # traffic lights at the near corners
            self._traffic_light(w.at(sgn * (half + 0.6), zc - 1.5))
        if sw <= 0:
            return
        # pedestrians, bicycles, trees in the pavement
        density = r.uniform(0.0, 0.12)
        for z in np.arange(-20, self.z_end + 40, 1.0):
            if r.random() < density:
                walk = r.random() < 0.6
                w.walkers.append(
                    _Walker(
                        sgn * (half + r.uniform(0.6, sw - 0.3)),
                        float(z + r.uniform(0, 1)),
                        float(r.choice([-1, 1]) * r.uniform(0.8, 1.6)) if walk else 0.0,
                        self._person(r),
                    )
                )
        for z in np.arange(0, self.z_end, 1.0):
            if r.random() < 0.01 and not in_cross(float(z), 2):
                self._bicycle(sgn * (half + sw - 0.4), float(z))
        if sw > 2.8 and r.random() < 0.4:
            for z in np.arange(r.uniform(0, 10), self.z_end, r.uniform(8, 15)):
                if not in_cross(float(z), 4):
                    self._tree(sgn * (half + 1.2), float(z), 0.8)

    def _in_crossing(self, z: float, margin: float) -> bool:
        return any(zc - margin <= z <= zc + cw + margin for zc, cw in self.crossings)

    def _sign(self, pos: np.ndarray) -> None:
        r = self.rng
        metal = _Material("plain", (0.55, 0.56, 0.58), noise=0.05, scale=0.02)
        ph = r.uniform(2.0, 2.6)
        size = r.uniform(0.55, 0.8)
        shape = r.choice(["circle", "triangle", "rect", "octagon", "blue"])
        white = _Material("plain", (0.9, 0.9, 0.9), noise=0.03, scale=0.01)
        red = _Material("plain", (0.75, 0.1, 0.1), noise=0.03, scale=0.01)
        blue = _Material("plain", (0.1, 0.25, 0.65), noise=0.03, scale=0.01)
        yellow = _Material("plain", (0.9, 0.75, 0.1), noise=0.03, scale=0.01)
        c = size / 2
        if shape == "circle":
            parts = [(_ellipse(0, c, c, c, 20), red), (_ellipse(0, c, 0.75 * c, 0.75 * c, 20), white)]
        elif shape == "triangle":
            tri = (
                np.array([[-c, size * 0.95], [c, size * 0.95], [0, 0.05]])
                if r.random() < 0.4
                else np.array([[-c, 0.05], [c, 0.05], [0, size * 0.95]])
            )
            parts = [(tri, red), ((tri - tri.mean(0)) * 0.65 + tri.mean(0), white)]
        elif shape == "octagon":
            parts = [
                (_ellipse(0, c, c, c, 8, math.pi / 8), red),
                (_ellipse(0, c, 0.45 * c, 0.15 * c, 8), white),
            ]
        elif shape == "blue":
            parts = [
                (_ellipse(0, c, c, c, 20), blue),
                (np.array([[-0.3 * c, 0.6 * c], [0.3 * c, 0.6 * c], [0.0, 1.5 * c]]), white),
            ]
        else:
            plate = yellow if r.random() < 0.4 else blue
            parts = [
                (_rect(-c, 0, c, size * 1.2), plate),
                (_rect(-0.25 * c, 0.3 * c, 0.25 * c, 0.9 * c), white),
            ]
        top = pos + _UP * ph
        # the front faces the ego traffic (normal -Z), the grey back is seen from the other side
        front = _Face(
            top - np.array([0, 0, 0.03]),
            np.array([-1.0, 0, 0]),
            _UP,
            [_Part([cont], m, _SIGN) for cont, m in parts],
            cull=True,
        )
        back = _Face(
            top.copy(),
            np.array([1.0, 0, 0]),
            _UP,
            [_Part([parts[0][0] * np.array([-1, 1])], metal, _SIGN)],
            cull=True,
        )
        self._add(
            [self._pole(pos, ph + size * 0.5, 0.04, metal), front, back],
            [np.array([pos + _UP * y + np.array([dx, 0, 0]) for y in (0, ph + size) for dx in (-c, c)])],
        )

    def _traffic_light(self, pos: np.ndarray) -> None:
        r = self.rng
        dark = _Material("plain", (0.08, 0.08, 0.08), noise=0.05, scale=0.02)
        ph = r.uniform(2.4, 3.2)
        lit = int(r.integers(3))
        lamp_cols = [(0.9, 0.1, 0.05), (0.95, 0.65, 0.05), (0.1, 0.85, 0.4)]
        lamps = [
            _Part(
                [_ellipse(0.15, ph + 0.75 - 0.25 * k, 0.09, 0.09, 12)],
                _Material(
                    "plain", lamp_cols[k] if k == lit else (0.15, 0.15, 0.14), noise=0.0, emissive=k == lit
                ),
                _LIGHT,
            )
            for k in range(3)
        ]
        tpl = _Part([np.zeros((1, 2))], dark, _LIGHT)
        housing = _box_faces(  # the lamps sit on the back face, which looks at oncoming ego traffic
            pos,
            0.0,
            0.25,
            0.3,
            ph,
            ph + 0.9,
            {
                "back": tpl,
                "back+": [_Part([c.copy() for c in lp.contours], lp.material, _LIGHT) for lp in lamps],
                "left": tpl,
                "right": tpl,
                "front": tpl,
                "top": tpl,
            },
        )
        mat = _Material("plain", (0.4, 0.42, 0.44), noise=0.05, scale=0.02)
        self._add(
            [self._pole(pos + np.array([0, 0, 0.2]), ph, 0.07, mat)] + housing,
            [np.array([pos + _UP * y + np.array([dx, 0, 0]) for y in (0, ph + 0.9) for dx in (-0.15, 0.15)])],
        )

    # -- vehicles and pedestrians
    def _traffic(self) -> None:
        w, r = self.w, self.rng
        color = self._car_color
        park_l, park_r = self.park
        for sgn, park in ((-1.0, park_l), (1.0, park_r)):
            if not park:
                continue
            half = w.half_r if sgn > 0 else w.half_l
            z = r.uniform(-20, 10)
            occupancy = r.uniform(0.2, 0.9)
            while z < self.z_end:
                length = r.uniform(3.9, 4.9)
                if r.random() < occupancy and not self._in_crossing(z, 6):
                    kind = "car" if r.random() > 0.06 else "truck"
                    ln = length if kind == "car" else r.uniform(7, 9)
                    v = _Vehicle(
                        kind,
                        sgn * (half - park / 2),
                        z + ln / 2,
                        0.0,
                        ln,
                        1.8 if kind == "car" else 2.45,
                        color(r),
                    )
                    faces, corners, foot = _vehicle_faces(v, w, 0.0)
                    if kind == "car":
                        far_faces = _vehicle_faces(v, w, 0.0, far=True)[0]
                        for f in faces:
                            f.lod = 1
                        for f in far_faces:
                            f.lod = 2
                        faces += far_faces
                    self._add(faces, [corners], [foot])
                    z += ln
                z += r.uniform(0.8, 6.0)
        n_left, n_right = self.lanes
        ego_k = int(round(w.s_ego / w.lane_w - 0.5))
        for k in range(-n_left, n_right):
            if k == ego_k:
                continue
            s = (k + 0.5) * w.lane_w
            speed = r.uniform(6, 14) * (1 if k >= 0 else -1)
            density = r.uniform(0.0, 1.0)
            z = self.z_end * -0.5 - 200
            while z < self.z_end * 2.5 + 300:
                z += r.uniform(12, 90) / max(density, 0.1)
                kind = str(r.choice(["car", "truck", "bus"], p=[0.9, 0.06, 0.04]))
                ln = {"car": r.uniform(3.9, 4.9), "truck": r.uniform(7, 10), "bus": 12.0}[kind]
                w.vehicles.append(
                    _Vehicle(
                        kind, s + r.uniform(-0.2, 0.2), z, speed, ln, 1.8 if kind == "car" else 2.5, color(r)
                    )
                )
                z += ln

    @staticmethod
    def _car_color(r: np.random.Generator) -> tuple[float, float, float]:
        return _jitter(r, _CAR_COLORS[int(r.integers(len(_CAR_COLORS)))], 0.06)

    # -- road surface decals (all inlier road)
    def _decals(self) -> None:
        w, r = self.w, self.rng
        park_l, park_r = self.park
        lo, hi = -w.half_l + park_l, w.half_r - park_r
        for zc, _ in self.crossings:
            if r.random() < 0.8:
                w.decals.append(_Decal("zebra", lo, hi, zc - 5.5, zc - 1.5, w.line_color))
            w.decals.append(_Decal("solid", 0.1, hi, zc - 7.2, zc - 6.8, w.line_color))
        arrows = [self._arrow_raster(kind) for kind in ("straight", "left", "right")]
        for z in np.arange(r.uniform(20, 60), self.z_end, r.uniform(40, 120)):
            k = int(r.integers(0, 3))
            for lane in range(self.lanes[1]):
                s = (lane + 0.5) * w.lane_w
                w.decals.append(
                    _Decal("raster", s - 0.5, s + 0.5, float(z), float(z) + 5.0, w.line_color, arrows[k])
                )
        step = r.uniform(12, 40)
        for z in np.arange(r.uniform(0, 20), self.z_end, step):
            s = r.uniform(lo + 0.6, hi - 0.6)
            rad = r.uniform(0.28, 0.4)
            w.decals.append(
                _Decal(
                    "manhole",
                    s - rad,
                    s + rad,
                    float(z) - rad,
                    float(z) + rad,
                    _hsv(0.08, 0.1, r.uniform(0.15, 0.35)),
                )
            )
        for z in np.arange(r.uniform(0, 30), self.z_end, r.uniform(15, 60)):
            shade = r.uniform(0.7, 1.2)
            ws, ls = r.uniform(0.5, 3.5), r.uniform(1.0, 8.0)
            s = r.uniform(lo, hi - ws)
            w.decals.append(
                _Decal(
                    "patch",
                    s,
                    s + ws,
                    float(z),
                    float(z) + ls,
                    tuple(float(c) * shade for c in w.asphalt),
                )
            )
        for z in np.arange(r.uniform(0, 20), self.z_end, r.uniform(8, 40)):
            rad = r.uniform(0.2, 0.9)
            s = r.uniform(lo, hi)
            w.decals.append(
                _Decal(
                    "stain",
                    s - rad,
                    s + rad,
                    float(z) - rad * 1.5,
                    float(z) + rad * 1.5,
                    _jitter(r, tuple(np.array(w.asphalt) * 0.55), 0.1),
                )
            )
        for sgn, edge in ((-1.0, w.half_l), (1.0, w.half_r)):
            for z in np.arange(r.uniform(0, 20), self.z_end, r.uniform(20, 50)):
                s = sgn * (edge - 0.35)
                w.decals.append(
                    _Decal("grate", s - 0.25, s + 0.25, float(z), float(z) + 0.6, (0.12, 0.12, 0.12))
                )

    @staticmethod
    def _arrow_raster(kind: str) -> np.ndarray:
        img = np.zeros((100, 20), np.uint8)  # 5 m long (rows along z), 1 m wide, 5 cm per cell
        shaft = np.array([[8, 0], [12, 0], [12, 70], [8, 70]])
        head = np.array([[2, 66], [18, 66], [10, 99]])
        cv2.fillPoly(img, [shaft], 1)
        if kind == "straight":
            cv2.fillPoly(img, [head], 1)
        else:
            sgn = -1 if kind == "left" else 1
            cv2.fillPoly(img, [np.array([[10, 55], [10 + sgn * 9, 70], [10 + sgn * 9, 62], [10, 48]])], 1)
            cv2.fillPoly(img, [np.array([[10, 70], [10 + sgn * 9, 78], [10 + sgn * 4, 62]])], 1)
        return img.astype(bool)

    # -- distant skyline and obstacles
    def _backdrop(self) -> None:
        w, r = self.w, self.look
        nb = 2048
        h = np.zeros(nb)
        lab = np.full(nb, _VEG, np.uint8)
        col = np.zeros((nb, 3))
        i = 0
        while i < nb:
            run = min(int(r.integers(8, 60)), nb - i)
            if r.random() < (0.3 if self.rural else 0.65):
                h[i : i + run] = r.uniform(0.008, 0.05)
                lab[i : i + run] = _BUILDING
                col[i : i + run] = _hsv(r.uniform(0.05, 0.6), r.uniform(0, 0.15), r.uniform(0.45, 0.7))
            else:
                h[i : i + run] = r.uniform(0.004, 0.025) * (
                    1 + 0.3 * np.sin(np.arange(run) * r.uniform(0.2, 0.6))
                )
                col[i : i + run] = _hsv(r.uniform(0.2, 0.3), r.uniform(0.3, 0.5), r.uniform(0.25, 0.4))
            i += run
        w.backdrop_h, w.backdrop_label, w.backdrop_color = h, lab, col

    def _obstacles(self, r: np.random.Generator) -> None:
        w = self.w
        z = r.uniform(12, 35)
        first = True
        while z < self.z_end - 5:
            if r.random() < 0.07 and not first:
                z += r.uniform(40, 100)  # long empty stretch: some frames show no obstacle at all
                continue
            first = False
            for _ in range(int(r.choice([1, 1, 1, 2, 2, 3]))):
                size = float(np.clip(r.lognormal(math.log(0.25), 0.55), 0.06, 1.1))
                reach = max(w.lane_w / 2 - 0.6 * size - 0.1, 0.05)
                s = w.s_ego + r.uniform(-reach, reach)
                zz = z + r.uniform(-3, 3)
                faces, casters, ao = _obstacle(r, w.at(s, zz), size, w.asphalt)
                self._add(faces, casters, ao)
            z += r.uniform(12, 55)

    def _finish(self) -> None:
        w = self.w
        w.face_zmin = np.array([f.zmin for f in w.faces])
        w.face_zmax = np.array([f.zmax for f in w.faces])
        w.face_lod = np.array([f.lod for f in w.faces])
        if w.shadow_strength > 0:
            w.shadows = [_ground_hull(c, w.light.sun) for c in self.casters]
        w.shadow_z = np.array([[p[:, 1].min(), p[:, 1].max()] for p in w.shadows]).reshape(-1, 2)
        w.ao_z = np.array([[p[:, 1].min(), p[:, 1].max()] for p in w.ao]).reshape(-1, 2)


# --------------------------------------------------------------------------------------- rendering


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class _Renderer:
    """Draws one frame of a `_World` through a `CameraModel`."""

    def __init__(self, world: _World, cam: CameraModel) -> None:
        self.w = world
        self.cam = cam
        self.dx = ((np.arange(cam.width) - cam.cx) / cam.fx).astype(np.float32)
        self.dy = ((np.arange(cam.height) - cam.cy) / cam.fy).astype(np.float32)
        yy, xx = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float32)
        rr = ((xx - cam.cx) / cam.width) ** 2 + ((yy - cam.cy) / cam.width) ** 2
        self.vignette = (1.0 - 0.35 * rr).astype(np.float32)[..., None]
        self.px_scale = cam.width / 512.0
        self.lod_distance = 40.0 * max(1.0, self.px_scale)  # far cars: one box instead of body + cabin
        self.actor_distance = min(
            150.0 * max(1.0, self.px_scale), _VIEW_AHEAD - 40
        )  # moving ones: ~7 px wide
        # sensor noise: one bank per renderer, a random crop per frame (drawing fresh normals is slow)
        bank_rng = np.random.default_rng(cam.width * 7919 + cam.height)
        self.noise = bank_rng.standard_normal((cam.height + 32, cam.width + 32, 3), dtype=np.float32) * 1.8
        self.noise += bank_rng.standard_normal((cam.height + 32, cam.width + 32, 1), dtype=np.float32) * 3.0
        self.fog_image: np.ndarray | None = None
        self.gain = self.vignette
        self.actor_faces: list[_Face] = []
        self.actor_shadow: list[np.ndarray] = []
        self.actor_ao: list[np.ndarray] = []

    def render(
        self, center: np.ndarray, yaw: float, t_sec: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, cam = self.w, self.cam
        assert w.tex is not None
        rot = _rotation(yaw, cam.pitch_rad)
        hh, ww = cam.height, cam.width
        buf = _Buffers(
            np.empty((hh, ww, 3), np.float32),
            np.full((hh, ww), np.inf, np.float32),
            np.full((hh, ww), _SKY, np.uint8),
            np.zeros((hh, ww), bool),
        )
        wy = (rot[1, 1] * self.dy + rot[2, 1]).astype(np.float32)  # world up-component of each row's rays
        r0 = min(int(np.searchsorted(-wy, cam.height_m / _FAR_GROUND)), hh)  # first ground row
        self._prepare_actors(center[2], t_sec)
        if r0 > 0:
            self._sky(buf, yaw, r0)
        if r0 < hh:
            wx = rot[0, 0] * self.dx[None] + (rot[1, 0] * self.dy[r0:] + rot[2, 0])[:, None]
            wz = rot[0, 2] * self.dx[None] + (rot[1, 2] * self.dy[r0:] + rot[2, 2])[:, None]
            self._ground(buf, center, rot, r0, wx, wy[r0:], wz)
        near = w.face_zmin < center[2] + self.lod_distance
        sel = np.nonzero(
            (w.face_zmax > center[2] - 3)
            & (w.face_zmin < center[2] + _VIEW_AHEAD)
            & ((w.face_lod == 0) | ((w.face_lod == 1) & near) | ((w.face_lod == 2) & ~near))
        )[0]
        faces = [w.faces[i] for i in sel] + self.actor_faces
        _draw_faces(faces, cam, center, rot, buf, w.tex, w.light)
        return self._finish(buf, rng)

    # -- sky and distant backdrop
    def _sky(self, buf: _Buffers, yaw: float, r0: int) -> None:
        """Sky gradient, sun glow, clouds and skyline; separable in elevation (rows) and azimuth (columns)."""
        w, cam = self.w, self.cam
        tex = w.tex
        assert tex is not None
        el = (cam.pitch_rad - np.arctan(self.dy[:r0]))[:, None]  # no roll: elevation depends on the row
        az = (yaw + np.arctan(self.dx))[None, :]
        k = _smooth(el / 0.45) ** 0.7
        col = (
            np.asarray(w.sky_horizon, np.float32) * (1 - k[..., None])
            + np.asarray(w.sky_zenith, np.float32) * k[..., None]
        )
        col = np.broadcast_to(col, (r0, cam.width, 3)).copy()
        sun = w.light.sun
        if not w.overcast:
            sun_el, sun_az = math.asin(sun[1]), math.atan2(sun[0], sun[2])
            cosang = np.cos(el) * math.cos(sun_el) * np.cos(az - sun_az) + np.sin(el) * math.sin(sun_el)
            col += (0.4 * np.exp((cosang - 1) * 60) + 0.12 * np.exp((cosang - 1) * 5))[..., None].astype(
                np.float32
            )
        elc = np.maximum(el, 0.0)
        azb = np.broadcast_to(az, (r0, cam.width))
        elb = np.broadcast_to(elc, (r0, cam.width))
        n = _sample(tex.coarse, azb * (_TEX * 2 / (2 * math.pi)), 8.0 / (elb + 0.05)) + 0.25 * _sample(
            tex.band, azb * (_TEX * 4 / (2 * math.pi)), 20.0 / (elb + 0.05)
        )
        cover = _smooth((n - (1.6 - 3.0 * w.clouds)) * 0.5) * _smooth(elc / 0.03)
        cloud = np.asarray((0.95, 0.95, 0.96) if not w.overcast else (0.78, 0.78, 0.8), np.float32)
        cloud_col = cloud * (0.88 + 0.12 * np.clip(n - 1.0, -1, 1) + 0.1 * _smooth(elc / 0.3))[..., None]
        col += (cloud_col - col) * cover[..., None]
        nb = w.backdrop_h.size
        bins = ((az[0] + math.pi) / (2 * math.pi) * nb).astype(np.int64) % nb
        back = el < w.backdrop_h[bins][None, :]
        if back.any():
            by, bx = np.nonzero(back)
            shade = 0.85 + 0.15 * np.clip(_sample(tex.band, bx * 0.7 + yaw * 900, by * 0.7), -1, 1)
            col[by, bx] = w.backdrop_color[bins[bx]] * shade[:, None]
            buf.label[by, bx] = w.backdrop_label[bins[bx]]
            buf.depth[by, bx] = _FAR_GROUND
        buf.color[:r0] = col

    # -- the ground plane: road, pavement, terrain, markings, decals, shadows
    def _ground(
        self,
        buf: _Buffers,
        center: np.ndarray,
        rot: np.ndarray,
        r0: int,
        wx: np.ndarray,
        wy: np.ndarray,
        wz: np.ndarray,
    ) -> None:
        w, cam = self.w, self.cam
        tex = w.tex
        assert tex is not None
        t = (cam.height_m / -wy).astype(np.float32)  # camera depth of each ground row
        tc = t[:, None]
        big_x = (center[0] + tc * wx).astype(np.float32)
        big_z = (center[2] + tc * wz).astype(np.float32)
        # road centre: exact per row at the image centre, second-order Taylor across the row
        zm = big_z[:, cam.width // 2 : cam.width // 2 + 1]
        c0 = w.xc(zm)
        c1 = np.array([w.dxc(float(z)) for z in zm[:, 0]], np.float32)[:, None]
        c2 = (np.array([w.dxc(float(z) + 0.5) for z in zm[:, 0]], np.float32)[:, None] - c1) / 0.5
        dz = big_z - zm
        s = big_x - (c0 + dz * (c1 + 0.5 * c2 * dz)).astype(np.float32)
        foot = (t / cam.fx * np.sqrt(np.maximum(t / cam.height_m, 1.0)))[:, None]  # metres per pixel (along)
        foot_lat = (t / cam.fx)[:, None]
        # labels
        right = s >= 0
        a = np.abs(s)
        half = np.where(right, np.float32(w.half_r), np.float32(w.half_l))
        sw = np.where(right, np.float32(w.sw_r), np.float32(w.sw_l))
        code = np.where(
            right,
            w.seg_code[1][np.searchsorted(w.seg_z[1], big_z, "right") - 1],
            w.seg_code[0][np.searchsorted(w.seg_z[0], big_z, "right") - 1],
        )
        on_road = a < half
        on_walk = (a < half + sw) & (code != 0)
        lbl = np.where(
            on_road,
            np.uint8(_ROAD),
            np.where(on_walk, np.uint8(_SIDEWALK), np.array([_ROAD, _SIDEWALK, _TERRAIN], np.uint8)[code]),
        )
        # multi-octave noise, each octave faded out where a pixel covers a whole wavelength (no aliasing)
        noise = np.zeros_like(s)
        for k, sc in enumerate((0.0125, 0.05, 0.2)):
            wgt = np.clip(2.0 - foot[:, 0] / (2 * sc), 0, 1)
            ra = int(np.argmax(wgt > 0)) if wgt[-1] > 0 else len(wgt)
            if ra < len(wgt):
                noise[ra:] += wgt[ra:, None] * _sample(
                    tex.band, s[ra:] / sc + 17 * k, big_z[ra:] / sc + 31 * k
                )
        coarse = _sample(tex.coarse, s / 0.15, big_z / 0.15)
        coarse2 = _sample(tex.coarse, big_z / 0.11 + 50, s / 0.11 + 90)
        f_road = (1 + 0.05 * noise + 0.05 * coarse) * (1 - 0.12 * _smooth((coarse2 - 1.0) * 3))
        cw = np.clip(2.0 - foot[:, 0] / 0.06, 0, 1)
        ra = int(np.argmax(cw > 0)) if cw[-1] > 0 else len(cw)
        if ra < len(cw):
            f_road[ra:] *= 1 - 0.35 * cw[ra:, None] * _sample(tex.cracks, s[ra:] / 0.03, big_z[ra:] / 0.03)
        sl = np.mod(s - w.s_ego + w.lane_w / 2, w.lane_w) - w.lane_w / 2  # lateral offset within a lane
        f_road *= 1 - 0.07 * np.exp(-((sl / 0.35) ** 2)) + 0.03 * np.exp(-(((np.abs(sl) - 0.85) / 0.25) ** 2))
        # pavement tiles with joints, curb band, grass
        f_pave = 1 + 0.06 * noise + 0.04 * coarse
        tw = np.clip(2.0 - foot[:, 0] / (0.15 * w.tile), 0, 1)
        ra = int(np.argmax(tw > 0)) if tw[-1] > 0 else len(tw)
        if ra < len(tw):
            joint = (np.mod(s[ra:], w.tile) < 0.07 * w.tile) | (np.mod(big_z[ra:], w.tile) < 0.07 * w.tile)
            f_pave[ra:] *= 1 - 0.25 * joint * tw[ra:, None]
        curb = (a - half < 0.25) & on_walk
        mi = np.where(lbl == _ROAD, 0, np.where(lbl == _TERRAIN, 3, np.where(curb, 2, 1))).astype(np.uint8)
        f = np.where(
            mi == 0,
            f_road,
            np.where(mi == 3, 1 + 0.18 * noise, np.where(mi == 2, 1 - 0.25 * (a - half < 0.1), f_pave)),
        )
        if w.wet > 0:
            f = np.where(mi == 0, f, f * (1 - 0.35 * w.wet))
        lut = np.array([w.asphalt, w.pave, w.curb, w.grass[0]], np.float32)
        col = np.take(lut, mi, axis=0)
        gy, gx = np.nonzero(mi == 3)
        if gy.size:  # grass: blend a green and a dry colour
            mix = _smooth(0.5 + 0.5 * coarse[gy, gx])[:, None]
            col[gy, gx] += (np.asarray(w.grass[1], np.float32) - lut[3]) * mix
        col *= f[..., None]
        self._markings(col, s, big_z, foot_lat, code, on_road)
        self._decals(col, s, big_z, lbl, t, center, rot)
        if w.wet > 0:
            fres = (0.1 + 0.45 * _smooth(t / 60.0))[:, None]
            puddle = _smooth((_sample(tex.coarse, s / 0.1 + 7, big_z / 0.1 + 3) - 0.8) * 2) * w.wet
            refl = np.where(on_road, np.clip(fres + 0.35 * puddle, 0, 0.7), 0)[..., None]
            sky = np.asarray(w.sky_horizon, np.float32) * 0.75
            col = col * (1 - np.where(on_road, 0.5 * w.wet, 0)[..., None]) * (1 - refl) + sky * refl
        col *= self._shadows(center, rot, r0)[..., None]
        buf.color[r0:] = col
        buf.label[r0:] = lbl
        buf.depth[r0:] = tc

    def _markings(
        self,
        col: np.ndarray,
        s: np.ndarray,
        z: np.ndarray,
        foot_lat: np.ndarray,
        code: np.ndarray,
        on_road: np.ndarray,
    ) -> None:
        """Anti-aliased lane lines: each pixel looks at its nearest line only."""
        w = self.w
        lines = sorted(w.lines)
        ls = np.array([ln[0] for ln in lines], np.float32)
        k = np.searchsorted((ls[1:] + ls[:-1]) / 2, s)
        d = np.abs(s - ls[k])
        iy, ix = np.nonzero((d < 0.1 + foot_lat) & on_road & (code != 0))
        k, d = k[iy, ix], d[iy, ix]
        width = np.array([ln[1] for ln in lines], np.float32)[k]
        dash = np.array([ln[2] for ln in lines], np.float32)[k]
        period = np.array([min(ln[3], 1e6) for ln in lines], np.float32)[k]
        inv = 1.0 / np.maximum(foot_lat[iy, 0], 1e-3)
        c = np.clip((width / 2 - d) * inv + 0.5, 0, 1) * np.clip(width * inv, 0, 1)
        c *= (dash >= period) | (np.mod(z[iy, ix], period) < dash)
        c = c[:, None]
        col[iy, ix] = col[iy, ix] * (1 - c) + np.asarray(w.line_color, np.float32) * c

    def _decals(
        self,
        col: np.ndarray,
        s: np.ndarray,
        z: np.ndarray,
        lbl: np.ndarray,
        t: np.ndarray,
        center: np.ndarray,
        rot: np.ndarray,
    ) -> None:
        w = self.w
        cz = center[2]
        for d in w.decals:
            if d.z1 < cz or d.z0 > cz + 120:
                continue
            corners = np.array(
                [[float(w.xc(zz)) + ss, 0.0, zz] for ss in (d.s0, d.s1) for zz in (d.z0, d.z1)]
            )
            depth = (corners - center) @ rot[2]
            lo, hi = depth.min(), depth.max()
            if hi < _NEAR:
                continue
            rows = np.nonzero((t >= lo - 1.0) & (t <= hi + 1.0))[0]
            if rows.size == 0:
                continue
            ra, rb = rows[0], rows[-1] + 1
            ss, zz = s[ra:rb], z[ra:rb]
            m = (ss >= d.s0) & (ss <= d.s1) & (zz >= d.z0) & (zz <= d.z1) & (lbl[ra:rb] == _ROAD)
            if not m.any():
                continue
            u = ss[m] - d.s0
            v = zz[m] - d.z0
            su, sv = d.s1 - d.s0, d.z1 - d.z0
            base = col[ra:rb][m]
            paint = np.asarray(d.color, np.float32)
            if d.kind == "zebra":
                cov = (np.mod(u, 1.0) < 0.5).astype(np.float32)
            elif d.kind == "solid":
                cov = np.ones_like(u)
            elif d.kind == "raster":
                assert d.raster is not None
                iy = np.clip((v / sv * d.raster.shape[0]).astype(int), 0, d.raster.shape[0] - 1)
                ix = np.clip((u / su * d.raster.shape[1]).astype(int), 0, d.raster.shape[1] - 1)
                cov = d.raster[iy, ix].astype(np.float32)
            elif d.kind == "manhole":
                r = np.hypot(u - su / 2, v - sv / 2) / (su / 2)
                ring = (r > 0.85) & (r <= 1.0)
                grid = (np.mod((u + v) / 0.06, 1.0) < 0.5) & (r < 0.85)
                cov = (r <= 1.0).astype(np.float32)
                paint = np.where(ring[:, None], paint * 0.7, np.where(grid[:, None], paint * 1.25, paint))
            elif d.kind == "patch":
                cov = np.full(u.shape, 0.9, np.float32)
                edge = np.minimum(np.minimum(u, su - u), np.minimum(v, sv - v)) < 0.05
                paint = np.where(
                    edge[:, None], paint * 0.6, base * (paint / np.asarray(w.asphalt, np.float32))
                )
            elif d.kind == "stain":
                r = np.hypot((u - su / 2) / (su / 2), (v - sv / 2) / (sv / 2))
                wob = 0.15 * np.sin(7 * np.arctan2(v - sv / 2, u - su / 2) + d.s0 * 10)
                cov = _smooth((1.0 + wob - r) * 4) * 0.7
            else:  # grate
                cov = np.ones_like(u)
                paint = np.where((np.mod(v / 0.06, 1.0) < 0.5)[:, None], paint * 0.5, paint[None] * 1.5)
            cov = cov[:, None]
            sub = col[ra:rb]
            sub[m] = base * (1 - cov) + paint * cov

    def _shadows(self, center: np.ndarray, rot: np.ndarray, r0: int) -> np.ndarray:
        """Multiplicative ground light factor from sun shadows and ambient occlusion (rows r0..)."""
        w, cam = self.w, self.cam
        cz = center[2]
        hh, ww = cam.height, cam.width
        out = np.ones((hh - r0, ww), np.float32)
        cam_sub = CameraModel(cam.fx, cam.fy, cam.cx, cam.cy - r0, cam.height_m, cam.pitch_rad, ww, hh - r0)
        for polys, zr, extra, strength, sigma, reach in (
            (w.shadows, w.shadow_z, self.actor_shadow, w.shadow_strength * (1 - w.light.ambient), 0.7, 110.0),
            (w.ao, w.ao_z, self.actor_ao, 0.45, 2.0, 80.0),
        ):
            if strength <= 0:
                continue
            sel = np.nonzero((zr[:, 1] > cz - 2) & (zr[:, 0] < cz + reach))[0] if len(zr) else []
            plist = [polys[i] for i in sel] + extra
            if not plist:
                continue
            mask = np.zeros((hh - r0, ww), np.uint8)
            _fill_ground_polys(plist, mask, cam_sub, center, rot)
            m = cv2.GaussianBlur(mask, (0, 0), sigma * self.px_scale)
            out *= 1 - (strength / 255.0) * m
        return out

    # -- moving actors
    def _prepare_actors(self, cz: float, t_sec: float) -> None:
        """Faces and ground shadow/AO polygons of vehicles and pedestrians at time t_sec."""
        w = self.w
        sun = w.light.sun
        self.actor_faces, self.actor_shadow, self.actor_ao = [], [], []
        for v in w.vehicles:
            dist = v.z0 + v.speed * t_sec - cz
            if -15 < dist < self.actor_distance:
                faces, corners, foot = _vehicle_faces(v, w, t_sec, far=dist > self.lod_distance)
                self.actor_faces += faces
                self.actor_ao.append(foot)
                if w.shadow_strength > 0:
                    self.actor_shadow.append(_ground_hull(corners, sun))
        for p in w.walkers:
            z = p.z0 + p.speed * t_sec
            if cz - 5 < z < cz + 120:
                pos = w.at(p.s, z)
                self.actor_faces.append(_Face(pos, np.array([1.0, 0, 0]), _UP, p.parts, billboard=True))
                self.actor_ao.append(_ellipse(pos[0], pos[2], 0.3, 0.3, 8))
                if w.shadow_strength > 0:
                    self.actor_shadow.append(
                        _ground_hull(
                            np.array([pos + np.array([dx, y, 0]) for dx in (-0.25, 0.25) for y in (0, 1.7)]),
                            sun,
                        )
                    )

    # -- atmosphere and camera
    def _finish(self, buf: _Buffers, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = self.w
        hh, ww = buf.depth.shape
        haze = np.exp(-w.fog * np.minimum(buf.depth, 1e5))  # transmittance; the sky keeps its own colour
        haze[buf.label == _SKY] = 1.0
        if self.fog_image is None:
            self.fog_image = np.empty((hh, ww, 3), np.float32)
            self.fog_image[:] = np.asarray(w.fog_color, np.float32)
            self.gain = self.vignette * (
                np.float32(w.exposure) * np.asarray(w.white_balance, np.float32) * 255
            )
        img = cv2.blendLinear(buf.color, self.fog_image, haze, 1 - haze)
        img = cv2.GaussianBlur(img, (0, 0), 0.55 * max(self.px_scale, 1.0) ** 0.5)
        img *= self.gain
        oy, ox = rng.integers(0, 32, 2)
        img += self.noise[oy : oy + hh, ox : ox + ww]
        image = cv2.convertScaleAbs(img)  # saturating round to uint8 (values are >= 0 but for noise)
        sem = buf.label.copy()
        sem[buf.obstacle] = _OBSTACLE
        ood = np.full(sem.shape, OOD_IGNORE, np.uint8)
        ood[sem == _ROAD] = OOD_INLIER
        ood[buf.obstacle] = OOD_ANOMALY
        return image, sem, ood


# ------------------------------------------------------------------------------------------ public API


class SyntheticSequence:
    """A drive along a procedural street, rendered frame by frame (deterministic in seed and index).

    The camera moves forward along its lane at ``speed_mps``; frame ``i`` is taken at time ``i / fps``.
    Unknown obstacles (``semantic`` 255, ``ood_gt`` 1) lie on the ego lane at fixed world positions, so
    they grow as the car approaches; ``ood_gt`` is 0 on visible road (markings included) and 255 elsewhere.
    The world, its layout and its weather depend only on ``seed``; ``obstacles=False`` renders the same
    world without them (for segmenter training).

    Args:
        seed: world seed (>= 0).
        frames: number of frames (>= 1).
        height: image height in pixels.
        width: image width in pixels; the focal length scales with it.
        obstacles: whether to place unknown obstacles on the road.
        speed_mps: ego speed in metres per second (>= 0).
        fps: frame rate (> 0).

    Raises:
        DatasetError: an argument is out of range.
    """

    def __init__(
        self,
        seed: int,
        frames: int,
        *,
        height: int = 256,
        width: int = 512,
        obstacles: bool = True,
        speed_mps: float = 8.0,
        fps: float = 10.0,
    ) -> None:
        if int(seed) != seed or seed < 0:
            raise DatasetError(f"synthetic: seed must be a non-negative integer, got {seed!r}")
        if int(frames) != frames or frames < 1:
            raise DatasetError(f"synthetic: frames must be a positive integer, got {frames!r}")
        if height < 16 or width < 16:
            raise DatasetError(f"synthetic: image size must be at least 16x16, got {height}x{width}")
        if not (speed_mps >= 0 and math.isfinite(speed_mps)) or not (fps > 0 and math.isfinite(fps)):
            raise DatasetError(f"synthetic: need speed_mps >= 0 and fps > 0, got {speed_mps} and {fps}")
        self.seed = int(seed)
        self.frames = int(frames)
        self.speed_mps = float(speed_mps)
        self.fps = float(fps)
        self.camera = CameraModel.for_size(int(height), int(width))
        self.sequence = f"synthetic_s{self.seed:04d}"
        length = self.speed_mps * self.frames / self.fps
        self._world = _Builder(self.seed, length + _VIEW_AHEAD + 40.0, obstacles).w
        self._renderer = _Renderer(self._world, self.camera)

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: int) -> Frame:
        if index < 0:
            index += self.frames
        if not 0 <= index < self.frames:
            raise IndexError(f"{self.sequence}: frame {index} out of range 0..{self.frames - 1}")
        image, semantic, ood = self._renderer.render(
            *self.pose(index), index / self.fps, np.random.default_rng([self.seed, index, 7])
        )
        return Frame(
            image=image,
            ood_gt=ood,
            semantic=semantic,
            name=f"{self.sequence}_{index:06d}",
            sequence=self.sequence,
            index=index,
        )

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frames):
            yield self[i]

    def pose(self, index: int) -> tuple[np.ndarray, float]:
        """World position of the camera (x, y, z; y up, z along the road) and its heading yaw at a frame."""
        z = self.speed_mps * index / self.fps
        w = self._world
        return w.at(w.s_ego, z, self.camera.height_m), w.yaw(z)


_PATCH_TEX: list[_Textures] = []


def make_obstacle_patch(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one procedural unknown object, as used on the synthetic road, for outlier pasting.

    The object (box, cylinder, pipe, blob, plate, tyre, bag or ball with a random surface) is seen from a
    random viewpoint, lit by a random sun, and scaled to fill most of the patch.

    Args:
        rng: random generator (the only source of randomness).
        height: patch height in pixels (>= 4).
        width: patch width in pixels (>= 4).

    Returns:
        (HxWx3 uint8 RGB, HxW bool mask of the object); pixels outside the mask are black.
    """
    if height < 4 or width < 4:
        raise ValueError(f"make_obstacle_patch: size must be at least 4x4, got {height}x{width}")
    if not _PATCH_TEX:
        _PATCH_TEX.append(_Textures.make(np.random.default_rng(20260101)))
    tex = _PATCH_TEX[0]
    grey = float(rng.uniform(0.27, 0.42))
    faces, _, _ = _obstacle(rng, np.zeros(3), 0.5, (grey, grey, grey * 1.03))
    el, az = rng.uniform(0.15, 1.2), rng.uniform(0, 2 * math.pi)
    sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    amb, dif = rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.7)
    light = _Light(sun, amb / (amb + dif * sun[1]), dif / (amb + dif * sun[1]))
    dist, cam_h = rng.uniform(2.0, 6.0), rng.uniform(0.5, 1.6)
    center = np.array([0.0, cam_h, -dist])
    # aim at the object's middle, then fit its projection into the patch
    pts = [
        f.origin + c[:, :1] * f.axis_u + c[:, 1:2] * f.axis_v
        for f in faces
        for p in f.parts
        for c in p.contours
    ]
    mid = np.concatenate(pts).mean(0)
    pitch = math.atan2(cam_h - mid[1], dist)
    rot = _rotation(0.0, pitch)
    pc = (np.concatenate(pts) - center) @ rot.T
    xy = pc[:, :2] / np.maximum(pc[:, 2:], _NEAR)
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-3) * 1.12  # billboards turn; keep a margin
    f = min(width / span[0], height / span[1])
    cam = CameraModel(
        f,
        f,
        width / 2 - f * (lo[0] + hi[0]) / 2,
        height / 2 - f * (lo[1] + hi[1]) / 2,
        cam_h,
        pitch,
        width,
        height,
    )
    buf = _Buffers(
        np.zeros((height, width, 3), np.float32),
        np.full((height, width), np.inf, np.float32),
        np.zeros((height, width), np.uint8),
        np.zeros((height, width), bool),
    )
    _draw_faces(faces, cam, center, rot, buf, tex, light)
    mask = buf.obstacle
    if not mask.any():  # degenerate draw (should not happen): fall back to a filled ellipse
        cv2.ellipse(
            mask.view(np.uint8), (width // 2, height // 2), (width // 3, height // 3), 0, 0, 360, 1, -1
        )
        buf.color[mask] = (0.6, 0.2, 0.7)
    image = np.clip(buf.color * 255 + 0.5, 0, 255).astype(np.uint8)
    image[~mask] = 0
    return image, mask.copy()
