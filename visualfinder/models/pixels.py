"""The model's eval preprocessing as plain data: what a decoder process runs without torch.

`Embedder.preprocess` runs open_clip's own transform (torchvision steps on a PIL image, then
ToTensor + Normalize in numpy). A worker process should not import torch (seconds and hundreds
of MB per process, and its own OpenMP team fighting the model's), so `recipe_from_transform`
reads the same steps into a `PixelRecipe` of numbers, and `apply_recipe` performs them with
Pillow and numpy exactly as torchvision does on PIL images: the same pixels, bit for bit
(tests/test_process_decode.py compares them). A transform of any other shape gives None, and
decoding stays in threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from visualfinder.ingest.imaging import crop_to_aspect
from visualfinder.models.preprocess import center_crop, normalised_pixels

# torchvision's InterpolationMode values -> Pillow's resampling filters (torchvision's own map).
_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class PixelRecipe:
    """Resize (short side, or to a fixed size), centre crop, normalise: open_clip's eval steps."""

    resize: tuple[int, ...]  # (short side,) or (height, width)
    max_size: int | None
    resample: int
    crop: tuple[int, int] | None  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Long side / short side past which the far ends are cut first (Embedder.preprocess's guard).
    max_aspect: float | None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(3, H, W) of the tensor this recipe makes."""
        if self.crop is not None:
            return (3, *self.crop)
        if len(self.resize) == 2:
            return (3, *self.resize)
        raise ValueError("a short-side resize without a crop has no fixed shape")


def recipe_from_transform(transform: object, max_aspect: float) -> PixelRecipe | None:
    """The recipe of an open_clip eval transform, or None when it has steps we do not replicate."""
    steps = list(getattr(transform, "transforms", None) or [])
    if len(steps) < 3 or type(steps[0]).__name__ != "Resize":
        return None
    resize, rest = steps[0], steps[1:]
    crop = None
    if rest and type(rest[0]).__name__ == "CenterCrop":
        crop = tuple(int(v) for v in rest[0].size)
        rest = rest[1:]
    if rest and type(rest[0]).__name__ == "MaybeConvertMode" and getattr(rest[0], "mode", None) == "RGB":
        rest = rest[1:]  # our decoder hands RGB already
    if len(rest) != 2 or type(rest[0]).__name__ not in ("ToTensor", "MaybeToTensor"):
        return None
    normalize = rest[1]
    if type(normalize).__name__ != "Normalize" or getattr(normalize, "inplace", False):
        return None
    size = resize.size
    size = (int(size),) if isinstance(size, int) else tuple(int(v) for v in size)
    mode = getattr(resize.interpolation, "value", resize.interpolation)
    if mode not in _PIL_FILTERS or len(size) not in (1, 2) or (crop is None and len(size) == 1):
        return None
    if crop is not None and len(crop) != 2:
        return None
    return PixelRecipe(
        resize=size, max_size=resize.max_size, resample=int(_PIL_FILTERS[mode]), crop=crop,
        mean=tuple(float(v) for v in normalize.mean), std=tuple(float(v) for v in normalize.std),
        max_aspect=max_aspect if len(size) == 1 else None,
    )  # fmt: skip


def recipe_from_spec(spec, max_aspect: float) -> PixelRecipe | None:
    """The recipe of the lean path's preprocessing (`models.preprocess.PreprocessSpec`): a square
    input resized by its short side and centre-cropped, as open_clip's eval transform does; None
    for the other resize modes."""
    height, width = spec.size
    if spec.resize_mode != "shortest" or height != width:
        return None
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "random": Image.BICUBIC}[
        spec.interpolation
    ]
    return PixelRecipe(resize=(height,), max_size=None, resample=int(resample), crop=(height, width),
                       mean=tuple(spec.mean), std=tuple(spec.std), max_aspect=max_aspect)  # fmt: skip


def apply_recipe(image: Image.Image, recipe: PixelRecipe, out: np.ndarray | None = None) -> np.ndarray:
    """RGB PIL image -> float32 (3, H, W), written into `out` when given (a shared-memory slot)."""
    if recipe.max_aspect is not None:
        image = crop_to_aspect(image, recipe.max_aspect)
    image = _resize(image, recipe)
    if recipe.crop is not None:
        image = center_crop(image, recipe.crop)
    return normalised_pixels(image, recipe.mean, recipe.std, out)


def resized_size(width: int, height: int, recipe: PixelRecipe) -> tuple[int, int]:
    """(width, height) after the recipe's resize, computed as torchvision does."""
    if len(recipe.resize) == 2:
        return recipe.resize[1], recipe.resize[0]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = recipe.resize[0], int(recipe.resize[0] * long / short)
    if recipe.max_size is not None and new_long > recipe.max_size:
        new_short, new_long = int(recipe.max_size * new_short / new_long), recipe.max_size
    return (new_short, new_long) if width <= height else (new_long, new_short)


def aspect_box(width: int, height: int, max_ratio: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) that imaging.crop_to_aspect keeps."""
    if width > height * max_ratio:
        keep = max(1, round(height * max_ratio))
        left = (width - keep) // 2
        return left, 0, left + keep, height
    if height > width * max_ratio:
        keep = max(1, round(width * max_ratio))
        top = (height - keep) // 2
        return 0, top, width, top + keep
    return 0, 0, width, height


def _resize(image: Image.Image, recipe: PixelRecipe) -> Image.Image:
    """torchvision.transforms.functional.resize on a PIL image, step for step."""
    w, h = image.size
    new_w, new_h = resized_size(w, h, recipe)
    if (new_h, new_w) == (h, w):
        return image
    return image.resize((new_w, new_h), recipe.resample)
