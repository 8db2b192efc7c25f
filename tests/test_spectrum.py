import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from yopo.errors import ConfigError
from yopo.methods.prunenet.spectrum import ks_statistic, singular_values


@pytest.mark.parametrize("n,k,ties", [(50, 30, False), (576, 576, False), (40, 17, True)])
def test_ks_matches_scipy(n, k, ties):
    rng = np.random.default_rng(n + k)
    a, b = rng.normal(size=n), rng.normal(0.3, 1.2, size=k)
    if ties:  # repeated values exercise the right-continuous ECDF
        a, b = np.round(a, 1), np.round(b, 1)
    ours = ks_statistic(torch.tensor(a), torch.tensor(b)).item()
    assert ours == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def test_ks_is_batched_per_row():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 20)), rng.normal(size=(3, 11))
    batched = ks_statistic(torch.tensor(a), torch.tensor(b))
    for i in range(3):
        assert batched[i].item() == pytest.approx(ks_2samp(a[i], b[i]).statistic, abs=1e-12)


@pytest.mark.parametrize("shape", [(3, 40, 16), (16, 40), (5, 7)])
def test_gram_singular_values_match_svd(shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(singular_values(w, "gram"), singular_values(w, "svd"),
                               rtol=1e-4, atol=1e-5)


def test_unknown_spectrum_method_is_a_config_error():
    with pytest.raises(ConfigError, match="gram"):
        singular_values(torch.randn(3, 3), "qr")
