"""The standard Inception-v3 of FID/KID/IS: torch-fidelity's port of the 2015-12-05 TF graph.

The network and its TF-compatible bilinear resize come from torch-fidelity. The weights file
is found here (--inception-weights PATH, then the torch hub cache, then a download when online)
and read with `torch.load(weights_only=True)`, so a file a user hands us is never unpickled;
torch-fidelity's own loader would unpickle it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from unittest import mock

import torch

from ..errors import UserError
from .features import FeatureExtractor, Features, weights_checksum

WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
# pytorch-fid's pt_inception-2015-12-05-6726825d.pth and torch-fidelity's file hold the same
# tensors; the hex in the name is the start of the file's SHA-256 (torch.hub's convention).
WEIGHTS_NAMES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
STANDARD_SHA256_PREFIX = "6726825d"


def hub_cache_dir() -> Path:
    """Where torch.hub (and therefore pytorch-fid and torch-fidelity) cache weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(path: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The Inception weights file: `path`, else the cache, else downloaded into the cache.

    Raises:
        UserError: the file is missing and cannot be fetched (the message says where to put it).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"--inception-weights {p}: no such file")
        return p
    cache = hub_cache_dir()
    for name in WEIGHTS_NAMES:
        if (cache / name).is_file():
            return cache / name
    target = cache / WEIGHTS_NAMES[0]
    hint = (
        f"the Inception weights are not on this machine; download {WEIGHTS_URL} "
        f"and put it at {target} (or pass --inception-weights PATH)"
    )
    if not download:
        raise UserError(hint)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(
            WEIGHTS_URL, str(target), hash_prefix=STANDARD_SHA256_PREFIX, progress=True
        )
    except Exception as exc:  # offline, proxy, disk: all end the same way for the user
        raise UserError(f"{hint} (download failed: {type(exc).__name__})") from None
    return target


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .pth state dict, through torch's restricted (no-code) unpickler."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"{path} is not a plain tensor state dict; refusing to load it ({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors")
    return state


def build_network(state_dict: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 with our weights (None: random init, for tests only)."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    features = ["2048", "logits_unbiased"]
    if state_dict is None:
        # Random weights: skip the loader entirely (used to build substitute files in tests).
        with (
            mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: None),
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda *a: None),
        ):
            return tfi.FeatureExtractorInceptionV3("inception-v3-compat", features)
    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: state_dict):
        try:
            return tfi.FeatureExtractorInceptionV3("inception-v3-compat", features)
        except RuntimeError as exc:
            raise UserError(
                f"the weights do not fit Inception-v3: {str(exc).splitlines()[0]}"
            ) from None


class InceptionExtractor(FeatureExtractor):
    """2048-d pool features and 1008 unbiased logits of the TF-ported Inception-v3.

    Inputs are uint8 at any size; grey is repeated to RGB, then torch-fidelity resizes to
    299x299 with TF1's bilinear filter, exactly as the reference FID code does.
    """

    resolution = 299
    channels = 3
    resize_filter = "bilinear, TF1-compatible (torch-fidelity)"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        download: bool = True,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> None:
        path = find_weights(weights, download=download)
        self.weights_path = path
        self.file_sha256 = _file_sha256(path)
        self.standard = self.file_sha256.startswith(STANDARD_SHA256_PREFIX)
        # Non-standard weights get another name, so their numbers are never mixed with FID's.
        self.name = "inception" if self.standard else "inception-custom"
        self.net = build_network(read_state_dict(path)).to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._checksum = weights_checksum(self.net)

    @property
    def checksum(self) -> str:
        return self._checksum

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Features:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("Inception takes uint8 images [B, C, H, W]")
        from tqdm.auto import tqdm

        feats, logits = [], []
        starts = range(0, images.shape[0], self.batch_size)
        # Inception on a CPU runs at tens of images a second: show progress on long sets.
        for i in tqdm(starts, desc="inception", unit="batch", leave=False, disable=len(starts) < 4):
            x = images[i : i + self.batch_size].to(self.device)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            f, lg = self.net(x)
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        return Features(features=torch.cat(feats), logits=torch.cat(logits))

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["extractor_file_sha256"] = self.file_sha256[:16]
        out["extractor_standard_weights"] = self.standard
        return out
