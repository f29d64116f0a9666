"""The error analysis measures vessel widths, per-width sensitivity and false-positive zones correctly."""
import numpy as np
import pytest

from retina_lib.data.sample import Sample
from retina_lib.error_analysis import (
    WIDTH_CLASSES, false_positives_by_zone, fov_zones, optic_disc_centre, sensitivity_by_width, vessel_widths,
    width_class_counts,
)


def two_vessels(size: int = 64) -> np.ndarray:
    """A label with a horizontal vessel 1 px wide (row 10) and one 11 px wide (rows 30-40)."""
    label = np.zeros((size, size), dtype=bool)
    label[10, 5:59] = True
    label[30:41, 5:59] = True
    return label


def sample_with(label: np.ndarray, name: str = "toy") -> Sample:
    fov = np.ones(label.shape, dtype=bool)
    image = np.full((*label.shape, 3), 0.3, dtype=np.float32)
    return Sample(image=image, label=label, fov=fov, name=name)


def test_widths_of_a_thin_and_a_thick_vessel():
    label = two_vessels()
    widths, centre_line = vessel_widths(label)
    assert widths[10, 30] == pytest.approx(1.0)
    assert widths[35, 30] == pytest.approx(11.0)
    assert widths[30, 30] == pytest.approx(11.0)  # an edge pixel takes the width at the centre line
    assert (widths[~label] == 0).all()
    assert centre_line[35, 30] and not centre_line[30, 30]


def test_width_class_counts_split_the_vessels():
    label = two_vessels()
    widths, _ = vessel_widths(label)
    thin, medium, thick = width_class_counts(label, widths)
    assert (thin, medium) == (54, 0)
    assert thick == label.sum() - 54
    assert width_class_counts(np.zeros_like(label), widths).sum() == 0


def test_empty_label_has_no_widths():
    widths, centre_line = vessel_widths(np.zeros((8, 8), dtype=bool))
    assert not widths.any() and not centre_line.any()


def test_sensitivity_by_width_counts_found_pixels_per_class():
    label = two_vessels()
    sample = sample_with(label)
    only_thick = label.copy()
    only_thick[10] = False
    analysis = sensitivity_by_width([sample], {"perfect": [label], "thick only": [only_thick]})
    assert analysis.classes == list(WIDTH_CLASSES)
    np.testing.assert_allclose(analysis.sensitivity["perfect"][[0, 2]], [1.0, 1.0])
    np.testing.assert_allclose(analysis.sensitivity["thick only"][[0, 2]], [0.0, 1.0])
    assert np.isnan(analysis.sensitivity["perfect"][1])  # no medium vessels in this label
    assert analysis.pixel_share.sum() == pytest.approx(1.0)
    assert analysis.length_share[0] == pytest.approx(0.5, abs=0.05)  # two vessels of similar length
    assert analysis.pixel_share[0] < 0.1  # but the thin one has few pixels
    assert "thick only" in analysis.format_table()


def test_pixels_outside_the_fov_are_not_counted():
    label = two_vessels()
    sample = sample_with(label)
    sample.fov[:, 32:] = False
    analysis = sensitivity_by_width([sample], {"left half": [label & (np.arange(64) < 32)[None, :]]})
    np.testing.assert_allclose(analysis.sensitivity["left half"][[0, 2]], [1.0, 1.0])


def test_predictions_must_match_the_samples():
    sample = sample_with(two_vessels())
    with pytest.raises(ValueError, match="has 2 masks but there are 1 samples"):
        sensitivity_by_width([sample], {"x": [sample.label, sample.label]})
    with pytest.raises(ValueError, match="shape"):
        false_positives_by_zone([sample], {"x": [np.zeros((3, 3), dtype=bool)]})
    with pytest.raises(ValueError, match="empty"):
        sensitivity_by_width([], {"x": []})


def round_fov_sample(size: int = 201, disc_at: tuple[int, int] = (100, 150)) -> Sample:
    rows, columns = np.indices((size, size))
    fov = (rows - 100) ** 2 + (columns - 100) ** 2 <= 90 ** 2
    image = np.full((size, size, 3), 0.3, dtype=np.float32)
    disc = (rows - disc_at[0]) ** 2 + (columns - disc_at[1]) ** 2 <= 8 ** 2
    image[disc] = 1.0  # the bright optic disc
    image[~fov] = 0.0
    return Sample(image=image, label=np.zeros((size, size), dtype=bool), fov=fov, name="round")


def test_fov_zones_find_the_rim_and_the_bright_disc():
    sample = round_fov_sample()
    rim, disc = fov_zones(sample.image, sample.fov)
    assert rim[100, 12] and not rim[100, 100]  # 2 px inside the edge is rim, the centre is not
    assert disc[100, 150] and not disc[100, 100]
    assert not (rim & ~sample.fov).any() and not (disc & ~sample.fov).any()
    with pytest.raises(ValueError, match="fov is empty"):
        fov_zones(sample.image, np.zeros_like(sample.fov))


def test_false_positives_by_zone_share_and_ratio():
    sample = round_fov_sample()
    rim, disc = fov_zones(sample.image, sample.fov)
    all_on_disc = disc.copy()
    everywhere = sample.fov.copy()
    analysis = false_positives_by_zone([sample], {"disc": [all_on_disc], "everywhere": [everywhere]})
    assert analysis.share("disc", "disc zone") == pytest.approx(1.0)
    assert analysis.share("disc", "rim") == 0.0
    assert analysis.ratio("disc", "disc zone") == pytest.approx(1 / analysis.area_share["disc zone"])
    assert analysis.ratio("everywhere", "rim") == pytest.approx(1.0)  # spread evenly: ratio 1
    assert analysis.area_share["rim"] == pytest.approx(rim.sum() / sample.fov.sum())
    text = analysis.format_table()
    assert "disc zone" in text and "x1.0 the area share" in text


def test_true_vessels_are_not_false_positives():
    sample = round_fov_sample()
    sample.label[100, 20:180] = True
    analysis = false_positives_by_zone([sample], {"label": [sample.label.copy()]})
    assert analysis.false_positives["label"]["FOV"] == 0
    assert np.isnan(analysis.share("label", "rim"))


def test_optic_disc_centre_finds_a_bright_spot_away_from_the_rim():
    fov = np.zeros((120, 120), dtype=bool)
    rows, columns = np.indices(fov.shape)
    fov[(rows - 60) ** 2 + (columns - 60) ** 2 <= 55 ** 2] = True
    image = np.full((120, 120, 3), 0.3)
    image[(rows - 40) ** 2 + (columns - 80) ** 2 <= 6 ** 2] = 0.9  # the "disc"
    image[(rows - 60) ** 2 + (columns - 114) ** 2 <= 3 ** 2] = 1.0  # glare on the rim must not win
    row, column = optic_disc_centre(image, fov)
    assert abs(row - 40) <= 2 and abs(column - 80) <= 2
    with pytest.raises(ValueError, match="fov is empty"):
        optic_disc_centre(image, np.zeros_like(fov))
