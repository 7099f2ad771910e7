"""A privileged expert for ChairNav: drives to the chair around obstacles using true positions.

Used to script data collection, to test that every layout is solvable and as a reference for
policies. It plans on a 5 cm occupancy grid of the room (walls and entity discs inflated by
the robot radius) with an 8-connected distance transform to the success region, then turns
towards the steepest descent of that field and drives forward.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vr_goggles.policy.actions import FORWARD, TURN_LEFT, TURN_RIGHT, TURN_STEP

_SQRT2 = math.sqrt(2.0)
# How far inside the planner's inflated obstacles a robot can stand: a box's bounding disc
# reaches up to ~0.3 m past its side (0.9 x 0.35 m box), plus the margin and a cell.
_BORDER_REACH = 0.5


class Oracle:
    """Expert actions for the current episode of a :class:`ChairNavEnv`.

    Call :meth:`act` after every ``reset``/``step`` with the env's ``info``; the plan is
    rebuilt automatically when the layout changes.
    """

    def __init__(self, env: Any, resolution: float = 0.05, margin: float = 0.08) -> None:
        self.env = env.unwrapped
        self.res = resolution
        self.margin = margin
        self._key: tuple | None = None
        self.field: np.ndarray | None = None
        self._finite: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # Grid cell (i, j) covers world x = (j + 0.5) * res, z = (i + 0.5) * res (room from 0).

    def _plan(self) -> None:
        from sim_training.envs.chair_nav import SUCCESS_DISTANCE

        env = self.env
        room, agent, chair = env.room, env.agent, env.chair
        nx = int(math.ceil((room.max_x - room.min_x) / self.res))
        nz = int(math.ceil((room.max_z - room.min_z) / self.res))
        xs = room.min_x + (np.arange(nx) + 0.5) * self.res
        zs = room.min_z + (np.arange(nz) + 0.5) * self.res
        gx, gz = np.meshgrid(xs, zs)
        r = agent.radius + self.margin
        free = ((gx > room.min_x + r) & (gx < room.max_x - r)
                & (gz > room.min_z + r) & (gz < room.max_z - r))
        for ent in env.entities:
            if ent is agent:
                continue
            d2 = (gx - ent.pos[0]) ** 2 + (gz - ent.pos[2]) ** 2
            free &= d2 > (ent.radius + r) ** 2
        dc = np.hypot(gx - chair.pos[0], gz - chair.pos[2])
        goal = free & (dc <= SUCCESS_DISTANCE - 0.1)
        field = np.full((nz, nx), np.inf)
        field[goal] = 0.0
        blocked = ~free
        # Repeated 8-neighbour relaxation until the field stops changing.
        for _ in range(4 * (nx + nz)):
            old = field
            f = field.copy()
            p = np.pad(field, 1, constant_values=np.inf)
            for di, dj, c in ((-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0),
                              (-1, -1, _SQRT2), (-1, 1, _SQRT2), (1, -1, _SQRT2),
                              (1, 1, _SQRT2)):
                np.minimum(f, p[1 + di:1 + di + nz, 1 + dj:1 + dj + nx] + c, out=f)
            f[blocked] = np.inf
            field = f
            if np.array_equal(np.isfinite(old), np.isfinite(field)) and np.allclose(
                    old[np.isfinite(old)], field[np.isfinite(field)]):
                break
        self.field = field * self.res
        self._grid = (room.min_x, room.min_z, nx, nz)
        self._finite = None  # planned cells, gathered on the first off-grid query

    def _cell(self, x: float, z: float) -> tuple[int, int]:
        x0, z0, nx, nz = self._grid
        j = min(max(int((x - x0) / self.res), 0), nx - 1)
        i = min(max(int((z - z0) / self.res), 0), nz - 1)
        return i, j

    def path_distance(self) -> float:
        """Planned distance (m) from the robot to the success region; inf if unreachable."""
        self._ensure_plan()
        assert self.field is not None
        return float(self.field[self._cell(self.env.agent.pos[0], self.env.agent.pos[2])])

    def geodesic_distance(self) -> float | None:
        """Shortest obstacle-avoiding distance (m) from the robot to the success region.

        Unlike :meth:`path_distance` it is finite wherever the robot can stand: a robot inside
        the planner's inflated border (the bounding discs of boxes are conservative) gets the
        nearest planned cell's distance plus the straight step to it (cells within
        ``_BORDER_REACH``). None if the success region is unreachable from here. Policy
        training shapes its reward with it: a detour around an obstacle is progress, where the
        straight-line distance calls it a loss.
        """
        here = self.path_distance()
        if math.isfinite(here):
            return here
        assert self.field is not None
        x, z = float(self.env.agent.pos[0]), float(self.env.agent.pos[2])
        if self._finite is None:
            ii, jj = np.nonzero(np.isfinite(self.field))
            x0, z0, _, _ = self._grid
            self._finite = ((jj + 0.5) * self.res + x0, (ii + 0.5) * self.res + z0,
                            self.field[ii, jj])
        xs, zs, vals = self._finite
        step = np.hypot(xs - x, zs - z)
        near = step <= _BORDER_REACH
        if not near.any():  # walled off from the chair
            return None
        return float(np.min(vals[near] + step[near]))

    def _ensure_plan(self) -> None:
        key = (self.env.layout_seed, id(self.env.chair))
        if key != self._key:
            self._plan()
            self._key = key

    def target_heading(self) -> float | None:
        """World heading (miniworld ``dir`` convention) to drive along, or None if stuck."""
        self._ensure_plan()
        assert self.field is not None
        env = self.env
        ax, az = env.agent.pos[0], env.agent.pos[2]
        i, j = self._cell(ax, az)
        here = self.field[i, j]
        # Look a few cells ahead in every direction; go where the field drops most.
        best, best_dir = here, None
        reach = max(2, int(round(0.3 / self.res)))
        for k in range(32):
            a = 2 * math.pi * k / 32
            x, z = ax + math.cos(a) * reach * self.res, az - math.sin(a) * reach * self.res
            ci, cj = self._cell(x, z)
            v = self.field[ci, cj]
            if v < best - 1e-9:
                best, best_dir = v, a
        return best_dir

    def act(self, info: dict[str, Any] | None = None) -> int:
        """The expert action for the state after the last reset/step.

        ``info`` is that step's info dict; without it the bearing is read from the env (a
        vectorised env hands out the info of the step that ended an episode, not of the reset
        that followed).
        """
        from sim_training.envs.chair_nav import SUCCESS_ANGLE

        bearing = float(info['bearing'] if info is not None else self.env._bearing())
        self._ensure_plan()
        assert self.field is not None
        env = self.env
        here = self.field[self._cell(env.agent.pos[0], env.agent.pos[2])]
        if here == 0.0:  # in the success region: face the chair (and close in)
            target = bearing
            if abs(target) <= SUCCESS_ANGLE * 0.5:
                return FORWARD
        else:  # also when the robot is just inside the inflated margin (field = inf here)
            heading = self.target_heading()
            if heading is None:
                target = bearing
            else:
                target = math.atan2(math.sin(heading - env.agent.dir),
                                    math.cos(heading - env.agent.dir))
        if target > TURN_STEP / 2:
            return TURN_LEFT
        if target < -TURN_STEP / 2:
            return TURN_RIGHT
        return FORWARD
