"""Textures cut from the images scikit-image ships with its package (nothing is downloaded)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Images bundled inside scikit-image's wheel; names are skimage.data functions.
COLOUR_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")
GREY_IMAGES = ("camera", "grass", "brick", "gravel", "moon", "coins", "page")


class TextureBank:
    """Loads the source images once; hands out random, colour-jittered, lightly smoothed crops."""

    def __init__(self) -> None:
        import skimage.data

        images = []
        for name in COLOUR_IMAGES + GREY_IMAGES:
            image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            images.append(np.ascontiguousarray(image[..., :3]))
        self.images = images
        self.grey = [False] * len(COLOUR_IMAGES) + [True] * len(GREY_IMAGES)

    def sample(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A (height, width, 3) float32 texture in [0, 1]."""
        index = int(rng.integers(len(self.images)))
        source = self.images[index]
        zoom = rng.uniform(0.5, 1.5)
        crop_h = min(source.shape[0], max(8, int(height / zoom)))
        crop_w = min(source.shape[1], max(8, int(width / zoom)))
        y = int(rng.integers(0, source.shape[0] - crop_h + 1))
        x = int(rng.integers(0, source.shape[1] - crop_w + 1))
        crop = source[y : y + crop_h, x : x + crop_w]
        crop = ndimage.zoom(crop, (height / crop_h, width / crop_w, 1), order=1)[:height, :width]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if self.grey[index]:
            tint = rng.uniform(0.3, 1.0, size=3)
            crop = crop * tint + rng.uniform(0, 0.3, size=3) * (1 - crop)
        else:
            crop = crop * rng.uniform(0.7, 1.2, size=3) + rng.uniform(-0.1, 0.1)
        # smooth a little: the frames stay sharp, and bilinear resampling of them stays faithful
        crop = ndimage.gaussian_filter(crop, sigma=(0.8, 0.8, 0))
        return np.clip(crop, 0, 1).astype(np.float32)
