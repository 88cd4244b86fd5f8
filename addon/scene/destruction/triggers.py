"""Triggers in Blender: what starts the collapse, each from its own start frame.

Column removal pulls the chosen columns' fragments down through the ground (animated
rigid bodies); an impact is a ball animated up to its frame, then released to Bullet; ground
shaking animates the passive ground, and with it every bond to it; charges switch off
every bond inside their sphere and push outwards with a force field for a few frames.
Nothing moves before a trigger's frame: each animation holds its rest key until then.
"""
from __future__ import annotations

import math

import bmesh
import bpy
from mathutils import Vector

from ...core.destruction import triggers as spec
from ...core.preset import Preset
from .objects import tag

CHARGE_PUSH_FRAMES = 3  # a blast pushes for about a tenth of a second at 24 fps


def _linear(obj) -> None:
    action = obj.animation_data.action if obj.animation_data else None
    for fcurve in _fcurves(action):
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"


def _fcurves(action):
    if action is None:
        return []
    if hasattr(action, "fcurves") and action.fcurves is not None and len(action.fcurves):
        return list(action.fcurves)
    out = []  # Blender 4.4+ layered actions keep their curves in channel bags
    for layer in getattr(action, "layers", []):
        for strip in layer.strips:
            for bag in getattr(strip, "channelbags", []):
                out += list(bag.fcurves)
    return out


def column_removal(scene, built, preset: Preset, t: spec.ColumnRemoval) -> list[bpy.types.Object]:
    columns = t.columns or tuple((i, 0) for i in range(preset.building.bays_x + 1))
    names = {f"Column.{t.storey}.{int(i)}.{int(j)}" for i, j in columns}
    removed = [o for o in built.fragments if o["rubble_element"] in names]
    drop = preset.building.storey_height_m * (t.storey + 1) + 1.0
    for obj in removed:
        obj.rigid_body.kinematic = True  # animated: follows its keys, drags its bonds with it
        obj.keyframe_insert("location", frame=t.frame)
        obj.location.z -= drop
        obj.keyframe_insert("location", frame=t.frame + t.drop_frames)
        obj.location.z += drop
    return removed


def _building_half_size(preset: Preset) -> Vector:
    b = preset.building
    return Vector((b.bays_x * b.bay_width_m / 2 + b.column_size_m, b.bays_y * b.bay_width_m / 2 + b.column_size_m,
                   b.storeys * b.storey_height_m))


