"""Z-buffered rasterisation of textured boxes, face by face, with OpenCV and numpy.

Each visible (front-facing) face is a planar convex polygon. It is clipped against the near
plane, projected, and filled with `cv2.fillConvexPoly` into a mask over its bounding
rectangle. On a plane, inverse depth 1/z is affine in pixel coordinates, so the face's exact
per-pixel depth over the rectangle is one broadcast multiply-add; the z-buffer keeps the
largest 1/z (the nearest surface). Textures are mapped with one `cv2.warpPerspective` per face
through the homography from texture pixels to image pixels, picking the mip level whose
texel density matches the face's size on screen.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from perception.synth.appearance import Lighting, Material

# Box corners: index ix*4 + iy*2 + iz, each bit selecting the - or + side of x, y, z.
CORNER_SIGNS = np.array(
    [[2 * ix - 1, 2 * iy - 1, 2 * iz - 1] for ix in (0, 1) for iy in (0, 1) for iz in (0, 1)],
    np.float64,
)
# Faces front(+x), rear(-x), left(+y), right(-y), top(+z), bottom(-z); corners in the order
# top-left, top-right, bottom-right, bottom-left as seen from outside (texture s runs TL->TR,
# t runs TL->BL).
FACE_CORNERS = np.array(
    [[5, 7, 6, 4], [3, 1, 0, 2], [7, 3, 2, 6], [1, 5, 4, 0], [7, 5, 1, 3], [4, 6, 2, 0]]
)
FACE_NORMALS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64
)
TEXTURE_MIN_AREA_PX = 64.0  # smaller faces get their material's mean colour
SUBPIXEL_BITS = 4
BAND_MIN_AREA_PX = 6000  # faces with larger rectangles are filled in bands ...
BAND_ROWS = 32  # ... of this many rows
SHADE_STEPS = 64  # face light is quantised to 1/64 for the shaded-texture cache ...
SHADE_CACHE_BYTES = 48 << 20  # ... which holds this much
HALF_RES_MIN_PX = 1024  # magnified textures on larger rectangles are warped at half size
# full-resolution pixel -> half-resolution pixel (centres aligned as cv2.resize aligns them)
_HALF = np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25], [0.0, 0.0, 1.0]])
SPLAT_MAX_RECT_PX = 256  # untextured faces with smaller rectangles are drawn in one batch


@dataclass
class BoxBatch:
    """Boxes in the world frame. owners: 0 for props, k >= 1 for agent k-1 of the scene."""

    centres: np.ndarray  # (M, 3) box centres
    sizes: np.ndarray  # (M, 3) length (along yaw), width, height
    yaws: np.ndarray  # (M,) rotation about world Z
    materials: np.ndarray  # (M, 6) material id per face
    owners: np.ndarray  # (M,)

    def __len__(self) -> int:
        return len(self.owners)

    @staticmethod
    def concat(batches: list[BoxBatch]) -> BoxBatch:
        return BoxBatch(
            np.concatenate([b.centres for b in batches]).reshape(-1, 3),
            np.concatenate([b.sizes for b in batches]).reshape(-1, 3),
            np.concatenate([b.yaws for b in batches]),
            np.concatenate([b.materials for b in batches]).reshape(-1, 6).astype(np.int32),
            np.concatenate([b.owners for b in batches]).astype(np.int32),
        )


def yaw_matrices(yaws: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaws), np.sin(yaws)
    rot = np.zeros((len(yaws), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    return rot


def box_corners(centres: np.ndarray, sizes: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """(M, 8) corners (M, 8, 3) of yawed boxes."""
    local = CORNER_SIGNS[None, :, :] * (0.5 * sizes)[:, None, :]
    return np.einsum("mij,mkj->mki", yaw_matrices(yaws), local) + centres[:, None, :]


def clip_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Clip a convex polygon (n, 3) in the camera frame to z >= near (Sutherland-Hodgman)."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.asarray(out).reshape(-1, 3)


class Canvas:
    """Colour, inverse depth (0 = nothing, e.g. sky) and owner buffers of one frame."""

    def __init__(self, image: np.ndarray, inv_depth: np.ndarray) -> None:
        self.image = image
        self.inv_depth = inv_depth
        self.height, self.width = inv_depth.shape
        self.owner = np.zeros((self.height, self.width), np.int16)


@dataclass
class Silhouette:
    """Where an agent would cover the image if nothing hid it: a mask over a rectangle."""

    x0: int
    y0: int
    mask: np.ndarray  # uint8 (h, w), 1 inside


class Rasteriser:
    def __init__(
        self,
        K: np.ndarray,
        width: int,
        height: int,
        near: float,
        materials: list[Material],
        lighting: Lighting,
    ) -> None:
        self.K = np.asarray(K, np.float64)
        self.Kinv = np.linalg.inv(self.K)
        self.width, self.height = width, height
        self.near = near
        self.materials = materials
        self.lighting = lighting
        n_levels = max(len(m.levels) for m in materials) if materials else 1
        self._mat_levels = np.array([len(m.levels) for m in materials], np.int64)
        self._level_wh = np.ones((len(materials), n_levels, 2))
        for i, m in enumerate(materials):
            for lv, tex in enumerate(m.levels):
                self._level_wh[i, lv] = (tex.shape[1], tex.shape[0])
        self._tiled = np.array([m.tile_m is not None for m in materials], bool)
        self._tile_st = np.array([m.tile_m or (1.0, 1.0) for m in materials], np.float64)
        self._flat = np.stack([m.mean_bgr for m in materials]) if materials else np.zeros((0, 3))
        self._u, self._v = np.meshgrid(
            np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        )
        self._shade_cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._shade_bytes = 0
        self._zero1 = np.zeros((height, width), np.int16)
        self._zero3 = np.zeros((height, width, 3), np.uint8)
        self.faces_drawn = 0

    def _shaded(self, mat_id: int, level: int, shade: list[float]) -> np.ndarray:
        """A texture level multiplied by a face's light (to 1/64), cached: most faces keep
        their light from frame to frame, so each shaded texture is computed once."""
        key = (mat_id, level, *(round(v * SHADE_STEPS) for v in shade))
        hit = self._shade_cache.get(key)
        if hit is not None:
            self._shade_cache.move_to_end(key)
            return hit
        tex = self.materials[mat_id].levels[level]
        gain = cv_scalar(key[2] / SHADE_STEPS, key[3] / SHADE_STEPS, key[4] / SHADE_STEPS, 0.0)
        out = cv2.multiply(tex, gain)
        self._shade_cache[key] = out
        self._shade_bytes += out.nbytes
        while self._shade_bytes > SHADE_CACHE_BYTES and len(self._shade_cache) > 1:
            self._shade_bytes -= self._shade_cache.popitem(last=False)[1].nbytes
        return out

    def _frustum_planes(self) -> np.ndarray:
        """Inward normals (4, 3) of the planes through the camera centre and the image edges."""
        K = self.K
        e3 = np.array([0.0, 0.0, 1.0])
        umin, umax = -0.5, self.width - 0.5
        vmin, vmax = -0.5, self.height - 0.5
        return np.stack([K[0] - umin * e3, umax * e3 - K[0], K[1] - vmin * e3, vmax * e3 - K[1]])

    def draw(
        self, canvas: Canvas, boxes: BoxBatch, R_cw: np.ndarray, t_cw: np.ndarray
    ) -> dict[int, Silhouette]:
        """Draw boxes (world frame) seen by a camera with x_cam = R_cw x_world + t_cw.

        Returns the silhouette of each owner k >= 1 (union of its faces, before occlusion).
        """
        self.faces_drawn = 0
        if len(boxes) == 0:
            return {}
        rot = yaw_matrices(boxes.yaws)
        local = CORNER_SIGNS[None, :, :] * (0.5 * boxes.sizes)[:, None, :]
        world = np.einsum("mij,mkj->mki", rot, local) + boxes.centres[:, None, :]
        cam = world @ R_cw.T + t_cw
        faces = cam[:, FACE_CORNERS]  # (M, 6, 4, 3)
        n_world = np.einsum("mij,fj->mfi", rot, FACE_NORMALS)
        n_cam = n_world @ R_cw.T
        plane_c = np.einsum("mfi,mfi->mf", n_cam, faces[:, :, 0])
        keep = (plane_c < -1e-9) & (faces[..., 2].max(-1) > self.near)
        # frustum: a face wholly outside one side plane cannot show
        side = np.einsum("mfki,pi->mfkp", faces, self._frustum_planes())
        keep &= ~(side < 0).all(axis=2).any(axis=-1)
        mi, fi = np.nonzero(keep)
        if len(mi) == 0:
            return {}
        V = faces[mi, fi]  # (F, 4, 3)
        q = (n_cam[mi, fi] @ self.Kinv) / plane_c[mi, fi][:, None]  # 1/z = q . (u, v, 1)
        shade = self.lighting.shade(n_world[mi, fi])
        mats = boxes.materials[mi, fi]
        owners = boxes.owners[mi]
        flat = np.clip(self._flat[mats] * shade, 0, 255).astype(np.uint8)
        zmin = V[..., 2].min(-1)
        needs_clip = zmin < self.near
        uvw = V @ self.K.T
        uv = uvw[..., :2] / np.maximum(uvw[..., 2:3], 1e-9)
        polys: list[np.ndarray] = list(uv)
        area = _polygon_area(uv)
        for i in np.flatnonzero(needs_clip):
            clipped = clip_near(V[i], self.near)
            p = clipped @ self.K.T
            polys[i] = p[:, :2] / p[:, 2:3]
            area[i] = _polygon_area(polys[i][None])[0]
        lo = uv.min(1)
        hi = uv.max(1)
        for i in np.flatnonzero(needs_clip):
            lo[i], hi[i] = polys[i].min(0), polys[i].max(0)
        rects = np.empty((len(V), 4), np.int64)
        rects[:, 0] = np.clip(np.floor(lo[:, 0]), 0, self.width)
        rects[:, 1] = np.clip(np.floor(lo[:, 1]), 0, self.height)
        rects[:, 2] = np.clip(np.ceil(hi[:, 0]) + 1, 0, self.width)
        rects[:, 3] = np.clip(np.ceil(hi[:, 1]) + 1, 0, self.height)
        on_screen = (rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1])
        on_screen &= (area >= 0.5) | (owners > 0) | needs_clip  # sub-pixel prop faces: skip
        textured = on_screen & (area >= TEXTURE_MIN_AREA_PX)
        homographies, levels, magnified = self._homographies(V, mats, area, rects)
        silhouettes = self._silhouette_rects(rects, owners, on_screen)
        inv_max = 1.0 / np.maximum(zmin, self.near)
        inv_min = 1.0 / np.maximum(V[..., 2].max(-1), self.near)
        # plane coefficients and the face's 1/z range: pixels a face covers just past its
        # edges take the plane's depth clamped to the face's own range
        planes = np.column_stack([q, inv_min, inv_max])
        rect_area = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
        tiny = on_screen & ~textured & ~needs_clip & (rect_area <= SPLAT_MAX_RECT_PX)
        banded = (rect_area > BAND_MIN_AREA_PX) & (area < 0.5 * rect_area)
        order = np.flatnonzero(on_screen & ~tiny)
        order = order[np.argsort(zmin[order], kind="stable")]  # near to far
        scale = float(1 << SUBPIXEL_BITS)
        fixed_all = np.round(np.where(needs_clip[:, None, None], 0.0, uv) * scale).astype(np.int32)
        # plain Python values per face: indexing numpy arrays in the loop costs more than this
        rect_l, plane_l, shade_l = rects.tolist(), planes.tolist(), shade.tolist()
        invmax_l, owner_l, banded_l = inv_max.tolist(), owners.tolist(), banded.tolist()
        textured_l, mats_l, levels_l = textured.tolist(), mats.tolist(), levels.tolist()
        tiled_l, magnified_l = self._tiled[mats].tolist(), magnified.tolist()
        clip_l = needs_clip.tolist()
        for i in order.tolist():
            fixed = np.round(polys[i] * scale).astype(np.int32) if clip_l[i] else fixed_all[i]
            tex = None
            if textured_l[i]:
                tex = (
                    self._shaded(mats_l[i], levels_l[i], shade_l[i]),
                    homographies[i],
                    tiled_l[i],
                    magnified_l[i],
                )
            self._face(
                canvas,
                fixed,
                rect_l[i],
                plane_l[i],
                invmax_l[i],
                flat[i],
                tex,
                owner_l[i],
                silhouettes,
                banded_l[i],
            )
        sel = np.flatnonzero(tiny)
        if len(sel):
            self._splat(
                canvas,
                uv[sel],
                rects[sel],
                q[sel],
                inv_min[sel],
                inv_max[sel],
                flat[sel],
                owners[sel],
                silhouettes,
            )
        return silhouettes

    def _splat(
        self,
        canvas: Canvas,
        uv: np.ndarray,
        rects: np.ndarray,
        q: np.ndarray,
        inv_min: np.ndarray,
        inv_max: np.ndarray,
        colours: np.ndarray,
        owners: np.ndarray,
        silhouettes: dict[int, Silhouette],
    ) -> None:
        """Draw many small quads (F, 4, 2) in one vectorised pass.

        Every pixel of each quad's rectangle is a candidate; it belongs to the quad when its
        centre lies within half a pixel of the quad (about what fillPoly covers), takes the
        plane's 1/z (clamped to the quad's range), and the nearest candidate of each pixel
        wins against the z-buffer.
        """
        w = rects[:, 2] - rects[:, 0]
        h = rects[:, 3] - rects[:, 1]
        counts = w * h
        face = np.repeat(np.arange(len(uv)), counts)
        local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        px = rects[face, 0] + local % w[face]
        py = rects[face, 1] + local // w[face]
        # signed distances to the four edges, oriented so inside is positive
        a = uv
        b = np.roll(uv, -1, axis=1)
        edge = b - a  # (F, 4, 2)
        length = np.maximum(np.linalg.norm(edge, axis=-1), 1e-9)
        orient = np.sign(_polygon_signed_area(uv))
        nx = -edge[..., 1] / length * orient[:, None]
        ny = edge[..., 0] / length * orient[:, None]
        c = -(nx * a[..., 0] + ny * a[..., 1]) + 0.5  # inside: distance >= -0.5
        fx, fy = px.astype(np.float32), py.astype(np.float32)
        lo, hi = uv.min(1) - 0.5, uv.max(1) + 0.5  # also bound sharp corners' long miters
        inside = (
            (fx >= lo[face, 0]) & (fx <= hi[face, 0]) & (fy >= lo[face, 1]) & (fy <= hi[face, 1])
        )
        n32, m32, c32 = nx.astype(np.float32), ny.astype(np.float32), c.astype(np.float32)
        for e in range(4):
            inside &= n32[face, e] * fx + m32[face, e] * fy + c32[face, e] >= 0
        face, px, py, fx, fy = face[inside], px[inside], py[inside], fx[inside], fy[inside]
        # silhouettes of agents (before the depth test); candidates come grouped by face
        own = owners[face]
        starts = np.flatnonzero(np.diff(own, prepend=-1) != 0)
        ends = np.append(starts[1:], len(own))
        for k, s0, s1 in zip(own[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            if k > 0:
                sil = silhouettes[k]
                sil.mask[py[s0:s1] - sil.y0, px[s0:s1] - sil.x0] = 1
        inv = q[face, 0] * fx + q[face, 1] * fy + q[face, 2]
        inv = np.clip(inv, inv_min[face], inv_max[face]).astype(np.float32)
        front = inv > canvas.inv_depth[py, px]
        if not front.any():
            return
        face, px, py, inv = face[front], px[front], py[front], inv[front]
        pix = py * canvas.width + px
        order = np.lexsort((-inv, pix))  # per pixel, nearest first
        pix_sorted = pix[order]
        first = np.ones(len(order), bool)
        first[1:] = pix_sorted[1:] != pix_sorted[:-1]
        win = order[first]
        face, px, py = face[win], px[win], py[win]
        canvas.inv_depth[py, px] = inv[win]
        canvas.owner[py, px] = owners[face]
        canvas.image[py, px] = colours[face]
        self.faces_drawn += int(np.count_nonzero(np.bincount(face)))

    def _homographies(
        self, V: np.ndarray, mats: np.ndarray, area: np.ndarray, rects: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texture-pixel -> rectangle-pixel homographies (F, 3, 3), mip levels (F,), and
        whether the texture is magnified at least twice (then it is sampled bilinearly, else
        nearest: 4-5 times faster, and mip-mapping keeps nearest sampling from aliasing much)."""
        e1, e2 = V[:, 1] - V[:, 0], V[:, 3] - V[:, 0]
        len1 = np.linalg.norm(e1, axis=1)
        len2 = np.linalg.norm(e2, axis=1)
        tiled = self._tiled[mats]
        span = np.where(tiled[:, None], self._tile_st[mats], np.column_stack([len1, len2]))
        repeats = np.where(tiled, len1 * len2 / (span[:, 0] * span[:, 1]), 1.0)
        base = self._level_wh[mats, 0]
        texels = base[:, 0] * base[:, 1] * repeats
        density = texels / np.maximum(area, 1e-9)  # texels per pixel at level 0
        ratio = np.maximum(density, 1.0)
        levels = np.clip(np.floor(0.5 * np.log2(ratio)), 0, self._mat_levels[mats] - 1).astype(
            np.int64
        )
        wh = self._level_wh[mats, levels]
        ds = e1 / np.maximum(len1, 1e-9)[:, None] * (span[:, 0] / wh[:, 0])[:, None]
        dt = e2 / np.maximum(len2, 1e-9)[:, None] * (span[:, 1] / wh[:, 1])[:, None]
        origin = V[:, 0] + 0.5 * ds + 0.5 * dt  # texel centres sit half a texel in
        H = np.einsum("ij,fjk->fik", self.K, np.stack([ds, dt, origin], axis=2))
        H[:, 0] -= rects[:, 0:1] * H[:, 2]
        H[:, 1] -= rects[:, 1:2] * H[:, 2]
        return H, levels, density < 0.5

    @staticmethod
    def _silhouette_rects(
        rects: np.ndarray, owners: np.ndarray, on_screen: np.ndarray
    ) -> dict[int, Silhouette]:
        """An empty mask over the union of each agent's face rectangles."""
        sel = on_screen & (owners > 0)
        if not sel.any():
            return {}
        own, r = owners[sel], rects[sel]
        n = int(own.max()) + 1
        lo = np.full((n, 2), np.iinfo(np.int64).max)
        hi = np.full((n, 2), -1)
        np.minimum.at(lo, own, r[:, :2])
        np.maximum.at(hi, own, r[:, 2:])
        out: dict[int, Silhouette] = {}
        for k in np.unique(own).tolist():
            (x0, y0), (x1, y1) = lo[k].tolist(), hi[k].tolist()
            out[k] = Silhouette(x0, y0, np.zeros((y1 - y0, x1 - x0), np.uint8))
        return out

    def _face(
        self,
        canvas: Canvas,
        fixed: np.ndarray,
        rect: list[int],
        q: list[float],
        inv_max: float,
        flat: np.ndarray,
        tex: tuple[np.ndarray, np.ndarray, bool, bool] | None,
        owner: int,
        silhouettes: dict[int, Silhouette],
        band: bool,
    ) -> None:
        """Fill one face (polygon in fixed-point pixels) into the canvas, z-tested.

        q: the face's plane as 1/z = q0 u + q1 v + q2, then its 1/z range (lo, hi); tex:
        (texture, homography to the rectangle, tiled, magnified) or None for a flat colour;
        band: fill it band by band (large faces that cover little of their rectangle).
        """
        x0, y0, x1, y1 = rect
        bits = SUBPIXEL_BITS
        if owner > 0:
            sil = silhouettes[owner]
            cv2.fillPoly(sil.mask, [fixed], 1, cv2.LINE_8, bits, (-sil.x0 << bits, -sil.y0 << bits))
        if inv_max <= canvas.inv_depth[y0:y1, x0:x1].min():
            return  # everything under the face's rectangle is nearer than the face
        if not band:
            self._fill(canvas, fixed, x0, y0, x1, y1, q, flat, tex, owner, x0, y0)
            return
        # large face: work in horizontal bands, each over the polygon's own x-range there
        poly = fixed.astype(np.float64) / (1 << bits)
        for by0 in range(y0, y1, BAND_ROWS):
            by1 = min(by0 + BAND_ROWS, y1)
            span = _x_span(poly, by0 - 1.0, by1)
            if span is None:
                continue
            bx0 = max(x0, int(np.floor(span[0])))
            bx1 = min(x1, int(np.ceil(span[1])) + 1)
            if bx1 > bx0:
                self._fill(canvas, fixed, bx0, by0, bx1, by1, q, flat, tex, owner, x0, y0)

    def _fill(
        self,
        canvas: Canvas,
        fixed: np.ndarray,
        x0: int,
        y0: int,
        x1: int,
        y1: int,
        q: list[float],
        flat: np.ndarray,
        tex: tuple[np.ndarray, np.ndarray, bool, bool] | None,
        owner: int,
        hx: int,
        hy: int,
    ) -> None:
        """Z-test and write the face over one rectangle; (hx, hy): origin of tex's homography.

        All per-pixel work is single OpenCV calls on views (masked copies and adds write in
        place), which is several times faster than numpy's boolean indexing here.
        """
        bits = SUBPIXEL_BITS
        zbuf = canvas.inv_depth[y0:y1, x0:x1]
        w, h = x1 - x0, y1 - y0
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [fixed], 255, cv2.LINE_8, bits, (-x0 << bits, -y0 << bits))
        inv = cv2.addWeighted(self._u[y0:y1, x0:x1], q[0], self._v[y0:y1, x0:x1], q[1], q[2])
        np.minimum(np.maximum(inv, q[3], out=inv), q[4], out=inv)  # (np.clip is slow)
        win = cv2.compare(inv, zbuf, cv2.CMP_GT)
        cv2.bitwise_and(win, mask, dst=win)
        if cv2.countNonZero(win) == 0:
            return
        self.faces_drawn += 1
        cv2.copyTo(inv, win, zbuf)
        if owner > 0:
            cv2.add(
                self._zero1[y0:y1, x0:x1],
                cv_scalar(owner),
                dst=canvas.owner[y0:y1, x0:x1],
                mask=win,
                # explicit: OpenCV 5 reads a one-column int16 window as another type and refuses
                dtype=cv2.CV_16S,
            )
        img = canvas.image[y0:y1, x0:x1]
        if tex is None:
            colour = cv_scalar(float(flat[0]), float(flat[1]), float(flat[2]), 0.0)
            cv2.add(self._zero3[y0:y1, x0:x1], colour, dst=img, mask=win)
            return
        texture, H, tiled, magnified = tex
        if x0 != hx or y0 != hy:
            H = H.copy()
            H[0] -= (x0 - hx) * H[2]
            H[1] -= (y0 - hy) * H[2]
        border = cv2.BORDER_WRAP if tiled else cv2.BORDER_REPLICATE
        if magnified and w * h >= HALF_RES_MIN_PX:
            # each texel spans two pixels or more: warp at half resolution (a quarter of the
            # work) and enlarge; bilinear both times, so nothing visible is lost
            w2, h2 = (w + 1) // 2, (h + 1) // 2
            half = cv2.warpPerspective(
                texture, _HALF @ H, (w2, h2), flags=cv2.INTER_LINEAR, borderMode=border
            )
            patch = cv2.resize(half, (2 * w2, 2 * h2), interpolation=cv2.INTER_LINEAR)[:h, :w]
        else:
            interp = cv2.INTER_LINEAR if magnified else cv2.INTER_NEAREST
            patch = cv2.warpPerspective(texture, H, (w, h), flags=interp, borderMode=border)
        cv2.copyTo(patch, win, img)


def cv_scalar(*values: float) -> Any:
    """An OpenCV scalar argument (its stubs only list arrays)."""
    return values if len(values) > 1 else values[0]


def _x_span(poly: np.ndarray, y_lo: float, y_hi: float) -> tuple[float, float] | None:
    """x-range of a convex polygon (n, 2) within the horizontal band y_lo <= y <= y_hi."""
    xs: list[float] = []
    n = len(poly)
    for i in range(n):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % n]
        if y_lo <= ay <= y_hi:
            xs.append(ax)
        for yl in (y_lo, y_hi):
            if (ay - yl) * (by - yl) < 0:
                xs.append(ax + (yl - ay) * (bx - ax) / (by - ay))
    if not xs:
        return None
    return min(xs), max(xs)


def _polygon_signed_area(poly: np.ndarray) -> np.ndarray:
    """Signed areas (F,) of polygons (F, n, 2) by the shoelace formula."""
    x, y = poly[..., 0], poly[..., 1]
    return 0.5 * (x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y).sum(-1)


def _polygon_area(poly: np.ndarray) -> np.ndarray:
    """Areas (F,) of polygons (F, n, 2)."""
    return np.abs(_polygon_signed_area(poly))
