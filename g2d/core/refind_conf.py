"""The same boot set as a rEFInd ``refind.conf`` with manual stanzas, as the old tool used.

Only rendered (no rEFInd binary is installed): for a machine that boots rEFInd, the file
goes to ``EFI/refind/refind.conf`` beside it. Pure.
"""

from __future__ import annotations

from g2d.core.boot_entries import (
    DEFAULT_CMDLINE,
    DEFAULT_LOADER,
    BootSet,
    KernelCommandLine,
    LoaderSettings,
    initramfs_path,
    kernel_path,
)

REFIND_CONF = "EFI/refind/refind.conf"


def refind_conf(
    boot: BootSet,
    cmdline: KernelCommandLine = DEFAULT_CMDLINE,
    settings: LoaderSettings = DEFAULT_LOADER,
) -> str:
    """A refind.conf that shows only g2d's stanzas; the first (the current) is the default.

    By position rather than by title: rEFInd matches ``default_selection`` text as a
    substring, and "Gentoo g1" is a substring of "Gentoo g10".
    """
    lines = [
        "# written by g2d: one stanza per installed generation, the current one first",
        f"timeout {settings.timeout}",
        "scanfor manual",
        "default_selection 1",
        "",
    ]
    for gen in boot.menu_order():
        lines += [
            f'menuentry "{gen.title}" {{',
            f"    loader  {kernel_path(gen.kernel)}",
            f"    initrd  {initramfs_path(gen.kernel)}",
            f'    options "{cmdline.render(gen.root)}"',
            *(
                ["    # the previous generation, to fall back to"]
                if gen.name == boot.previous
                else []
            ),
            "}",
            "",
        ]
    return "\n".join(lines)
