"""The Blender layer: turns presets into objects, rigid bodies, render settings and strips.

Every module here imports bpy; the decisions they carry out live in addon/core.
"""
