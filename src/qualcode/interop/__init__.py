"""Exchange with NVivo, ATLAS.ti, MAXQDA, QualCoder and Taguette through the REFI-QDA standard.

Read leniently (namespace variants, ``Sources/`` or ``sources/``, any ``*.qde``, braced or
upper-case GUIDs, UTF-16 offsets), write exactly what the schema and the standard's examples
show. Files from elsewhere are parsed with defusedxml and unzipped defensively.
"""
