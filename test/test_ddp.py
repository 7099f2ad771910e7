"""Two CPU processes on gloo train the full VR-Goggles objective with DDP and stay in sync."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    # Loopback only, and a file rendezvous instead of a TCP store on a just-freed port (which a
    # busy machine may hand to someone else before rank 0 binds it).
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME='lo')
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{out_dir}/rendezvous', rank=rank,
                            world_size=world)
    from sim_training.translator import PRESETS, TranslatorConfig, train
    from vr_goggles.models.segmenter import SegmentationNet

    torch.manual_seed(0)
    seg = SegmentationNet(width=4)
    cfg = TranslatorConfig(**{**PRESETS['vr_goggles'], 'preset': 'vr_goggles', 'synthetic': 6,
                              'size': 16, 'ngf': 4, 'n_blocks': 1, 'ndf': 4, 'd_layers': 2,
                              'steps': 3, 'ckpt_every': 3, 'progress': False,
                              'pool_size': 2, 'out': out_dir})
    tr = train(cfg, segmenter=seg)
    flat = torch.cat([p.detach().reshape(-1) for p in tr.G.parameters()]
                     + [p.detach().reshape(-1) for p in tr.D_sim.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    x_first, _ = tr.real_sampler.sample(1)
    xs = [torch.zeros_like(x_first) for _ in range(world)]
    dist.all_gather(xs, x_first)
    if rank == 0:
        torch.save({'params': gathered, 'samples': xs, 'step': tr.step},
                   os.path.join(out_dir, 'result.pt'))
    # Both ranks leave together: a rank tearing gloo down while its peer still holds the
    # connection aborts the peer ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_two_process_gloo_ddp(tmp_path):
    """Two process gloo ddp."""
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    res = torch.load(tmp_path / 'result.pt', weights_only=True)
    assert res['step'] == 3
    p0, p1 = res['params']
    assert torch.equal(p0, p1)  # gradients were averaged: replicas identical
    assert not torch.equal(res['samples'][0], res['samples'][1])  # ranks see different data
    assert (tmp_path / 'last.pt').exists() and (tmp_path / 'last.rank1.pt').exists()
