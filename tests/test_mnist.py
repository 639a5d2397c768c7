import pytest

import mnist_adder.data.mnist as mnist
from mnist_adder import UserError


def test_a_file_failing_its_checksum_is_deleted_and_never_used(tmp_path, monkeypatch):
    raw = mnist.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in mnist.MNIST_SHA256:
        (raw / name).write_bytes(b"not mnist")
    assert mnist.discard_bad_files(raw) == list(mnist.MNIST_SHA256)
    assert not any(raw.iterdir())

    def fetch_corrupt(data_dir):  # a route that delivers the wrong bytes
        for name in mnist.MNIST_SHA256:
            (mnist.raw_dir(data_dir) / name).write_bytes(b"still not mnist")

    monkeypatch.setattr(mnist, "FETCHERS", [fetch_corrupt])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        mnist.fetch_mnist(tmp_path)
    assert not any(raw.iterdir())


def test_a_data_dir_that_cannot_be_written_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="is not a writable folder"):
        mnist.fetch_mnist(blocker)
