"""Destruction without Blender: materials, building layout, Voronoi fracture, bond thresholds.

The Blender layer (addon/scene/destruction/) turns these plain results into objects.
"""
