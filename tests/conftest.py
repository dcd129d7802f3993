import pytest
import torch


@pytest.fixture(scope="session")
def fmnist():
    """A small seeded Fashion-MNIST split (real data from the Debian package)."""
    from awp_lib import data
    return data.get_splits("fashion-mnist", train_size=2000, test_size=500, seed=0)


@pytest.fixture(scope="session")
def tiny():
    """192 training, 100 validation and 100 test images: seconds-long training runs."""
    from awp_lib import data
    return data.get_splits("fashion-mnist", train_size=192, val_size=100, test_size=100, seed=0)


@pytest.fixture(scope="session")
def trained_cnn(fmnist):
    """A SmallCNN briefly trained (natural training, 3 epochs of 2,000 images): enough to be non-trivial."""
    from awp_lib import data, models
    torch.manual_seed(0)
    model = models.build_model("smallcnn", "fashion-mnist", width=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = data.Loader(*fmnist.train, batch_size=64, shuffle=True, seed=0)
    for epoch in range(3):
        loader.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()
