"""Destruction in Blender: fragment meshes, rigid bodies, bonds, pre-roll and bake.

The geometry and numbers come from addon/core/destruction (no bpy); this package only
turns them into objects, batching every operator call.
"""
