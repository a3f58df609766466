"""Generated CIFAR-size images: ten shape and texture classes on cluttered, noisy backgrounds.

CIFAR-10 cannot ship (no downloads at run time) and 8x8 digits are too easy and too small for
latency to matter, so adacomp renders its own 32x32 RGB set. Each image is one foreground
object of its class (disk, ring, square, frame, triangle, plus, X, stripes, checker, ellipse)
at a random position, size, tilt and colour, over a random colour gradient with a distractor
blob and pixel noise. Classes differ by shape, outline vs fill and texture, so a network must
learn real spatial features; low contrast, clutter and noise keep a small ResNet below 100 %,
so compressing it costs accuracy. Rendered with numpy from signed distances, vectorised over
the whole set: 8,000 images in about a second, identical for a given seed on every machine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASS_NAMES", "IMAGE_SIZE", "render_shapes"]

IMAGE_SIZE = 32
CLASS_NAMES = (
    "disk",
    "ring",
    "square",
    "frame",
    "triangle",
    "plus",
    "x",
    "stripes",
    "checker",
    "ellipse",
)
_MAX_TILT = np.deg2rad(25.0)  # small: a plus tilted 45 degrees would be an X
_EDGE = 0.06  # anti-aliasing width, in units of the image's half-size


def render_shapes(count: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) int64, balanced classes."""
    if count < 1:
        raise ValueError(f"count={count!r}; expected an integer >= 1")
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % len(CLASS_NAMES)
    rng.shuffle(labels)
    axis = (np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5) / IMAGE_SIZE * 2.0 - 1.0  # [-1, 1]
    y, x = np.meshgrid(axis, axis, indexing="ij")  # (H, W)

    def per_image(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, size=(count, 1, 1)).astype(np.float32)

    center_x, center_y = per_image(-0.35, 0.35), per_image(-0.35, 0.35)
    radius = per_image(0.25, 0.55)
    tilt = per_image(-_MAX_TILT, _MAX_TILT)
    cos, sin = np.cos(tilt), np.sin(tilt)
    u = ((x - center_x) * cos + (y - center_y) * sin) / radius  # object frame, unit size
    v = (-(x - center_x) * sin + (y - center_y) * cos) / radius
    distance = _signed_distance(labels, u, v, rng)  # < 0 inside, in object units
    coverage = np.clip(0.5 - distance * radius / _EDGE, 0.0, 1.0)  # (N, H, W)

    background = _gradient(rng, count, x, y)  # (N, 3, H, W)
    blob = _distractor(rng, count, x, y)
    in_front = rng.uniform(size=(count, 1, 1, 1)) < 0.3  # the blob occludes the object in 30 %
    background = np.where(in_front, background, _blend(background, blob, rng))
    foreground = _contrasting_colour(rng, background.mean(axis=(2, 3)))  # (N, 3)
    images = background * (1.0 - coverage[:, None]) + foreground[:, :, None, None] * coverage[:, None]
    images = np.where(in_front, _blend(images, blob, rng), images)
    images += rng.normal(0.0, 0.08, size=images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0).astype(np.float32), labels


def _signed_distance(
    labels: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Signed distance of every pixel to its image's object, shape chosen by the label."""
    r = np.sqrt(u * u + v * v)
    box = np.maximum(np.abs(u), np.abs(v))
    width = rng.uniform(0.18, 0.28, size=(len(labels), 1, 1)).astype(np.float32)
    frequency = rng.uniform(2.2, 3.2, size=(len(labels), 1, 1)).astype(np.float32) * np.pi
    bar = np.minimum(
        np.maximum(np.abs(u) - width, np.abs(v) - 1.0), np.maximum(np.abs(v) - width, np.abs(u) - 1.0)
    )
    diagonal_u, diagonal_v = (u + v) / np.sqrt(2.0), (u - v) / np.sqrt(2.0)
    cross = np.minimum(
        np.maximum(np.abs(diagonal_u) - width, np.abs(diagonal_v) - 1.0),
        np.maximum(np.abs(diagonal_v) - width, np.abs(diagonal_u) - 1.0),
    )
    # Equilateral triangle pointing up, inscribed in the unit circle: three half-planes.
    triangle = np.maximum(np.maximum(v * 1.0 - 0.5, -0.866 * u - 0.5 * v - 0.5), 0.866 * u - 0.5 * v - 0.5)
    # Textures inside a disk: the sign of a sine decides stripe or gap (distance in sine units).
    stripes = np.maximum(r - 1.0, np.sin(frequency * u) * 0.15)
    checker = np.maximum(r - 1.0, np.sin(frequency * u) * np.sin(frequency * v) * 0.3)
    ellipse = np.sqrt(u * u + (2.2 * v) ** 2) / 1.0 - 1.0
    shapes = np.stack(
        [
            r - 1.0,  # disk
            np.abs(r - 0.8) - width,  # ring
            box - 0.85,  # square
            np.abs(box - 0.75) - width,  # frame
            triangle,
            bar,  # plus
            cross,  # x
            stripes,
            checker,
            ellipse,
        ]
    )  # (classes, N, H, W)
    return np.take_along_axis(shapes, labels[None, :, None, None], axis=0)[0]


def _gradient(rng: np.random.Generator, count: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A linear colour ramp between two random colours in a random direction."""
    start = rng.uniform(0.0, 1.0, size=(count, 3, 1, 1)).astype(np.float32)
    end = rng.uniform(0.0, 1.0, size=(count, 3, 1, 1)).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=(count, 1, 1, 1)).astype(np.float32)
    t = (np.cos(angle) * x + np.sin(angle) * y + 1.5) / 3.0  # (N, 1, H, W) in (0, 1)
    return (start * (1.0 - t) + end * t).astype(np.float32)


def _distractor(rng: np.random.Generator, count: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A soft blob of a random colour somewhere in the image: clutter that is no class."""
    center = rng.uniform(-1.0, 1.0, size=(2, count, 1, 1)).astype(np.float32)
    spread = rng.uniform(0.15, 0.35, size=(count, 1, 1)).astype(np.float32)
    weight = np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / (2.0 * spread**2))  # (N, H, W)
    colour = rng.uniform(0.0, 1.0, size=(count, 3, 1, 1)).astype(np.float32)
    return np.concatenate([colour * np.ones_like(weight[:, None]), weight[:, None]], axis=1)


def _blend(background: np.ndarray, blob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    alpha = blob[:, 3:4] * rng.uniform(0.3, 0.8, size=(len(blob), 1, 1, 1)).astype(np.float32)
    return background * (1.0 - alpha) + blob[:, :3] * alpha


def _contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """A random colour at least 0.2 away in luminance from the background's mean colour."""
    luminance_weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    colour = rng.uniform(0.0, 1.0, size=background_mean.shape).astype(np.float32)
    background_luminance = background_mean @ luminance_weights
    for _ in range(8):  # resample the few that are too close; 8 rounds leave none in practice
        close = np.abs(colour @ luminance_weights - background_luminance) < 0.2
        if not close.any():
            break
        colour[close] = rng.uniform(0.0, 1.0, size=(int(close.sum()), 3)).astype(np.float32)
    still_close = np.abs(colour @ luminance_weights - background_luminance) < 0.2
    # Whatever is left: black on light backgrounds, white on dark ones.
    colour[still_close] = (background_luminance[still_close, None] < 0.5).astype(np.float32)
    return colour
