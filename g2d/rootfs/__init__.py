"""Preparing a system root: extraction, /etc/portage, patchfiles, services, users."""
