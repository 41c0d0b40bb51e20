import numpy as np

from napari_segflow.inference.graph_cut import GridLinks, contrast_links, min_cut


def _links(shape, weight):
    height, width = shape
    return GridLinks(np.full((height, width - 1), weight), np.full((height - 1, width), weight),
                     np.full((height - 1, width - 1), weight), np.full((height - 1, width - 1), weight))


def test_without_links_each_pixel_follows_its_evidence_and_fixed_pixels_hold():
    evidence = np.random.default_rng(0).normal(size=(12, 15))
    nothing = np.zeros(evidence.shape, bool)
    assert (min_cut(evidence, _links(evidence.shape, 0.0), nothing, nothing) == (evidence > 0)).all()
    fixed_object = nothing.copy()
    fixed_object[0, 0] = True
    fixed_background = nothing.copy()
    fixed_background[1, 1] = True
    evidence[0, 0], evidence[1, 1] = -5.0, 5.0
    labels = min_cut(evidence, _links(evidence.shape, 0.0), fixed_object, fixed_background)
    assert labels[0, 0] and not labels[1, 1]


def test_links_clean_a_noisy_square_that_the_evidence_alone_leaves_speckled():
    random = np.random.default_rng(1)
    square = np.zeros((30, 30), bool)
    square[8:22, 8:22] = True
    evidence = np.where(square, 1.0, -1.0) + random.normal(0, 1.5, square.shape)
    nothing = np.zeros(square.shape, bool)
    alone = min_cut(evidence, _links(square.shape, 0.0), nothing, nothing)
    linked = min_cut(evidence, _links(square.shape, 1.0), nothing, nothing)
    assert (alone != square).sum() > 150  # measured: 217 of 900 pixels wrong
    assert (linked != square).sum() < 40  # measured: 22, on the square's corners


def test_contrast_links_are_weak_across_an_edge_and_strong_within_a_flat_region():
    colours = np.zeros((10, 10, 3))
    colours[:, 5:] = 1.0
    links = contrast_links(colours, smoothness=25.0)
    assert links.right[:, 4].max() < 0.01 * links.right[:, 0].min()
    assert np.allclose(links.right[:, 0], 25.0) and np.allclose(links.down_right[:, 0], 25.0 / np.sqrt(2))
