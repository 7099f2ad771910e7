"""Drawing a chair-navigation episode: its display lists and the two render passes.

Each episode's room is static, so it is compiled once per reset into two display lists:
the look list (textured and lit as :class:`~sim_training.envs.looks.Look` says) and the label
list (flat colours: class ``k`` of :mod:`vr_goggles.image.semantics` drawn with red
``LABEL_STEP * k`` and decoded by rounding). Both are drawn from the agent's camera into the
environment's frame buffers. Every function
expects the environment's GL context to be current; run a sequence of them inside
:func:`gl_section`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
from typing import Any

import numpy as np

from sim_training.envs import headless  # noqa: F401  (before miniworld loads pyglet)

# isort: split
from miniworld.entity import Agent, Entity, MeshEnt
from miniworld.miniworld import Room
from pyglet import gl

from sim_training.envs import glutil
from sim_training.envs.looks import Look, Material, mesh_name
from vr_goggles.image import semantics

LABEL_STEP = 40              # class k is drawn with red = 40 * k; decoded by rounding


@contextlib.contextmanager
def gl_section() -> Any:
    """Run a sequence of GL calls with the cyclic garbage collector paused.

    A collection can finalize an environment that was dropped without ``close()``; pyglet's
    ``Window.__del__`` then destroys its context and makes another one current, so the rest
    of a display-list compile or a render would go to the wrong context ("invalid operation"
    at ``glEndList``, "stack underflow" at a pop).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.lru_cache(maxsize=16)
def mesh_chunks(name: str) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, bool], ...]:
    """(verts, texcs, norms, textured) per chunk of miniworld mesh ``name``, in mesh units."""
    from miniworld.objmesh import ObjMesh

    mesh = ObjMesh.get(name)
    chunks = []
    for vlist, tex in zip(mesh.vlists, mesh.textures):
        n = vlist.get_size()
        verts = np.asarray(vlist.vertices[:], np.float32).reshape(n, 3)
        texcs = np.asarray(vlist.tex_coords[:], np.float32).reshape(n, 2)
        norms = np.asarray(vlist.normals[:], np.float32).reshape(n, 3)
        chunks.append((verts, texcs, norms, tex is not None))
    return tuple(chunks)


def wall_uv(wall_verts: np.ndarray) -> np.ndarray:
    """Texture coordinates in metres (along the wall, height) for miniworld's wall quads."""
    uv = np.zeros((len(wall_verts), 2), np.float32)
    for q in range(0, len(wall_verts), 4):
        p0 = wall_verts[q]
        for k in range(4):
            v = wall_verts[q + k]
            uv[q + k] = (np.linalg.norm((v - p0)[[0, 2]]), v[1])
    return uv


