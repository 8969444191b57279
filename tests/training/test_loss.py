import torch

from pixnet.training.loss import pearson_per_gene, pixnet_loss


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
