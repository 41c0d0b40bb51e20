"""A colour model of one region of an image: a Gaussian mixture in RGB, fitted as GrabCut fits its own.

The first fit clusters the region's colours (k-means++ seeded from a fixed generator, so the same pixels always give
the same model); a refit assigns each pixel to its most likely component and re-estimates every component from its
pixels (GrabCut's hard assignment). Colours are in [0, 1].
"""

from __future__ import annotations

import numpy as np

#: k-means sees at most this many of the region's colours (evenly strided), and runs this many Lloyd rounds
KMEANS_SAMPLES = 5000
KMEANS_ROUNDS = 10
#: a component needs this many pixels; its covariance is regularised by this much (about 0.01 in 0..255 units)
MIN_COMPONENT_PIXELS = 3
COVARIANCE_FLOOR = 1e-5


class ColourMixture:
    """A Gaussian mixture over (N, 3) colours in [0, 1] with at most ``components`` components."""

    def __init__(self, colours: np.ndarray, components: int) -> None:
        components = max(1, min(components, len(colours) // 10))
        self._fit(colours, _kmeans_assignment(colours, components))

    def refit(self, colours: np.ndarray) -> None:
        """Re-estimate the components from ``colours``, each pixel going to its most likely component."""
        self._fit(colours, np.argmax(self._component_log_likelihoods(colours), 1))

    def log_likelihood(self, colours: np.ndarray) -> np.ndarray:
        """(N,) log p(colour) up to a constant shared by every ColourMixture (the 2 pi term)."""
        per_component = self._component_log_likelihoods(colours)
        best = per_component.max(1)
        return best + np.log(np.exp(per_component - best[:, None]).sum(1))

    def _fit(self, colours: np.ndarray, assignment: np.ndarray) -> None:
        means, inverses, log_determinants, log_weights = [], [], [], []
        for component in np.unique(assignment):
            members = colours[assignment == component]
            if len(members) < MIN_COMPONENT_PIXELS:
                continue
            covariance = np.cov(members.T) + COVARIANCE_FLOOR * np.eye(3)
            means.append(members.mean(0))
            inverses.append(np.linalg.inv(covariance))
            log_determinants.append(np.linalg.slogdet(covariance)[1])
            log_weights.append(np.log(len(members) / len(colours)))
        if not means:  # too few pixels to split: one component over all of them
            covariance = np.cov(colours.T) + COVARIANCE_FLOOR * np.eye(3) if len(colours) > 1 else np.eye(3) * 0.01
            means, inverses = [colours.mean(0)], [np.linalg.inv(covariance)]
            log_determinants, log_weights = [np.linalg.slogdet(covariance)[1]], [0.0]
        self._means = np.array(means)
        self._inverses = np.array(inverses)
        self._log_norms = np.array(log_weights) - 0.5 * np.array(log_determinants)

    def _component_log_likelihoods(self, colours: np.ndarray) -> np.ndarray:
        out = np.empty((len(colours), len(self._means)))
        for index, (mean, inverse, log_norm) in enumerate(zip(self._means, self._inverses, self._log_norms)):
            offset = colours - mean
            out[:, index] = log_norm - 0.5 * np.einsum("ni,ij,nj->n", offset, inverse, offset)
        return out


def _kmeans_assignment(colours: np.ndarray, clusters: int) -> np.ndarray:
    """(N,) cluster of each colour: k-means++ seeds from a fixed generator, Lloyd rounds on a strided sample."""
    generator = np.random.default_rng(0)
    sample = colours[:: max(1, len(colours) // KMEANS_SAMPLES)]
    centres = [sample[generator.integers(len(sample))]]
    for _ in range(1, clusters):
        distance = np.min([((sample - centre) ** 2).sum(1) for centre in centres], 0)
        total = distance.sum()
        pick = generator.choice(len(sample), p=distance / total) if total > 0 else generator.integers(len(sample))
        centres.append(sample[pick])
    centres = np.array(centres)
    for _ in range(KMEANS_ROUNDS):
        nearest = _nearest(sample, centres)
        for cluster in range(clusters):
            if (nearest == cluster).any():
                centres[cluster] = sample[nearest == cluster].mean(0)
    return _nearest(colours, centres)


def _nearest(colours: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin((centres**2).sum(1)[None] - 2 * colours @ centres.T, 1)
