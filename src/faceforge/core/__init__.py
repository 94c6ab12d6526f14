"""The few things every part of FaceForge needs, one module each: errors, devices, files,
progress, data locations, prefetching. Nothing is imported here, so that importing one of
them (every `faceforge` command imports the errors) does not load the others."""
