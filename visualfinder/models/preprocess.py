"""open_clip's evaluation preprocessing in PIL and numpy: resize, centre crop (or pad), normalise.

The steps are torchvision's as open_clip composes them (`image_transform_v2`, is_train=False),
driven by the model's own preprocess config (size, mean, std, interpolation, resize_mode,
fill_color: what `model.visual.preprocess_cfg` holds, stored with each ONNX export), so
an image query and an indexing run on the ONNX backend need no torch. The pixels are those of
open_clip's transform (tests/test_lean_path.py compares them for every shipped model config).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# open_clip's defaults (OPENAI_DATASET_MEAN / STD): a config without them means these.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest", "longest", "squash")
_INTERPOLATION = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "random": Image.BICUBIC}


@dataclass(frozen=True)
class PreprocessSpec:
    """A model's preprocessing, as open_clip's PreprocessCfg describes it."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> PreprocessSpec:
        """From a preprocess_cfg dict; ValueError for a preprocessing this module does not do."""
        size = cfg.get("size", 224)
        size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[-1]))
        mean, std = cfg.get("mean") or OPENAI_MEAN, cfg.get("std") or OPENAI_STD
        mean = tuple(mean) if isinstance(mean, (list, tuple)) else (mean,) * 3
        std = tuple(std) if isinstance(std, (list, tuple)) else (std,) * 3
        spec = cls(
            size, tuple(float(m) for m in mean), tuple(float(s) for s in std),  # type: ignore[arg-type]
            cfg.get("interpolation") or "bicubic", cfg.get("resize_mode") or "shortest", int(cfg.get("fill_color", 0) or 0),
        )  # fmt: skip
        if cfg.get("mode", "RGB") != "RGB" or len(spec.mean) != 3 or len(spec.std) != 3:
            raise ValueError(f"unsupported image mode or channels in {cfg}")
        if spec.interpolation not in _INTERPOLATION or spec.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unsupported interpolation or resize mode in {cfg}")
        return spec

    @property
    def resizes_shortest_side(self) -> bool:
        """Resize by the short side then crop the centre (what an extreme aspect ratio blows up)."""
        return self.resize_mode == "shortest"


class Preprocessor:
    """PIL image -> float32 (3, height, width) array, as open_clip's eval transform computes it."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self._resample = _INTERPOLATION[spec.interpolation]
        self._mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)

    @property
    def resizes_shortest_side(self) -> bool:
        return self.spec.resizes_shortest_side

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalise(self.geometry(image))

    def geometry(self, image: Image.Image) -> Image.Image:
        """The resize and crop/pad steps, then the RGB conversion (open_clip's MaybeConvertMode)."""
        height, width = self.spec.size
        mode = self.spec.resize_mode
        if mode == "squash":
            image = _resize(image, (height, width), self._resample)
        elif mode == "longest":
            image = _resize(image, _keep_ratio_size(image, (height, width), longest=1.0), self._resample)
            image = center_crop(image, (height, width), self.spec.fill_color)
        else:  # shortest
            if height == width:
                image = _resize(image, _short_side_size(image, height), self._resample)
            else:  # open_clip's ResizeKeepRatio keeps its own default, bicubic
                image = _resize(image, _keep_ratio_size(image, (height, width), longest=0.0), Image.BICUBIC)
            image = center_crop(image, (height, width))
        return image.convert("RGB")

    def normalise(self, image: Image.Image) -> np.ndarray:
        """ToTensor then Normalize, in float32 as torchvision does them."""
        return normalised_pixels(image, self._mean, self._std)


def normalised_pixels(image: Image.Image, mean, std, out: np.ndarray | None = None) -> np.ndarray:
    """PIL image -> float32 (C, H, W), (pixel / 255 - mean) / std: ToTensor + Normalize, the
    same operations in the same order (equal floats), written into `out` when given (a decoder
    process's shared-memory slot). The one normalisation of every preprocessing path."""
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if out is None:
        out = np.empty((pixels.shape[2], pixels.shape[0], pixels.shape[1]), dtype=np.float32)
    out[...] = pixels.transpose(2, 0, 1)
    out /= np.float32(255.0)
    out -= np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    out /= np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return out


def _short_side_size(image: Image.Image, side: int) -> tuple[int, int]:
    """torchvision's Resize(int): the short side becomes `side`, the long one int(side * long / short)."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = side, int(side * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def _keep_ratio_size(image: Image.Image, target: tuple[int, int], longest: float) -> tuple[int, int]:
    """open_clip's ResizeKeepRatio.get_params without its random scale and aspect."""
    w, h = image.size
    ratio_h, ratio_w = h / target[0], w / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(h / ratio), round(w / ratio)


def _resize(image: Image.Image, size: tuple[int, int], resample: int) -> Image.Image:
    """torchvision's F.resize on a PIL image: nothing when the size is already right."""
    height, width = size
    if image.size == (width, height):
        return image
    return image.resize((width, height), resample)


def center_crop(image: Image.Image, size: tuple[int, int], fill: int = 0) -> Image.Image:
    """torchvision's / open_clip's centre crop to (height, width): pad (with `fill`) when the
    image is smaller."""
    crop_h, crop_w = size
    w, h = image.size
    if crop_w > w or crop_h > h:
        left = (crop_w - w) // 2 if crop_w > w else 0
        top = (crop_h - h) // 2 if crop_h > h else 0
        right = (crop_w - w + 1) // 2 if crop_w > w else 0
        bottom = (crop_h - h + 1) // 2 if crop_h > h else 0
        from PIL import ImageOps

        image = ImageOps.expand(image, border=(left, top, right, bottom), fill=_fill(image, fill))
        w, h = image.size
        if (crop_w, crop_h) == (w, h):
            return image
    return image.crop(centre_crop_box(w, h, crop_h, crop_w))


def centre_crop_box(width: int, height: int, crop_h: int, crop_w: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's center_crop on an image at least that large."""
    top, left = int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))
    return left, top, left + crop_w, top + crop_h


def _fill(image: Image.Image, fill: int):
    """torchvision's _parse_fill: one value per channel."""
    bands = len(image.getbands())
    return tuple([int(fill)] * bands) if bands > 1 else int(fill)
