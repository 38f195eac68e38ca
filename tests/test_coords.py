import cv2
import numpy as np
import pytest
import torch

from kpreg import coords


def test_pixels_normalized_round_trip_and_edges() -> None:
    pts = torch.tensor([[-0.5, -0.5], [63.5, 31.5], [0.0, 0.0], [17.25, 3.125]], dtype=torch.float64)
    norm = coords.pixels_to_normalized(pts, (32, 64))
    # The image's outer edges are exactly -1 and +1; the first pixel centre is at -1 + 1/W.
    assert norm[0].tolist() == [-1.0, -1.0]
    assert norm[1].tolist() == [1.0, 1.0]
    assert norm[2].tolist() == pytest.approx([-1 + 1 / 64, -1 + 1 / 32])
    back = coords.normalized_to_pixels(norm, (32, 64))
    assert torch.allclose(back, pts, atol=1e-12)


def test_cells_round_trip_and_centres() -> None:
    pts = np.random.default_rng(0).uniform(-0.5, 63.5, size=(50, 2))
    for stride in (1, 2, 4, 8, 16, 32):
        assert np.allclose(coords.cells_to_pixels(coords.pixels_to_cells(pts, stride), stride), pts, atol=1e-12)
    # Cell 0 of stride 4 covers pixels 0..3, its centre is pixel 1.5; cell 1's is 5.5.
    assert coords.cells_to_pixels(np.array([0.0, 1.0]), 4).tolist() == [1.5, 5.5]
    assert coords.pixel_grid(3, 2).tolist() == [0.5, 2.5, 4.5]


def test_crop_affine_maps_box_edges_and_inverts() -> None:
    A = coords.crop_affine(center=(100.0, 50.0), box_size=(40.0, 80.0), output_size=(64, 32))
    edges = np.array([[100 - 20 - 0.0, 50 - 40.0], [100 + 20.0, 50 + 40.0], [100.0, 50.0]])
    mapped = coords.apply_affine(edges, A)
    assert np.allclose(mapped[0], [-0.5, -0.5])
    assert np.allclose(mapped[1], [31.5, 63.5])
    assert np.allclose(mapped[2], [15.5, 31.5])
    for rot in (0.0, 17.0, -30.0, 180.0):
        A = coords.crop_affine((321.7, 88.2), (150.0, 200.0), (256, 192), rot)
        pts = np.random.default_rng(1).uniform(0, 500, size=(16, 2))
        back = coords.apply_affine(coords.apply_affine(pts, A), coords.invert_affine(A))
        assert np.abs(back - pts).max() < 1e-9


def test_affine_agrees_with_cv2_warp() -> None:
    # A single bright pixel in the original image lands where apply_affine says, after cv2.warpAffine.
    img = np.zeros((120, 160), np.float32)
    img[40, 70] = 1.0
    A = coords.crop_affine((79.5, 59.5), (80.0, 60.0), (60, 80))  # scale 1: a whole-pixel shift
    warped = cv2.warpAffine(img, A, (80, 60), flags=cv2.INTER_LINEAR)
    y, x = np.unravel_index(warped.argmax(), warped.shape)
    expected = coords.apply_affine(np.array([[70.0, 40.0]]), A)[0]
    assert (x, y) == tuple(np.round(expected).astype(int))
    assert np.allclose(expected, [x, y])


def test_affine_batched_torch() -> None:
    A = torch.tensor(np.stack([coords.crop_affine((10, 10), (20, 20), (40, 40), r) for r in (0, 45)]))
    pts = torch.rand(2, 5, 2, dtype=torch.float64) * 20
    out = coords.apply_affine(pts, A)
    assert out.shape == (2, 5, 2)
    assert torch.allclose(out[1], coords.apply_affine(pts[1], A[1]))


def test_flip_round_trip_and_pairs() -> None:
    pts = torch.tensor([[[1.0, 2.0], [5.0, 6.0], [7.5, 0.0]]])  # (1, 3, 2)
    flipped = coords.flip_points(pts, width=10, flip_pairs=[(0, 1)])
    # Joint 0 takes joint 1's mirrored position and vice versa; x → W - 1 - x.
    assert flipped[0].tolist() == [[4.0, 6.0], [8.0, 2.0], [1.5, 0.0]]
    assert torch.equal(coords.flip_points(flipped, 10, [(0, 1)]), pts)
    assert coords.flip_values(torch.tensor([1.0, 2.0, 3.0]), [(0, 1)]).tolist() == [2.0, 1.0, 3.0]


def test_flip_matches_image_flip() -> None:
    img = np.zeros((4, 6), np.uint8)
    img[1, 2] = 255
    y, x = np.argwhere(img[:, ::-1] == 255)[0]
    assert coords.flip_points(np.array([[2.0, 1.0]]), 6, []).tolist() == [[x, y]]


def test_box_to_center_size() -> None:
    center, size = coords.box_to_center_size((10, 20, 30, 60), aspect_ratio=192 / 256, padding=1.25)
    assert center.tolist() == [24.5, 49.5]
    assert size.tolist() == pytest.approx([45 * 1.25, 60 * 1.25])
