"""History of generated images for the discriminators (Shrivastava et al. 2017, SimGAN).

Showing D only the latest fakes lets G and D chase each other in circles; mixing in older fakes
makes D remember artefacts G produced before. Half of each returned batch comes from the
history once it is full (for batch size 1: with probability one half, as in CycleGAN), and the
returned slots' current images replace the history entries they were swapped for.
The pool owns its random generator so that ``state_dict`` / ``load_state_dict`` resume exactly.
"""

from __future__ import annotations

import torch


class ImagePool:
    """Fixed-size buffer of past generator outputs; ``query`` mixes them into a batch."""

    def __init__(self, size: int = 50, *, history_fraction: float = 0.5, seed: int = 0):
        if size < 0 or not 0.0 <= history_fraction <= 1.0:
            raise ValueError(f'invalid pool size={size} history_fraction={history_fraction}')
        self.size = size
        self.history_fraction = history_fraction
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def _n_history(self, batch: int) -> int:
        want = self.history_fraction * batch
        n = int(want)
        if torch.rand((), generator=self.generator).item() < want - n:
            n += 1  # batch 1 at fraction 0.5: a fair coin
        return min(n, batch)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        """Return a batch of the same shape: current fakes, part of them swapped for old ones."""
        if self.size == 0:
            return images
        images = images.detach()
        out = images.clone()
        batch = images.shape[0]
        fill = 0
        while len(self.images) < self.size and fill < batch:  # filling: everything is current
            self.images.append(images[fill].cpu().clone())
            fill += 1
        if fill:
            return out
        n_hist = self._n_history(batch)
        slots = torch.randperm(batch, generator=self.generator)[:n_hist].tolist()
        for s in slots:
            k = int(torch.randint(self.size, (), generator=self.generator))
            old = self.images[k]
            self.images[k] = images[s].cpu().clone()
            out[s] = old.to(out.device, out.dtype)
        return out

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (images + RNG state)."""
        stacked = torch.stack(self.images) if self.images else torch.empty(0)
        return {'size': self.size, 'history_fraction': self.history_fraction,
                'images': stacked, 'rng': self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.size = int(state['size'])
        self.history_fraction = float(state['history_fraction'])
        imgs = state['images']
        self.images = [im.clone() for im in imgs] if imgs.numel() else []
        self.generator.set_state(state['rng'])
