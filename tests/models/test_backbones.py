"""Backbones: arcface_torch state-dict compatibility and reference outputs."""
import json

import numpy as np
import pytest
import torch

from faceforge.core.errors import FaceForgeError
from faceforge.models.backbones import create_backbone, list_backbones
from faceforge.train.reid import REID_BACKBONES, REID_INPUT

from ..conftest import FIXTURES, need



def _fixture(name: str):
    return json.loads(need(FIXTURES / name).read_text())


def fill_like_reference(model: torch.nn.Module) -> None:
    """The fixture's deterministic weights (its 'formula' field, implemented independently)."""
    new = {}
    for k, (n, t) in enumerate(model.state_dict().items()):
        base = np.sin(np.arange(t.numel(), dtype=np.float64) * 0.37 + k)
        if n.endswith("num_batches_tracked"):
            v = np.zeros(t.numel())
        elif n.endswith("running_var"):
            v = 1 + 0.5 * np.abs(base)
        elif n.endswith("running_mean"):
            v = 0.1 * base
        elif t.dim() >= 2:
            v = base * np.sqrt(6 / (t.numel() / t.shape[0]))
        elif "prelu" in n:
            v = 0.25 + 0.05 * base
        elif n.endswith("weight"):
            v = 1 + 0.1 * base
        else:
            v = 0.1 * base
        new[n] = torch.from_numpy(v.astype(np.float32)).reshape(t.shape).to(t.dtype)
    model.load_state_dict(new)


@pytest.mark.parametrize("name", ["r18", "r34", "r50", "r100", "r200", "mbf"])
def test_state_dict_keys_and_shapes_equal_arcface_torch(name):
    expected = _fixture("arcface_torch_state_dict_keys.json")[name]
    got = [[k, list(v.shape)] for k, v in create_backbone(name).state_dict().items()]
    assert got == expected


@pytest.mark.parametrize("name", ["r18", "r50", "mbf"])
def test_outputs_match_reference(name):
    ref = _fixture("arcface_torch_reference_outputs.json")["models"][name]
    model = create_backbone(name).eval()
    fill_like_reference(model)
    assert len(model.state_dict()) == ref["num_state_dict_entries"]
    x = torch.from_numpy(np.sin(np.arange(2 * 3 * 112 * 112, dtype=np.float64) * 0.01)
                         .astype(np.float32)).reshape(2, 3, 112, 112)
    with torch.no_grad():
        out = model(x).numpy()
    r = np.array(ref["output"])
    scale = np.abs(r).max()
    # float32 sums in another order (another CPU's kernels) move outputs by ~1e-5 of the scale
    # after 18-50 layers; a wrong layer, order or BN gives differences of order 0.1.
    np.testing.assert_allclose(out / scale, r / scale, rtol=1e-4, atol=5e-5)


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_builds_with_num_features(name):
    if name in ("r100", "r200", "mbf_large"):
        pytest.skip("large: covered by the key test")
    m = create_backbone(name, num_features=128).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_loading_mismatched_weights_fails_loudly():
    sd = create_backbone("r18").state_dict()
    with pytest.raises(RuntimeError, match="size mismatch|Missing key|Unexpected key"):
        create_backbone("r50").load_state_dict(sd)
    with pytest.raises(FaceForgeError, match="unknown backbone"):
        create_backbone("r999")


def test_timm_backbone_with_embedding_neck():
    timm = pytest.importorskip("timm", reason="optional extra faceforge[timm] (needs torchvision) not installed")
    m = create_backbone("timm:resnet18", num_features=320, hidden=840).eval()
    assert m.num_features == 320 and m.neck[0].in_features == m.body.num_features
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 112, 112)).shape == (2, 320)
    with pytest.raises(FaceForgeError, match="not downloaded"):
        create_backbone("timm:resnet18", pretrained=True)
    with pytest.raises(FaceForgeError, match="no model"):
        create_backbone("timm:not_a_model_xyz")
    assert timm.__version__


@pytest.mark.parametrize("name", list(REID_BACKBONES))
def test_reid_backbones_train_and_round_trip(name, tmp_path):
    """Backbones the person re-id recipes use, at the re-id input (128 × 64): a forward and a
    backward pass with finite gradients, and the state dict written to safetensors loads
    back into an identical network."""
    if name.startswith("timm:"):
        pytest.importorskip("timm", reason="optional extra faceforge[timm] (needs torchvision) not installed")
    from safetensors.torch import load_file, save_file
    torch.manual_seed(0)
    kw = {"num_features": 128, "hidden": 256, **REID_BACKBONES[name]}
    m = create_backbone(name, **kw).train()
    x = torch.randn(2, 3, *REID_INPUT)
    out = m(x)
    assert out.shape == (2, 128)
    out.square().mean().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    # the stem and the neck learn (timm zero-initialises each residual block's last BN scale,
    # so inside the blocks only those scales get a gradient at the first step)
    assert float(grads[0].abs().sum()) > 0 and float(grads[-1].abs().sum()) > 0
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, tmp_path / "w.safetensors")
    again = create_backbone(name, **kw)
    again.load_state_dict(load_file(tmp_path / "w.safetensors"))
    m.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(m(x), again(x))


def test_bnneck_shift_stays_zero():
    m = create_backbone("osnet", num_features=32, width=0.25, bnneck=True)
    bn = m.neck[-1]
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.bias.requires_grad
    params = sum(p.numel() for p in create_backbone("osnet").parameters())
    assert 1.8e6 < params < 2.6e6  # the ~2.2 M of OSNet x1.0, with the reference's neck


def test_timm_missing_is_a_clear_error(monkeypatch):
    import builtins
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda n, *a, **k: (_ for _ in ()).throw(ImportError("no timm")) if n == "timm" else real(n, *a, **k))
    with pytest.raises(FaceForgeError, match=r"faceforge\[timm\]"):
        create_backbone("timm:resnet18")
