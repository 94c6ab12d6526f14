"""Points from a landmark network: the last head's heatmaps, decoded with sub-pixel
refinement, in the input crop's pixels, with each point's confidence (its peak height)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceforge.landmarks.heatmaps import decode_heatmaps


@torch.inference_mode()
def predict_points(net: nn.Module, crops: np.ndarray, device: torch.device | str = "cpu",
                   batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """crops: N×S×S×3 RGB uint8 at the network's input size → points (N, K, 2) and
    confidences (N, K)."""
    was = net.training
    net.eval()
    pts, conf = [], []
    try:
        for i in range(0, len(crops), batch_size):
            x = net.preprocess(crops[i:i + batch_size]).to(device)
            p, c = decode_heatmaps(net(x)[:, -1].float())
            pts.append(p.cpu().numpy())
            conf.append(c.cpu().numpy())
    finally:
        net.train(was)
    k = getattr(net, "num_points", 5)
    return (np.concatenate(pts) if pts else np.zeros((0, k, 2), np.float32),
            np.concatenate(conf) if conf else np.zeros((0, k), np.float32))