def planar_uv(verts: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Box-projected texture coordinates: each triangle uses the plane its normal faces most."""
    axis = np.abs(norms).argmax(axis=1)
    u = np.where(axis == 0, verts[:, 2], verts[:, 0])
    v = np.where(axis == 1, verts[:, 2], verts[:, 1])
    return np.stack([u, v], axis=1).astype(np.float32)


def apply_material(mat: Material) -> None:
    """Bind ``mat``'s texture (or none) and tint for the following look-pass geometry."""
    if mat.texture is None:
        gl.glDisable(gl.GL_TEXTURE_2D)
    else:
        gl.glEnable(gl.GL_TEXTURE_2D)
        mat.texture.bind()
    gl.glColor3f(*mat.tint)


def label_color(cls: int) -> None:
    """Set the flat label-pass colour of class ``cls``."""
    gl.glColor3ub(LABEL_STEP * int(cls), 0, 0)


def decode_labels(red: np.ndarray) -> np.ndarray:
    """Class ids (uint8) of a label-pass red channel: the nearest ``LABEL_STEP`` multiple."""
    labels = ((red.astype(np.uint16) + LABEL_STEP // 2) // LABEL_STEP).astype(np.uint8)
    np.minimum(labels, semantics.NUM_CLASSES - 1, out=labels)
    return labels


def compile_lists(lists: tuple[int, int], room: Room, look: Look, entities: list[Entity],
                  agent: Agent, chair: Entity, box_sizes: dict[int, np.ndarray]) -> None:
    """Compile an episode's look list and label list (``lists``), both static for it.

    ``look.entities[i]`` and ``box_sizes[i]`` belong to ``entities[i]``; the agent is not
    drawn (the camera is inside it).
    """
    look_list, label_list = lists
    floor_v = np.asarray(room.floor_verts, np.float32)
    ceil_v = np.asarray(room.ceil_verts, np.float32)
    wall_v = np.asarray(room.wall_verts, np.float32)
    wall_n = np.asarray(room.wall_norms, np.float32)
    wall_texcs = wall_uv(wall_v)

    gl.glNewList(look_list, gl.GL_COMPILE)
    glutil.begin_look_state()
    glutil.set_light(look.light_pos, look.light_ambient, look.light_diffuse, look.attenuation)
    gl.glEnable(gl.GL_TEXTURE_2D)
    for mat, verts, texcs, normal, mode in (
            (look.floor, floor_v, floor_v[:, [0, 2]], (0, 1, 0), gl.GL_POLYGON),
            (look.ceiling, ceil_v, ceil_v[:, [0, 2]], (0, -1, 0), gl.GL_POLYGON)):
        apply_material(mat)
        glutil.draw_arrays(mode, verts, texcs=texcs / mat.tile_m,
                           norms=np.tile(np.float32(normal), (len(verts), 1)))
    apply_material(look.wall)
    glutil.draw_arrays(gl.GL_QUADS, wall_v, texcs=wall_texcs / look.wall.tile_m, norms=wall_n)
    for i, ent in enumerate(entities):
        if ent is agent:
            continue
        apply_material(look.entities[i])
        draw_entity(ent, look.entities[i], box_sizes.get(i))
    gl.glEndList()

    gl.glNewList(label_list, gl.GL_COMPILE)
    glutil.begin_label_state()
    label_color(semantics.FLOOR)
    glutil.draw_arrays(gl.GL_POLYGON, floor_v)
    label_color(semantics.CEILING)
    glutil.draw_arrays(gl.GL_POLYGON, ceil_v)
    label_color(semantics.WALL)
    glutil.draw_arrays(gl.GL_QUADS, wall_v)
    for i, ent in enumerate(entities):
        if ent is agent:
            continue
        label_color(semantics.CHAIR if ent is chair else semantics.OBJECT)
        draw_entity(ent, None, box_sizes.get(i))
    gl.glEndList()


def draw_entity(ent: Entity, mat: Material | None, box_size: np.ndarray | None) -> None:
    """Draw a static entity; ``mat=None`` draws bare geometry (label pass).

    ``box_size`` is the size of a box entity (anything not a :class:`MeshEnt`).
    """
    gl.glPushMatrix()
    gl.glTranslatef(*(float(v) for v in ent.pos))
    gl.glRotatef(float(ent.dir) * 180.0 / math.pi, 0.0, 1.0, 0.0)
    if isinstance(ent, MeshEnt):
        gl.glScalef(ent.scale, ent.scale, ent.scale)
        for verts, texcs, norms, textured in mesh_chunks(mesh_name(ent)):
            if mat is None:
                glutil.draw_arrays(gl.GL_TRIANGLES, verts)
            elif mat.own_uv:  # the mesh's own texture on its own UV layout
                if textured:
                    gl.glEnable(gl.GL_TEXTURE_2D)
                else:
                    gl.glDisable(gl.GL_TEXTURE_2D)
                glutil.draw_arrays(gl.GL_TRIANGLES, verts, texcs=texcs, norms=norms)
            else:  # a photo/random texture, box-projected at its physical scale
                uv = planar_uv(verts, norms) * (ent.scale / mat.tile_m)
                glutil.draw_arrays(gl.GL_TRIANGLES, verts, texcs=uv, norms=norms)
    else:
        if box_size is None:
            raise KeyError('a box entity needs its size')
        verts, texcs, norms = glutil.box_geometry(box_size, 1.0 if mat is None else mat.tile_m)
        glutil.draw_arrays(gl.GL_QUADS, verts, texcs=None if mat is None else texcs,
                           norms=None if mat is None else norms)
    gl.glPopMatrix()


def set_camera(agent: Agent, width: int, height: int) -> None:
    """Load the agent camera's projection and view for a ``width`` x ``height`` target."""
    gl.glMatrixMode(gl.GL_PROJECTION)
    gl.glLoadIdentity()
    gl.gluPerspective(agent.cam_fov_y, width / float(height), 0.04, 100.0)
    gl.glMatrixMode(gl.GL_MODELVIEW)
    gl.glLoadIdentity()
    eye = agent.cam_pos
    gl.gluLookAt(*eye, *(eye + agent.cam_dir), 0.0, 1.0, 0.0)


def draw_pass(frame_buffer: Any, agent: Agent, display_list: int) -> None:
    """Clear ``frame_buffer`` (to black: void in the label pass) and draw a compiled list."""
    frame_buffer.bind()
    gl.glClearColor(0.0, 0.0, 0.0, 1.0)
    gl.glClearDepth(1.0)
    gl.glClear(gl.GL_COLOR_BUFFER_BIT | gl.GL_DEPTH_BUFFER_BIT)
    set_camera(agent, frame_buffer.width, frame_buffer.height)
    gl.glCallList(display_list)
