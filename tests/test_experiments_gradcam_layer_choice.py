"""experiments/gradcam_layer_choice.py: its statistics against hand computation, and a tiny
measurement that runs and stays in range."""
import pytest
import torch

import data
from custom_resnet import CustomResNet
from experiments import gradcam_layer_choice as choice


def test_pearson_per_row_against_hand_computation():
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    b = torch.tensor([[2.0, 4.0, 6.0], [0.0, 1.0, 2.0], [3.0, 2.0, 1.0]])
    assert choice.pearson(a, b).tolist() == pytest.approx([1.0, 0.0, -1.0])     # a constant row gives 0


def test_the_probabilities_are_the_models_softmax_of_the_normalised_images():
    torch.manual_seed(0)
    model = CustomResNet(width=4).eval()
    images = data.synthetic_cifar10(8, 6).test_images
    classes = torch.tensor([0, 1, 2, 3, 4, 5])
    got = choice.probabilities(model, images.float(), classes)
    mean = torch.tensor(data.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want = model((images.float() / 255 - mean) / std).softmax(-1)[torch.arange(6), classes]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_a_tiny_measurement_runs_and_stays_in_range(tmp_path):
    torch.manual_seed(0)
    model = CustomResNet(width=4).eval()
    images = data.synthetic_cifar10(8, 12).test_images
    for layer, size in (("layer2", [8, 8]), ("layer3", [4, 4])):
        r = choice.measure(model, images, layer, batch=5)
        assert r["layer"] == layer and r["map_size"] == size and r["under_5x5"] == (layer == "layer3")
        assert 0 <= r["average_drop_percent"] <= 100 and 0 <= r["increase_percent"] <= 100
        assert -1 <= r["class_overlap"] <= 1 and r["images"] == 12
