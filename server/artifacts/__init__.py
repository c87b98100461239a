"""Artifacts: the files Trinity makes from a case (volumes, masks, meshes, guides), versioned, with provenance."""
