import pytest
import torch

from pixnet.training.loss import pearson_per_gene, pixnet_loss, poisson_deviance


def test_pcc_matches_numpy_and_constant_genes_are_zero_with_finite_gradients():
    torch.manual_seed(0)
    pred = torch.randn(20, 3, requires_grad=True)
    target = torch.randn(20, 3)
    target[:, 2] = 1.0  # constant gene
    pcc = pearson_per_gene(pred, target)
    expected = torch.corrcoef(torch.cat([pred.detach()[:, 0:1], target[:, 0:1]], dim=1).T)[0, 1]
    torch.testing.assert_close(pcc[0], expected, rtol=1e-5, atol=1e-6)
    assert pcc[2] == 0
    loss, parts = pixnet_loss(pred, target, torch.zeros(20, dtype=torch.long), pcc_weight=0.5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(pred, target) + 0.5 * (1 - pcc.mean()))
    assert set(parts) == {"loss", "mse", "pcc"}


def test_constant_prediction_has_finite_gradients():
    pred = torch.ones(10, 2, requires_grad=True)
    loss, _ = pixnet_loss(pred * 1.0, torch.randn(10, 2), torch.zeros(10, dtype=torch.long))
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_pcc_is_computed_within_groups():
    # two bin sizes with very different levels: pooled they would correlate perfectly, within groups not at all
    pred = torch.tensor([[1.0], [2.0], [1.0], [10.0], [11.0], [10.0]])
    target = torch.tensor([[1.0], [1.0], [2.0], [10.0], [10.0], [11.0]])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    _, parts = pixnet_loss(pred, target, group)
    assert parts["pcc"] < 0


def test_poisson_deviance_is_the_likelihood_of_the_counts_scaled_per_gene():
    # counts = expm1(target) * exposure; the deviance is 0 at the truth and has the closed form
    counts = torch.tensor([[4.0, 0.0], [1.0, 2.0], [9.0, 1.0]])
    exposure = torch.tensor([2.0, 0.5, 3.0])
    target = torch.log1p(counts / exposure[:, None])
    torch.testing.assert_close(poisson_deviance(target, target, exposure), torch.tensor(0.0), atol=1e-6, rtol=0)
    rate = torch.tensor([[3.0, 0.5], [1.5, 1.0], [8.0, 2.0]])
    pred = torch.log1p(rate / exposure[:, None])
    expected = rate - counts + torch.xlogy(counts, counts / rate)
    torch.testing.assert_close(poisson_deviance(pred, target, exposure), (expected / counts.mean(dim=0)).mean())
    loss, _ = pixnet_loss(pred, target, torch.zeros(3, dtype=torch.long), 0.0, "poisson", exposure)
    torch.testing.assert_close(loss, poisson_deviance(pred, target, exposure))
    with pytest.raises(ValueError, match="loss must be one of"):
        pixnet_loss(pred, target, torch.zeros(3, dtype=torch.long), loss="nb")


def test_poisson_gradient_moves_the_rate_towards_the_counts():
    counts, exposure = torch.tensor([[6.0]]), torch.tensor([2.0])
    target = torch.log1p(counts / exposure[:, None])
    low = (target - 0.3).requires_grad_()
    poisson_deviance(low, target, exposure).backward()
    assert low.grad.item() < 0  # increasing the prediction lowers the loss


def test_pcc_given_depth_is_the_partial_pcc_that_evaluate_reports():
    from pixnet.metrics import gene_metrics

    generator = torch.Generator().manual_seed(0)
    depth = torch.randn(40, generator=generator, dtype=torch.float64)
    target = torch.randn(40, 3, generator=generator, dtype=torch.float64) + depth[:, None]
    own = target - depth[:, None] + 0.3 * torch.randn(40, 3, generator=generator, dtype=torch.float64)
    group = torch.zeros(40, dtype=torch.long)
    _, parts = pixnet_loss(own, target, group, pcc_weight=1.0, depth=depth)
    expected = gene_metrics(own.numpy(), target.numpy(), list("abc"), depth=depth.numpy())["partial_pcc"].mean()
    assert parts["pcc"] == pytest.approx(expected)
    # a prediction of depth alone earns the plain PCC, and nothing given depth
    only_depth = depth[:, None].repeat(1, 3)
    assert pixnet_loss(only_depth, target, group, pcc_weight=1.0)[1]["pcc"] > 0.5
    assert abs(pixnet_loss(only_depth, target, group, pcc_weight=1.0, depth=depth)[1]["pcc"]) < 1e-6