def impact(scene, built, preset: Preset, t: spec.Impact) -> bpy.types.Object:
    """A dynamic ball of `mass_kg` that reaches the building's face at `t.frame` moving at
    `speed_m_s`, and from then on is Bullet's: what it hits pushes back, so its mass counts.

    It rests, animated (kinematic), until `t.frame - APPROACH`, moves at constant velocity on
    its keys, and an event between frames makes it dynamic for the step into `t.frame` (an
    event, not a keyed switch: keyed switches were measured non-deterministic, physics.py).
    Bullet keeps the velocity of the body's last kinematic step; measured in bpy 5.0.1 at
    24 fps, 10 substeps, 14 m/s: with one approach frame the released ball stands still (its
    last kinematic step was the held rest key), with two it moves 14.0 m/s on the first free
    frame. Its linear damping is 0: Blender's default 0.04 takes 4 % of the speed a second,
    where air drag on a 5.4 t, 0.55 m ball at 14 m/s (1/2 rho Cd A v^2, Cd 0.47 for a sphere)
    takes 0.01 m/s a second. Released, it has no cable: it also falls (0.2 m in 5 frames).
    It stays dynamic after a bake, so playback reads all of its frames from the cache."""
    from .physics import add_event, add_rigid_bodies
    d = Vector(t.direction).normalized()
    side = Vector((-d.y, d.x, 0.0))
    side = side.normalized() if side.length > 1e-9 else Vector((1.0, 0.0, 0.0))
    through = Vector((0.0, 0.0, t.height_m)) + side * t.offset_m
    half = _building_half_size(preset)
    reach = min(half[k] / abs(d[k]) for k in range(2) if abs(d[k]) > 1e-9) if abs(d.x) + abs(d.y) > 1e-9 else half.z
    contact = through - d * (reach + t.radius_m + 0.05)  # where it is at t.frame, just short of the face
    approach = spec.IMPACT_APPROACH_FRAMES
    rest = contact - d * t.speed_m_s * approach / preset.shot.fps
    mesh = bpy.data.meshes.new("Rubble Impactor")
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=t.radius_m)
    bm.to_mesh(mesh)
    bm.free()
    ball = bpy.data.objects.new("Rubble Impactor", mesh)
    ball.location = rest
    scene.collection.objects.link(ball)
    tag(ball, "impactor", 3)
    add_rigid_bodies(scene, [ball], [t.mass_kg], [0.5])
    ball.rigid_body.collision_shape = "SPHERE"
    ball.rigid_body.linear_damping = 0.0
    ball.rigid_body.kinematic = True
    ball.keyframe_insert("location", frame=t.frame - approach)
    ball.location = contact
    ball.keyframe_insert("location", frame=t.frame)
    ball.location = rest
    _linear(ball)

    def animated(on: bool):
        def apply():
            ball.rigid_body.kinematic = on
        return apply
    add_event(built.events, scene.rigidbody_world.point_cache.frame_start, animated(True))  # a re-bake starts held
    add_event(built.events, t.frame, animated(False))
    return ball


def shake(scene, built, preset: Preset, t: spec.Shake) -> None:
    ground = built.ground
    ground.rigid_body.kinematic = True
    d = Vector(t.direction).normalized()
    rest = ground.location.copy()
    fps = preset.shot.fps
    for k in range(int(round(t.duration_s * fps)) + 1):
        ground.location = rest + d * t.amplitude_m * math.sin(2 * math.pi * t.frequency_hz * k / fps)
        ground.keyframe_insert("location", frame=t.frame + k)
    ground.location = rest
    _linear(ground)


def charges(scene, built, preset: Preset, t: spec.Charges) -> list[bpy.types.Object]:
    from .physics import add_event
    fields = []
    for k, centre in enumerate(t.centers):
        centre = Vector(centre)
        inside = [e for e in built.bonds if (e.location - centre).length <= t.radius_m]
        # A force field needs its effector data, which only the operator creates (a few charges: cheap).
        view_layer = scene.view_layers[0]
        with bpy.context.temp_override(scene=scene, view_layer=view_layer,
                                       collection=scene.collection, layer_collection=view_layer.layer_collection):
            bpy.ops.object.effector_add(type="FORCE", location=centre)
        charge = view_layer.objects.active
        charge.name = f"Rubble Charge.{k}"
        tag(charge, "charge", 0)
        charge.field.use_max_distance = True
        charge.field.distance_max = t.radius_m * 2
        charge.field.falloff_type = "SPHERE"
        charge.field.strength = 0.0

        def setter(bonds_on: bool, strength: float, inside=inside, charge=charge):
            def apply():
                for empty in inside:
                    empty.rigid_body_constraint.enabled = bonds_on
                charge.field.strength = strength
            return apply
        start = scene.rigidbody_world.point_cache.frame_start
        add_event(built.events, start, setter(True, 0.0))        # a re-bake starts from intact bonds
        add_event(built.events, t.frame, setter(False, t.strength))
        add_event(built.events, t.frame + CHARGE_PUSH_FRAMES, setter(False, 0.0))
        fields.append(charge)
    return fields


RUN = {"column_removal": column_removal, "impact": impact, "shake": shake, "charges": charges}


def run(scene, built, preset: Preset) -> None:
    for t in preset.triggers:
        RUN[t.kind](scene, built, preset, t)
