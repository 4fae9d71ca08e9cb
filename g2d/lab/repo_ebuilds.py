"""The lab repository's packages, as data: one `Ebuild` per version, rendered to EAPI 8 text.

Small on purpose, yet each Gentoo feature g2d meets has a package: USE flags with defaults,
build and runtime dependencies, two SLOTs of one package (with sub-slots and a `:=` dep),
an any-of dependency in a virtual, a keyword-masked (`~amd64`) and a profile-masked version,
a license outside @FREE, an OpenRC init script with a systemd unit, one package that fails
on purpose under one USE flag, and one package built from a distfile (`distfiles.py`).
Names ending in `-lab` stand in for the real Gentoo package of that name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from textwrap import dedent

FAILING_PACKAGE = "app-misc/breakme"  # its build dies under FAILING_FLAG, and only then
FAILING_FLAG = "broken"
MULTI_INSTANCE_CPV = "app-misc/hello-1.0"  # the binhost builds it twice, with different USE
MULTI_INSTANCE_USE = ("nls -doc", "doc -nls")

HOMEPAGE = "https://lab.g2d.invalid/"


def _tabs(text: str) -> str:
    """Phases are written here with 4-space indents; ebuilds indent with tabs."""
    return re.sub(r"(?m)^((?:    )+)", lambda m: "\t" * (len(m[1]) // 4), text)


@dataclass(frozen=True)
class Ebuild:
    """One ebuild: its variables, and phase functions as shell text."""

    cpv: str  # category/name-version
    description: str
    slot: str = "0"
    keywords: str = "amd64"
    iuse: str = ""
    license: str = "MIT"
    depend: str = ""
    rdepend: str = ""
    src_uri: str = ""
    phases: str = ""  # shell text (src_compile, src_install ...)
    local_flags: tuple[tuple[str, str], ...] = ()  # (flag, description) for metadata.xml

    def __post_init__(self) -> None:
        _category, sep, pf = self.cpv.partition("/")
        if not sep or "-" not in pf or not pf.rsplit("-", 1)[1][:1].isdigit():
            raise ValueError(f"not a category/name-version: {self.cpv!r}")

    @property
    def category(self) -> str:
        return self.cpv.split("/")[0]

    @property
    def name(self) -> str:
        return self.cpv.split("/")[1].rsplit("-", 1)[0]

    @property
    def version(self) -> str:
        return self.cpv.rsplit("-", 1)[1]

    @property
    def cp(self) -> str:
        return f"{self.category}/{self.name}"

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(flag.lstrip("+-") for flag in self.iuse.split())

    def path(self) -> str:
        return f"{self.cp}/{self.name}-{self.version}.ebuild"

    def render(self) -> str:
        lines = [
            "# Copyright 2025 g2d lab authors",
            "# Distributed under the terms of the GNU General Public License v2",
            "",
            "EAPI=8",
            "",
            f'DESCRIPTION="{self.description}"',
            f'HOMEPAGE="{HOMEPAGE}"',
        ]
        lines += [f'SRC_URI="{self.src_uri}"'] if self.src_uri else ['S="${WORKDIR}"']
        lines += [
            "",
            f'LICENSE="{self.license}"',
            f'SLOT="{self.slot}"',
            f'KEYWORDS="{self.keywords}"',
        ]
        lines += [f'IUSE="{self.iuse}"'] if self.iuse else []
        lines += [""] if self.depend or self.rdepend else []
        lines += [f'DEPEND="{self.depend}"'] if self.depend else []
        if self.rdepend:
            same = self.rdepend == self.depend
            lines += ['RDEPEND="${DEPEND}"' if same else f'RDEPEND="{self.rdepend}"']
        text = "\n".join(lines) + "\n"
        return text + ("\n" + _tabs(dedent(self.phases).strip("\n")) + "\n" if self.phases else "")


def _data_package(path: str, content: str = "${PV}") -> str:
    """Phases of a stand-in that installs one small text file (and so has a CONTENTS)."""
    return f"""
        src_install() {{
            insinto {path.rsplit("/", 1)[0]}
            echo "{content}" | newins - {path.rsplit("/", 1)[1]}
        }}
    """


_HELLO_PHASES = """
    src_compile() {
        sed -e "s|@VERSION@|${PV}|" hello.in > hello || die
        echo "nls=$(usex nls) doc=$(usex doc)" > build-flags || die
        if use nls; then
            echo "Hallo aus dem g2d-Labor" > hello.de || die
        fi
    }

    src_install() {
        dobin hello
        insinto /usr/share/hello
        doins build-flags
        if use nls; then
            doins hello.de
        fi
        if use doc; then
            dodoc README
        fi
    }
