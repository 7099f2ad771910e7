"""Appearance of a chair-navigation episode: the domain looks, their textures and light.

A :class:`Look` says how the look pass draws one episode's room (a :class:`Material` per
surface and entity, the light, the camera model); :func:`make_look` picks it for a domain
('sim', 'real' or 'randomized', see :class:`~sim_training.envs.chair_nav.ChairNavEnv`) from the
episode's appearance generator, which is separate from the layout's, so every domain draws the
same geometry for the same seed. :class:`TextureCache` holds one environment's GL textures,
including the fixed texture pools the 'real' and 'randomized' looks draw from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import os

import numpy as np

from sim_training.envs import headless  # noqa: F401  (before miniworld loads pyglet)

# isort: split
from miniworld.entity import Entity, MeshEnt
from miniworld.miniworld import Room
from miniworld.params import DEFAULT_PARAMS
from miniworld.utils import get_file_path

from sim_training.envs import glutil, real_proxy
from sim_training.envs.layout import DISTRACTORS

#: Canonical sim textures (miniworld's own Room defaults) and the DR texture pool.
SIM_SURFACES = {'floor': 'floor_tiles_bw_1', 'wall': 'concrete_1',
                'ceiling': 'concrete_tiles_1', 'box': 'cardboard_1'}
DR_TEXTURES = (
    'airduct_grate_1', 'asphalt_1', 'brick_wall_1', 'cardboard_1', 'cardboard_2',
    'cardboard_4', 'ceiling_tile_noborder_1', 'ceiling_tiles_1', 'cinder_blocks_1',
    'concrete_1', 'concrete_2', 'concrete_3', 'concrete_4', 'concrete_tiles_1', 'drywall_1',
    'floor_tiles_bw_1', 'floor_tiles_white', 'grass_1', 'lava_1', 'marble_1', 'marble_2',
    'metal_grill_1', 'rock_1', 'slime_1', 'stucco_1', 'water_1', 'white_1', 'wood_1', 'wood_2',
    'wood_planks_1',
)
DR_PROCEDURAL = 24        # procedural textures in the DR pool (fixed pool seed below)
POOL_SEED = 20240601      # pools are fixed per process; per-episode choices use np_random


@dataclass
class Material:
    """How one surface is drawn in the look pass: texture (or none), tint, texture scale."""

    texture: glutil.GLTexture | None
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    tile_m: float = 1.0
    own_uv: bool = False     # a mesh's own texture: use the mesh's UVs, not a projection


@dataclass
class Look:
    """One episode's appearance: materials, light and camera model."""

    floor: Material
    wall: Material
    ceiling: Material
    entities: list[Material]
    light_pos: np.ndarray
    light_ambient: np.ndarray
    light_diffuse: np.ndarray
    attenuation: float = 0.0
    camera: real_proxy.CameraModel | None = None


def mesh_name(ent: MeshEnt) -> str:
    """The miniworld mesh name of a :class:`MeshEnt` (recorded when it was created)."""
    from miniworld.objmesh import ObjMesh

    for path, mesh in ObjMesh.cache.items():
        if mesh is ent.mesh:
            return os.path.splitext(os.path.basename(path))[0]
    raise KeyError('mesh not in the miniworld cache')


def mesh_texture_path(name: str) -> str:
    """The texture file of miniworld mesh ``name`` (its own texture, the sim look)."""
    return get_file_path('meshes', name, 'png')


def texture_path(name: str) -> str:
    """The file of miniworld texture ``name``."""
    return get_file_path('textures', name, 'png')


class TextureCache:
    """One environment's GL textures, each made on first use and kept until :meth:`delete`.

    Textures belong to the environment's GL context, so every environment has its own cache;
    the pools are drawn from fixed seeds, so they are the same in every environment and
    process (only the per-episode choice among them varies).
    """

    def __init__(self) -> None:
        self._textures: dict[str, glutil.GLTexture] = {}
        self._pools: dict[str, list[glutil.GLTexture]] = {}

    def get(self, key: str, make: Callable[[], np.ndarray]) -> glutil.GLTexture:
        """Return texture ``key``, created by ``make() -> RGB array`` on first use."""
        tex = self._textures.get(key)
        if tex is None:
            tex = self._textures[key] = glutil.GLTexture.from_array(make())
        return tex

    def file(self, path: str) -> glutil.GLTexture:
        """The texture of image file ``path``."""
        return self.get(path, lambda: glutil.read_image(path))

    def pool(self, name: str) -> list[glutil.GLTexture]:
        """Fixed texture pool ``name``: 'dr', or a real-proxy category of photo tiles."""
        if name in self._pools:
            return self._pools[name]
        rng = np.random.default_rng([POOL_SEED, len(name), sum(map(ord, name))])
        if name == 'dr':
            pool = [self.file(texture_path(t)) for t in DR_TEXTURES]
            pool += [self.get(f'proc{i}', lambda: real_proxy.procedural_texture(rng))
                     for i in range(DR_PROCEDURAL)]
        else:  # a real-proxy category: each photo tile in two jittered variants
            pool = []
            for i, tile in enumerate(real_proxy.load_tiles()[name]):
                for v in range(2):
                    pool.append(self.get(
                        f'real_{name}_{i}_{v}',
                        lambda t=tile: real_proxy.jitter_texture(t, rng, strength=0.08)))
        self._pools[name] = pool
        return pool

    def delete(self) -> None:
        """Free every texture (the owning context must be current)."""
        for tex in self._textures.values():
            tex.delete()
        self._textures.clear()
        self._pools.clear()


