"""Deployment-mode latency: BatchNorm folding, channels-last, inference mode, same mode for all."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.metrics import deploy_model, fold_batchnorm, latency_in_mode


def conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
                        nn.BatchNorm1d(5))
    for m in net.modules():  # statistics far from the identity, so a wrong fold shows
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-2, 2)
            m.running_var.uniform_(0.2, 3.0)
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.uniform_(m.bias, -1.0, 1.0)
    return net


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 2
        return self.bn(self.conv(x))


def test_bn_folding_preserves_outputs_and_removes_every_batchnorm() -> None:
    net, x = conv_bn_net().eval(), torch.randn(4, 3, 8, 8)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        ref, out = net(x), folded(x)
    assert ref.abs().max() > 1.0  # a real signal, not zeros
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_deploy_model_mode_string_and_outputs() -> None:
    net, x = conv_bn_net().eval(), torch.randn(2, 3, 8, 8)
    deployed, mode = deploy_model(net, x)
    assert mode == "deploy:bn_fold+channels_last+inference_mode"
    with torch.no_grad():
        assert torch.allclose(deployed(x), net(x), rtol=1e-4, atol=1e-4)
    mlp = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4)).eval()
    assert deploy_model(mlp, torch.randn(3, 6))[1] == "deploy:bn_fold+inference_mode"  # 2-D input: no NHWC
    assert deploy_model(Untraceable().eval(), x)[1] == "deploy:channels_last+inference_mode"


def test_callers_model_is_unchanged() -> None:
    net, x = conv_bn_net().train(), torch.randn(2, 3, 8, 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    times, mode = latency_in_mode({"dense": net}, x, "deploy", rounds=1, repeats=1, warmup=1)
    assert mode.startswith("deploy:") and times["dense"] > 0
    assert net.training
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 2
    assert net[0].weight.is_contiguous()  # not turned channels-last
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_every_model_measured_in_the_same_mode() -> None:
    x = torch.randn(2, 3, 8, 8)
    times, mode = latency_in_mode({"dense": conv_bn_net(), "pruned": conv_bn_net()}, x, "deploy",
                                  rounds=2, repeats=1, warmup=1)
    assert set(times) == {"dense", "pruned"} and all(t > 0 for t in times.values())
    assert mode == "deploy:bn_fold+channels_last+inference_mode"
    _, eager = latency_in_mode({"a": conv_bn_net()}, x, "eager", rounds=1, repeats=1, warmup=1)
    assert eager == "eager"


def test_compile_that_fails_falls_back(monkeypatch) -> None:
    def broken(*_a, **_k):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    times, mode = latency_in_mode({"a": conv_bn_net()}, torch.randn(2, 3, 8, 8), "deploy", compile=True,
                                  rounds=1, repeats=1, warmup=1)
    assert mode == "deploy:bn_fold+channels_last+inference_mode" and times["a"] > 0


def test_unknown_mode_names_key_and_choices() -> None:
    with pytest.raises(ConfigError, match=r"metrics.latency_mode='fast'.*valid: deploy, eager"):
        latency_in_mode({"a": conv_bn_net()}, torch.randn(1, 3, 8, 8), "fast")


def test_onnxruntime_backend_is_kept_only_when_faster(monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from prunebench import metrics

    net, x = conv_bn_net().eval(), torch.randn(2, 3, 8, 8)
    sessions = metrics._try_onnxruntime({"a": deploy_model(net, x)[0]}, x)
    assert sessions is not None
    with torch.no_grad():
        assert torch.allclose(sessions["a"](x), net(x), rtol=1e-4, atol=1e-4)
    real = metrics.interleaved_latency

    def onnx_fastest(models, x, **kw):  # pretend the sessions win, the torch models lose
        return {k: 1.0 if isinstance(m, metrics._OrtModule) else 2.0 for k, m in models.items()}

    monkeypatch.setattr(metrics, "interleaved_latency", onnx_fastest)
    times, mode = latency_in_mode({"a": net, "b": net}, x, "deploy", onnxruntime=True)
    assert mode == "deploy:bn_fold+channels_last+inference_mode+onnxruntime" and times == {"a": 1.0, "b": 1.0}
    monkeypatch.setattr(metrics, "interleaved_latency", real)