"""


def _service_phases(name: str) -> str:
    """Phases of a service: a program, an OpenRC init script and conf.d file, a unit."""
    return f"""
        src_install() {{
            newbin "${{FILESDIR}}"/{name}.sh {name}
            newinitd "${{FILESDIR}}"/{name}.initd {name}
            newconfd "${{FILESDIR}}"/{name}.confd {name}
            insinto /usr/lib/systemd/system
            doins "${{FILESDIR}}"/{name}.service
        }}
    """


_BREAKME_PHASES = f"""
    src_compile() {{
        if use {FAILING_FLAG}; then
            die "breakme fails on purpose when USE={FAILING_FLAG} is set"
        fi
        echo "built without USE={FAILING_FLAG}" > breakme.txt || die
    }}

    src_install() {{
        insinto /usr/share/breakme
        doins breakme.txt
    }}
"""

EBUILDS: tuple[Ebuild, ...] = (
    # --- the @system stand-ins the profiles name
    Ebuild(
        "sys-apps/baselayout-lab-2.17",
        "Stand-in for sys-apps/baselayout: the lab's base file system marker",
        phases=_data_package("/usr/share/baselayout-lab/version"),
    ),
    Ebuild(
        "sys-apps/openrc-lab-0.56",
        "Stand-in for sys-apps/openrc, the default service manager",
        iuse="+netifrc",
        phases=_data_package("/usr/share/openrc-lab/version"),
        local_flags=(("netifrc", "Pull in the network interface scripts"),),
    ),
    Ebuild(
        "sys-apps/systemd-lab-257",
        "Stand-in for sys-apps/systemd, the service manager of the /systemd profiles",
        iuse="resolved",
        phases=_data_package("/usr/share/systemd-lab/version"),
        local_flags=(("resolved", "Enable the systemd-resolved stand-in"),),
    ),
    Ebuild(
        "virtual/service-manager-1",
        "Virtual for a service manager (any of the lab's stand-ins)",
        rdepend="|| ( sys-apps/openrc-lab sys-apps/systemd-lab )",
    ),
    # --- two SLOTs of one library, with sub-slots; the 2.1 series is capped by the site mask
    Ebuild(
        "dev-libs/libdemo-1.4",
        "Demo library, old series (SLOT 1)",
        slot="1/1.4",
        phases=_data_package("/usr/share/libdemo-1/version"),
    ),
    Ebuild(
        "dev-libs/libdemo-1.5",
        "Demo library, old series (SLOT 1), a testing release the site accepts",
        slot="1/1.5",
        keywords="~amd64",
        phases=_data_package("/usr/share/libdemo-1/version"),
    ),
    Ebuild(
        "dev-libs/libdemo-2.0",
        "Demo library, current series (SLOT 2)",
        slot="2/2.0",
        phases=_data_package("/usr/share/libdemo-2/version"),
    ),
    Ebuild(
        "dev-libs/libdemo-2.1",
        "Demo library, a newer release of SLOT 2 that the site masks",
        slot="2/2.1",
        phases=_data_package("/usr/share/libdemo-2/version"),
    ),
    # --- USE flags, a distfile, build and runtime deps; 1.1 is keyword-masked (~amd64)
    Ebuild(
        "app-misc/hello-1.0",
        "Greets from the lab; built from a distfile",
        iuse="+nls doc",
        depend="dev-libs/libdemo:2=",
        rdepend="dev-libs/libdemo:2=",
        src_uri="https://lab.g2d.invalid/distfiles/${P}.tar.gz",
        phases=_HELLO_PHASES,
    ),
    Ebuild(
        "app-misc/hello-1.1",
        "Greets from the lab; built from a distfile",
        keywords="~amd64",
        iuse="+nls doc",
        depend="dev-libs/libdemo:2=",
        rdepend="dev-libs/libdemo:2=",
        src_uri="https://lab.g2d.invalid/distfiles/${P}.tar.gz",
        phases=_HELLO_PHASES,
    ),
    Ebuild(
        "app-misc/greeter-1.0",
        "A service with an OpenRC init script and a systemd unit",
        rdepend="dev-libs/libdemo:1 virtual/service-manager",
        phases=_service_phases("greeter"),
    ),
    Ebuild(
        FAILING_PACKAGE + "-1.0",
        "Builds without USE=broken and fails on purpose with it",
        iuse=FAILING_FLAG,
        phases=_BREAKME_PHASES,
        local_flags=((FAILING_FLAG, "Make the build fail (for failure handling tests)"),),
    ),
    Ebuild(
        "app-misc/eula-lab-1.0",
        "A package whose license is outside @FREE (needs package.license)",
        license="lab-EULA",
        phases=_data_package("/usr/share/eula-lab/accepted"),
    ),
    # --- desktop, hardened and selinux stand-ins named by the profiles and the package sets
    Ebuild(
        "x11-misc/sddm-lab-0.21",
        "Stand-in for x11-misc/sddm, the Plasma display manager",
        phases=_service_phases("sddm-lab"),
    ),
    Ebuild(
        "kde-plasma/plasma-lab-6.0",
        "Stand-in for the KDE Plasma desktop",
        iuse="+wayland X",
        rdepend="x11-misc/sddm-lab",
        phases=_data_package("/usr/share/plasma-lab/version"),
    ),
    Ebuild(
        "kde-plasma/plasma-lab-6.1",
        "Stand-in for the KDE Plasma desktop, a release the profiles mask",
        iuse="+wayland X",
        rdepend="x11-misc/sddm-lab",
        phases=_data_package("/usr/share/plasma-lab/version"),
    ),
    Ebuild(
        "gnome-base/gdm-lab-47",
        "Stand-in for gnome-base/gdm, the GNOME display manager",
        phases=_service_phases("gdm-lab"),
    ),
    Ebuild(
        "gnome-base/gnome-lab-47",
        "Stand-in for the GNOME desktop",
        iuse="+wayland",
        rdepend="gnome-base/gdm-lab",
        phases=_data_package("/usr/share/gnome-lab/version"),
    ),
    Ebuild(
        "app-admin/checksec-lab-2.7",
        "Stand-in for app-admin/checksec, for the hardened sets",
        phases=_data_package("/usr/share/checksec-lab/version"),
    ),
    Ebuild(
        "sec-policy/selinux-base-lab-2.20240916",
        "Stand-in for sec-policy/selinux-base, the SELinux policy",
        iuse="unconfined",
        phases=_data_package("/usr/share/selinux-base-lab/version"),
        local_flags=(("unconfined", "Add the unconfined module to the policy"),),
    ),
)


def _service_files(name: str, description: str) -> dict[str, str]:
    return {
        f"{name}.sh": f"#!/bin/sh\necho '{name}: {description.lower()}'\n",
        f"{name}.initd": dedent(f"""\
            #!/sbin/openrc-run
            # Copyright 2025 g2d lab authors
            # Distributed under the terms of the GNU General Public License v2

            description="{description}"
            command="/usr/bin/{name}"
            command_background=true
            pidfile="/run/${{RC_SVCNAME}}.pid"
        """),
        f"{name}.confd": f"# Options for the {name} service (none yet)\n",
        f"{name}.service": dedent(f"""\
            [Unit]
            Description={description}

            [Service]
            Type=oneshot
            ExecStart=/usr/bin/{name}

            [Install]
            WantedBy={"graphical" if name.endswith("dm-lab") else "multi-user"}.target
        """),
    }


# Files in a package's FILESDIR, by package (category/name).
FILES: dict[str, dict[str, str]] = {
    "app-misc/greeter": _service_files("greeter", "Greets from the g2d lab"),
    "x11-misc/sddm-lab": _service_files("sddm-lab", "Stand-in for the SDDM display manager"),
    "gnome-base/gdm-lab": _service_files("gdm-lab", "Stand-in for the GDM display manager"),
}


def metadata_xml(ebuilds: tuple[Ebuild, ...]) -> str:
    """A package's metadata.xml (GLEP 68), with the local USE flags of its versions."""
    flags = dict(sorted({flag: text for e in ebuilds for flag, text in e.local_flags}.items()))
    use = "".join(f'\t\t<flag name="{flag}">{text}</flag>\n' for flag, text in flags.items())
    use_block = f"\t<use>\n{use}\t</use>\n" if flags else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE pkgmetadata SYSTEM "https://www.gentoo.org/dtd/metadata.dtd">\n'
        "<pkgmetadata>\n"
        '\t<maintainer type="project">\n'
        "\t\t<email>lab@lab.g2d.invalid</email>\n"
        "\t\t<name>g2d lab</name>\n"
        "\t</maintainer>\n"
        f"{use_block}"
        "</pkgmetadata>\n"
    )
