"""Part of the LAVIS training package; importing `training` registers everything."""
