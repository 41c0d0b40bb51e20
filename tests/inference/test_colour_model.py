import numpy as np

from napari_segflow.inference.colour_model import ColourMixture


def _two_colours(count=2000):
    random = np.random.default_rng(0)
    red = np.array([0.8, 0.1, 0.1]) + random.normal(0, 0.03, (count // 2, 3))
    blue = np.array([0.1, 0.2, 0.9]) + random.normal(0, 0.03, (count // 2, 3))
    return np.concatenate([red, blue])


def test_a_mixture_prefers_its_own_colours_and_is_the_same_every_fit():
    colours = _two_colours()
    model = ColourMixture(colours, 5)
    own = model.log_likelihood(np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.9]]))
    foreign = model.log_likelihood(np.array([[0.1, 0.9, 0.1], [0.5, 0.5, 0.5]]))
    assert own.min() > foreign.max() + 10
    again = ColourMixture(colours, 5)
    assert np.allclose(model.log_likelihood(colours), again.log_likelihood(colours))


def test_a_refit_follows_the_pixels_it_is_given_and_one_flat_colour_does_not_break_it():
    colours = _two_colours()
    model = ColourMixture(colours, 5)
    model.refit(colours[:1000])  # the red half only
    assert model.log_likelihood(np.array([[0.8, 0.1, 0.1]]))[0] > model.log_likelihood(np.array([[0.1, 0.2, 0.9]]))[0]
    flat = ColourMixture(np.full((50, 3), 0.5), 5)
    assert np.isfinite(flat.log_likelihood(np.array([[0.5, 0.5, 0.5], [0.9, 0.1, 0.1]]))).all()
