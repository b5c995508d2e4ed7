"""Labels of the operator picture never hide one another while there is room."""

from __future__ import annotations

from nii.outputs import _label_spot


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_boxes_with_the_same_corner_take_different_places():
    placed = []
    for _ in range(4):
        x, y = _label_spot((100, 100, 300, 250), (120, 20), placed, (400, 600))
        rect = (x, y, x + 120, y + 20)
        assert not any(_overlap(rect, p) for p in placed)
        placed.append(rect)
    # above, inside the top edge, below, inside the bottom edge
    assert [p[1] for p in placed] == [80, 102, 252, 228]


def test_label_stays_in_the_image_and_falls_back_when_all_places_are_taken():
    x, y = _label_spot((590, 0, 600, 10), (120, 20), [], (400, 600))
    assert (x, y) == (480, 2)  # no room above: inside the top edge; shifted left to fit
    full = [(0, 0, 600, 400)]
    assert _label_spot((100, 100, 300, 250), (120, 20), full, (400, 600)) == (100, 80)
    assert _label_spot((0, 0, 5, 5), (50, 30), [], (10, 40)) == (0, 0)  # image smaller than the label