def make_look(domain: str, rng: np.random.Generator, room: Room, entity_kinds: list[str],
              entities: list[Entity], textures: TextureCache) -> Look:
    """Pick the look of one episode of ``domain``, drawing from ``rng`` (the look stream).

    ``entity_kinds[i]`` is the kind of ``entities[i]`` ('chair' or a distractor name); the
    result has one material per kind, in the same order.
    """
    centre = np.array([room.mid_x, room.wall_height - 0.1, room.mid_z])
    if domain == 'sim':
        ents = []
        for i, kind in enumerate(entity_kinds):
            if kind == 'box':
                ents.append(Material(textures.file(texture_path(SIM_SURFACES['box'])),
                                     tile_m=0.5))
            else:
                ents.append(Material(textures.file(mesh_texture_path(mesh_name(entities[i]))),
                                     own_uv=True))
        return Look(
            floor=Material(textures.file(texture_path(SIM_SURFACES['floor'])), tile_m=1.0),
            wall=Material(textures.file(texture_path(SIM_SURFACES['wall'])), tile_m=1.0),
            ceiling=Material(textures.file(texture_path(SIM_SURFACES['ceiling'])), tile_m=1.5),
            entities=ents,
            light_pos=centre,
            light_ambient=np.array(DEFAULT_PARAMS.params['light_ambient'].default),
            light_diffuse=np.array(DEFAULT_PARAMS.params['light_color'].default),
        )
    if domain == 'real':
        def mat(category: str, tile_lo: float, tile_hi: float) -> Material:
            pool = textures.pool(category)
            return Material(pool[int(rng.integers(len(pool)))],
                            tint=tuple(float(v) for v in rng.uniform(1.0, 1.25, 3)),
                            tile_m=float(rng.uniform(tile_lo, tile_hi)))

        floor = mat('floor', 0.8, 2.0)
        wall = mat('wall', 1.0, 2.5)
        ceiling = mat('ceiling', 1.0, 2.5)
        ents = []
        for kind in entity_kinds:
            if kind == 'chair':
                ents.append(mat('chair', 0.3, 0.8))
            else:
                cat = next(d.real_category for d in DISTRACTORS if d.name == kind)
                ents.append(mat(cat, 0.3, 1.0))
        warm = np.array([1.0, rng.uniform(0.8, 0.92), rng.uniform(0.55, 0.75)])
        light_pos = np.array([rng.uniform(room.min_x, room.max_x),
                              room.wall_height - rng.uniform(0.05, 0.6),
                              rng.uniform(room.min_z, room.max_z)])
        return Look(floor=floor, wall=wall, ceiling=ceiling, entities=ents,
                    light_pos=light_pos,
                    light_ambient=warm * rng.uniform(0.45, 0.6),
                    light_diffuse=warm * rng.uniform(0.9, 1.2),
                    attenuation=float(rng.uniform(0.03, 0.12)),
                    camera=real_proxy.CameraModel.sample(rng, 'real'))
    # randomized
    pool = textures.pool('dr')

    def rmat(lo: float, hi: float, keep: glutil.GLTexture | None = None) -> Material:
        own = keep is not None and rng.random() < 0.5
        tex = keep if own else pool[int(rng.integers(len(pool)))]
        return Material(tex, tint=tuple(float(v) for v in rng.uniform(0.6, 1.3, 3)),
                        tile_m=float(rng.uniform(lo, hi)), own_uv=own)

    ents = []
    for i, kind in enumerate(entity_kinds):
        own = (None if kind == 'box'
               else textures.file(mesh_texture_path(mesh_name(entities[i]))))
        ents.append(rmat(0.3, 1.5, keep=own))
    light_pos = np.array([rng.uniform(room.min_x - 2, room.max_x + 2),
                          rng.uniform(1.0, 5.0),
                          rng.uniform(room.min_z - 2, room.max_z + 2)])
    return Look(floor=rmat(0.5, 2.5), wall=rmat(0.5, 2.5), ceiling=rmat(0.5, 2.5),
                entities=ents, light_pos=light_pos,
                light_ambient=rng.uniform(0.25, 0.6) * rng.uniform(0.85, 1.15, 3),
                light_diffuse=rng.uniform(0.45, 0.9) * rng.uniform(0.85, 1.15, 3),
                attenuation=float(rng.uniform(0.0, 0.2)) if rng.random() < 0.3 else 0.0,
                camera=real_proxy.CameraModel.sample(rng, 'randomized'))
