"""What both pod sandboxes and containers run on: the OCI runtime, conmon, rootfs mounts, cgroups.

Infrastructure: nothing here knows the CRI's messages beyond the plain data it is given.
"""
